//! Behaviour of the ledger as a whole: durability across reopen, proofs against published checkpoints,
//! what the offline verifier catches, and how bad stores are refused.

use super::*;
use std::path::Path;

const ORIGIN: &str = "test.ledgergate.local/log";

fn signer() -> Arc<Ed25519NoteSigner> {
    Arc::new(Ed25519NoteSigner::from_seed(ORIGIN, &[5u8; 32]).unwrap())
}

fn open(path: &Path) -> Ledger {
    Ledger::open(LedgerConfig::new(path, ORIGIN), signer()).unwrap()
}

fn entries(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range
        .map(|i| format!("{{\"record\":{i}}}").into_bytes())
        .collect()
}

/// A store with `n` entries appended in groups of `group`, closed again.
fn filled(n: u32, group: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("l"));
    let mut i = 0;
    while i < n {
        let end = (i + group).min(n);
        ledger.append_blocking(entries(i..end)).unwrap();
        i = end;
    }
    ledger.close();
    dir
}

fn tamper(dir: &tempfile::TempDir) -> testing::Tamper {
    testing::Tamper::open(&dir.path().join("l"))
}

fn pinned(v: &NoteVerifier) -> VerifyOptions {
    VerifyOptions {
        pinned: vec![v.clone()],
        ..VerifyOptions::default()
    }
}

fn verify(dir: &tempfile::TempDir) -> Result<VerifyReport, VerifyFailure> {
    verify_store(&dir.path().join("l"), &VerifyOptions::default())
}

#[test]
fn receipts_proofs_and_checkpoints_agree() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("l"));
    assert_eq!(ledger.size(), 0);
    assert_eq!(ledger.checkpoint().checkpoint.root, Hash::empty());
    let receipts = ledger.append_blocking(entries(0..10)).unwrap();
    assert_eq!(
        receipts.iter().map(|r| r.index).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    let trusted = [ledger.verifier().unwrap()];
    for r in &receipts {
        assert_eq!(r.tree_size, 10);
        let cp = SignedCheckpoint::open(&r.checkpoint.note, &trusted)
            .unwrap()
            .checkpoint;
        let proof = ledger.inclusion_proof(r.index, cp.size).unwrap();
        verify_inclusion(&r.leaf_hash, r.index, cp.size, &proof, &cp.root).unwrap();
        assert_eq!(leaf_hash(&ledger.entry(r.index).unwrap()), r.leaf_hash);
    }
    let old_root = ledger.root_at(4).unwrap();
    let proof = ledger.consistency_proof(4, 10).unwrap();
    verify_consistency(
        4,
        10,
        &proof,
        &old_root,
        &ledger.checkpoint().checkpoint.root,
    )
    .unwrap();
    assert_eq!(ledger.entries(8, 100).unwrap().len(), 2);
    assert!(matches!(
        ledger.entry(10),
        Err(LedgerError::NoSuchEntry {
            index: 10,
            size: 10
        })
    ));
    assert!(matches!(
        ledger.inclusion_proof(0, 11),
        Err(LedgerError::SizeBeyondTree {
            asked: 11,
            size: 10
        })
    ));
    assert!(matches!(
        ledger.inclusion_proof(10, 10),
        Err(LedgerError::BadProofRequest(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_group_committed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(open(&dir.path().join("l")));
    let tasks: Vec<_> = (0..64u32)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move { ledger.append(entries(t * 10..t * 10 + 10)).await })
        })
        .collect();
    let mut indices = Vec::new();
    for t in tasks {
        let receipts = t.await.unwrap().unwrap();
        // One caller's entries stay contiguous and in order.
        let first = receipts[0].index;
        assert!(
            receipts
                .iter()
                .enumerate()
                .all(|(k, r)| r.index == first + k as u64)
        );
        indices.extend(receipts.iter().map(|r| r.index));
    }
    indices.sort_unstable();
    assert_eq!(indices, (0..640).collect::<Vec<_>>());
    drop(ledger);
    let report = verify(&dir).unwrap();
    assert_eq!(report.size, 640);
}

/// Attachments land with their entries (mixed with plain appends in the same groups), locate them
/// exactly, rebuild their receipts, survive a reopen, and are invisible to entries and `verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_are_kept_beside_their_entries() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(open(&dir.path().join("l")));
    let tasks: Vec<_> = (0..32u32)
        .map(|t| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move {
                if t % 2 == 0 {
                    return ledger.append(entries(t * 3..t * 3 + 3)).await;
                }
                let items = entries(t * 3..t * 3 + 3)
                    .into_iter()
                    .enumerate()
                    .map(|(k, e)| {
                        let a = Attachment {
                            key: format!("r/{t}/{k}").into_bytes(),
                            extra: t.to_be_bytes().to_vec(),
                        };
                        (e, a)
                    })
                    .collect();
                ledger.append_with(items).await
            })
        })
        .collect();
    let mut receipts = Vec::new();
    for (t, task) in tasks.into_iter().enumerate() {
        receipts.push((t, task.await.unwrap().unwrap()));
    }
    let check = |ledger: &Ledger| {
        for (t, rs) in &receipts {
            for (k, r) in rs.iter().enumerate() {
                let located = ledger.located(format!("r/{t}/{k}").as_bytes()).unwrap();
                if t % 2 == 0 {
                    assert_eq!(located, None);
                    continue;
                }
                let located = located.unwrap();
                assert_eq!((located.index, located.tree_size), (r.index, r.tree_size));
                let t = u32::try_from(*t).unwrap();
                assert_eq!(located.extra, t.to_be_bytes().to_vec());
                let (leaf, note) = ledger.receipt_parts(r.index, r.tree_size).unwrap();
                assert_eq!(
                    (leaf, note.as_str()),
                    (r.leaf_hash, r.checkpoint.note.as_str())
                );
            }
        }
    };
    check(&ledger);
    // Entries hold only what was appended: no attachment bytes leak into the log.
    assert_eq!(ledger.entry(4).unwrap(), ledger.entries(4, 5).unwrap()[0].1);
    assert!(
        ledger
            .entries(0, 96)
            .unwrap()
            .iter()
            .all(|(_, e)| e.starts_with(b"{\"record\":"))
    );
    Arc::into_inner(ledger).unwrap().close();
    let report = verify(&dir).unwrap();
    assert_eq!(report.size, 96);
    let ledger = open(&dir.path().join("l"));
    check(&ledger);
    assert!(ledger.receipt_parts(5, 97).is_err());
}

