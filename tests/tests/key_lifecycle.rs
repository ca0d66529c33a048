//! A security officer's key changes on a running node, each taking effect before the command returns:
//! a compromised checkpoint key stops signing at once (and `ledger verify` names what it signed after
//! the compromise), pseudonym and request-MAC keys change on the next request, a shredded subject is a
//! clear state, and key listings page through a store of many subjects.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use base64::Engine as _;
use e2e::node::{Node, init_node, unlimited_rate};
use e2e::{gateway, stderr, stdout};
use serde_json::{Value, json};

fn loan(id: &str, applicant: &str) -> Value {
    json!({ "type": "loan_application", "id": id, "fields": {
        "applicant_id": applicant, "salary": 61000, "amount": 1000, "currency": "EUR" } })
}

/// Runs `keymgr --gateway` as the officer and returns its JSON answer, failing on an error.
fn officer(node: &Node, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = node.keymgr("officer", &all);
    assert!(out.status.success(), "keymgr {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The key id (hex) on the signature lines of a note.
fn signer_ids(note: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let block = note.rsplit_once("\n\n").unwrap().1;
    block
        .lines()
        .map(|line| {
            let sig = line.rsplit_once(' ').unwrap().1;
            hex::encode(&b64.decode(sig).unwrap()[..4])
        })
        .collect()
}

/// The key id (hex) in a C2SP vkey.
fn vkey_id(vkey: &str) -> String {
    vkey.trim().split('+').nth(1).unwrap().to_owned()
}

fn get(node: &Node, path: &str) -> e2e::client::Answer {
    node.client("provider-b")
        .request(node.addr, "GET", path, None)
        .unwrap()
}

fn verify(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["ledger", "verify", "--data", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    gateway(&args)
}

#[test]
fn a_compromised_checkpoint_key_stops_signing_at_once_and_verify_names_what_it_signed_after() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let mut node = Node::start(&dir);
    let a = node.client("provider-a");
    let v1 = get(&node, "/v1/checkpoint/key").text();
    // The leak happened after the node's own first entries (its start, its keys: a second before)
    // and before these three were signed.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let leaked_at = time::OffsetDateTime::now_utc();
    let leaked_text = leaked_at
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    // The node's own audit entries come first.
    let base = node.tree_size();
    for id in ["C-1", "C-2", "C-3"] {
        assert_eq!(a.submit(node.addr, &loan(id, "P-1")).status, 201);
    }
    officer(
        &node,
        &[
            "revoke",
            "checkpoint-signing",
            "--version",
            "1",
            "--reason",
            "compromised",
            "--occurred-at",
            &leaked_text,
        ],
    );
    // At once: nothing more is signed by the compromised key, and its public key is not served as
    // the current one.
    let refused = a.submit(node.addr, &loan("C-4", "P-1"));
    assert_eq!(
        (refused.status, refused.json()["code"].as_str()),
        (503, Some("key_revoked")),
        "{}",
        refused.text()
    );
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains("no usable checkpoint-signing key"),
        "{}",
        refused.text()
    );
    let key = get(&node, "/v1/checkpoint/key");
    assert_eq!(
        (key.status, key.json()["code"].as_str()),
        (503, Some("key_revoked"))
    );
    let keys = get(&node, "/v1/checkpoint/keys").json();
    assert_eq!(keys["current"], Value::Null);
    assert_eq!(keys["keys"][0]["vkey"], v1.trim());
    assert_eq!(keys["keys"][0]["state"], "compromised");
    assert_eq!(keys["keys"][0]["compromised_at"], leaked_text.as_str());
    assert_eq!(node.stop(), Some(0));

    // Offline, the verifier names every checkpoint the key signed after the leak, and fails.
    let out = verify(&dir, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("gateway: ledger verify: ")
            && err.contains("signed by a compromised key at or after its compromise, and the head is not signed by a sound key")
            && err.contains(&format!("size {} by ledgergate.local/log+", base + 3)),
        "{err}"
    );

    // The node starts without a usable key (so that officers can act) and still appends nothing.
    let mut node = Node::start(&dir);
    assert_eq!(a.submit(node.addr, &loan("C-4", "P-1")).status, 503);
    let rotated = officer(&node, &["rotate", "checkpoint-signing"]);
    assert_eq!(rotated["key"]["primary"], 2);
    let v2 = get(&node, "/v1/checkpoint/key").text();
    assert_ne!(v2, v1);
    // The head was countersigned by the new key alone (the compromised signature proves nothing).
    let head = get(&node, "/v1/checkpoint").text();
    assert_eq!(signer_ids(&head), vec![vkey_id(&v2)]);
    let ok = a.submit(node.addr, &loan("C-4", "P-1"));
    assert_eq!(ok.status, 201, "{}", ok.text());
    let receipt = ok.json()["checkpoint"].as_str().unwrap().to_owned();
    assert_eq!(signer_ids(&receipt), vec![vkey_id(&v2)]);
    let history = get(&node, "/v1/checkpoint/keys");
    std::fs::write(tmp.path().join("keys.json"), history.text()).unwrap();
    assert_eq!(history.json()["current"], v2.trim());
    assert_eq!(node.stop(), Some(0));

    // A sound head vouches for the entries again: verify passes and still lists the old notes.
    for extra in [
        &[][..],
        &[
            "--checkpoint-keys",
            tmp.path().join("keys.json").to_str().unwrap(),
        ][..],
    ] {
        let out = verify(&dir, extra);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("checkpoint(s) were signed by a compromised key after its compromise")
                // The head then (base + 3) was countersigned by the new key; the two before it
                // are still the compromised key's notes.
                && text
                    .trim_end()
                    .ends_with(&format!(": {}, {}", base + 1, base + 2)),
            "{text}"
        );
    }
}

