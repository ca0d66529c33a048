//! Durability under SIGKILL: a child process appends from several threads and prints every index the
//! ledger acknowledged; the parent kills it at a random moment, reopens the store and checks that every
//! acknowledged entry is there, byte for byte, and that `gateway ledger verify` passes. Repeated on the
//! same store, so recovery after recovery is exercised too.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::hash::{BuildHasher as _, RandomState};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::{eventually, gateway, stderr};
use gateway::ledger::{
    Ledger, LedgerConfig, leaf_hash, load_or_create_signing_key, signing_key_path, store_dir,
};

const ORIGIN: &str = "ledgergate.local/log";
const CHILD_ENV: &str = "LEDGERGATE_DURABILITY_CHILD_DIR";
const ROUNDS: usize = 6;

fn entry(writer: usize, seq: u64) -> Vec<u8> {
    format!(
        "{{\"writer\":{writer},\"seq\":{seq},\"pad\":\"{}\"}}",
        "x".repeat(200)
    )
    .into_bytes()
}

/// The child: run only when the parent starts this test binary with the data directory in `CHILD_ENV`.
#[test]
#[ignore = "child process of appended_entries_survive_sigkill; not a test by itself"]
fn child_appender() {
    let dir = std::path::PathBuf::from(std::env::var(CHILD_ENV).expect("run by the parent test"));
    let signer = load_or_create_signing_key(&signing_key_path(&dir), ORIGIN).unwrap();
    let ledger = Arc::new(
        Ledger::open(LedgerConfig::new(store_dir(&dir), ORIGIN), Arc::new(signer)).unwrap(),
    );
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4)
        .map(|w| {
            let (ledger, out) = (Arc::clone(&ledger), Arc::clone(&out));
            std::thread::spawn(move || {
                for seq in 0.. {
                    let batch = (0..(seq % 5 + 1))
                        .map(|k| entry(w, seq * 8 + k))
                        .collect::<Vec<_>>();
                    let receipts = ledger.append_blocking(batch.clone()).unwrap();
                    let mut out = out.lock().unwrap();
                    for (r, e) in receipts.iter().zip(&batch) {
                        // Printed only after the ledger said the entry is durable.
                        writeln!(out, "ack {} {}", r.index, hex_of(e)).unwrap();
                    }
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn appended_entries_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::<(u64, Vec<u8>)>::new()));
        let reader = {
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let mut parts = line.split(' ');
                    if parts.next() == Some("ack") {
                        let index: u64 = parts.next().unwrap().parse().unwrap();
                        seen.lock()
                            .unwrap()
                            .push((index, unhex(parts.next().unwrap())));
                    }
                }
            })
        };
        // Let it get going, then kill it at a random moment.
        eventually("the child to acknowledge appends", || {
            (seen.lock().unwrap().len() >= 20).then_some(())
        });
        let jitter = RandomState::new().hash_one(round) % 400;
        std::thread::sleep(Duration::from_millis(jitter));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let this_round = std::mem::take(&mut *seen.lock().unwrap());
        assert!(!this_round.is_empty());
        acked.extend(this_round);

        // Everything acknowledged, in any round so far, is there byte for byte.
        let signer = load_or_create_signing_key(&signing_key_path(dir.path()), ORIGIN).unwrap();
        let ledger = Ledger::open(
            LedgerConfig::new(store_dir(dir.path()), ORIGIN),
            Arc::new(signer),
        )
        .unwrap();
        for (index, bytes) in &acked {
            assert_eq!(
                &ledger.entry(*index).unwrap(),
                bytes,
                "round {round}: entry {index}"
            );
            let proof = ledger.inclusion_proof(*index, ledger.size()).unwrap();
            let root = ledger.checkpoint().checkpoint.root;
            gateway::ledger::verify_inclusion(
                &leaf_hash(bytes),
                *index,
                ledger.size(),
                &proof,
                &root,
            )
            .unwrap();
        }
        ledger.close();
        let out = gateway(&["ledger", "verify", "--data", dir.path().to_str().unwrap()]);
        assert!(
            out.status.success(),
            "round {round}: verify failed: {}",
            stderr(&out)
        );
    }
    assert!(acked.len() >= ROUNDS * 20);
}
