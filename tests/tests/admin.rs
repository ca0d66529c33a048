//! Security officers acting on a running gateway: the admin API and `keymgr --gateway`.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use e2e::node::{Node, init_node};
use e2e::{keymgr_bin, stderr, stdout};
use serde_json::{Value, json};

/// `keymgr --gateway … <args>` as `who`.
fn remote(node: &Node, who: &str, args: &[&str]) -> std::process::Output {
    node.keymgr(who, args)
}

#[test]
fn a_non_officer_gets_403_on_every_admin_route() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    for who in ["provider-a", "provider-b"] {
        let c = node.client(who);
        for (method, path) in [
            ("GET", "/admin/v1/keys"),
            ("POST", "/admin/v1/keys"),
            ("GET", "/admin/v1/audit"),
            ("POST", "/admin/v1/reload"),
            ("DELETE", "/admin/v1/keys"),
            ("GET", "/admin/v1/anything/else"),
        ] {
            let a = c
                .request(
                    node.addr,
                    method,
                    path,
                    Some(br#"{"verb":"rotate","name":"pseudonym"}"#),
                )
                .unwrap();
            assert_eq!(
                (a.status, a.json()["code"].as_str()),
                (403, Some("forbidden")),
                "{who} {method} {path}: {}",
                a.text()
            );
        }
    }
    // And nothing was rotated.
    let keys: Value =
        serde_json::from_slice(&remote(&node, "officer", &["show", "pseudonym", "--json"]).stdout)
            .unwrap();
    assert_eq!(keys["key"]["primary"], 1);
}

#[test]
fn keymgr_against_a_running_gateway_gives_the_local_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start(&init_node(tmp.path()));
    let out = remote(&node, "officer", &["rotate", "pseudonym", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["key"]["primary"], 2);
    let remote_list = stdout(&remote(&node, "officer", &["list", "--json"]));
    let err = remote(&node, "officer", &["show", "nope"]);
    assert_eq!(
        (err.status.code(), stderr(&err)),
        (Some(1), "keymgr: show: no key named `nope`\n".to_owned())
    );
    let err = remote(&node, "provider-a", &["list"]);
    assert_eq!(
        stderr(&err),
        "keymgr: list: subject `provider-a` is not a security officer\n"
    );
    let audit: Value =
        serde_json::from_slice(&remote(&node, "officer", &["audit", "--json"]).stdout).unwrap();
    let last = audit["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["action"].as_str(), last["actor"].as_str()),
        (Some("rotate"), Some("officer"))
    );
    assert_eq!(node.stop(), Some(0));
    // The same question asked of the stopped node's store gets the same answer.
    let pass = std::fs::read_to_string(node.dir.join("kek.pass")).unwrap();
    let local = Command::new(keymgr_bin())
        .arg("--store")
        .arg(node.dir.join("data/keys"))
        .args(["list", "--json"])
        .env("LEDGERGATE_KEK_PASSPHRASE", pass.trim_end())
        .output()
        .unwrap();
    let strip_due = |t: &str| -> Value {
        let mut v: Value = serde_json::from_str(t).unwrap();
        for k in v["keys"].as_array_mut().unwrap() {
            k.as_object_mut().unwrap().remove("due");
        }
        v
    };
    let local_list = stdout(&local);
    let local_v = strip_due(&local_list);
    let remote_v = strip_due(&remote_list);
    // The request-mac key the node made on first start is in both.
    assert_eq!(local_v, remote_v);
}

