//! The key manager through its library API: lifecycle rules, the hot path, subjects, usage, the KEK.

// Test code: a failed unwrap is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use keymgr::{
    Error, KekSource, KeyFilter, KeyManager, Purpose, RevocationReason, Secret, UseError,
};

const T0: i64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn pass(p: &str) -> KekSource {
    KekSource::Passphrase(Secret::new(p.as_bytes().to_vec()))
}

fn fresh() -> (tempfile::TempDir, KeyManager) {
    let dir = tempfile::tempdir().unwrap();
    let m = KeyManager::init(
        &dir.path().join("keys"),
        &pass("a long test passphrase"),
        T0,
        "tester",
    )
    .unwrap();
    (dir, m)
}

#[test]
fn rotation_switches_new_work_and_keeps_old_versions_for_verification() {
    let (_d, m) = fresh();
    m.create(
        "pseudonym",
        Purpose::Pseudonym,
        Some(30 * DAY),
        None,
        T0,
        "o",
    )
    .unwrap();
    let v1 = m.primary("pseudonym", T0).unwrap();
    assert_eq!(v1.version, 1);
    m.rotate("pseudonym", T0 + 10, "o").unwrap();
    let v2 = m.primary("pseudonym", T0 + 10).unwrap();
    assert_eq!(
        v2.version, 2,
        "the cache must not serve the old primary after a rotation"
    );
    assert_ne!(v1.material.expose(), v2.material.expose());
    assert_eq!(
        m.version_material("pseudonym", 1).unwrap().expose(),
        v1.material.expose()
    );
    assert!(
        m.due(T0 + 30 * 86_400 + 10)
            .unwrap()
            .iter()
            .any(|k| k.name == "pseudonym")
    );
}

#[test]
fn a_cached_key_is_unwrapped_again_after_the_cache_ttl() {
    let (_d, m) = fresh();
    m.create("pseudonym", Purpose::Pseudonym, None, None, T0, "o")
        .unwrap();
    let first = m.primary("pseudonym", T0).unwrap();
    let later = m.primary("pseudonym", T0 + keymgr::CACHE_TTL - 1).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &later),
        "served from the cache"
    );
    let unwrapped = m.primary("pseudonym", T0 + keymgr::CACHE_TTL).unwrap();
    assert!(
        !std::sync::Arc::ptr_eq(&first, &unwrapped),
        "unwrapped again once the TTL passed"
    );
    assert_eq!(unwrapped.material.expose(), first.material.expose());
    // Subject keys made on the hot path are cached the same way.
    let made = m.subject_key("s-1", T0, "o").unwrap();
    let cached = m.subject_key("s-1", T0 + 1, "o").unwrap();
    assert!(std::sync::Arc::ptr_eq(&made, &cached));
    let again = m.subject_key("s-1", T0 + keymgr::CACHE_TTL, "o").unwrap();
    assert!(!std::sync::Arc::ptr_eq(&made, &again));
}

#[test]
fn a_compromised_primary_is_never_used_again_and_its_later_signatures_are_not_believed() {
    let (_d, m) = fresh();
    m.create(
        "checkpoint",
        Purpose::CheckpointSigning,
        None,
        None,
        T0,
        "o",
    )
    .unwrap();
    m.primary("checkpoint", T0).unwrap();
    m.revoke(
        "checkpoint",
        1,
        RevocationReason::Compromised,
        Some(T0 + 100),
        T0 + 500,
        "o",
    )
    .unwrap();
    let err = m.primary("checkpoint", T0 + 501).unwrap_err();
    assert_eq!(err.code(), "key_revoked");
    assert!(m.trusted_at("checkpoint", 1, T0 + 99).unwrap());
    assert!(!m.trusted_at("checkpoint", 1, T0 + 100).unwrap());
    m.rotate("checkpoint", T0 + 600, "o").unwrap();
    assert_eq!(m.primary("checkpoint", T0 + 601).unwrap().version, 2);
}

