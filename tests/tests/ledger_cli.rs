//! `gateway ledger …` as an operator uses it: the real binary on a real store.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use gateway::ledger::testing::Tamper;
use std::sync::Arc;

use e2e::{gateway, stderr, stdout};
use gateway::ledger::{
    Ed25519NoteSigner, Hash, Ledger, LedgerConfig, NoteSigner as _, SignedCheckpoint, leaf_hash,
    load_signing_key, signing_key_path, store_dir, verify_inclusion,
};
use serde_json::Value;

const ORIGIN: &str = "ledgergate.local/log";

/// A data directory made by `gateway ledger init`, then filled with `n` entries through the library.
fn filled(n: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = gateway(&["ledger", "init", "--data", data]);
    assert!(out.status.success(), "{}", stderr(&out));
    let signer = load_signing_key(&signing_key_path(dir.path())).unwrap();
    let ledger = Ledger::open(
        LedgerConfig::new(store_dir(dir.path()), ORIGIN),
        Arc::new(signer),
    )
    .unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        ledger
            .append_blocking(
                chunk
                    .iter()
                    .map(|i| format!("{{\"n\":{i}}}").into_bytes())
                    .collect(),
            )
            .unwrap();
    }
    ledger.close();
    dir
}

fn tamper(dir: &Path) -> Tamper {
    Tamper::open(&store_dir(dir))
}

#[test]
fn init_creates_a_private_key_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = gateway(&["ledger", "init", "--data", data.to_str().unwrap(), "--json"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let again = gateway(&["ledger", "init", "--data", data.to_str().unwrap(), "--json"]);
    let (a, b): (Value, Value) = (
        serde_json::from_str(&stdout(&first)).unwrap(),
        serde_json::from_str(&stdout(&again)).unwrap(),
    );
    assert_eq!(a["vkey"], b["vkey"]);
    assert_eq!(a["size"], 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key_mode = std::fs::metadata(signing_key_path(&data))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        let dir_mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
        assert_eq!((key_mode, dir_mode), (0o600, 0o700));
    }
}

#[test]
fn verify_passes_on_an_untouched_store() {
    let dir = filled(200);
    let out = gateway(&[
        "ledger",
        "verify",
        "--data",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (report["ok"].as_bool(), report["size"].as_u64()),
        (Some(true), Some(200))
    );
    // 1 empty-tree checkpoint + one per group of 16.
    assert_eq!(report["checkpoints"], 14);
}

#[test]
fn verify_names_a_flipped_byte_and_exits_non_zero() {
    let dir = filled(100);
    tamper(dir.path()).edit_entry(7, |e| {
        let last = e.len() - 1;
        e[last] ^= 0x20;
    });
    let out = gateway(&["ledger", "verify", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "gateway: ledger verify: entry 7 does not match its leaf hash: the entry was modified\n"
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn verify_names_a_deleted_entry() {
    let dir = filled(50);
    tamper(dir.path()).delete_entry(49);
    let out = gateway(&[
        "ledger",
        "verify",
        "--data",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["error"], "entry 49 is missing");
    assert_eq!(
        stderr(&out),
        "gateway: ledger verify: entry 49 is missing\n"
    );
}

#[test]
fn verify_with_a_pinned_key_refuses_checkpoints_by_another_key() {
    let dir = filled(10);
    let mallory = Ed25519NoteSigner::from_seed(ORIGIN, &[1u8; 32]).unwrap();
    let vkey = mallory.verifier().to_vkey();
    let out = gateway(&[
        "ledger",
        "verify",
        "--data",
        dir.path().to_str().unwrap(),
        "--vkey",
        &vkey,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "gateway: ledger verify: checkpoint at size 0: no signature by a trusted key\n"
    );
    let real = load_signing_key(&signing_key_path(dir.path()))
        .unwrap()
        .verifier()
        .to_vkey();
    let out = gateway(&[
        "ledger",
        "verify",
        "--data",
        dir.path().to_str().unwrap(),
        "--vkey",
        &real,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn checkpoint_and_proof_verify_with_the_client_verifier() {
    let dir = filled(37);
    let data = dir.path().to_str().unwrap();
    let cp: Value = serde_json::from_str(&stdout(&gateway(&[
        "ledger",
        "checkpoint",
        "--data",
        data,
        "--json",
    ])))
    .unwrap();
    let trusted = [load_signing_key(&signing_key_path(dir.path()))
        .unwrap()
        .verifier()
        .clone()];
    let signed = SignedCheckpoint::open(cp["note"].as_str().unwrap(), &trusted).unwrap();
    assert_eq!(signed.checkpoint.size, 37);
    for index in [0u64, 17, 36] {
        let out = gateway(&[
            "ledger",
            "proof",
            "--data",
            data,
            "--index",
            &index.to_string(),
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let p: Value = serde_json::from_str(&stdout(&out)).unwrap();
        let hashes: Vec<Hash> = p["hashes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
            .collect();
        let leaf = leaf_hash(format!("{{\"n\":{index}}}").as_bytes());
        assert_eq!(p["leaf_hash"], leaf.to_base64());
        verify_inclusion(&leaf, index, 37, &hashes, &signed.checkpoint.root).unwrap();
    }
    let text = stdout(&gateway(&["ledger", "checkpoint", "--data", data]));
    assert!(text.starts_with("ledgergate.local/log\n37\n"), "{text}");
}

#[test]
fn operator_errors_are_one_clear_line() {
    let dir = filled(3);
    let data = dir.path().to_str().unwrap();
    let cases: [(&[&str], String); 4] = [
        (
            &["ledger", "proof", "--data", data, "--index", "3"],
            "gateway: ledger proof: no entry at index 3: the tree has 3 entries\n".into(),
        ),
        (
            &[
                "ledger", "proof", "--data", data, "--index", "0", "--size", "9",
            ],
            "gateway: ledger proof: cannot prove against tree size 9: the tree has 3 entries\n"
                .into(),
        ),
        (
            &["ledger", "verify", "--data", data, "--vkey", "nope"],
            "gateway: read --vkey: malformed key: expected name+keyid+keydata\n".into(),
        ),
        (
            &["ledger", "checkpoint", "--data", "/nonexistent/ledgergate"],
            "gateway: open ledger: no ledger store at /nonexistent/ledgergate/ledger\n".into(),
        ),
    ];
    for (args, want) in cases {
        let out = gateway(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), want, "{args:?}");
    }
}

#[test]
fn a_store_in_use_is_reported_as_locked() {
    let dir = filled(1);
    let signer = load_signing_key(&signing_key_path(dir.path())).unwrap();
    let _running = Ledger::open(
        LedgerConfig::new(store_dir(dir.path()), ORIGIN),
        Arc::new(signer),
    )
    .unwrap();
    let out = gateway(&["ledger", "verify", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "gateway: ledger verify: ledger store at {} is locked by another process (is the gateway running?)\n",
            store_dir(dir.path()).display()
        )
    );
}
