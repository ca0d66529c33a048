//! A change of KEK (the migration to an HSM, or to a new passphrase or key file) is one rewrite of
//! the key store into a fresh file and a rename: crash-safe. The test kills `keymgr change-kek` at
//! every `fdatasync`, `fsync` and `rename` it makes (strace's fault injection: SIGKILL as the call is
//! entered), cuts the power of the file system the store is on (powerfs: everything not synced is
//! lost), and checks that exactly one KEK opens the store, the old or the new, and that every key
//! unwraps to the material it had.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;

use e2e::node::init_node;
use e2e::powerfs::PowerFs;
use keymgr::{KekSource, KeyManager, Secret};

/// Copies `from` (a directory of files) to `to`, syncing every file, the directory and the two that
/// name it (`to` is `<mount>/<case>/keys`).
fn copy_synced(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        std::fs::copy(&p, &dest).unwrap();
        std::fs::File::open(&dest).unwrap().sync_all().unwrap();
    }
    for d in to.ancestors().take(3) {
        std::fs::File::open(d).unwrap().sync_all().unwrap();
    }
}

/// `keymgr change-kek` from the passphrase to `key_file` on the store at `store`, run by
/// `strace -f -qq <options>`.
fn under_strace(
    options: &[String],
    store: &Path,
    passphrase: &str,
    key_file: &Path,
) -> std::process::Output {
    Command::new("strace")
        .args(["-f", "-qq"])
        .args(options)
        .arg(e2e::keymgr_bin())
        .arg("--store")
        .arg(store)
        .args(["change-kek", "--new-kek-file"])
        .arg(key_file)
        .env("LEDGERGATE_KEK_PASSPHRASE", passphrase)
        .output()
        .expect("strace runs (apt-get install strace)")
}

/// `keymgr change-kek` from the passphrase to `key_file` on the store at `store`, killed by strace
/// as it enters the `when`-th `call` (strace tampers only with calls it traces); its standard error.
fn change_kek_killed(
    store: &Path,
    passphrase: &str,
    key_file: &Path,
    call: &str,
    when: usize,
) -> (bool, String) {
    let out = under_strace(
        &[
            "-o".into(),
            "/dev/null".into(),
            "-e".into(),
            format!("trace={call}"),
            "-e".into(),
            format!("inject={call}:signal=SIGKILL:when={when}"),
        ],
        store,
        passphrase,
        key_file,
    );
    use std::os::unix::process::ExitStatusExt as _;
    // strace ends as its tracee did: killed by the same signal.
    let killed = out.status.signal() == Some(9) || out.status.code() == Some(137);
    (killed, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// How many times `keymgr change-kek` enters each of the calls.
fn calls(store: &Path, passphrase: &str, key_file: &Path) -> Vec<(&'static str, usize)> {
    let log = store.parent().unwrap().join("strace.log");
    let out = under_strace(
        &[
            "-e".into(),
            "trace=fsync,fdatasync,rename".into(),
            "-o".into(),
            log.display().to_string(),
        ],
        store,
        passphrase,
        key_file,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    ["fdatasync", "fsync", "rename"]
        .into_iter()
        .map(|name| {
            let n = text
                .lines()
                .filter(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .is_some_and(|call| call.starts_with(&format!("{name}(")))
                })
                .count();
            (name, n)
        })
        .collect()
}

#[test]
fn a_change_of_kek_killed_at_any_sync_or_rename_then_a_power_cut_leaves_one_kek_and_every_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let passphrase = e2e::softhsm::passphrase(&dir);
    let old = KekSource::Passphrase(Secret::new(passphrase.as_bytes().to_vec()));
    let key_file = tmp.path().join("new-kek.hex");
    keymgr::create_key_file(&key_file).unwrap();
    let new = KekSource::File(key_file.clone());
    let original = KeyManager::open(&dir.join("data/keys"), &old)
        .unwrap()
        .all_material_for_tests()
        .unwrap();

    // The calls to interrupt, counted on a copy.
    let counted = tmp.path().join("counted");
    copy_synced(&dir.join("data/keys"), &counted.join("keys"));
    let counts = calls(&counted.join("keys"), &passphrase, &key_file);
    assert!(
        counts.iter().any(|(name, n)| *name == "rename" && *n == 1),
        "{counts:?}"
    );

    let mut fs = PowerFs::mount(&tmp.path().join("mnt"));
    let (mut old_in_force, mut new_in_force) = (0, 0);
    for (call, n) in counts {
        for when in 1..=n {
            let store = fs.path().join(format!("{call}-{when}")).join("keys");
            copy_synced(&dir.join("data/keys"), &store);
            let (killed, stderr) = change_kek_killed(&store, &passphrase, &key_file, call, when);
            assert!(killed, "{call} #{when}: not killed: {stderr}");
            fs.cut();
            let with_old = KeyManager::open(&store, &old);
            let with_new = KeyManager::open(&store, &new);
            let opened = match (with_old, with_new) {
                (Ok(m), Err(_)) => {
                    old_in_force += 1;
                    m
                }
                (Err(_), Ok(m)) => {
                    new_in_force += 1;
                    m
                }
                (Ok(_), Ok(_)) => panic!("{call} #{when}: both KEKs open the store"),
                (Err(a), Err(b)) => {
                    panic!("{call} #{when}: neither KEK opens the store: {a}; {b} ({stderr})")
                }
            };
            assert_eq!(
                opened.all_material_for_tests().unwrap(),
                original,
                "{call} #{when}: a key changed"
            );
            drop(opened);
            // No stray file of the interrupted rewrite survives an open.
            assert!(
                !store.join("keys.redb.rewrite").exists(),
                "{call} #{when}: the interrupted rewrite's file is left"
            );
        }
    }
    // Killed before its rename, the old KEK is in force; killed at the directory sync after it,
    // whichever the power cut kept. Both outcomes were seen.
    assert!(
        old_in_force > 0 && new_in_force > 0,
        "old {old_in_force}, new {new_in_force}"
    );
}