/// The barrier runs before every group is written; when it fails the group is refused, nothing of it is
/// written, and the ledger keeps taking appends.
#[test]
fn a_failing_barrier_refuses_the_group_without_poisoning_the_ledger() {
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("l"));
    let (calls, fail) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (c, f) = (Arc::clone(&calls), Arc::clone(&fail));
    ledger
        .set_barrier(Box::new(move || {
            c.fetch_add(1, Ordering::SeqCst);
            if f.load(Ordering::SeqCst) {
                Err("disk full".into())
            } else {
                Ok(())
            }
        }))
        .unwrap();
    assert!(matches!(
        ledger.set_barrier(Box::new(|| Ok(()))),
        Err(LedgerError::Barrier(_))
    ));
    ledger.append_blocking(entries(0..2)).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    fail.store(true, Ordering::SeqCst);
    let err = ledger.append_blocking(entries(2..4)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "what entries depend on could not be made durable: disk full"
    );
    assert_eq!(ledger.size(), 2);
    fail.store(false, Ordering::SeqCst);
    let receipts = ledger.append_blocking(entries(2..4)).unwrap();
    assert_eq!(receipts[0].index, 2);
    ledger.close();
    assert_eq!(verify(&dir).unwrap().size, 4);
}

#[test]
fn reopening_keeps_everything_and_continues() {
    let dir = filled(100, 7);
    let ledger = open(&dir.path().join("l"));
    assert_eq!(ledger.size(), 100);
    let root100 = ledger.checkpoint().checkpoint.root;
    ledger.append_blocking(entries(100..101)).unwrap();
    assert_eq!(ledger.root_at(100).unwrap(), root100);
    ledger.close();
    let report = verify(&dir).unwrap();
    assert_eq!((report.size, report.checkpoints), (101, 17)); // empty tree + 15 groups + 1
}

#[test]
fn verify_passes_on_an_untouched_store() {
    let dir = filled(1000, 33);
    let report = verify(&dir).unwrap();
    assert_eq!(report.size, 1000);
    assert_eq!(report.origin, ORIGIN);
}

#[test]
fn verify_detects_a_flipped_byte_in_any_entry() {
    for victim in [0u64, 1, 500, 999] {
        let dir = filled(1000, 100);
        tamper(&dir).edit_entry(victim, |e| {
            let last = e.len() - 1;
            e[last] ^= 0x01;
        });
        let err = verify(&dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("entry {victim} does not match its leaf hash: the entry was modified")
        );
    }
}

