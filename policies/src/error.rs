//! Errors: policy files that cannot be loaded, and records that a policy refuses.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a policy file, located as precisely as the YAML allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line and column of the offending node, when known.
    pub position: Option<(usize, usize)>,
    /// YAML path of the offending node, e.g. `record_types.loan.fields.age.transform`; empty for the
    /// document itself.
    pub path: String,
    /// Stable machine code, e.g. `unknown_role`.
    pub code: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for PolicyError {
    /// `file:line:column: code: path: message` (without `line:column` when unknown, without `path:`
    /// for the document itself).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": {}: ", self.code)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for PolicyError {}

/// Every problem found while loading a policy; a policy with any is never applied, not even in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub(crate) fn one(file: &Path, code: &'static str, message: impl Into<String>) -> PolicyErrors {
        PolicyErrors(vec![PolicyError {
            file: file.to_owned(),
            position: None,
            path: String::new(),
            code,
            message: message.into(),
        }])
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// Why a record was refused. The codes are the HTTP API's problem `code`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordErrorCode {
    /// The record type is not in the policy.
    UnknownRecordType,
    /// A field the record type does not declare (and does not drop).
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A field's value breaks its declared type or constraints.
    InvalidField,
    /// The subject may not do this.
    Forbidden,
    /// The record is not well-formed JSON, or nests deeper than allowed.
    MalformedJson,
    /// The record is larger than the subject's limit.
    PayloadTooLarge,
    /// A key the transforms need has no usable version (revoked as compromised, or expired).
    KeyRevoked,
    /// A key the transforms need could not be had.
    KeyUnavailable,
}

impl RecordErrorCode {
    /// The stable machine code.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordErrorCode::UnknownRecordType => "unknown_record_type",
            RecordErrorCode::UnknownField => "unknown_field",
            RecordErrorCode::MissingField => "missing_field",
            RecordErrorCode::InvalidField => "invalid_field",
            RecordErrorCode::Forbidden => "forbidden",
            RecordErrorCode::MalformedJson => "malformed_json",
            RecordErrorCode::PayloadTooLarge => "payload_too_large",
            RecordErrorCode::KeyRevoked => "key_revoked",
            RecordErrorCode::KeyUnavailable => "unavailable",
        }
    }
}

/// A record refused by the policy: the code, the field path where one applies, and why. The reason
/// never quotes the refused value (it may be the very data we must not leak into logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", path.as_ref().map(|p| format!("{p}: ")).unwrap_or_default(), reason)]
pub struct RecordError {
    /// The machine code.
    pub code: RecordErrorCode,
    /// The field path, e.g. `address.zip` or `tags[2]`.
    pub path: Option<String>,
    /// Why, for a person.
    pub reason: String,
}

impl RecordError {
    pub(crate) fn new(
        code: RecordErrorCode,
        path: Option<&str>,
        reason: impl Into<String>,
    ) -> RecordError {
        RecordError {
            code,
            path: path.map(str::to_owned),
            reason: reason.into(),
        }
    }

    pub(crate) fn field(
        code: RecordErrorCode,
        path: &str,
        reason: impl Into<String>,
    ) -> RecordError {
        RecordError::new(code, Some(path), reason)
    }
}