#[test]
fn pseudonym_and_request_mac_changes_take_effect_on_the_next_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let node = Node::start(&dir);
    let a = node.client("provider-a");
    assert_eq!(a.submit(node.addr, &loan("P-1", "S")).status, 201);
    officer(&node, &["rotate", "pseudonym"]);
    assert_eq!(a.submit(node.addr, &loan("P-2", "S")).status, 201);
    let read = |id: &str| {
        a.request(node.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap()
            .json()
    };
    assert_eq!(read("P-1")["record"]["key_refs"], json!(["pseudonym@1"]));
    assert_eq!(read("P-2")["record"]["key_refs"], json!(["pseudonym@2"]));
    for key in ["pseudonym", "request-mac"] {
        let shown = officer(&node, &["show", key]);
        let version = shown["key"]["primary"].to_string();
        officer(
            &node,
            &[
                "revoke",
                key,
                "--version",
                &version,
                "--reason",
                "compromised",
            ],
        );
        let refused = a.submit(node.addr, &loan(&format!("P-{key}"), "S"));
        assert_eq!(
            (refused.status, refused.json()["code"].as_str()),
            (503, Some("key_revoked")),
            "{key}: {}",
            refused.text()
        );
        officer(&node, &["rotate", key]);
        let ok = a.submit(node.addr, &loan(&format!("P-{key}"), "S"));
        assert_eq!(ok.status, 201, "{key}: {}", ok.text());
    }
}

