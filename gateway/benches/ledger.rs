//! Ledger benchmark: every number is printed next to a baseline measured in the same run, on the same
//! disk, so that the ratios mean something on a shared, noisy machine.
//!
//! Run: `cargo bench -p gateway --bench ledger`. `LEDGER_BENCH_SCALE=0.1` gives a quick look;
//! `LEDGER_BENCH_ONLY=appends|proof|verify|node-verify` runs one part (proof and verify share the
//! large store).
//!
//! 1. Durable appends/s of 512-byte entries at batch sizes 1, 64 and 1024, against raw redb: the same
//!    entries `insert`ed one key each into a table, with one durable two-phase commit per batch (the
//!    ledger's own sync: `fdatasync`, twice).
//! 2. Inclusion-proof generation at tree size 1,000,000.
//! 3. `verify` throughput in MB/s of entry bytes, against raw SHA-256 of the same entries.
//! 4. The same on a ledger written the way a node writes it under light load: 215-byte entries in
//!    groups of 1 to 10 (one signed checkpoint per group, ~25,000 of them per 140,000 entries), by
//!    default and with `--all-signatures`.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss
)]
#![allow(clippy::cast_possible_truncation, clippy::indexing_slicing)] // a benchmark: fixed, known sizes

use std::hash::{BuildHasher as _, RandomState};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::ledger::{Ed25519NoteSigner, Ledger, LedgerConfig};
use sha2::{Digest as _, Sha256};

const ORIGIN: &str = "bench.ledgergate.local/log";
const ENTRY_BYTES: usize = 512;