#[test]
fn verify_detects_an_entry_rewritten_with_its_leaf_hash() {
    let dir = filled(64, 64);
    tamper(&dir).replace_entry(10, b"{\"record\":\"forged\"}");
    let err = verify(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        "entries 8..16 do not match the stored tree node (level 3, index 1)"
    );
}

#[test]
fn verify_names_a_deleted_entry() {
    // Stored alone in its bundle (groups of 1), a deleted entry leaves a gap the verifier names exactly.
    for victim in [0u64, 41, 99] {
        let dir = filled(100, 1);
        tamper(&dir).delete_entry(victim);
        assert_eq!(
            verify(&dir).unwrap_err().to_string(),
            format!("entry {victim} is missing")
        );
    }
}

#[test]
fn verify_detects_a_deleted_entry_inside_a_bundle() {
    // Inside a bundle the later entries move down, each with its own leaf hash: the first stored tree
    // node over the gap no longer matches, and its range names where to look.
    let dir = filled(100, 10);
    tamper(&dir).delete_entry(41);
    assert_eq!(
        verify(&dir).unwrap_err().to_string(),
        "entries 40..48 do not match the stored tree node (level 3, index 5)"
    );
    // At the very end no node covers the gap, and the shortfall is named.
    let dir = filled(100, 10);
    tamper(&dir).delete_entry(99);
    assert_eq!(verify(&dir).unwrap_err().to_string(), "entry 99 is missing");
}

#[test]
fn verify_detects_two_swapped_entries() {
    let dir = filled(100, 10);
    tamper(&dir).swap_entries(20, 57);
    let err = verify(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        "entries 16..24 do not match the stored tree node (level 3, index 2)"
    );
}

#[test]
fn verify_detects_a_checkpoint_with_a_forged_signature() {
    let dir = filled(50, 10);
    {
        let t = tamper(&dir);
        let note = t.checkpoint(30);
        // Same body, signed by a key the log never had, under the log's name and key id.
        let body = note.split("\n\n").next().unwrap().to_owned() + "\n";
        let mallory = Ed25519NoteSigner::from_seed(ORIGIN, &[66u8; 32]).unwrap();
        let forged_sig = sign_note(&body, &mallory).unwrap();
        let real_id = signer().verifier().key_id();
        let sig_b64 = forged_sig.rsplit(' ').next().unwrap().trim();
        use base64::Engine as _;
        let mut raw_sig = base64::engine::general_purpose::STANDARD
            .decode(sig_b64)
            .unwrap();
        raw_sig[..4].copy_from_slice(&real_id);
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw_sig);
        t.set_checkpoint(30, &format!("{body}\n\u{2014} {ORIGIN} {encoded}\n"));
    }
    // By default only the newest checkpoint of each key has its signature checked (its root, checked
    // against the entries, vouches for all of them); every signature with `all_signatures`.
    let sampled = verify(&dir).unwrap();
    assert_eq!(sampled.signatures_checked, 1);
    let all = VerifyOptions {
        all_signatures: true,
        ..VerifyOptions::default()
    };
    let err = verify_store(&dir.path().join("l"), &all).unwrap_err();
    assert_eq!(
        err.to_string(),
        "checkpoint at size 30: no valid signature by a trusted key"
    );
}

#[test]
fn verify_checks_the_signature_of_the_head_by_default() {
    let dir = filled(50, 10);
    {
        let t = tamper(&dir);
        let note = t.checkpoint(50);
        // Flip one bit of the signature's last byte.
        let (head, sig) = note.trim_end().rsplit_once(' ').unwrap();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut raw = b64.decode(sig).unwrap();
        *raw.last_mut().unwrap() ^= 1;
        t.set_checkpoint(50, &format!("{head} {}\n", b64.encode(raw)));
    }
    let err = verify(&dir).unwrap_err().to_string();
    assert!(
        err.starts_with("checkpoint at size 50: the signature of test.ledgergate.local/log+"),
        "{err}"
    );
}

fn history(signer: &Ed25519NoteSigner, version: u32, compromised_at: Option<i64>) -> CheckpointKey {
    CheckpointKey {
        vkey: signer.verifier().to_vkey(),
        version,
        state: if compromised_at.is_some() {
            "compromised"
        } else {
            "active"
        }
        .into(),
        valid_from: 0,
        valid_until: None,
        compromised_at,
    }
}

