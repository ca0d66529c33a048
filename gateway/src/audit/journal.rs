//! keymgr's journal on the ledger. The key store keeps its own audit journal: every key operation
//! (by an officer through the admin API, by `keymgr --store` while the node is stopped, by the node's
//! automatic rotation) and every read in clear by a non-owner is committed in the same atomic write
//! as the change it records, with a dense sequence number. The node copies each journal event into
//! the ledger as an audit entry, so that what the key store's owner could rewrite is also where
//! nobody can.
//!
//! Crash safety: each copied entry is appended with an attachment naming its key store and
//! sequence number (`locator`), in the ledger's atomic write. Events are copied in order, one
//! at a time, so the copied events are always a prefix of the journal; after a crash (or when the
//! node starts after offline `keymgr` commands) the first missing one is found by a binary search
//! over the locators and copying resumes there. An event is never lost; on a consortium, an append
//! that timed out but committed late may be copied twice.

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Event, Outcome};

/// The prefix of a copied journal event's attachment key.
const LOCATOR_PREFIX: &[u8] = b"audit-journal\0";

/// The name prefix of data-subject keys in the key store (`keymgr::KeyManager::subject_key_name`).
const SUBJECT_KEY_PREFIX: &str = "subject/";

/// Identifies one key store (a node's data directory could get a new one): the SHA-256 of its
/// first journal event, which records the store's creation (its time and who made it).
pub fn store_id(first: &keymgr::AuditEvent) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(b"ledgergate-key-store:")
        .chain_update(serde_json::to_vec(first).unwrap_or_default())
        .finalize();
    let mut id = [0u8; 8];
    for (to, from) in id.iter_mut().zip(digest.iter()) {
        *to = *from;
    }
    id
}

/// The attachment key that locates the ledger entry of journal event `seq` of key store `store`.
pub fn locator(store: &[u8; 8], seq: u64) -> Vec<u8> {
    [LOCATOR_PREFIX, &store[..], &seq.to_be_bytes()].concat()
}

