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

/// Raw access to the sled tree, as an attacker with write access to the disk would have it.
fn raw(path: &Path) -> (sled::Db, sled::Tree) {
    let db = sled::open(path).unwrap();
    let tree = db.open_tree(b"ledger/v1").unwrap();
    (db, tree)
}

fn entry_key(i: u64) -> Vec<u8> {
    [&[b'e'][..], &i.to_be_bytes()].concat()
}

fn verify(dir: &tempfile::TempDir) -> Result<VerifyReport, VerifyFailure> {
    verify_store(&dir.path().join("l"), &[])
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
    let trusted = [ledger.verifier().clone()];
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
        {
            let (_db, tree) = raw(&dir.path().join("l"));
            let mut value = tree.get(entry_key(victim)).unwrap().unwrap().to_vec();
            let last = value.len() - 1;
            value[last] ^= 0x01;
            tree.insert(entry_key(victim), value).unwrap();
            tree.flush().unwrap();
        }
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
    {
        let (_db, tree) = raw(&dir.path().join("l"));
        let forged = b"{\"record\":\"forged\"}";
        let value = [leaf_hash(forged).as_bytes().as_slice(), forged].concat();
        tree.insert(entry_key(10), value).unwrap();
        tree.flush().unwrap();
    }
    let err = verify(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        "entries 10..12 do not match the stored tree node (level 1, index 5)"
    );
}

#[test]
fn verify_detects_a_deleted_entry() {
    for victim in [0u64, 41, 99] {
        let dir = filled(100, 10);
        {
            let (_db, tree) = raw(&dir.path().join("l"));
            tree.remove(entry_key(victim)).unwrap();
            tree.flush().unwrap();
        }
        assert_eq!(
            verify(&dir).unwrap_err().to_string(),
            format!("entry {victim} is missing")
        );
    }
}

#[test]
fn verify_detects_two_swapped_entries() {
    let dir = filled(100, 10);
    {
        let (_db, tree) = raw(&dir.path().join("l"));
        let a = tree.get(entry_key(20)).unwrap().unwrap();
        let b = tree.get(entry_key(57)).unwrap().unwrap();
        tree.insert(entry_key(20), b).unwrap();
        tree.insert(entry_key(57), a).unwrap();
        tree.flush().unwrap();
    }
    let err = verify(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        "entries 20..22 do not match the stored tree node (level 1, index 10)"
    );
}

#[test]
fn verify_detects_a_checkpoint_with_a_forged_signature() {
    let dir = filled(50, 10);
    {
        let (_db, tree) = raw(&dir.path().join("l"));
        let key = [&[b'c'][..], &30u64.to_be_bytes()].concat();
        let note = String::from_utf8(tree.get(&key).unwrap().unwrap().to_vec()).unwrap();
        // Same body, signed by a key the log never had, under the log's name and key id.
        let body = note.split("\n\n").next().unwrap().to_owned() + "\n";
        let mallory = Ed25519NoteSigner::from_seed(ORIGIN, &[66u8; 32]).unwrap();
        let forged_sig = sign_note(&body, &mallory);
        let real_id = signer().verifier().key_id();
        let sig_b64 = forged_sig.rsplit(' ').next().unwrap().trim();
        use base64::Engine as _;
        let mut raw_sig = base64::engine::general_purpose::STANDARD
            .decode(sig_b64)
            .unwrap();
        raw_sig[..4].copy_from_slice(&real_id);
        let forged = format!(
            "{body}\n\u{2014} {ORIGIN} {}\n",
            base64::engine::general_purpose::STANDARD.encode(raw_sig)
        );
        tree.insert(&key, forged.as_bytes()).unwrap();
        tree.flush().unwrap();
    }
    let err = verify(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        "checkpoint at size 30: no valid signature by a trusted key"
    );
}

#[test]
fn verify_detects_a_validly_signed_checkpoint_with_the_wrong_root() {
    let dir = filled(50, 10);
    {
        let (_db, tree) = raw(&dir.path().join("l"));
        let key = [&[b'c'][..], &20u64.to_be_bytes()].concat();
        let wrong = Checkpoint {
            origin: ORIGIN.into(),
            size: 20,
            root: leaf_hash(b"not the root"),
        };
        tree.insert(&key, wrong.sign(signer().as_ref()).note.as_bytes())
            .unwrap();
        tree.flush().unwrap();
    }
    assert_eq!(
        verify(&dir).unwrap_err().to_string(),
        "checkpoint at size 20: root does not match the entries"
    );
}

#[test]
fn verify_with_a_pinned_key_refuses_a_store_signed_by_another() {
    let dir = filled(5, 5);
    let other = Ed25519NoteSigner::from_seed(ORIGIN, &[9u8; 32]).unwrap();
    let err = verify_store(&dir.path().join("l"), &[other.verifier().clone()]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "checkpoint at size 0: no valid signature by a trusted key"
    );
    verify_store(&dir.path().join("l"), &[signer().verifier().clone()]).unwrap();
}

#[test]
fn verify_detects_entries_beyond_the_tree() {
    let dir = filled(10, 10);
    {
        let (_db, tree) = raw(&dir.path().join("l"));
        tree.insert(
            entry_key(10),
            [leaf_hash(b"x").as_bytes().as_slice(), b"x"].concat(),
        )
        .unwrap();
        tree.flush().unwrap();
    }
    assert_eq!(
        verify(&dir).unwrap_err().to_string(),
        "unexpected entry 10 beyond the tree size 10"
    );
}

#[test]
fn open_refuses_a_store_whose_tree_does_not_match_its_checkpoint() {
    let dir = filled(8, 8);
    {
        let (_db, tree) = raw(&dir.path().join("l"));
        // Rewrite the last leaf hash consistently with a forged entry: the peaks no longer give the root.
        let forged = b"forged";
        tree.insert(
            entry_key(7),
            [leaf_hash(forged).as_bytes().as_slice(), forged].concat(),
        )
        .unwrap();
        let node = [&[b'n', 3][..], &0u64.to_be_bytes()].concat();
        tree.insert(node, leaf_hash(b"junk").as_bytes()).unwrap();
        tree.flush().unwrap();
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
    // Another application's sled database.
    let foreign = dir.path().join("foreign");
    {
        let db = sled::open(&foreign).unwrap();
        db.insert(b"user:1", b"alice").unwrap();
        db.flush().unwrap();
    }
    let err = Ledger::open(LedgerConfig::new(&foreign, ORIGIN), signer()).unwrap_err();
    assert!(err.to_string().ends_with("is not a ledgergate ledger store: no ledger format marker (another database, or damaged files)"), "{err}");
    // A ledger whose database files were overwritten with garbage.
    let damaged = filled(100, 10);
    let db_file = damaged.path().join("l").join("db");
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
    // And a missing store when creation is not asked for.
    let mut config = LedgerConfig::new(dir.path().join("absent"), ORIGIN);
    config.create = false;
    assert!(matches!(
        Ledger::open(config, signer()),
        Err(LedgerError::NotFound { .. })
    ));
}