#[test]
fn a_new_signer_countersigns_the_head_and_signs_every_later_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let old = signer();
    let new = Arc::new(Ed25519NoteSigner::from_seed(ORIGIN, &[6u8; 32]).unwrap());
    let ledger = open(&dir.path().join("l"));
    ledger.append_blocking(entries(0..3)).unwrap();
    let keys = vec![history(&old, 1, None), history(&new, 2, None)];
    let head = ledger
        .set_signing_blocking(Signing {
            signer: Some(new.clone()),
            expires_at: None,
            keys: keys.clone(),
        })
        .unwrap();
    // A rotation keeps the sound old signature and adds the new one.
    assert_eq!(head.checkpoint.size, 3);
    for key in [old.verifier(), new.verifier()] {
        SignedCheckpoint::open(&head.note, std::slice::from_ref(key)).unwrap();
    }
    assert_eq!(ledger.verifier().as_ref(), Some(new.verifier()));
    assert_eq!(ledger.checkpoint_keys(), keys);
    let receipt = ledger.append_blocking(entries(3..4)).unwrap().remove(0);
    SignedCheckpoint::open(
        &receipt.checkpoint.note,
        std::slice::from_ref(new.verifier()),
    )
    .unwrap();
    assert!(
        SignedCheckpoint::open(
            &receipt.checkpoint.note,
            std::slice::from_ref(old.verifier())
        )
        .is_err(),
        "the old key signs nothing after the switch"
    );
    ledger.close();
    // Reopened with the new signer: nothing to countersign, and the history is still there.
    let again = Ledger::open_with(
        LedgerConfig::new(dir.path().join("l"), ORIGIN),
        Signing {
            signer: Some(new.clone()),
            expires_at: None,
            keys: keys.clone(),
        },
    )
    .unwrap();
    assert_eq!(again.checkpoint().note, receipt.checkpoint.note);
    again.close();
    assert_eq!(verify(&dir).unwrap().after_compromise, vec![]);
}

#[test]
fn without_a_usable_signer_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("l"));
    ledger.append_blocking(entries(0..2)).unwrap();
    let keys = vec![history(&signer(), 1, Some(0))];
    ledger
        .set_signing_blocking(Signing {
            signer: None,
            expires_at: None,
            keys,
        })
        .unwrap();
    assert!(matches!(
        ledger.append_blocking(entries(2..3)),
        Err(LedgerError::NoSigner)
    ));
    assert_eq!(ledger.verifier(), None);
    assert_eq!(ledger.size(), 2);
    // An expired signer is no signer either.
    ledger
        .set_signing_blocking(Signing {
            signer: Some(signer()),
            expires_at: Some(crate::keys::unix_now() - 1),
            keys: vec![history(&signer(), 1, None)],
        })
        .unwrap();
    assert!(matches!(
        ledger.append_blocking(entries(2..3)),
        Err(LedgerError::NoSigner)
    ));
    assert_eq!(ledger.verifier(), None, "an expired key is not served");
    ledger.close();
    // A ledger that has never been signed cannot be started without a signer.
    let empty = tempfile::tempdir().unwrap();
    let err = Ledger::open_with(
        LedgerConfig::new(empty.path().join("l"), ORIGIN),
        Signing::default(),
    )
    .unwrap_err();
    assert!(matches!(err, LedgerError::NoSigner));
}