fn scale() -> f64 {
    std::env::var("LEDGER_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

fn wanted(part: &str) -> bool {
    std::env::var("LEDGER_BENCH_ONLY").map_or(true, |only| only == part)
}

fn scaled(n: usize) -> usize {
    ((n as f64 * scale()) as usize).max(1)
}

/// Deterministic, incompressible-looking 512-byte entries.
fn entries(start: usize, n: usize) -> Vec<Vec<u8>> {
    (start..start + n)
        .map(|i| {
            let mut e = Vec::with_capacity(ENTRY_BYTES);
            let mut block = Sha256::digest(i.to_le_bytes()).to_vec();
            while e.len() < ENTRY_BYTES {
                e.extend_from_slice(&block);
                block = Sha256::digest(&block).to_vec();
            }
            e.truncate(ENTRY_BYTES);
            e
        })
        .collect()
}

fn signer() -> Arc<Ed25519NoteSigner> {
    Arc::new(Ed25519NoteSigner::from_seed(ORIGIN, &[42u8; 32]).unwrap())
}

fn open_ledger(path: &Path) -> Ledger {
    Ledger::open(LedgerConfig::new(path, ORIGIN), signer()).unwrap()
}

/// Our appends: one caller, each call one group commit of `batch` entries.
fn ledger_appends(dir: &Path, batch: usize, batches: usize) -> f64 {
    let ledger = open_ledger(&dir.join(format!("ledger-{batch}")));
    let work: Vec<_> = (0..batches).map(|b| entries(b * batch, batch)).collect();
    let started = Instant::now();
    for group in work {
        ledger.append_blocking(group).unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    ledger.close();
    (batch * batches) as f64 / secs
}

/// The baseline: redb itself, synced the way the ledger syncs (a durable, two-phase commit per batch,
/// which ends with `fdatasync`), with one `insert` per entry into one table.
fn raw_appends(dir: &Path, batch: usize, batches: usize) -> f64 {
    let raw: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("raw");
    std::fs::create_dir_all(dir).unwrap();
    let db = redb::Database::create(dir.join(format!("raw-{batch}.redb"))).unwrap();
    let work: Vec<_> = (0..batches).map(|b| entries(b * batch, batch)).collect();
    let started = Instant::now();
    let mut index = 0u64;
    for group in work {
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        txn.set_two_phase_commit(true);
        {
            let mut table = txn.open_table(raw).unwrap();
            for e in group {
                table.insert(index, e.as_slice()).unwrap();
                index += 1;
            }
        }
        txn.commit().unwrap();
    }
    (batch * batches) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn verdict(ok: bool) -> &'static str {
    if ok { "meets target" } else { "MISSES target" }
}

fn main() {
    let tmp = tempfile::Builder::new()
        .prefix("ledger-bench")
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    // `LEDGER_BENCH_KEEP=1` leaves the stores behind, to profile the verifier on them.
    let (dir, _cleanup) = if std::env::var_os("LEDGER_BENCH_KEEP").is_some() {
        let kept = tmp.keep();
        println!("keeping the stores in {}", kept.display());
        (kept, None)
    } else {
        (tmp.path().to_owned(), Some(tmp))
    };
    let dir = dir.as_path();
    println!(
        "ledger benchmark (scale {}), data in {}",
        scale(),
        dir.display()
    );
    if wanted("appends") {
        appends(dir);
    }
    if wanted("proof") || wanted("verify") {
        proofs_and_verify(dir);
    }
    if wanted("node-verify") {
        node_verify(dir);
    }
}

/// Part 4: a ledger of small entries in small groups, as a node writes it, verified by default
/// (every root, one signature per key) and with every signature checked.
fn node_verify(dir: &Path) {
    const NODE_ENTRY: usize = 215;
    let size = scaled(140_000);
    println!();
    println!(
        "4. offline verify of a node-written ledger ({size} entries of {NODE_ENTRY} bytes in groups of 1-10)"
    );
    let node = dir.join("node-written");
    let ledger = open_ledger(&gateway::ledger::store_dir(&node));
    let rng = RandomState::new();
    let mut start = 0;
    let built = Instant::now();
    while start < size {
        let group = (1 + (rng.hash_one(start) % 10) as usize).min(size - start);
        let mut batch = entries(start, group);
        for e in &mut batch {
            e.truncate(NODE_ENTRY);
        }
        ledger.append_blocking(batch).unwrap();
        start += group;
    }
    ledger.close();
    println!("   built in {:.1} s", built.elapsed().as_secs_f64());
    let mut sample = entries(0, 100_000.min(size));
    for e in &mut sample {
        e.truncate(NODE_ENTRY);
    }
    let sha = raw_sha256(&sample, size);
    let _ = std::process::Command::new("sync").status();
    for (label, extra) in [
        ("default", &[][..]),
        ("--all-signatures", &["--all-signatures"][..]),
    ] {
        run_verify(&node, extra);
        let runs = (0..3).map(|_| run_verify(&node, extra)).collect::<Vec<_>>();
        let checkpoints = runs[0].1;
        let v = median(runs.into_iter().map(|r| r.0).collect());
        println!(
            "   {label}: verify {v:.0} MB/s ({checkpoints} checkpoints), raw SHA-256 {sha:.0} MB/s, ratio {:.2}x",
            v / sha
        );
        if label == "default" {
            println!(
                "   target >= 0.50x raw SHA-256: {}",
                verdict(v / sha >= 0.5)
            );
        }
    }
}

/// Raw SHA-256 of `total` entries like `sample`'s (cycled), from memory: the median MB/s of 3 runs.
fn raw_sha256(sample: &[Vec<u8>], total: usize) -> f64 {
    let rounds = (total / sample.len()).max(1);
    let bytes: usize = sample.iter().map(Vec::len).sum();
    median(
        (0..3)
            .map(|_| {
                let t = Instant::now();
                let mut acc = 0u8;
                for _ in 0..rounds {
                    for e in sample {
                        acc ^= Sha256::digest(e)[0];
                    }
                }
                std::hint::black_box(acc);
                (bytes * rounds) as f64 / 1e6 / t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// One run of the real `gateway ledger verify` binary: (MB/s of entry bytes, checkpoints checked).
fn run_verify(node: &Path, extra: &[&str]) -> (f64, u64) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["ledger", "verify", "--json", "--data"])
        .arg(node)
        .args(extra)
        .env("LEDGERGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = report["entry_bytes"].as_f64().unwrap();
    (
        bytes / 1e6 / report["seconds"].as_f64().unwrap(),
        report["checkpoints"].as_u64().unwrap(),
    )
}

fn appends(dir: &Path) {
    println!();
    println!(
        "1. durable appends/s, {ENTRY_BYTES}-byte entries (median of 3 alternating runs each)"
    );
    println!(
        "{:>7} {:>14} {:>14} {:>8}",
        "batch", "ledger", "raw redb", "ratio"
    );
    let mut ratio_1024 = 0.0;
    let mut rate_1024 = 0.0;
    for (batch, batches) in [
        (1usize, scaled(1500)),
        (64, scaled(400)),
        (1024, scaled(120)),
    ] {
        let (mut ours, mut raw) = (Vec::new(), Vec::new());
        for run in 0..3 {
            // Alternate which goes first so that neither always gets the warmer cache or quieter disk.
            let sub = dir.join(format!("run{run}"));
            if run % 2 == 0 {
                ours.push(ledger_appends(&sub, batch, batches));
                raw.push(raw_appends(&sub, batch, batches));
            } else {
                raw.push(raw_appends(&sub, batch, batches));
                ours.push(ledger_appends(&sub, batch, batches));
            }
            let _ = std::fs::remove_dir_all(&sub);
        }
        let (o, r) = (median(ours), median(raw));
        println!("{batch:>7} {o:>14.0} {r:>14.0} {:>7.2}x", o / r);
        if batch == 1024 {
            (ratio_1024, rate_1024) = (o / r, o);
        }
    }
    println!(
        "   target at batch 1024: >= 100000/s and >= 0.70x raw redb: {} ({rate_1024:.0}/s, {ratio_1024:.2}x)",
        verdict(rate_1024 >= 100_000.0 && ratio_1024 >= 0.7)
    );
}

fn proofs_and_verify(dir: &Path) {
    // One large store serves the proof and the verify measurements.
    let size = scaled(1_000_000);
    println!();
    println!("building a {size}-entry ledger ({ENTRY_BYTES}-byte entries, groups of 4096)...");
    let node = dir.join("node");
    let big = gateway::ledger::store_dir(&node);
    let build_started = Instant::now();
    let ledger = open_ledger(&big);
    for start in (0..size).step_by(4096) {
        ledger
            .append_blocking(entries(start, 4096.min(size - start)))
            .unwrap();
    }
    println!("   built in {:.1} s", build_started.elapsed().as_secs_f64());

    if wanted("proof") {
        proofs(&ledger, size);
    }
    ledger.close();
    if wanted("verify") {
        verify(&node, size);
    }
}

fn proofs(ledger: &Ledger, size: usize) {
    println!();
    println!("2. inclusion proof generation at tree size {size}");
    let rng = RandomState::new();
    let probes = 20_000u64;
    let n = size as u64;
    for i in 0..1000 {
        ledger.inclusion_proof(rng.hash_one(i) % n, n).unwrap(); // warm the cache
    }
    let mut samples = Vec::with_capacity(probes as usize);
    for i in 0..probes {
        let index = rng.hash_one(i + 1000) % n;
        let t = Instant::now();
        let proof = ledger.inclusion_proof(index, n).unwrap();
        samples.push(t.elapsed());
        assert!(!proof.is_empty() || n == 1);
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / probes as u32;
    let p99 = samples[samples.len() * 99 / 100];
    println!(
        "   mean {:.1} µs, p99 {:.1} µs over {probes} random leaves",
        us(mean),
        us(p99)
    );
    println!("   target mean <= 50 µs: {}", verdict(us(mean) <= 50.0));
}

fn verify(node: &Path, size: usize) {
    println!();
    println!(
        "3. offline verify throughput (`gateway ledger verify`), against raw SHA-256 of the same entries"
    );
    // Raw SHA-256: one digest per entry over the same bytes, from memory (no storage at all).
    let s = raw_sha256(&entries(0, 100_000.min(size)), size);
    // The verifier as operators run it: the real binary, a fresh process each time, nothing cached
    // in-process. Right after writing half a gigabyte the kernel is still writing it back, which says
    // nothing about the verifier: let it finish (`sync`), then one uncounted run.
    let _ = std::process::Command::new("sync").status();
    run_verify(node, &[]);
    let v = median((0..3).map(|_| run_verify(node, &[]).0).collect());
    println!(
        "   verify {v:.0} MB/s, raw SHA-256 {s:.0} MB/s, ratio {:.2}x",
        v / s
    );
    println!("   target >= 0.50x raw SHA-256: {}", verdict(v / s >= 0.5));
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