#[test]
fn a_key_past_its_maximum_age_is_refused_for_new_work() {
    let (_d, m) = fresh();
    m.create("node", Purpose::NodeIdentity, None, Some(DAY), T0, "o")
        .unwrap();
    assert!(m.primary("node", T0 + 86_399).is_ok());
    let err = m.primary("node", T0 + 86_400).unwrap_err();
    assert!(
        matches!(err, Error::Unusable(UseError::Expired { .. })),
        "{err}"
    );
    assert_eq!(err.code(), "key_expired");
}

#[test]
fn subject_keys_are_made_on_demand_and_shredding_makes_them_unreadable() {
    let (_d, m) = fresh();
    let k = m.subject_key("A-1001", T0, "gateway").unwrap();
    assert_eq!(
        m.subject_key("A-1001", T0 + 1, "gateway")
            .unwrap()
            .material
            .expose(),
        k.material.expose()
    );
    assert!(
        !KeyManager::subject_key_name("A-1001").contains("A-1001"),
        "subject ids are personal data"
    );
    let shredded = m.shred_subject("A-1001", T0 + 2, "officer").unwrap();
    let name = KeyManager::subject_key_name("A-1001");
    assert_eq!(
        (shredded.key.as_str(), shredded.destroyed.as_slice()),
        (name.as_str(), &[1][..])
    );
    assert_eq!(
        m.version_material(&name, 1).unwrap_err().code(),
        "illegal_transition"
    );
    // Shredding again is not an error: there is nothing left to destroy, and it says so.
    let again = m.shred_subject("A-1001", T0 + 3, "officer").unwrap();
    assert_eq!(
        (again.destroyed.len(), again.message.as_str()),
        (0, "already shredded: nothing left to destroy")
    );
    assert_eq!(m.primary(&name, T0 + 3).unwrap_err().code(), "key_revoked");
    // New data for the subject gets a fresh key; what was shredded stays unreadable.
    let fresh = m.subject_key("A-1001", T0 + 4, "gateway").unwrap();
    assert_eq!(fresh.version, 2);
    assert_ne!(fresh.material.expose(), k.material.expose());
    assert!(m.version_material(&name, 1).is_err());
    // A subject never seen: the shred succeeds, says so, and is audited.
    let none = m.shred_subject("never-seen", T0 + 5, "officer").unwrap();
    assert_eq!(
        (none.destroyed.len(), none.message.as_str()),
        (
            0,
            "no sealed values were ever stored for this subject: nothing to destroy"
        )
    );
    let last = m.audit(0, 1000).unwrap().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.detail.as_str()),
        ("shred", "nothing to destroy")
    );
}

#[test]
fn a_key_whose_every_version_is_destroyed_can_be_rotated_back_into_service() {
    let (_d, m) = fresh();
    m.create("k", Purpose::Pseudonym, None, None, T0, "o")
        .unwrap();
    m.schedule_destroy("k", 1, 0, true, T0, "o").unwrap();
    m.destroy("k", 1, T0 + 1, "o").unwrap();
    assert_eq!(m.primary("k", T0 + 1).unwrap_err().code(), "key_revoked");
    let r = m.rotate("k", T0 + 2, "o").unwrap();
    assert_eq!(r.primary, Some(2));
    assert!(m.primary("k", T0 + 2).is_ok());
    assert!(
        m.version_material("k", 1).is_err(),
        "destroyed stays destroyed"
    );
}

#[test]
fn every_version_keeps_the_whole_history_of_its_states() {
    let (_d, m) = fresh();
    m.create("k", Purpose::NodeIdentity, None, None, T0, "alice")
        .unwrap();
    m.rotate("k", T0 + 1, "bob").unwrap();
    m.revoke(
        "k",
        1,
        RevocationReason::Compromised,
        Some(T0),
        T0 + 2,
        "carol",
    )
    .unwrap();
    m.schedule_destroy("k", 1, 60, false, T0 + 3, "dave")
        .unwrap();
    let r = m.destroy("k", 1, T0 + 63, "erin").unwrap();
    let v = r.version(1).unwrap();
    let names: Vec<&str> = v
        .history
        .iter()
        .map(keymgr::VersionState::name)
        .chain([v.state.name()])
        .collect();
    assert_eq!(
        names,
        [
            "active",
            "deactivated",
            "compromised",
            "destroy-scheduled",
            "destroyed"
        ]
    );
    let who = serde_json::to_string(&v.history).unwrap();
    for actor in ["bob", "carol", "dave"] {
        assert!(who.contains(actor), "{who}");
    }
}

