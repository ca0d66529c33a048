//! Power cuts: a node whose whole directory lives on powerfs, a file system that keeps only what was
//! synced (`src/bin/powerfs.rs`). First powerfs is shown to be honest, then a loaded node is killed and
//! the power cut again and again; everything it acknowledged must survive every cut.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::node::{Node, init_node};
use e2e::powerfs::PowerFs;
use e2e::{eventually, gateway, keymgr_bin, stderr, stdout};
use serde_json::{Value, json};

/// Kill-and-cut cycles under load (the issue asks for at least 5 in CI).
const CYCLES: usize = 5;

#[test]
fn powerfs_keeps_what_was_synced_and_loses_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fs = PowerFs::mount(&tmp.path().join("mnt"));
    let root = fs.path().to_owned();
    let sync_dir = |p: &Path| std::fs::File::open(p).unwrap().sync_all().unwrap();

    // First, names made durable by a directory sync: a file synced then written again, a file never
    // synced, a directory, and a synced file that is renamed afterwards.
    let mut kept = std::fs::File::create(root.join("kept")).unwrap();
    kept.write_all(b"synced").unwrap();
    kept.sync_data().unwrap();
    drop(std::fs::File::create(root.join("named")).unwrap());
    std::fs::create_dir(root.join("dir")).unwrap();
    std::fs::write(root.join("renamed"), b"r").unwrap();
    std::fs::File::open(root.join("renamed"))
        .unwrap()
        .sync_all()
        .unwrap();
    sync_dir(&root);
    // Then, with no directory sync after it: writes after the last file sync are lost, ...
    kept.write_all(b" and then not").unwrap();
    drop(kept);
    // ... a named file's unsynced bytes are lost (it comes back empty), ...
    std::fs::write(root.join("named"), b"never synced").unwrap();
    // ... a file never synced is gone, ...
    std::fs::write(root.join("unsynced"), b"lost").unwrap();
    // ... a synced file whose name never was is gone, here and in a subdirectory, ...
    for orphan in ["orphan", "dir/inner"] {
        let mut f = std::fs::File::create(root.join(orphan)).unwrap();
        f.write_all(b"bytes on disk, no name").unwrap();
        f.sync_all().unwrap();
    }
    // ... and a rename that was not synced is undone.
    std::fs::rename(root.join("renamed"), root.join("moved")).unwrap();

    fs.cut();

    assert_eq!(std::fs::read(root.join("kept")).unwrap(), b"synced");
    assert!(!root.join("unsynced").exists());
    assert!(!root.join("orphan").exists());
    assert_eq!(std::fs::read(root.join("named")).unwrap(), b"");
    assert!(root.join("dir").is_dir());
    assert!(!root.join("dir/inner").exists());
    assert_eq!(std::fs::read(root.join("renamed")).unwrap(), b"r");
    assert!(!root.join("moved").exists());
    let stats = fs.stats();
    assert!(stats.starts_with("syncs "), "{stats}");
}

fn loan(id: &str, applicant: &str, salary: u64) -> Value {
    json!({ "type": "loan_application", "id": id, "fields": {
        "applicant_id": applicant, "salary": salary, "amount": 1000, "currency": "EUR", "age": 44 } })
}