/// The first sequence number in `1..=last` that `copied` says is not on the ledger yet (`last + 1`
/// when all are). `copied` must hold for a prefix of the journal only, which copying in order keeps.
pub fn first_missing<E>(
    last: u64,
    mut copied: impl FnMut(u64) -> Result<bool, E>,
) -> Result<u64, E> {
    let (mut lo, mut hi) = (1, last.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if copied(mid)? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The ledger's audit event for journal event `e` of key store `store`. A data subject's key is
/// named by `subject_ref` (a keyed reference: the key store's name for it is an unkeyed hash of the
/// subject id, which anyone could test a guessed id against).
pub fn event(
    store: &[u8; 8],
    e: &keymgr::AuditEvent,
    subject_ref: impl Fn(&str) -> String,
) -> Event {
    let kind = match e.action.as_str() {
        "init" => "key.store_init",
        "create" => "key.create",
        "rotate" => "key.rotate",
        "revoke" => "key.revoke",
        "schedule-destroy" => "key.schedule_destroy",
        "cancel-destroy" => "key.cancel_destroy",
        "destroy" => "key.destroy",
        "shred" => "key.shred",
        "revoke-peer" => "key.revoke_peer",
        "change-passphrase" => "key.change_kek",
        "unseal" => "record.unseal",
        _ => "key.other",
    };
    let target = match (&e.key, e.version) {
        (Some(name), _) if name.starts_with(SUBJECT_KEY_PREFIX) => {
            format!("subject {}", subject_ref(name))
        }
        (Some(name), Some(v)) => format!("key {name} v{v}"),
        (Some(name), None) => format!("key {name}"),
        (None, _) if kind == "record.unseal" => "sealed values".to_owned(),
        (None, _) => "key store".to_owned(),
    };
    Event {
        kind,
        actor: e.actor.clone(),
        target,
        outcome: Outcome::Done,
        reason: None,
        details: json!({
            "journal": { "store": hex::encode(store), "seq": e.seq },
            "action": e.action,
            "detail": e.detail,
        }),
    }
}

/// How often the journal is checked for events to copy (officers' commands and disclosures copy
/// their own at once; this catches automatic rotations and anything a failed copy left behind).
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The node's start in the audit trail (`audit.node.start`, with the policy digest in force).
fn start_event(pipeline: &crate::pipeline::Pipeline) -> Event {
    Event {
        kind: "node.start",
        actor: "gateway".to_owned(),
        target: "node".to_owned(),
        outcome: Outcome::Done,
        reason: None,
        details: json!({
            "version": env!("CARGO_PKG_VERSION"),
            "policy": pipeline.policy().digest_hex(),
        }),
    }
}

/// Records the node's start and copies the journal's events not yet on the ledger (commands run
/// offline while it was stopped): a single node does this before it serves anything.
pub async fn start(
    pipeline: &crate::pipeline::Pipeline,
) -> Result<(), crate::pipeline::PipelineError> {
    pipeline
        .record_audit(&start_event(pipeline), super::WAIT)
        .await?;
    pipeline.copy_journal(super::WAIT).await?;
    Ok(())
}

/// Runs for the node's life: records its start unless `started` says [`start`] did, then copies
/// the key store's journal into the ledger as it grows. A copy that fails (no quorum, storage) is
/// tried again at the next tick; nothing is skipped.
pub async fn follow(pipeline: std::sync::Arc<crate::pipeline::Pipeline>, mut started: bool) {
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        if !started {
            match pipeline
                .record_audit(&start_event(&pipeline), super::WAIT)
                .await
            {
                Ok(_) => started = true,
                Err(e) => {
                    tracing::warn!(event = "audit_copy_pending", error = %e, "the node's start is not yet in the audit trail");
                    continue;
                }
            }
        }
        if !pipeline.journal_behind() {
            continue;
        }
        match pipeline.copy_journal(super::WAIT).await {
            Ok(n) => {
                if failing {
                    tracing::info!(copied = n, "the key store journal is on the ledger again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(event = "audit_copy_pending", error = %e, "the key store journal is not yet on the ledger; trying again");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal_event(action: &str, key: Option<&str>, version: Option<u32>) -> keymgr::AuditEvent {
        keymgr::AuditEvent {
            seq: 7,
            at: 100,
            actor: "officer".into(),
            action: action.into(),
            key: key.map(str::to_owned),
            version,
            detail: "reason compromised".into(),
        }
    }

    #[test]
    fn the_first_missing_event_is_found_in_a_copied_prefix() {
        for last in 0..40u64 {
            for copied in 0..=last {
                let mut asked = 0;
                let found = first_missing::<()>(last, |seq| {
                    asked += 1;
                    Ok(seq <= copied)
                });
                assert_eq!(found, Ok(copied + 1), "last {last}, copied {copied}");
                assert!(asked <= 7, "a binary search, not a scan");
            }
        }
    }

    #[test]
    fn a_subject_key_is_named_by_its_keyed_reference_only() {
        let store = [1; 8];
        let e = event(
            &store,
            &journal_event("shred", Some("subject/0123abcd"), None),
            |name| format!("ref-of-{}", name.len()),
        );
        assert_eq!(e.kind, "key.shred");
        assert_eq!(e.target, "subject ref-of-16");
        let bytes = String::from_utf8(e.entry(Some(100), None)).unwrap();
        assert!(!bytes.contains("0123abcd"), "{bytes}");
        assert!(bytes.contains(r#""seq":7"#), "{bytes}");
    }

    #[test]
    fn key_operations_name_the_key_and_version() {
        let e = event(
            &[0; 8],
            &journal_event("revoke", Some("pseudonym"), Some(2)),
            |_| unreachable!(),
        );
        assert_eq!(
            (e.kind, e.target.as_str()),
            ("key.revoke", "key pseudonym v2")
        );
        let e = event(
            &[0; 8],
            &journal_event("unseal", None, None),
            |_| unreachable!(),
        );
        assert_eq!(
            (e.kind, e.target.as_str()),
            ("record.unseal", "sealed values")
        );
        assert_ne!(locator(&[0; 8], 1), locator(&[0; 8], 2));
        assert_ne!(locator(&[0; 8], 1), locator(&[1; 8], 1));
    }
}