#[test]
fn usage_is_indexed_by_key_version_with_a_cursor() {
    let (_d, m) = fresh();
    m.create("pseudonym", Purpose::Pseudonym, None, None, T0, "o")
        .unwrap();
    assert_eq!(m.usage_cursor().unwrap(), 0);
    let used = |v: u32, at: &str| (vec![("pseudonym".to_owned(), v)], at.to_owned());
    m.record_usage_through(&[used(1, "ledger:0"), used(1, "ledger:1")], 0, 2)
        .unwrap();
    m.rotate("pseudonym", T0 + 1, "o").unwrap();
    m.record_usage_through(&[used(2, "ledger:2")], 2, 3)
        .unwrap();
    // A pass repeated from the same start (an indexer resumed after a crash) lists nothing twice.
    m.record_usage_through(&[used(2, "ledger:2"), used(1, "ledger:3")], 2, 4)
        .unwrap();
    m.record_usage_through(&[used(1, "ledger:10")], 4, 11)
        .unwrap();
    assert_eq!(m.usage_cursor().unwrap(), 11);
    // In the order indexed (the log's order), not the text's ("ledger:10" < "ledger:3").
    assert_eq!(
        m.affected("pseudonym", 1).unwrap(),
        ["ledger:0", "ledger:1", "ledger:3", "ledger:10"]
    );
    assert_eq!(m.affected("pseudonym", 2).unwrap(), ["ledger:2"]);
    assert_eq!(m.affected("pseudonym", 3).unwrap_err().code(), "not_found");
}

#[test]
fn subject_keys_made_on_the_hot_path_are_durable_after_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let secret = pass("a long test passphrase");
    let m = std::sync::Arc::new(KeyManager::init(&path, &secret, T0, "tester").unwrap());
    // Many threads make keys and sync at once: every sync succeeds, sharing flushes.
    let made: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let m = std::sync::Arc::clone(&m);
                s.spawn(move || {
                    let k = m.subject_key(&format!("S-{t}"), T0, "gateway").unwrap();
                    m.sync().unwrap();
                    k.material.expose().to_vec()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    drop(m);
    let m = open_again(&path, &secret);
    for (t, material) in made.iter().enumerate() {
        let name = KeyManager::subject_key_name(&format!("S-{t}"));
        assert_eq!(m.version_material(&name, 1).unwrap().expose(), material);
    }
    // Made on the hot path: recorded in the key record, not as one audit event per subject.
    let name = KeyManager::subject_key_name("S-0");
    let record = m.show(&name).unwrap();
    assert_eq!(record.versions[0].created_by, "gateway");
    assert!(
        m.audit(0, 1000)
            .unwrap()
            .iter()
            .all(|e| e.action != "create")
    );
}

#[test]
fn a_round_of_subjects_makes_each_missing_key_once() {
    let (_d, m) = fresh();
    let old = m.subject_key("S-old", T0, "gateway").unwrap();
    let keys: Vec<_> = m
        .subject_keys(&["S-new", "S-old", "S-new", "S-other"], T0, "gateway")
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(keys[0].material.expose(), keys[2].material.expose());
    assert_eq!(keys[1].material.expose(), old.material.expose());
    assert_ne!(keys[0].material.expose(), keys[3].material.expose());
    assert_eq!(keys[0].name, KeyManager::subject_key_name("S-new"));
    // Each made once: three key records, and no audit events for them.
    let subjects: Vec<_> = m
        .list(
            KeyFilter {
                subjects: true,
                purpose: None,
            },
            None,
            1000,
        )
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(subjects.len(), 3);
    assert!(
        m.audit(0, 1000)
            .unwrap()
            .iter()
            .all(|e| e.action != "create")
    );
    // A shredded subject gets a fresh key, in the same round as the others.
    m.shred_subject("S-old", T0 + 1, "officer").unwrap();
    let answers = m.subject_keys(&["S-old", "S-new"], T0 + 2, "gateway");
    assert_eq!(answers[0].as_ref().unwrap().version, 2);
    assert!(answers[1].is_ok());
}

/// Opens a store again once the previous handle's lock is released.
fn open_again(path: &std::path::Path, secret: &KekSource) -> KeyManager {
    for _ in 0..200 {
        match KeyManager::open(path, secret) {
            Err(Error::StoreLocked(_)) => std::thread::sleep(std::time::Duration::from_millis(10)),
            other => return other.unwrap(),
        }
    }
    panic!("store stayed locked");
}

#[test]
fn a_wrong_passphrase_is_detected_and_changing_it_rewraps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let mut m = KeyManager::init(&path, &pass("first passphrase!"), T0, "o").unwrap();
    m.create("pseudonym", Purpose::Pseudonym, None, None, T0, "o")
        .unwrap();
    let before = m
        .primary("pseudonym", T0)
        .unwrap()
        .material
        .expose()
        .to_vec();
    m.change_kek(&pass("second passphrase!"), T0 + 1, "o")
        .unwrap();
    drop(m);
    assert_eq!(
        KeyManager::open(&path, &pass("first passphrase!"))
            .unwrap_err()
            .code(),
        "wrong_passphrase"
    );
    let m = KeyManager::open(&path, &pass("second passphrase!")).unwrap();
    assert_eq!(
        m.primary("pseudonym", T0 + 2).unwrap().material.expose(),
        before.as_slice()
    );
    assert_eq!(
        m.audit(0, 1000).unwrap().last().unwrap().action,
        "change-passphrase"
    );
}