/// `keymgr --gateway … <args> --json` as the officer.
fn officer(node: &Node, args: &[&str]) -> Result<Value, String> {
    let pki = node.dir.join("pki");
    let out = Command::new(keymgr_bin())
        .args([
            "--gateway",
            &format!("https://localhost:{}", node.addr.port()),
        ])
        .arg("--cert")
        .arg(pki.join("officer.pem"))
        .arg("--key")
        .arg(pki.join("officer.key"))
        .arg("--cacert")
        .arg(pki.join("ca.pem"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    if out.status.success() {
        serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
    } else {
        Err(stderr(&out))
    }
}

/// What the node acknowledged: record (provider, id, body) → receipt; and key commands.
#[derive(Default)]
struct Acked {
    records: Vec<(String, String, Value, Value)>,
    /// The highest primary version of `pseudonym` a rotation reported.
    rotated_to: u64,
    /// Versions of `pseudonym` a revocation was acknowledged for.
    revoked: Vec<u64>,
}

/// Runs the load until `stop`: single records and batches from both providers, each record for a
/// new data subject (so every one also makes a subject key), and an officer rotating and revoking.
fn load(
    node: &Node,
    cycle: usize,
    acked: &Arc<Mutex<Acked>>,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut workers = Vec::new();
    for (w, who) in ["provider-a", "provider-b"].into_iter().enumerate() {
        let (client, acked, stop, addr) = (
            node.client(who),
            Arc::clone(acked),
            Arc::clone(stop),
            node.addr,
        );
        workers.push(std::thread::spawn(move || {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let id = format!("C{cycle}-S{w}-{i}");
                let body = loan(&id, &format!("P-{id}"), 50_000 + i);
                match client.request(
                    addr,
                    "POST",
                    "/v1/records",
                    Some(body.to_string().as_bytes()),
                ) {
                    Ok(a) if a.status == 201 => {
                        acked
                            .lock()
                            .unwrap()
                            .records
                            .push((who.to_owned(), id, body, a.json()));
                    }
                    Ok(a) => panic!("unexpected answer {}: {}", a.status, a.text()),
                    Err(_) => return, // the node is gone
                }
            }
        }));
    }
    {
        let (client, acked, stop, addr) = (
            node.client("provider-a"),
            Arc::clone(acked),
            Arc::clone(stop),
            node.addr,
        );
        workers.push(std::thread::spawn(move || {
            for b in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let bodies: Vec<Value> = (0..16)
                    .map(|k| {
                        let id = format!("C{cycle}-B{b}-{k}");
                        loan(&id, &format!("P-{id}"), 70_000 + k)
                    })
                    .collect();
                let ndjson: String = bodies.iter().map(|v| format!("{v}\n")).collect();
                match client.request(addr, "POST", "/v1/records:batch", Some(ndjson.as_bytes())) {
                    Ok(a) if a.status == 200 => {
                        let mut acked = acked.lock().unwrap();
                        for (line, body) in a.text().lines().zip(bodies) {
                            let r: Value = serde_json::from_str(line).unwrap();
                            assert_eq!(r["status"], 201, "{r}");
                            let id = body["id"].as_str().unwrap().to_owned();
                            acked.records.push((
                                "provider-a".into(),
                                id,
                                body,
                                r["receipt"].clone(),
                            ));
                        }
                    }
                    Ok(a) => panic!("unexpected batch answer {}: {}", a.status, a.text()),
                    Err(_) => return,
                }
            }
        }));
    }
    {
        // The officer: rotate, then revoke the version just superseded, while records flow.
        let (acked, stop) = (Arc::clone(acked), Arc::clone(stop));
        let (dir, addr, metrics) = (node.dir.clone(), node.addr, node.metrics);
        workers.push(std::thread::spawn(move || {
            let node = Node::attach(&dir, addr, metrics);
            while !stop.load(Ordering::Relaxed) {
                let Ok(rotated) = officer(&node, &["rotate", "pseudonym"]) else {
                    return;
                };
                let primary = rotated["key"]["primary"].as_u64().unwrap();
                acked.lock().unwrap().rotated_to = primary;
                let old = (primary - 1).to_string();
                let revoke = [
                    "revoke",
                    "pseudonym",
                    "--version",
                    old.as_str(),
                    "--reason",
                    "superseded",
                ];
                match officer(&node, &revoke) {
                    Ok(_) => acked.lock().unwrap().revoked.push(primary - 1),
                    Err(_) => return,
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        }));
    }
    workers
}

/// Every acknowledged record reads back with its sealed value, and its retry answers 200 with the
/// original receipt; every acknowledged key command is in force.
fn check(node: &Node, acked: &Acked, cycle: usize) {
    let clients = [
        ("provider-a", node.client("provider-a")),
        ("provider-b", node.client("provider-b")),
    ];
    let client = |who: &str| &clients.iter().find(|(w, _)| *w == who).unwrap().1;
    for (who, id, body, receipt) in &acked.records {
        let read = client(who)
            .request(node.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap();
        assert_eq!(
            read.status,
            200,
            "cycle {cycle}: acknowledged {id} is gone: {}",
            read.text()
        );
        let read = read.json();
        assert_eq!(
            read["sealed"]["salary"]["value"], body["fields"]["salary"],
            "cycle {cycle}: {id}: {read}"
        );
        let again = client(who)
            .request(
                node.addr,
                "POST",
                "/v1/records",
                Some(body.to_string().as_bytes()),
            )
            .unwrap();
        assert_eq!(
            again.status,
            200,
            "cycle {cycle}: retry of {id}: {}",
            again.text()
        );
        assert_eq!(
            &again.json(),
            receipt,
            "cycle {cycle}: retry of {id} got another receipt"
        );
    }
    let shown = officer(node, &["show", "pseudonym"]).unwrap();
    let primary = shown["key"]["primary"].as_u64().unwrap();
    assert!(
        primary >= acked.rotated_to,
        "cycle {cycle}: rotation to {} was lost: {shown}",
        acked.rotated_to
    );
    let versions = shown["key"]["versions"].as_array().unwrap();
    for v in &acked.revoked {
        let state = versions
            .iter()
            .find(|x| x["version"].as_u64() == Some(*v))
            .map(|x| x["detail"].to_string())
            .unwrap_or_default();
        // Rotation alone deactivates; only the acknowledged revocation records a reason.
        assert!(
            state.contains("superseded"),
            "cycle {cycle}: revocation of v{v} was lost: {shown}"
        );
    }
}

#[test]
fn acknowledged_records_and_key_commands_survive_kill_and_power_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fs = PowerFs::mount(&tmp.path().join("mnt"));
    // `gateway init` on powerfs, then the power cut at once: what it said it created is there.
    let dir = init_node(fs.path());
    e2e::node::unlimited_rate(&dir);
    std::fs::File::open(dir.join("policies/subjects.yaml"))
        .unwrap()
        .sync_all()
        .unwrap();
    fs.cut();
    let acked = Arc::new(Mutex::new(Acked::default()));
    for cycle in 0..CYCLES {
        let mut node = Node::start(&dir);
        if cycle > 0 {
            check(&node, &acked.lock().unwrap(), cycle);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let workers = load(&node, cycle, &acked, &stop);
        let before = acked.lock().unwrap().records.len();
        eventually("acknowledged records under load", || {
            (acked.lock().unwrap().records.len() >= before + 60).then_some(())
        });
        std::thread::sleep(Duration::from_millis(200 + 150 * cycle as u64));
        node.crash(); // SIGKILL, mid-load
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
        fs.cut();
        let out = gateway(&[
            "ledger",
            "verify",
            "--data",
            dir.join("data").to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "cycle {cycle}: verify after the cut: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    let node = Node::start(&dir);
    let acked = acked.lock().unwrap();
    check(&node, &acked, CYCLES);
    assert!(
        acked.rotated_to >= 2 && !acked.revoked.is_empty(),
        "the officer did no work"
    );
    eprintln!(
        "power cuts: {} records acknowledged, pseudonym at v{}; powerfs {}",
        acked.records.len(),
        acked.rotated_to,
        fs.stats()
    );
}
