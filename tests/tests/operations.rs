//! A running gateway under the operations officers and auditors care about: batches, proofs for
//! mirrors, crypto-shredding, a compromised key, and a crash during concurrent submission.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use e2e::node::{Node, init_node};
use e2e::{gateway, keymgr_bin, stderr};
use gateway::ledger::{
    Hash, NoteVerifier, SignedCheckpoint, leaf_hash, verify_consistency, verify_inclusion,
};
use serde_json::{Value, json};

fn loan(id: &str, applicant: &str) -> Value {
    json!({ "type": "loan_application", "id": id, "fields": {
        "applicant_id": applicant, "salary": 61000, "amount": 1000, "currency": "EUR", "age": 44 } })
}

fn keymgr(dir: &Path, args: &[&str]) -> std::process::Output {
    let pass = std::fs::read_to_string(dir.join("kek.pass")).unwrap();
    Command::new(keymgr_bin())
        .arg("--store")
        .arg(dir.join("data/keys"))
        .args(args)
        .env("LEDGERGATE_KEK_PASSPHRASE", pass.trim_end())
        .output()
        .unwrap()
}

fn hashes(v: &Value) -> Vec<Hash> {
    v["hashes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
        .collect()
}

#[test]
fn a_batch_answers_each_line_in_order_and_appends_only_the_good_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let a = node.client("provider-a");
    let lines = [
        loan("B-1", "P-1").to_string(),
        "{ not json".to_owned(),
        json!({ "type": "loan_application", "id": "B-3", "fields": { "applicant_id": "P-3", "amount": 5 } }).to_string(),
        loan("B-4", "P-4").to_string(),
        loan("B-1", "P-1").to_string(),
        loan("B-4", "P-other").to_string(),
    ];
    let body = lines.join("\n") + "\n";
    let answer = a
        .request(
            node.addr,
            "POST",
            "/v1/records:batch",
            Some(body.as_bytes()),
        )
        .unwrap();
    assert_eq!(
        (answer.status, answer.content_type.as_str()),
        (200, "application/x-ndjson"),
        "{}",
        answer.text()
    );
    let results: Vec<Value> = answer
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary: Vec<(u64, u64, Option<&str>)> = results
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["status"].as_u64().unwrap(),
                r["code"].as_str(),
            )
        })
        .collect();
    // A repeated id waits for a later round of the same batch: line 5 repeats line 1 and gets its
    // receipt back; line 6 reuses line 4's id with another body.
    assert_eq!(summary[0], (1, 201, None));
    assert_eq!(summary[1], (2, 400, Some("malformed_json")));
    assert_eq!(summary[2], (3, 422, Some("missing_field")));
    assert_eq!(summary[3], (4, 201, None));
    assert_eq!(summary[4], (5, 200, None));
    assert_eq!(summary[5], (6, 409, Some("conflict")));
    assert_eq!(results[0]["receipt"], results[4]["receipt"]);
    assert_eq!(node.record_count(), 2);
}