#[test]
fn shredding_is_a_clear_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let node = Node::start(&dir);
    let a = node.client("provider-a");
    assert_eq!(a.submit(node.addr, &loan("S-1", "subject-7")).status, 201);
    let shred = officer(&node, &["shred", "--subject", "subject-7"]);
    assert_eq!(shred["shred"]["destroyed"], json!([1]));
    // A new record for the subject gets a fresh key: the erasure covers the past only.
    let fresh = a.submit(node.addr, &loan("S-2", "subject-7"));
    assert_eq!(fresh.status, 201, "{}", fresh.text());
    let read = |id: &str| {
        a.request(node.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap()
            .json()
    };
    assert_eq!(
        read("S-1")["sealed"]["salary"],
        json!({ "status": "shredded" })
    );
    assert_eq!(
        read("S-2")["sealed"]["salary"],
        json!({ "status": "sealed", "value": 61000 })
    );
    // A subject with records but nothing sealed: the shred succeeds and says so.
    let plain = json!({ "type": "loan_application", "id": "S-3", "fields": {
        "applicant_id": "subject-8", "amount": 5, "currency": "EUR" } });
    assert_eq!(a.submit(node.addr, &plain).status, 201);
    let out = node.keymgr("officer", &["shred", "--subject", "subject-8"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("no sealed values were ever stored for this subject: nothing to destroy"),
        "{}",
        stdout(&out)
    );
    // And the node's log never carries the subject id.
    let audit = officer(&node, &["audit"]);
    let last = audit["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["action"].as_str(), last["detail"].as_str()),
        (Some("shred"), Some("nothing to destroy"))
    );
    assert!(!audit.to_string().contains("subject-8"));
}

#[test]
fn key_listings_leave_subject_keys_out_and_page_through_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    unlimited_rate(&dir);
    let node = Node::start(&dir);
    let a = node.client("provider-a");
    const SUBJECTS: usize = 3000;
    let lines: Vec<String> = (0..SUBJECTS)
        .map(|i| loan(&format!("L-{i}"), &format!("subject-{i}")).to_string())
        .collect();
    for chunk in lines.chunks(1000) {
        let body = chunk.join("\n");
        let answer = a
            .request(
                node.addr,
                "POST",
                "/v1/records:batch",
                Some(body.as_bytes()),
            )
            .unwrap();
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    // The default listing is the managed keys only.
    let managed = officer(&node, &["list"]);
    let names: Vec<&str> = managed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "channel-static",
            "checkpoint-signing",
            "node-identity",
            "pseudonym",
            "request-mac"
        ]
    );
    assert_eq!(managed.get("next"), None);
    // Subject keys a page at a time, through the CLI and the admin API's cursor alike.
    let mut seen = 0;
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["list", "--subjects", "--limit", "1000"];
        if let Some(a) = &after {
            args.extend(["--after", a.as_str()]);
        }
        let page = officer(&node, &args);
        seen += page["keys"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, SUBJECTS);
    let o = node.client("officer");
    let page = o
        .request(
            node.addr,
            "GET",
            "/admin/v1/keys?subjects=true&limit=2",
            None,
        )
        .unwrap()
        .json();
    let next = page["next"].as_str().unwrap().to_owned();
    assert_eq!(page["keys"].as_array().unwrap().len(), 2);
    let page2 = o
        .request(
            node.addr,
            "GET",
            &format!("/admin/v1/keys?subjects=true&limit=2&after={next}"),
            None,
        )
        .unwrap()
        .json();
    assert!(page2["keys"][0]["name"].as_str().unwrap() > next.as_str());
    let bad = o
        .request(node.addr, "GET", "/admin/v1/keys?limit=many", None)
        .unwrap();
    assert_eq!(
        (bad.status, bad.json()["code"].as_str()),
        (400, Some("invalid_request"))
    );
    // The audit trail and the records a version touched page the same way.
    let audit = o
        .request(node.addr, "GET", "/admin/v1/audit?limit=2", None)
        .unwrap()
        .json();
    let listed = audit["entries"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{audit}");
    assert_eq!(audit["next"], listed[1]["index"].as_u64().unwrap() + 1);
    let affected = officer(
        &node,
        &["affected", "pseudonym", "--version", "1", "--limit", "10"],
    );
    assert_eq!(affected["records"].as_array().unwrap().len(), 10);
    let next = affected["next"].as_str().unwrap().to_owned();
    assert_eq!(affected["records"][9], next.as_str());
    let rest = officer(
        &node,
        &[
            "affected",
            "pseudonym",
            "--version",
            "1",
            "--after",
            &next,
            "--limit",
            "10000",
        ],
    );
    assert_eq!(rest["records"].as_array().unwrap().len(), SUBJECTS - 10);
}

#[test]
fn a_node_whose_checkpoint_key_is_destroyed_starts_and_refuses_submissions_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let pass = std::fs::read_to_string(dir.join("kek.pass")).unwrap();
    let local = |args: &[&str]| {
        let out = std::process::Command::new(e2e::keymgr_bin())
            .arg("--store")
            .arg(dir.join("data/keys"))
            .args(args)
            .env("LEDGERGATE_KEK_PASSPHRASE", pass.trim_end())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    };
    // Before: `gateway: serve: key-encryption key: key store`, the cause dropped, and no node.
    local(&[
        "schedule-destroy",
        "checkpoint-signing",
        "--version",
        "1",
        "--window",
        "0s",
        "--force",
    ]);
    local(&["destroy", "checkpoint-signing", "--version", "1"]);
    let node = Node::start(&dir);
    let refused = node
        .client("provider-a")
        .submit(node.addr, &loan("D-1", "P"));
    assert_eq!(
        (refused.status, refused.json()["code"].as_str()),
        (503, Some("key_revoked")),
        "{}",
        refused.text()
    );
    // Rotating brings the destroyed key back into service with fresh material.
    officer(&node, &["rotate", "checkpoint-signing"]);
    assert_eq!(
        node.client("provider-a")
            .submit(node.addr, &loan("D-1", "P"))
            .status,
        201
    );
}
