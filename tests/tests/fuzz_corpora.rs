//! Every committed fuzz corpus (`fuzz/corpus/<target>/`) replayed through its target on the stable
//! toolchain: a decoder that starts panicking on an input the fuzzer once found interesting fails CI
//! here, without nightly or libFuzzer. The fuzzing itself: `cargo +nightly fuzz run <target>` in
//! `fuzz/` (README, Fuzzing).

// Test code: a failed unwrap or index is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use gateway::fuzzing::{FUZZ_ORIGIN, TARGETS};
use gateway::ledger::{Ed25519NoteSigner, Located, NoteSigner as _, encode_bundle, leaf_hash};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

#[test]
fn every_corpus_replays_without_a_panic() {
    let mut total = 0;
    for (name, target) in TARGETS {
        let dir = corpus_dir(name);
        let inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (every target keeps a corpus)", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!inputs.is_empty(), "{name}: empty corpus");
        for input in &inputs {
            let data = std::fs::read(input).unwrap();
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                panic!("{name}: {} panics", input.display());
            }
        }
        total += inputs.len();
    }
    assert!(total >= TARGETS.len());
}

/// Writes the structured seed inputs (bundles, locators, signed notes, vault and key records) that a
/// fuzzer cannot easily find alone. Run by hand when a format changes:
/// `cargo test -p e2e --test fuzz_corpora -- --ignored write_seeds`.
#[test]
#[ignore = "writes fuzz/corpus seeds; run by hand"]
fn write_seeds() {
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let loan = br#"{"type":"loan_application","id":"A-1001","fields":{"applicant_id":"A-1001","name":"Ann","phone":"+44 20 7946 0958","age":37,"birth_date":"1988-04-02","salary":52000.5,"amount":250000,"currency":"EUR"}}"#;
    write("json_record", "loan", loan);
    write(
        "json_record",
        "nested",
        br#"{"a":[{"b":{"c":[1,2.5e3,-0,"\u00e9\ud83d\ude00",true,null]}}]}"#,
    );
    write(
        "json_record",
        "numbers",
        br#"{"fields":{"amount":1.0,"term_months":1e1,"salary":0.1,"rates":[1e21,2.50,1e-400],"terms":[3.0,9223372036854775808],"nested":{"n":-0.0,"i":7e0}}}"#,
    );
    write(
        "batch_lines",
        "two",
        &[&loan[..], b"\n\n", &loan[..], b"\n"].concat(),
    );
    write(
        "batch_lines",
        "bad-line",
        &[&loan[..], b"\n{\"type\":\n"].concat(),
    );
    for dir in ["../policies/examples", "../policies/tests/invalid"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !e.path().is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            write("policy_yaml", &name, &std::fs::read(e.path()).unwrap());
        }
    }
    let entries: Vec<Vec<u8>> = (0..5).map(|i| format!("entry {i}").into_bytes()).collect();
    let records: Vec<_> = entries
        .iter()
        .map(|e| (leaf_hash(e), e.as_slice()))
        .collect();
    write("ledger_bundle", "five", &encode_bundle(&records));
    write("ledger_bundle", "one", &encode_bundle(&records[..1]));
    write(
        "snapshot_image",
        "five",
        &gateway::consortium::snapshot::encode_image(&entries).unwrap(),
    );
    let located = Located {
        index: 41,
        tree_size: 42,
        extra: b"vault".to_vec(),
    };
    write("ledger_attachment", "located", &located.encode());
    let signer = Ed25519NoteSigner::from_seed(FUZZ_ORIGIN, &[7; 32]).unwrap();
    let body = format!(
        "{FUZZ_ORIGIN}\n5\n{}\n",
        gateway::ledger::Hash::empty().to_base64()
    );
    let note = gateway::ledger::sign_note(&body, &signer).unwrap();
    write("checkpoint_note", "signed", note.as_bytes());
    write(
        "checkpoint_note",
        "vkey",
        signer.verifier().to_vkey().as_bytes(),
    );
    write(
        "vault_record",
        "sealed",
        br#"mac-base64
{"salary":{"v":1,"key":"subject/00","version":1,"nonce":"AAAA","ct":"AAAA","salt":"AAAA"}}"#,
    );
    write("vault_record", "none", b"mac-base64\n");
    write(
        "key_record",
        "pseudonym",
        br#"{"name":"pseudonym","purpose":"pseudonym","rotate_every":2592000,"max_age":31536000,"primary":1,"versions":[{"version":1,"state":{"active":null},"created_at":0,"created_by":"init","material":"AAAA"}]}"#,
    );
    write(
        "key_record",
        "in-token",
        br#"{"name":"checkpoint-signing","purpose":"checkpoint-signing","max_age":31536000,"primary":1,"created_at":0,"created_by":"o","versions":[{"version":1,"created_at":0,"created_by":"o","state":{"state":"active"},"public_key":"00","token_id":"0123456789abcdef0123456789abcdef"}]}"#,
    );
    write(
        "key_record",
        "kdf-pkcs11",
        br#"{"kind":"pkcs11","token_label":"ledgergate","key_label":"ledgergate-kek"}"#,
    );
    write("key_envelope", "short", &[1u8; 24]);
    write(
        "key_envelope",
        "shape",
        &[&[1u8][..], &[0u8; 24], &[0u8; 48]].concat(),
    );
}
