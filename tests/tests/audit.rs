//! The audit trail in the ledger (docs/audit.md): after a run of mixed operations — officers' key
//! commands, a shred, a read in clear by a non-owner, reloads by the admin API and by SIGHUP, a
//! keymgr command run offline while the node was stopped — every one of them is an audit entry with
//! a valid inclusion proof, listed alike by `GET /admin/v1/audit` and `gateway ledger audit`; an
//! altered audit entry fails `gateway ledger verify`, and a store rolled back to before the last
//! audit entries fails it against a checkpoint saved earlier.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use base64::Engine as _;
use e2e::node::{Node, init_node};
use e2e::{gateway, stderr};
use gateway::ledger::{Hash, NoteVerifier, SignedCheckpoint, leaf_hash, verify_inclusion};
use serde_json::{Value, json};

fn lab(id: &str, patient: &str) -> Value {
    json!({ "type": "lab_result", "id": id, "fields": {
        "patient_id": patient, "birth_date": "1980-01-02", "test_code": "HB", "value": 13.5,
        "diagnosis": "anaemia", "collected_at": "2026-11-30T10:00:00Z" } })
}

fn keymgr_offline(dir: &Path, args: &[&str]) {
    let pass = std::fs::read_to_string(dir.join("kek.pass")).unwrap();
    let out = std::process::Command::new(e2e::keymgr_bin())
        .arg("--store")
        .arg(dir.join("data/keys"))
        .args(args)
        .env("LEDGERGATE_KEK_PASSPHRASE", pass.trim_end())
        .env("LEDGERGATE_ACTOR", "offline-officer")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

/// Every page of `GET /admin/v1/audit?…` (following `next`), each entry's proof checked against the
/// page's checkpoint: (index, entry).
fn listed(node: &Node, query: &str) -> Vec<(u64, Value)> {
    let officer = node.client("officer");
    let vkey = officer
        .request(node.addr, "GET", "/v1/checkpoint/key", None)
        .unwrap()
        .text();
    let trusted = [NoteVerifier::from_vkey(vkey.trim()).unwrap()];
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let page = officer
            .request(
                node.addr,
                "GET",
                &format!("/admin/v1/audit?start={start}&limit=3{query}"),
                None,
            )
            .unwrap();
        assert_eq!(page.status, 200, "{}", page.text());
        let page = page.json();
        let cp = SignedCheckpoint::open(page["checkpoint"].as_str().unwrap(), &trusted)
            .unwrap()
            .checkpoint;
        assert_eq!(page["tree_size"], cp.size);
        for item in page["entries"].as_array().unwrap() {
            let index = item["index"].as_u64().unwrap();
            // The entry's exact bytes, from the raw entries an auditor reads, against the proof.
            let raw = officer
                .request(
                    node.addr,
                    "GET",
                    &format!("/v1/entries?start={index}&end={}", index + 1),
                    None,
                )
                .unwrap()
                .json();
            let bytes = b64.decode(raw[0]["entry"].as_str().unwrap()).unwrap();
            assert_eq!(
                serde_json::from_slice::<Value>(&bytes).unwrap(),
                item["entry"]
            );
            let hashes: Vec<Hash> = item["proof"]["hashes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
                .collect();
            verify_inclusion(&leaf_hash(&bytes), index, cp.size, &hashes, &cp.root)
                .unwrap_or_else(|e| panic!("entry {index}: {e}"));
            out.push((index, item["entry"].clone()));
        }
        match page["next"].as_u64() {
            Some(next) => start = next,
            None => return out,
        }
    }
}

fn kinds(entries: &[(u64, Value)]) -> Vec<String> {
    entries
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_privileged_act_is_an_audit_entry_with_a_proof_and_tampering_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    // Offline, before the node's first start: in the trail once it starts.
    keymgr_offline(&dir, &["create", "offline-key", "--purpose", "pseudonym"]);
    let mut node = Node::start(&dir);
    let a = node.client("provider-a");
    assert_eq!(
        a.submit(node.addr, &lab("AUD-1", "PATIENT-AUD-1")).status,
        201
    );
    // A read in clear by a non-owner (the registry has `unseal` for lab results).
    let read = node
        .client("registry")
        .request(
            node.addr,
            "GET",
            "/v1/records/AUD-1?provider=provider-a",
            None,
        )
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.text());
    for args in [
        &["rotate", "pseudonym"][..],
        &[
            "revoke",
            "pseudonym",
            "--version",
            "1",
            "--reason",
            "superseded",
        ][..],
        &["shred", "--subject", "PATIENT-AUD-1"][..],
    ] {
        let out = node.keymgr("officer", args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let reload = node
        .client("officer")
        .request(node.addr, "POST", "/admin/v1/reload", None)
        .unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());
    let digest = reload.json()["policy"].as_str().unwrap().to_owned();
    node.signal("HUP");
    e2e::eventually("the SIGHUP reload in the trail", || {
        listed(&node, "&kind=config.reload")
            .iter()
            .any(|(_, e)| e["details"]["trigger"] == "SIGHUP")
            .then_some(())
    });
    assert_eq!(node.stop(), Some(0));
    // Offline, while the node is stopped: in the trail at its next start.
    keymgr_offline(&dir, &["rotate", "offline-key"]);
    let saved_dir = tmp.path().join("ledger-before");
    copy_dir(&dir.join("data/ledger"), &saved_dir);
    let mut node = Node::start(&dir);

    let all = listed(&node, "");
    let kinds = kinds(&all);
    for want in [
        "audit.node.start",
        "audit.key.store_init",
        "audit.key.create",
        "audit.record.unseal",
        "audit.key.rotate",
        "audit.key.revoke",
        "audit.key.shred",
        "audit.config.reload",
    ] {
        assert!(kinds.iter().any(|k| k == want), "no {want} in {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| *k == "audit.node.start").count(), 2);
    let find = |kind: &str, actor: &str| -> Vec<&Value> {
        all.iter()
            .map(|(_, e)| e)
            .filter(|e| e["type"] == kind && e["actor"] == actor)
            .collect()
    };
    // Offline commands, before the first start and between the starts, each once.
    let offline_create = find("audit.key.create", "offline-officer");
    assert_eq!(offline_create.len(), 1, "{all:?}");
    assert_eq!(offline_create[0]["target"], "key offline-key v1");
    assert_eq!(find("audit.key.rotate", "offline-officer").len(), 1);
    // The officer's acts, through the admin API.
    assert_eq!(
        find("audit.key.rotate", "officer")[0]["target"],
        "key pseudonym v2"
    );
    assert_eq!(
        find("audit.key.revoke", "officer")[0]["target"],
        "key pseudonym v1"
    );
    let shred = find("audit.key.shred", "officer");
    assert_eq!(shred.len(), 1);
    let target = shred[0]["target"].as_str().unwrap();
    assert!(target.starts_with("subject v"), "{target}");
    assert_eq!(find("audit.record.unseal", "registry").len(), 1);
    let reloads = find("audit.config.reload", "officer");
    assert_eq!(reloads[0]["details"]["policy"], digest.as_str());
    assert_eq!(reloads[0]["outcome"], "done");
    assert_eq!(find("audit.config.reload", "operator").len(), 1);
    // Each journal event once: no sequence number twice.
    let mut seqs: Vec<u64> = all
        .iter()
        .filter_map(|(_, e)| e["details"]["journal"]["seq"].as_u64())
        .collect();
    let n = seqs.len();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "a journal event copied twice");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seqs:?}"
    );
    // No subject id anywhere in the trail.
    for (index, e) in &all {
        assert!(
            !e.to_string().contains("PATIENT-AUD-1"),
            "entry {index}: {e}"
        );
    }
    // Filters: by actor, by kind, by time; a bad time is named.
    let by_officer = listed(&node, "&actor=officer");
    assert!(by_officer.iter().all(|(_, e)| e["actor"] == "officer"));
    assert!(by_officer.len() >= 4);
    let keys_only = listed(&node, "&kind=key");
    assert!(
        keys_only
            .iter()
            .all(|(_, e)| e["type"].as_str().unwrap().starts_with("audit.key."))
    );
    assert!(listed(&node, "&since=2999-01-01T00:00:00Z").is_empty());
    // keymgr lists the same through the node.
    let out = node.keymgr(
        "officer",
        &[
            "audit", "--ledger", "--kind", "key", "--limit", "1000", "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    let via_keymgr: Vec<(u64, Value)> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["entry"].clone()))
        .collect();
    assert_eq!(via_keymgr, keys_only);
    let bad = node
        .client("officer")
        .request(node.addr, "GET", "/admin/v1/audit?until=yesterday", None)
        .unwrap();
    assert_eq!(
        (bad.status, bad.json()["code"].as_str()),
        (400, Some("invalid_request")),
        "{}",
        bad.text()
    );
    let not_officer = node
        .client("provider-a")
        .request(node.addr, "GET", "/admin/v1/audit", None)
        .unwrap();
    assert_eq!(not_officer.status, 403);
    // …and that refusal is an audit entry too.
    let all = listed(&node, "");
    let refused = find_first(&all, "audit.admin.refused").1;
    assert_eq!(
        (refused["actor"].as_str(), refused["target"].as_str()),
        (Some("provider-a"), Some("/admin/v1/audit"))
    );
    // The checkpoint an auditor saves now.
    let saved_note = node
        .client("officer")
        .request(node.addr, "GET", "/v1/checkpoint", None)
        .unwrap()
        .text();
    let note_path = tmp.path().join("saved.note");
    std::fs::write(&note_path, &saved_note).unwrap();
    assert_eq!(node.stop(), Some(0));

    // Offline, keymgr has no ledger to read and says where to look.
    let out = std::process::Command::new(e2e::keymgr_bin())
        .arg("--store")
        .arg(dir.join("data/keys"))
        .args(["audit", "--ledger"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with("keymgr: audit: ")
            && stderr(&out).contains("gateway ledger audit"),
        "{}",
        stderr(&out)
    );
    // Offline, the same trail.
    let out = gateway(&["ledger", "audit", "--data", dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let head: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let offline: Vec<(u64, Value)> = lines
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["index"].as_u64().unwrap(), v["entry"].clone()))
        .collect();
    assert_eq!(offline, all);
    assert!(head["tree_size"].as_u64().unwrap() > all.last().unwrap().0);
    let verify = |extra: &[&str]| {
        let mut args = vec!["ledger", "verify", "--data", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        gateway(&args)
    };
    let out = verify(&["--checkpoint", note_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The store rolled back to its copy from before the last start: it verifies on its own (a
    // shorter log), not against the saved checkpoint.
    let ledger_dir = dir.join("data/ledger");
    let tampered_dir = tmp.path().join("ledger-after");
    std::fs::rename(&ledger_dir, &tampered_dir).unwrap();
    copy_dir(&saved_dir, &ledger_dir);
    assert!(verify(&[]).status.success());
    let out = verify(&["--checkpoint", note_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("entries were removed from the end"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_dir_all(&ledger_dir).unwrap();
    std::fs::rename(&tampered_dir, &ledger_dir).unwrap();

    // One audit entry altered on disk (its leaf hash fixed up, as an attacker with the disk
    // would): verify names it.
    let (index, entry) = &find_first(&all, "audit.key.revoke");
    let mut forged = entry.clone();
    forged["actor"] = json!("someone-else");
    gateway::ledger::testing::Tamper::open(&gateway::ledger::store_dir(&dir.join("data")))
        .replace_entry(*index, serde_json::to_string(&forged).unwrap().as_bytes());
    let out = verify(&[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
}

fn find_first(all: &[(u64, Value)], kind: &str) -> (u64, Value) {
    all.iter()
        .find(|(_, e)| e["type"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