#[test]
fn no_secret_and_no_passphrase_is_anywhere_in_the_store_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let passphrase = "Tr0ub4dor&3 is not my passphrase";
    let m = KeyManager::init(&path, &pass(passphrase), T0, "o").unwrap();
    for (i, p) in Purpose::ALL.into_iter().enumerate() {
        m.create(&format!("k{i}"), p, None, None, T0, "o").unwrap();
        m.rotate(&format!("k{i}"), T0 + 1, "o").unwrap();
    }
    m.subject_key("S-1", T0, "o").unwrap();
    let secrets = m.all_material_for_tests().unwrap();
    assert_eq!(secrets.len(), 11);
    drop(m);
    let files = files_under(&path);
    assert!(!files.is_empty());
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for s in &secrets {
            assert!(
                !bytes.windows(32).any(|w| w == s.expose()),
                "a key's material is in {}",
                f.display()
            );
            let hexed = hex::encode(s.expose());
            assert!(
                !bytes.windows(hexed.len()).any(|w| w == hexed.as_bytes()),
                "hex material in {}",
                f.display()
            );
        }
        assert!(
            !bytes
                .windows(passphrase.len())
                .any(|w| w == passphrase.as_bytes()),
            "the passphrase is in {}",
            f.display()
        );
    }
}

/// Every file under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p)
            } else {
                files.push(p)
            }
        }
    }
    files
}

