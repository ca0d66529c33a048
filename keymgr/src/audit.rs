//! The audit trail: every key operation, who did it and when, in order. Appended in the same atomic
//! write as the change it records.

use serde::{Deserialize, Serialize};

use crate::lifecycle::Timestamp;

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the trail, from 1.
    pub seq: u64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// What: `create`, `rotate`, `revoke`, `schedule-destroy`, `cancel-destroy`, `destroy`, `shred`,
    /// `revoke-peer`, `change-passphrase`, `init`.
    pub action: String,
    /// Which key, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Which version, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Anything else worth knowing (reason, window); never secret.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub detail: String,
}
