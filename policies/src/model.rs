//! The validated policy model: what a loaded policy means, independent of how it was written.

use std::collections::{BTreeMap, BTreeSet};

/// How a client certificate is recognised. Every given attribute must match (logical AND); at least one
/// is given.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Matcher {
    /// Subject common name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cn: Option<String>,
    /// A URI subject alternative name (SPIFFE ids, typically).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub san_uri: Option<String>,
    /// A DNS subject alternative name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub san_dns: Option<String>,
    /// SHA-256 of the DER certificate, lowercase hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

/// A named party and its roles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subject {
    /// The subject's name in the policy.
    pub name: String,
    /// How its certificate is recognised.
    #[serde(rename = "match")]
    pub matcher: Matcher,
    /// Its roles.
    pub roles: BTreeSet<String>,
}

/// What to do with record fields the type does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// Refuse the record (`unknown_field`).
    Reject,
    /// Leave them out of the payload.
    Drop,
}

/// How a record's id appears in its ledger entry. Record ids are the provider's own references and
/// often carry meaning (an application number, a patient's case number); the ledger is shared, so
/// by default it gets a keyed reference and only the node that accepted the record keeps the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordIds {
    /// The entry carries `ref`: an HMAC of (provider, id) under the node's request key; the id stays
    /// in the node's own index. The default.
    Keyed,
    /// The entry carries the id in clear (`id`), for types whose ids are meant to be shared.
    Clear,
}

/// A scalar field type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScalarType {
    /// UTF-8 text.
    String,
    /// A whole number (i64).
    Integer,
    /// Any JSON number.
    Number,
    /// true or false.
    Boolean,
    /// RFC 3339 full-date, `YYYY-MM-DD`.
    Date,
    /// RFC 3339 date-time.
    Timestamp,
}

/// A field's type.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A scalar.
    Scalar(ScalarType),
    /// An object with its own declared fields.
    Object(BTreeMap<String, Field>),
    /// An array of scalars.
    Array(ScalarType),
}

/// Units a date or timestamp can be truncated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncateUnit {
    /// Keep the year.
    Year,
    /// Keep year and month.
    Month,
    /// Keep the date.
    Day,
    /// Keep date and hour (timestamps only).
    Hour,
}

/// How a field is desensitized: exactly one per field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// The value as it is.
    Keep,
    /// Left out of the payload.
    Drop,
    /// Replaced by a constant.
    Redact {
        /// The constant.
        with: String,
    },
    /// Characters (Unicode scalar values) replaced by `char`, except the first and last few.
    Mask {
        /// Characters kept at the start.
        keep_first: usize,
        /// Characters kept at the end.
        keep_last: usize,
        /// The mask character.
        #[serde(rename = "char")]
        ch: char,
    },
    /// HMAC-SHA-256 pseudonym under a managed key, tagged with the key version: `v3:…`.
    Hash {
        /// The managed key's name.
        key: String,
    },
    /// A number replaced by its bucket, e.g. 37 → `"30-39"`.
    Generalize {
        /// The bucket width, > 0.
        bucket: u64,
    },
    /// A date or timestamp cut down to a unit.
    Truncate {
        /// The unit kept.
        to: TruncateUnit,
    },
    /// The value goes to the off-ledger vault; the payload keeps a salted commitment.
    Seal,
}

/// One declared field.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Field {
    /// Its type.
    #[serde(rename = "type")]
    pub ty: FieldType,
    /// Must be present (and not null).
    pub required: bool,
    /// Most characters (strings) or items (arrays).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_length: Option<usize>,
    /// Smallest allowed number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest allowed number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The only allowed values.
    #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
    pub enum_values: Option<Vec<serde_json::Value>>,
    /// How it is desensitized.
    pub transform: Transform,
}

/// A record type: who may submit and read it, whose data it is, and its schema.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordType {
    /// Its name.
    pub name: String,
    /// Roles that may submit it.
    pub submit: BTreeSet<String>,
    /// Roles that may read it.
    pub read: BTreeSet<String>,
    /// Roles that may read its sealed values in clear, besides the provider that submitted the
    /// record (which always may): by default nobody else.
    pub unseal: BTreeSet<String>,
    /// The top-level field naming the data subject (per-subject keys and shredding).
    pub subject_field: String,
    /// What to do with undeclared fields.
    pub unknown_fields: UnknownFields,
    /// How the record id appears on the ledger.
    pub record_id: RecordIds,
    /// The declared fields.
    pub fields: BTreeMap<String, Field>,
}

/// Admission limits of a role.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Limits {
    /// Sustained records per second.
    pub rate_per_second: f64,
    /// Records that may arrive at once above the sustained rate.
    pub burst: u32,
    /// Largest record, in bytes of JSON.
    pub max_record_bytes: usize,
}

impl Limits {
    /// What applies to a subject none of whose roles has limits: conservative, so that forgetting a
    /// `limits` entry never means "unlimited".
    pub const DEFAULT: Limits = Limits {
        rate_per_second: 10.0,
        burst: 20,
        max_record_bytes: 64 * 1024,
    };
}