#[test]
fn verify_names_checkpoints_signed_after_a_compromise_until_a_sound_key_signs_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let old = signer();
    let new = Arc::new(Ed25519NoteSigner::from_seed(ORIGIN, &[6u8; 32]).unwrap());
    let ledger = open(&dir.path().join("l"));
    for i in 0..3 {
        ledger.append_blocking(entries(i..i + 1)).unwrap();
    }
    // The compromise is dated before any of these checkpoints was signed.
    let compromised = vec![history(&old, 1, Some(1))];
    ledger
        .set_signing_blocking(Signing {
            signer: None,
            expires_at: None,
            keys: compromised.clone(),
        })
        .unwrap();
    ledger.close();
    let err = verify(&dir).unwrap_err();
    let VerifyFailure::SignedAfterCompromise(list) = &err else {
        panic!("{err}");
    };
    assert_eq!(
        list.iter().map(|f| f.size).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert!(
        err.to_string().starts_with(
            "4 checkpoint(s) signed by a compromised key at or after its compromise, and the head \
             is not signed by a sound key: size 0 by test.ledgergate.local/log+"
        ),
        "{err}"
    );
    // A new key countersigns the head (dropping the compromised signature): the entries are vouched
    // for again, and the old notes are still reported.
    let mut keys = compromised;
    keys.push(history(&new, 2, None));
    let ledger = Ledger::open_with(
        LedgerConfig::new(dir.path().join("l"), ORIGIN),
        Signing {
            signer: Some(new.clone()),
            expires_at: None,
            keys,
        },
    )
    .unwrap();
    assert!(
        SignedCheckpoint::open(
            &ledger.checkpoint().note,
            std::slice::from_ref(old.verifier())
        )
        .is_err()
    );
    ledger.close();
    let report = verify(&dir).unwrap();
    assert_eq!(
        report
            .after_compromise
            .iter()
            .map(|f| f.size)
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
}

#[test]
fn verify_detects_a_validly_signed_checkpoint_with_the_wrong_root() {
    let dir = filled(50, 10);
    let wrong = Checkpoint {
        origin: ORIGIN.into(),
        size: 20,
        root: leaf_hash(b"not the root"),
    };
    tamper(&dir).set_checkpoint(20, &wrong.sign(signer().as_ref()).unwrap().note);
    assert_eq!(
        verify(&dir).unwrap_err().to_string(),
        "checkpoint at size 20: root does not match the entries"
    );
}

#[test]
fn verify_with_a_pinned_key_refuses_a_store_signed_by_another() {
    let dir = filled(5, 5);
    let other = Ed25519NoteSigner::from_seed(ORIGIN, &[9u8; 32]).unwrap();
    let err = verify_store(&dir.path().join("l"), &pinned(other.verifier())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "checkpoint at size 0: no signature by a trusted key"
    );
    verify_store(&dir.path().join("l"), &pinned(signer().verifier())).unwrap();
}

#[test]
fn verify_detects_entries_beyond_the_tree() {
    let dir = filled(10, 10);
    tamper(&dir).add_entry(10, b"x");
    assert_eq!(
        verify(&dir).unwrap_err().to_string(),
        "unexpected entry 10 beyond the tree size 10"
    );
}

#[test]
fn verify_detects_an_entry_stored_twice() {
    let dir = filled(10, 10);
    tamper(&dir).add_entry(5, b"x");
    assert_eq!(
        verify(&dir).unwrap_err().to_string(),
        "entry 5 is stored twice"
    );
}

#[test]
fn open_refuses_a_store_whose_tree_does_not_match_its_checkpoint() {
    let dir = filled(8, 8);
    {
        // Rewrite the last entry consistently with its leaf hash and the peak over it: the stored tree
        // then hangs together but no longer gives the signed root.
        let t = tamper(&dir);
        t.replace_entry(7, b"forged");
        t.set_node(3, 0, &leaf_hash(b"junk"));
    }
    let err = Ledger::open(LedgerConfig::new(dir.path().join("l"), ORIGIN), signer()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ledger store is corrupt: latest checkpoint (size 8) does not match the stored tree (size 8)"
    );
}

#[test]
fn open_refuses_another_origin() {
    let dir = filled(1, 1);
    let err = Ledger::open(
        LedgerConfig::new(dir.path().join("l"), "other/log"),
        signer(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("ledger store belongs to log {ORIGIN:?}, not \"other/log\"")
    );
}

#[test]
fn open_refuses_a_locked_store() {
    let dir = tempfile::tempdir().unwrap();
    let _held = open(&dir.path().join("l"));
    let err = Ledger::open(LedgerConfig::new(dir.path().join("l"), ORIGIN), signer()).unwrap_err();
    assert!(matches!(err, LedgerError::Locked { .. }), "{err}");
    assert!(
        err.to_string()
            .ends_with("is locked by another process (is the gateway running?)")
    );
}

#[test]
fn open_refuses_foreign_and_damaged_stores_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    // A plain file where the store should be.
    let file = dir.path().join("file");
    std::fs::write(&file, b"hello").unwrap();
    let err = Ledger::open(LedgerConfig::new(&file, ORIGIN), signer()).unwrap_err();
    assert!(matches!(err, LedgerError::Foreign { .. }), "{err}");
    // A directory of unrelated files.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), b"hello").unwrap();
    let err = Ledger::open(LedgerConfig::new(&other, ORIGIN), signer()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a ledgergate ledger store: no database files in it",
            other.display()
        )
    );
    // Another application's database under the ledger's file name.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    {
        let db = redb::Database::create(foreign.join("ledger.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let users: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("users");
            txn.open_table(users).unwrap().insert("1", "alice").unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Ledger::open(LedgerConfig::new(&foreign, ORIGIN), signer()).unwrap_err();
    assert!(err.to_string().ends_with("is not a ledgergate ledger store: no ledger format marker (another database, or damaged files)"), "{err}");
    // A ledger whose database files were overwritten with garbage.
    let damaged = filled(100, 10);
    let db_file = damaged.path().join("l").join("ledger.redb");
    let len = usize::try_from(std::fs::metadata(&db_file).unwrap().len()).unwrap();
    std::fs::write(&db_file, vec![0xA5u8; len]).unwrap();
    let result = std::panic::catch_unwind(|| {
        Ledger::open(
            LedgerConfig::new(damaged.path().join("l"), ORIGIN),
            signer(),
        )
    });
    let err = result.expect("open must not panic").unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Corrupt(_) | LedgerError::Foreign { .. } | LedgerError::Storage(_)
        ),
        "{err:?}"
    );
    // A ledger that an earlier version kept in sled: refused, never opened as a new, empty ledger.
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("conf"), b"segment_size: 524288\n").unwrap();
    std::fs::write(old.join("db"), [0u8; 64]).unwrap();
    let err = Ledger::open(LedgerConfig::new(&old, ORIGIN), signer()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a ledgergate ledger store: it holds a ledger in the sled format of earlier \
             versions, which could lose acknowledged records on a power cut; this version does not \
             read it (docs/ledger.md, Storage engine)",
            old.display()
        )
    );
    // And a missing store when creation is not asked for.
    let mut config = LedgerConfig::new(dir.path().join("absent"), ORIGIN);
    config.create = false;
    assert!(matches!(
        Ledger::open(config, signer()),
        Err(LedgerError::NotFound { .. })
    ));
}