#[test]
fn after_a_change_of_kek_no_blob_the_old_kek_opens_is_left_in_the_store_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let mut m = KeyManager::init(&path, &pass("the old passphrase"), T0, "o").unwrap();
    for (i, p) in Purpose::ALL.into_iter().enumerate() {
        m.create(&format!("k{i}"), p, None, None, T0, "o").unwrap();
        // Rotations free pages that still hold earlier versions of the records.
        for r in 1..5 {
            m.rotate(&format!("k{i}"), T0 + r, "o").unwrap();
        }
    }
    for s in 0..50 {
        m.subject_key(&format!("S-{s}"), T0, "o").unwrap();
    }
    m.sync().unwrap();
    let old_blobs = m.all_wrapped_for_tests().unwrap();
    assert_eq!(old_blobs.len(), 5 * 5 + 50);
    let secrets = m.all_material_for_tests().unwrap();
    m.change_kek(&pass("the new passphrase"), T0 + 10, "o")
        .unwrap();
    assert_eq!(m.all_material_for_tests().unwrap(), secrets);
    drop(m);
    for f in files_under(&path) {
        let bytes = std::fs::read(&f).unwrap();
        for blob in &old_blobs {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
            assert!(
                !bytes.windows(blob.len()).any(|w| w == blob.as_slice())
                    && !bytes.windows(b64.len()).any(|w| w == b64.as_bytes()),
                "a blob wrapped under the old KEK is still in {}",
                f.display()
            );
        }
    }
    // The old passphrase opens nothing; the new one opens every key.
    assert!(matches!(
        KeyManager::open(&path, &pass("the old passphrase")),
        Err(Error::WrongKek)
    ));
    let m = KeyManager::open(&path, &pass("the new passphrase")).unwrap();
    assert_eq!(m.all_material_for_tests().unwrap(), secrets);
}

#[test]
fn secrets_never_show_in_debug_output() {
    let (_d, m) = fresh();
    m.create("k", Purpose::Pseudonym, None, None, T0, "o")
        .unwrap();
    let k = m.primary("k", T0).unwrap();
    let shown = format!("{k:?} {m:?}");
    assert!(shown.contains("Secret(32 bytes)"), "{shown}");
    assert!(!shown.contains(&hex::encode(k.material.expose())));
    assert!(!shown.contains(&format!("{:?}", k.material.expose())));
}

#[test]
fn after_a_rotation_returns_no_reader_ever_gets_the_old_primary() {
    let (_d, m) = fresh();
    m.create("k", Purpose::Pseudonym, None, None, T0, "o")
        .unwrap();
    let m = std::sync::Arc::new(m);
    let latest = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(1));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (m, latest, stop) = (m.clone(), latest.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut stale = 0;
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    // Read what has surely been committed before asking: the answer may be newer, never older.
                    let floor = latest.load(std::sync::atomic::Ordering::Acquire);
                    if m.primary("k", T0).unwrap().version < floor {
                        stale += 1;
                    }
                }
                stale
            })
        })
        .collect();
    for _ in 0..100 {
        let r = m.rotate("k", T0, "o").unwrap();
        latest.store(r.primary.unwrap(), std::sync::atomic::Ordering::Release);
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let stale: u32 = readers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(
        stale, 0,
        "readers got a rotated-away primary after the rotation returned"
    );
    assert_eq!(m.primary("k", T0).unwrap().version, 101);
}

#[test]
fn listings_page_through_keys_and_keep_subject_keys_apart() {
    let (_d, m) = fresh();
    for name in ["a", "b", "c"] {
        m.create(name, Purpose::Pseudonym, None, None, T0, "o")
            .unwrap();
    }
    m.create("z", Purpose::NodeIdentity, None, None, T0, "o")
        .unwrap();
    let subjects: Vec<String> = (0..25).map(|i| format!("S-{i}")).collect();
    let refs: Vec<&str> = subjects.iter().map(String::as_str).collect();
    for answer in m.subject_keys(&refs, T0, "gateway") {
        answer.unwrap();
    }
    // One subject kept as a full record (shredded), the rest compact: listed together, in order.
    m.shred_subject("S-3", T0 + 1, "o").unwrap();
    let managed = KeyFilter::default();
    let names = |keys: Vec<keymgr::KeyRecord>| keys.into_iter().map(|k| k.name).collect::<Vec<_>>();
    assert_eq!(
        names(m.list(managed, None, 100).unwrap()),
        ["a", "b", "c", "z"]
    );
    assert_eq!(names(m.list(managed, Some("b"), 1).unwrap()), ["c"]);
    let identity = KeyFilter {
        subjects: false,
        purpose: Some(Purpose::NodeIdentity),
    };
    assert_eq!(names(m.list(identity, None, 1).unwrap()), ["z"]);
    let subject_filter = KeyFilter {
        subjects: true,
        purpose: None,
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = names(m.list(subject_filter, after.as_deref(), 7).unwrap());
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        seen.extend(page);
    }
    let mut expected: Vec<String> = subjects
        .iter()
        .map(|s| KeyManager::subject_key_name(s))
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    // Audit pages.
    let first = m.audit(0, 2).unwrap();
    let second = m.audit(first[1].seq, 2).unwrap();
    assert_eq!(second[0].seq, first[1].seq + 1);
}