#[test]
fn rotation_under_load_fails_nothing_and_every_record_names_the_version_it_used() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    e2e::node::unlimited_rate(&dir);
    let node = Node::start(&dir);
    let stop = Arc::new(AtomicBool::new(false));
    let submitter = {
        let (client, addr, stop) = (node.client("provider-a"), node.addr, Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut sent = 0u32;
            while !stop.load(Ordering::Acquire) {
                let body = json!({ "type": "loan_application", "id": format!("L-{sent}"), "fields": { "applicant_id": format!("P-{sent}"), "amount": 1, "currency": "EUR" } });
                match client.request(
                    addr,
                    "POST",
                    "/v1/records",
                    Some(body.to_string().as_bytes()),
                ) {
                    Ok(a) if a.status == 201 => {}
                    Ok(a) => failures.push(format!("{}: {}", a.status, a.text())),
                    Err(e) => failures.push(e),
                }
                sent += 1;
            }
            (sent, failures)
        })
    };
    for _ in 0..10 {
        let out = remote(&node, "officer", &["rotate", "pseudonym"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    stop.store(true, Ordering::Release);
    let (sent, failures) = submitter.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {sent} submissions failed during rotation: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(sent >= 10, "only {sent} submissions");

    // Each record names the version it used; versions never go backwards in ledger order, the last
    // records use the final primary, and `affected` lists exactly the records of each version.
    let mut by_version: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut last = 0;
    for (index, entry) in node.entries() {
        let version: u32 = entry["key_refs"][0]
            .as_str()
            .unwrap()
            .strip_prefix("pseudonym@")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            version >= last,
            "version went back from {last} to {version}"
        );
        last = version;
        by_version
            .entry(version)
            .or_default()
            .push(format!("ledger:{index}"));
    }
    assert!(
        by_version.len() > 1,
        "the load did not span a rotation: {:?}",
        by_version.keys()
    );
    for (version, records) in &by_version {
        let out = remote(
            &node,
            "officer",
            &[
                "affected",
                "pseudonym",
                "--version",
                &version.to_string(),
                "--json",
            ],
        );
        let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut listed: Vec<String> = listed["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        listed.sort_by_key(|r| r.trim_start_matches("ledger:").parse::<u64>().unwrap());
        assert_eq!(&listed, records, "affected pseudonym@{version}");
    }
}

#[test]
fn keys_with_a_rotation_period_are_rotated_by_the_running_gateway() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let config = dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}keys:\n  rotation_check_seconds: 1\n"),
    )
    .unwrap();
    let node = Node::start(&dir);
    let out = remote(
        &node,
        "officer",
        &[
            "create",
            "short-lived",
            "--purpose",
            "pseudonym",
            "--rotate-every",
            "2s",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rotated = e2e::eventually("the gateway to rotate the key", || {
        let v: Value = serde_json::from_slice(
            &remote(&node, "officer", &["show", "short-lived", "--json"]).stdout,
        )
        .ok()?;
        (v["key"]["primary"].as_u64()? >= 2).then_some(v)
    });
    assert_eq!(rotated["key"]["versions"][0]["state"], "deactivated");
    let audit: Value =
        serde_json::from_slice(&remote(&node, "officer", &["audit", "--json"]).stdout).unwrap();
    let auto = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "rotate" && e["key"] == "short-lived")
        .unwrap();
    assert_eq!(auto["actor"], "gateway");
    // Keys whose period has not passed are left alone.
    let pseudonym: Value =
        serde_json::from_slice(&remote(&node, "officer", &["show", "pseudonym", "--json"]).stdout)
            .unwrap();
    assert_eq!(pseudonym["key"]["primary"], 1);
}

#[test]
fn after_a_revocation_during_load_returns_no_record_carries_the_revoked_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    e2e::node::unlimited_rate(&dir);
    let node = Node::start(&dir);
    let stop = Arc::new(AtomicBool::new(false));
    let submitters: Vec<_> = (0..2)
        .map(|w| {
            let (client, addr, stop) = (node.client("provider-a"), node.addr, Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut other = Vec::new();
                let mut n = 0u32;
                while !stop.load(Ordering::Acquire) {
                    let body = json!({ "type": "loan_application", "id": format!("V{w}-{n}"), "fields": { "applicant_id": "P", "amount": 1, "currency": "EUR" } });
                    n += 1;
                    match client.request(addr, "POST", "/v1/records", Some(body.to_string().as_bytes())) {
                        Ok(a) if a.status == 201 => {}
                        Ok(a) if a.status == 503 && a.json()["code"] == "key_revoked" => {}
                        Ok(a) => other.push(format!("{}: {}", a.status, a.text())),
                        Err(e) => other.push(e),
                    }
                }
                other
            })
        })
        .collect();
    e2e::eventually("some records under version 1", || {
        (node.record_count() >= 10).then_some(())
    });
    let out = remote(
        &node,
        "officer",
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
    let cut = node.tree_size();
    assert!(
        remote(&node, "officer", &["rotate", "pseudonym"])
            .status
            .success()
    );
    e2e::eventually("records under version 2", || {
        (node.tree_size() >= cut + 10).then_some(())
    });
    stop.store(true, Ordering::Release);
    for s in submitters {
        let other = s.join().unwrap();
        assert!(
            other.is_empty(),
            "unexpected answers: {:?}",
            &other[..other.len().min(3)]
        );
    }
    for (index, entry) in node.entries() {
        let used = entry["key_refs"][0].as_str().unwrap().to_owned();
        if index >= cut {
            assert_eq!(
                used, "pseudonym@2",
                "entry {index}, appended after the revocation returned, used {used}"
            );
        }
    }
    assert!(cut >= 10);
}
