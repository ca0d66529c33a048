//! Ledgergate access policies: who a client certificate belongs to, what it may do, what a record must
//! look like, and how each field is desensitized before anything reaches the ledger.
//!
//! The crate reads policy files and nothing else: keys arrive through [`KeyProvider`], randomness
//! through [`SaltSource`], and certificates as an already extracted [`PeerIdentity`].
//!
//! ```
//! use policies::{PolicySet, PeerIdentity, Action, KeyProvider, KeyError, KeyBytes, SaltSource};
//! # use std::path::Path;
//! let policy = PolicySet::from_yaml(Path::new("example.yaml"), r#"
//! version: 1
//! subjects:
//!   bank-a: { match: { cn: bank-a }, roles: [provider] }
//! record_types:
//!   loan_application:
//!     submit: [provider]
//!     read: [provider]
//!     subject_field: applicant_id
//!     fields:
//!       applicant_id: { type: string, required: true, transform: { hash: { key: pseudonym } } }
//!       phone:        { type: string, transform: { mask: { keep_last: 4 } } }
//!       age:          { type: integer, transform: { generalize: { bucket: 10 } } }
//! "#).map_err(|e| e.to_string())?;
//!
//! struct Keys;
//! impl KeyProvider for Keys {
//!     fn current(&self, _: &str) -> Result<(u32, KeyBytes), KeyError> { Ok((3, KeyBytes::new(vec![7; 32]))) }
//!     fn version(&self, _: &str, _: u32) -> Result<KeyBytes, KeyError> { Ok(KeyBytes::new(vec![7; 32])) }
//! }
//! struct Salts;
//! impl SaltSource for Salts { fn fill(&mut self, s: &mut [u8]) { s.fill(1) } }
//!
//! let peer = PeerIdentity { cn: Some("bank-a".into()), ..Default::default() };
//! let subject = policy.identify(&peer).map_err(|e| e.to_string())?;
//! let rt = policy.authorize(subject, Action::Submit, "loan_application").map_err(|e| e.to_string())?;
//! let fields = serde_json::json!({ "applicant_id": "A-17", "phone": "+49 170 1234567", "age": 37 });
//! let out = policy.desensitize(rt, &fields, &Keys, &mut Salts).map_err(|e| e.to_string())?;
//! assert_eq!(out.payload["phone"], "***********4567");
//! assert_eq!(out.payload["age"], "30-39");
//! assert!(out.payload["applicant_id"].as_str().unwrap_or_default().starts_with("v3:"));
//! assert_eq!(out.key_refs[0].to_string(), "pseudonym@3");
//! # Ok::<(), String>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod keys;
mod load;
mod locate;
mod model;
mod number;
mod parse;
mod record;
mod set;
mod strict_json;
mod transform;

pub use error::{PolicyError, PolicyErrors, RecordError, RecordErrorCode};
pub use keys::{KeyBytes, KeyError, KeyProvider, KeyRef, SaltSource};
pub use model::{
    Field, FieldType, Limits, Matcher, RecordIds, RecordType, ScalarType, Subject, Transform,
    TruncateUnit, UnknownFields,
};
pub use record::{Desensitized, JsonLimits, canonicalize_numbers, parse_json};
pub use set::{Action, PeerIdentity, PolicySet};
pub use transform::{
    SALT_LEN, SealedField, commitment_text, generalize, mask, pseudonym, truncate_date,
    truncate_timestamp,
};