#[test]
fn verify_detects_tree_nodes_beyond_the_tree() {
    let dir = filled(64, 64);
    tamper(&dir).set_node(3, 100, &leaf_hash(b"junk"));
    assert_eq!(
        verify(&dir).unwrap_err().to_string(),
        "unexpected tree node (level 3, index 100) beyond the tree size 64"
    );
}

// Indices of small in-memory test vectors.
#[allow(clippy::cast_possible_truncation)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Proofs served from the store, whose skipped levels are recomputed on read, verify against roots
        /// computed independently from the entries, for every leaf and every older size.
        #[test]
        fn store_backed_proofs_verify(groups in prop::collection::vec(1usize..40, 1..12), m_seed in any::<u64>()) {
            let dir = tempfile::tempdir().unwrap();
            let ledger = open(&dir.path().join("l"));
            let mut all = Vec::new();
            for g in groups {
                let batch: Vec<Vec<u8>> = (0..g).map(|k| format!("e{}-{k}", all.len()).into_bytes()).collect();
                all.extend(batch.clone());
                ledger.append_blocking(batch).unwrap();
            }
            let n = all.len() as u64;
            let m = m_seed % n + 1;
            let mut independent = CompactRange::new();
            for e in &all[..m as usize] {
                independent.push(leaf_hash(e), |_, _, _| {});
            }
            let root_m = ledger.root_at(m).unwrap();
            prop_assert_eq!(root_m, independent.root());
            for i in 0..m {
                let proof = ledger.inclusion_proof(i, m).unwrap();
                prop_assert_eq!(verify_inclusion(&leaf_hash(&all[i as usize]), i, m, &proof, &root_m), Ok(()));
            }
            let root_n = ledger.checkpoint().checkpoint.root;
            let proof = ledger.consistency_proof(m, n).unwrap();
            prop_assert_eq!(verify_consistency(m, n, &proof, &root_m, &root_n), Ok(()));
        }
    }
}

/// A recorded write (the consortium's state machine queues the next before this one is durable)
/// that is refused stops the writer: a later write taken would leave a gap in the progress it
/// records, and the member would skip committed entries.
#[test]
fn a_refused_recorded_write_stops_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(&dir.path().join("l"));
    ledger
        .set_barrier(Box::new(|| Err("disk full".into())))
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let first = ledger
            .queue_recording(entries(0..2), Vec::new(), "progress", b"1".to_vec())
            .await
            .unwrap();
        assert!(matches!(first.wait().await, Err(LedgerError::Barrier(_))));
        // Refused before it is queued: nothing after the gap is taken.
        assert!(matches!(
            ledger
                .queue_recording(entries(2..4), Vec::new(), "progress", b"2".to_vec())
                .await,
            Err(LedgerError::Poisoned)
        ));
    });
    assert_eq!(ledger.size(), 0);
    ledger.close();
}
