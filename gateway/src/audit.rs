//! The audit trail: privileged and security events kept as entries of the ledger itself (entry type
//! `audit.<kind>`), so the Merkle tree and the checkpoints cover them like records and, in a
//! consortium, every member holds, re-hashes and cosigns them. An administrator who can rewrite the
//! node's store cannot rewrite its audit trail unnoticed: `gateway ledger verify` recomputes the
//! tree, and a saved checkpoint catches a cut tail.
//!
//! An audit entry says who (`actor`), what (`type`), to what (`target`), with which outcome and why
//! (`reason`), and when (`time`; absent only where every consortium member must write the same bytes:
//! see `consortium::audit_entry`). It never holds record contents, field values or subject ids. In a
//! consortium it also names the member that appended it (`member`), which every member checks
//! against the member that proposed it (`consortium::audit_entry::refusal`).
//!
//! Record types cannot be mistaken for audit entries: a policy's record type names are lowercase
//! letters, digits and `_` (no dot).

pub mod journal;
pub mod listing;

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::ledger::Attachment;

/// How long an audited act (an officer's command, a disclosure, a reload) waits for its audit entry
/// to be durable, through elections on a consortium.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The prefix of every audit entry's `type`.
pub const TYPE_PREFIX: &str = "audit.";

/// The prefix of the attachment key that locates an audit entry (by the SHA-256 of its bytes).
const ATTACHMENT_PREFIX: &[u8] = b"audit\0";

/// How an audited act ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Asked for and about to be carried out: recorded before the act, so that no act happens
    /// unrecorded (its end is recorded after it, or the act's own entries show it).
    Requested,
    /// Carried out.
    Done,
    /// Refused (the request was wrong, or conflicted with the state).
    Refused,
    /// It failed (storage, quorum, time): the state may or may not have changed.
    Failed,
    /// Committed by the consortium's Raft (the act's effect, the same on every member).
    Committed,
}

/// One audited event.
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened, without the `audit.` prefix, e.g. `consortium.member_add`.
    pub kind: &'static str,
    /// Who: an officer's name, a subject, `gateway`, or `consortium`.
    pub actor: String,
    /// To what: a key name, a member, a subject reference; never a field value or a subject id.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why (an error's code and message, a revocation's reason), if there is one to say.
    pub reason: Option<String>,
    /// More facts about the event (an object; `Value::Null` for none).
    pub details: Value,
}

impl Event {
    /// The entry's bytes: canonical JSON (sorted keys, no white space), stamped with `time` (Unix
    /// seconds), or without a time where every member must write the same bytes; `member`: the
    /// consortium member appending it, if any.
    pub fn entry(&self, time: Option<keymgr::Timestamp>, member: Option<&str>) -> Vec<u8> {
        let mut entry = Map::new();
        entry.insert("v".into(), json!(1));
        entry.insert("type".into(), json!(format!("{TYPE_PREFIX}{}", self.kind)));
        entry.insert("actor".into(), json!(self.actor));
        entry.insert("target".into(), json!(self.target));
        entry.insert("outcome".into(), json!(self.outcome));
        if let Some(reason) = &self.reason {
            entry.insert("reason".into(), json!(reason));
        }
        if let Some(time) = time {
            entry.insert("time".into(), json!(keymgr::rfc3339(time)));
        }
        if let Some(member) = member {
            entry.insert("member".into(), json!(member));
        }
        if !self.details.is_null() {
            entry.insert("details".into(), self.details.clone());
        }
        // A map of strings and JSON values always serializes.
        serde_json::to_vec(&Value::Object(entry)).unwrap_or_default()
    }
}

/// The attachment an audit entry is appended with: it locates the entry by the SHA-256 of its bytes
/// (appends that go together carry one attachment per entry or none, and an audit entry may share
/// its proposal with records).
pub fn attachment(entry: &[u8]) -> Attachment {
    let mut key = ATTACHMENT_PREFIX.to_vec();
    key.extend_from_slice(&Sha256::digest(entry));
    Attachment {
        key,
        extra: Vec::new(),
    }
}

/// What the audit checks read of an entry: its type and the member it names.
#[derive(Debug, serde::Deserialize)]
pub struct Typed<'a> {
    /// `type`.
    #[serde(borrow, rename = "type")]
    pub kind: Option<std::borrow::Cow<'a, str>>,
    /// `member`.
    #[serde(borrow)]
    pub member: Option<std::borrow::Cow<'a, str>>,
}

/// The type and member of the ledger entry `bytes`, if it is a JSON object.
pub fn typed(bytes: &[u8]) -> Option<Typed<'_>> {
    serde_json::from_slice::<Typed<'_>>(bytes).ok()
}

/// Whether the ledger entry `bytes` is an audit entry.
pub fn is_audit(bytes: &[u8]) -> bool {
    typed(bytes)
        .and_then(|t| t.kind)
        .is_some_and(|k| k.starts_with(TYPE_PREFIX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            kind: "consortium.member_add",
            actor: "officer".into(),
            target: "member 4 (m4)".into(),
            outcome: Outcome::Requested,
            reason: None,
            details: json!({"id": 4}),
        }
    }

    #[test]
    fn an_entry_is_canonical_json_with_sorted_keys() {
        let bytes = event().entry(Some(0), None);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"actor":"officer","details":{"id":4},"outcome":"requested","target":"member 4 (m4)","time":"1970-01-01T00:00:00Z","type":"audit.consortium.member_add","v":1}"#
        );
        assert!(is_audit(&bytes));
    }

    #[test]
    fn without_a_time_two_members_write_the_same_bytes() {
        assert_eq!(event().entry(None, None), event().entry(None, None));
        assert!(
            !String::from_utf8(event().entry(None, None))
                .unwrap()
                .contains("time")
        );
    }

    #[test]
    fn records_and_other_bytes_are_not_audit_entries() {
        assert!(!is_audit(br#"{"type":"loan_application","v":1}"#));
        assert!(!is_audit(b"not json"));
        assert!(!is_audit(br#"{"v":1}"#));
    }

    #[test]
    fn the_attachment_key_differs_per_entry() {
        assert_ne!(
            attachment(b"a").key,
            attachment(b"b").key,
            "two audit entries must not share a locator"
        );
    }
}