#[test]
fn a_subject_key_takes_at_most_150_bytes_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys");
    let file = path.join("keys.redb");
    let m = KeyManager::init(&path, &pass("p"), T0, "o").unwrap();
    m.sync().unwrap();
    let before = std::fs::metadata(&file).unwrap().len();
    let n: usize = std::env::var("SUBJECTS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    // As the gateway makes them: a round of a few hundred at a time.
    for round in 0..(n / 500) {
        let subjects: Vec<String> = (0..500).map(|i| format!("subject-{round}-{i}")).collect();
        let refs: Vec<&str> = subjects.iter().map(String::as_str).collect();
        for answer in m.subject_keys(&refs, T0, "gateway") {
            answer.unwrap();
        }
        m.sync().unwrap();
    }
    drop(m);
    let live = std::fs::metadata(&file).unwrap().len();
    // At rest: the store as the next open leaves it, its freed pages given back.
    drop(open_again(&path, &pass("p")));
    let after = std::fs::metadata(&file).unwrap().len();
    let per_key = (after - before) as f64 / n as f64;
    // The measurement, for the docs: run with --nocapture.
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "{n} subject keys: {:.0} bytes each at rest, {:.0} before the store was reopened",
            per_key,
            (live - before) as f64 / n as f64
        );
    }
    assert!(per_key <= 150.0, "{per_key:.0} bytes per subject key");
}

#[test]
fn concurrent_requests_for_a_shredded_subject_make_one_fresh_key() {
    let (_d, m) = fresh();
    m.subject_key("S", T0, "gateway").unwrap();
    m.shred_subject("S", T0 + 1, "officer").unwrap();
    let versions: Vec<u32> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| m.subject_key("S", T0 + 2, "gateway").unwrap().version))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(versions, vec![2; 8]);
    let record = m.show(&KeyManager::subject_key_name("S")).unwrap();
    assert_eq!(record.versions.len(), 2);
}

#[test]
fn revoked_peers_are_durable_audited_and_checked_in_memory() {
    let (dir, m) = fresh();
    let id = "ab".repeat(32);
    let bytes = [0xabu8; 32];
    assert!(!m.is_peer_revoked(&bytes));
    let p = m
        .revoke_peer(
            &id.to_uppercase(),
            RevocationReason::Compromised,
            T0 + 5,
            "officer",
        )
        .unwrap();
    assert_eq!(
        (p.identity.as_str(), p.revoked_by.as_str()),
        (id.as_str(), "officer")
    );
    assert!(m.is_peer_revoked(&bytes));
    assert!(!m.is_peer_revoked(&[0u8; 32]));
    assert!(matches!(
        m.revoke_peer(&id, RevocationReason::Retired, T0 + 6, "officer"),
        Err(Error::InvalidArgument(why)) if why.contains("already revoked")
    ));
    for bad in ["ab", "zz".repeat(32).as_str(), ""] {
        assert!(matches!(
            m.revoke_peer(bad, RevocationReason::Retired, T0, "officer"),
            Err(Error::InvalidArgument(_))
        ));
    }
    let last = m.audit(0, 100).unwrap().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.actor.as_str()),
        ("revoke-peer", "officer")
    );
    // Reopened (a node restarting): still revoked, and listed once.
    drop(m);
    let m = KeyManager::open(&dir.path().join("keys"), &pass("a long test passphrase")).unwrap();
    assert!(m.is_peer_revoked(&bytes));
    assert_eq!(m.revoked_peers().unwrap(), vec![p]);
}