#[test]
fn mirrors_get_proofs_and_auditors_get_raw_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let a = node.client("provider-a");
    for i in 0..3 {
        assert_eq!(
            a.request(
                node.addr,
                "POST",
                "/v1/records",
                Some(loan(&format!("M-{i}"), "P").to_string().as_bytes())
            )
            .unwrap()
            .status,
            201
        );
    }
    let vkey = a
        .request(node.addr, "GET", "/v1/checkpoint/key", None)
        .unwrap()
        .text();
    let trusted = [NoteVerifier::from_vkey(vkey.trim()).unwrap()];
    let note = a
        .request(node.addr, "GET", "/v1/checkpoint", None)
        .unwrap()
        .text();
    let cp = SignedCheckpoint::open(&note, &trusted).unwrap().checkpoint;
    assert_eq!(cp.size, node.tree_size());
    assert_eq!(node.record_count(), 3);

    // The node's own audit entries and the three records.
    let n = cp.size;
    let officer = node.client("officer");
    let entries = officer
        .request(
            node.addr,
            "GET",
            &format!("/v1/entries?start=0&end={n}"),
            None,
        )
        .unwrap();
    assert_eq!(entries.status, 200, "{}", entries.text());
    let entries: Vec<Vec<u8>> = entries
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            base64::engine::general_purpose::STANDARD
                .decode(e["entry"].as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(entries.len() as u64, n);
    for (i, e) in entries.iter().enumerate() {
        let p = a
            .request(
                node.addr,
                "GET",
                &format!("/v1/proofs/inclusion?index={i}&size={n}"),
                None,
            )
            .unwrap()
            .json();
        verify_inclusion(&leaf_hash(e), i as u64, n, &hashes(&p), &cp.root).unwrap();
    }
    // Consistency from the tree of one entry (root recomputed from the raw entry) to the checkpoint.
    let c = a
        .request(
            node.addr,
            "GET",
            &format!("/v1/proofs/consistency?from=1&to={n}"),
            None,
        )
        .unwrap()
        .json();
    verify_consistency(1, n, &hashes(&c), &leaf_hash(&entries[0]), &cp.root).unwrap();

    // A provider may not read raw entries; proofs for entries or trees that do not exist are refused.
    for (path, status, code) in [
        ("/v1/entries?start=0&end=1", 403, "forbidden"),
        (
            "/v1/proofs/inclusion?index=9&size=3",
            400,
            "invalid_request",
        ),
        (
            "/v1/proofs/inclusion?index=0&size=99",
            400,
            "invalid_request",
        ),
    ] {
        let answer = a.request(node.addr, "GET", path, None).unwrap();
        assert_eq!(
            (answer.status, answer.json()["code"].as_str()),
            (status, Some(code)),
            "{path}"
        );
    }
}

