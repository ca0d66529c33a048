//! The loaded, validated, immutable policy: who is who, who may do what, and how records are
//! desensitized.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::{PolicyErrors, RecordError, RecordErrorCode};
use crate::keys::{KeyProvider, SaltSource};
use crate::model::{Limits, RecordType, Subject};
use crate::record::Desensitized;
use crate::transform::Ctx;

/// What a client certificate says about its holder, as the TLS layer extracted it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject common name.
    pub cn: Option<String>,
    /// URI subject alternative names.
    pub san_uris: Vec<String>,
    /// DNS subject alternative names.
    pub san_dns: Vec<String>,
    /// SHA-256 of the DER certificate, lowercase hex.
    pub fingerprint: String,
}

/// What a subject wants to do with a record type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Submit records.
    Submit,
    /// Read records back.
    Read,
}

/// A loaded policy. Built only from a complete, error-free set of files; never changed afterwards (a
/// reload builds a new one).
#[derive(Debug, Clone)]
pub struct PolicySet {
    subjects: Vec<Subject>,
    record_types: BTreeMap<String, RecordType>,
    limits: BTreeMap<String, Limits>,
    digest: [u8; 32],
    sources: Vec<PathBuf>,
}

impl PolicySet {
    pub(crate) fn new(
        subjects: Vec<Subject>,
        record_types: BTreeMap<String, RecordType>,
        limits: BTreeMap<String, Limits>,
        sources: Vec<PathBuf>,
    ) -> PolicySet {
        // The digest is over the meaning, not the text: canonical JSON (sorted keys, no white space) of
        // the validated model, so reformatting or splitting files does not change it.
        let canonical = serde_json::json!({
            "version": 1,
            "subjects": subjects,
            "record_types": record_types,
            "limits": limits,
        });
        let digest = Sha256::digest(serde_json::to_vec(&canonical).unwrap_or_default()).into();
        PolicySet {
            subjects,
            record_types,
            limits,
            digest,
            sources,
        }
    }

    /// Loads a policy file, or every `*.yaml`/`*.yml` file of a directory. Returns every error found.
    pub fn load(path: &Path) -> Result<PolicySet, PolicyErrors> {
        crate::load::load(path)
    }

    /// Builds a policy from text, as if read from `name` (for tests and embedded defaults).
    pub fn from_yaml(name: &Path, text: &str) -> Result<PolicySet, PolicyErrors> {
        crate::load::build(&[(name.to_owned(), text.to_owned())])
    }

    /// SHA-256 of the canonical policy; the gateway writes it into every ledger entry.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The digest in lowercase hex.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// The files it was loaded from.
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// All subjects, by name.
    pub fn subjects(&self) -> &[Subject] {
        &self.subjects
    }

    /// All record types, by name.
    pub fn record_types(&self) -> &BTreeMap<String, RecordType> {
        &self.record_types
    }

    /// The subject a certificate belongs to. A certificate matching no subject, or more than one, is
    /// refused: default deny, and no guessing between two subjects.
    pub fn identify(&self, peer: &PeerIdentity) -> Result<&Subject, RecordError> {
        let mut found = self.subjects.iter().filter(|s| matches(&s.matcher, peer));
        match (found.next(), found.next()) {
            (Some(s), None) => Ok(s),
            (None, _) => Err(RecordError::new(
                RecordErrorCode::Forbidden,
                None,
                "the certificate matches no subject of the policy",
            )),
            (Some(_), Some(_)) => Err(RecordError::new(
                RecordErrorCode::Forbidden,
                None,
                "the certificate matches more than one subject of the policy",
            )),
        }
    }

    /// Whether `subject` may do `action` on `record_type`; default deny. A subject that may do `action`
    /// on no type at all learns nothing of which types exist.
    pub fn authorize(
        &self,
        subject: &Subject,
        action: Action,
        record_type: &str,
    ) -> Result<&RecordType, RecordError> {
        let allowed = |rt: &RecordType| {
            let roles = match action {
                Action::Submit => &rt.submit,
                Action::Read => &rt.read,
            };
            subject.roles.iter().any(|r| roles.contains(r))
        };
        let verb = match action {
            Action::Submit => "submit",
            Action::Read => "read",
        };
        let forbidden = || {
            RecordError::new(
                RecordErrorCode::Forbidden,
                None,
                format!(
                    "subject `{}` may not {verb} `{record_type}` records",
                    subject.name
                ),
            )
        };
        if !self.record_types.values().any(allowed) {
            return Err(forbidden());
        }
        let rt = self.record_types.get(record_type).ok_or_else(|| {
            RecordError::new(
                RecordErrorCode::UnknownRecordType,
                None,
                format!("no record type `{record_type}`"),
            )
        })?;
        if allowed(rt) {
            Ok(rt)
        } else {
            Err(forbidden())
        }
    }

    /// The admission limits of a subject: the most generous among its roles' limits, or
    /// [`Limits::DEFAULT`] when none of its roles has any.
    pub fn limits_for(&self, subject: &Subject) -> Limits {
        subject
            .roles
            .iter()
            .filter_map(|r| self.limits.get(r))
            .copied()
            .reduce(|a, b| Limits {
                rate_per_second: a.rate_per_second.max(b.rate_per_second),
                burst: a.burst.max(b.burst),
                max_record_bytes: a.max_record_bytes.max(b.max_record_bytes),
            })
            .unwrap_or(Limits::DEFAULT)
    }

    /// Checks a record's `fields` against its type without desensitizing them (no keys needed: an
    /// edge's check before it forwards). Authorize first.
    pub fn validate(
        &self,
        record_type: &RecordType,
        fields: &serde_json::Value,
    ) -> Result<(), RecordError> {
        crate::record::validate(record_type, fields)
    }

    /// Validates a record's `fields` against its type and desensitizes them. Authorize first.
    pub fn desensitize(
        &self,
        record_type: &RecordType,
        fields: &serde_json::Value,
        keys: &dyn KeyProvider,
        salts: &mut dyn SaltSource,
    ) -> Result<Desensitized, RecordError> {
        let mut ctx = Ctx::new(keys, salts);
        let (payload, subject) = crate::record::desensitize(record_type, fields, &mut ctx)?;
        let key_refs = ctx.key_refs();
        Ok(Desensitized {
            payload,
            sealed: ctx.sealed,
            key_refs,
            subject,
        })
    }
}

fn matches(m: &crate::model::Matcher, peer: &PeerIdentity) -> bool {
    m.cn.as_ref().is_none_or(|cn| peer.cn.as_ref() == Some(cn))
        && m.san_uri.as_ref().is_none_or(|u| peer.san_uris.contains(u))
        && m.san_dns.as_ref().is_none_or(|d| peer.san_dns.contains(d))
        && m.fingerprint
            .as_ref()
            .is_none_or(|f| peer.fingerprint.eq_ignore_ascii_case(f))
}