#[test]
fn shredding_a_subject_makes_its_sealed_fields_unreadable_and_the_ledger_still_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let mut node = Node::start(&dir);
    let a = node.client("provider-a");
    for (id, who) in [("X-1", "P-77"), ("X-2", "P-78")] {
        assert_eq!(a.submit(node.addr, &loan(id, who)).status, 201);
    }
    assert_eq!(node.stop(), Some(0));
    let out = keymgr(&dir, &["shred", "--subject", "P-77"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let node = Node::start(&dir);
    let shredded = a
        .request(node.addr, "GET", "/v1/records/X-1", None)
        .unwrap()
        .json();
    assert_eq!(
        shredded["sealed"]["salary"],
        json!({ "status": "shredded" })
    );
    let kept = a
        .request(node.addr, "GET", "/v1/records/X-2", None)
        .unwrap()
        .json();
    assert_eq!(
        kept["sealed"]["salary"],
        json!({ "status": "sealed", "value": 61000 })
    );
    drop(node);
    let out = gateway(&["ledger", "verify", "--data", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_compromised_key_with_no_usable_version_stops_submissions_until_rotated() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let mut node = Node::start(&dir);
    let a = node.client("provider-a");
    let first = a.submit(node.addr, &loan("K-1", "P"));
    assert_eq!(first.status, 201);
    let first = first.json()["index"].as_u64().unwrap();
    assert_eq!(node.stop(), Some(0));
    let out = keymgr(
        &dir,
        &[
            "revoke",
            "pseudonym",
            "--version",
            "1",
            "--reason",
            "compromised",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let affected: Value = serde_json::from_slice(
        &keymgr(&dir, &["affected", "pseudonym", "--version", "1", "--json"]).stdout,
    )
    .unwrap();
    assert_eq!(affected["records"], json!([format!("ledger:{first}")]));

    let mut node = Node::start(&dir);
    let size = node.tree_size();
    let refused = a.submit(node.addr, &loan("K-2", "P"));
    assert_eq!(
        (refused.status, refused.json()["code"].as_str()),
        (503, Some("key_revoked")),
        "{}",
        refused.text()
    );
    assert_eq!(node.tree_size(), size);
    assert_eq!(node.stop(), Some(0));

    assert!(keymgr(&dir, &["rotate", "pseudonym"]).status.success());
    let node = Node::start(&dir);
    let ok = a.submit(node.addr, &loan("K-2", "P"));
    assert_eq!(ok.status, 201, "{}", ok.text());
    let read = a
        .request(node.addr, "GET", "/v1/records/K-2", None)
        .unwrap()
        .json();
    assert_eq!(read["record"]["key_refs"], json!(["pseudonym@2"]));
    assert!(
        read["record"]["payload"]["applicant_id"]
            .as_str()
            .unwrap()
            .starts_with("v2:")
    );
}

#[test]
fn sigkill_during_concurrent_submission_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    e2e::node::unlimited_rate(&dir);
    let mut node = Node::start(&dir);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let addr = node.addr;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (client, acked) = (
                node.client(if w % 2 == 0 {
                    "provider-a"
                } else {
                    "provider-b"
                }),
                Arc::clone(&acked),
            );
            std::thread::spawn(move || {
                for i in 0.. {
                    let id = format!("W{w}-{i}");
                    match client.request(
                        addr,
                        "POST",
                        "/v1/records",
                        // A new data subject each time: every record makes a subject key too.
                        Some(loan(&id, &format!("P-{id}")).to_string().as_bytes()),
                    ) {
                        Ok(a) if a.status == 201 => {
                            acked.lock().unwrap().push(format!("{}:{id}", w % 2))
                        }
                        Ok(a) => panic!("unexpected answer {}: {}", a.status, a.text()),
                        Err(_) => return, // the node is gone
                    }
                }
            })
        })
        .collect();
    e2e::eventually("some acknowledged submissions", || {
        (acked.lock().unwrap().len() >= 40).then_some(())
    });
    node.crash();
    for w in workers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let out = gateway(&["ledger", "verify", "--data", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let node = Node::start(&dir);
    let (a, b) = (node.client("provider-a"), node.client("provider-b"));
    let mut indices = Vec::new();
    for entry in &acked {
        let (who, id) = entry.split_once(':').unwrap();
        let client = if who == "0" { &a } else { &b };
        let read = client
            .request(node.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap();
        assert_eq!(
            read.status,
            200,
            "acknowledged {id} is gone: {}",
            read.text()
        );
        // Its sealed value too: the subject key made for it reached the disk before the entry.
        let read = read.json();
        assert_eq!(read["sealed"]["salary"]["value"], json!(61000), "{read}");
        indices.push(read["record"]["key_refs"].clone());
        indices.push(json!(format!("ledger:{}", read["proof"]["leaf_index"])));
        // And a retry after the crash is recognised, not appended again.
        let again = client
            .request(
                node.addr,
                "POST",
                "/v1/records",
                Some(loan(id, &format!("P-{id}")).to_string().as_bytes()),
            )
            .unwrap();
        assert_eq!(again.status, 200, "{id}: {}", again.text());
    }
    assert!(node.record_count() >= acked.len() as u64);
    // The key-usage index caught up at start: every acknowledged record is listed under the
    // pseudonym key version its entry names.
    let mut node = node;
    node.stop();
    let affected: Value = serde_json::from_slice(
        &keymgr(&dir, &["affected", "pseudonym", "--version", "1", "--json"]).stdout,
    )
    .unwrap();
    let listed = affected["records"].as_array().unwrap();
    for pair in indices.chunks(2) {
        assert!(pair[0].to_string().contains("pseudonym@1"), "{}", pair[0]);
        assert!(listed.contains(&pair[1]), "{} not in {affected}", pair[1]);
    }
}

#[test]
fn sigterm_drains_closes_the_stores_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let mut node = Node::start(&dir);
    // The background tasks (usage index, rotation check) hold the stores too; let them run once.
    for i in 0..5 {
        let id = format!("T-{i}");
        let a = node
            .client("provider-a")
            .submit(node.addr, &loan(&id, &format!("P-{id}")));
        assert_eq!(a.status, 201, "{}", a.text());
    }
    std::thread::sleep(std::time::Duration::from_millis(1200));
    // Exit status 0 only once the ledger was closed (it is non-zero when a holder kept it open).
    assert_eq!(node.stop(), Some(0));
    // Released at once: the stores open offline and verify.
    let out = keymgr(&dir, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gateway(&[
        "ledger",
        "verify",
        "--data",
        dir.join("data").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The node turns transparent huge pages off for itself (README, "Transparent huge pages"): with
/// them, every page its allocator takes back from the kernel was a fresh 2 MiB page zeroed whole.
#[test]
fn the_node_runs_without_transparent_huge_pages() {
    let flag = |status: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(str::trim)
            .map(str::to_owned)
    };
    // This process has them (so a 0 below is the node's doing, not the kernel's).
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    assert_eq!(flag(&ours).as_deref(), Some("1"), "{ours}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let node = Node::start(&dir);
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid().unwrap())).unwrap();
    assert_eq!(flag(&status).as_deref(), Some("0"), "{status}");
}
