//! Risk control on a real node (docs/risk.md): a subject bursting past its baseline raises an alarm
//! and, with auto-quarantine on, is quarantined (403 `quarantined` on every route) until an officer
//! releases it; a source address that fails 50 TLS handshakes is blocked at accept while a good
//! client from another address is served; officers quarantine and release by the CLI; a non-officer
//! on an admin route is refused and recorded. All of it visible in `/admin/v1/alarms`, the audit
//! trail and the metrics.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use e2e::node::{Node, append_config, init_node};
use e2e::{eventually, stderr};
use serde_json::{Value, json};

fn loan(id: &str) -> Value {
    json!({ "type": "loan_application", "id": id, "fields": {
        "applicant_id": format!("P-{id}"), "amount": 10, "currency": "EUR", "salary": 1000 } })
}

/// `gateway risk <args>` against the node, as the officer.
fn risk(node: &Node, args: &[&str]) -> Value {
    let out = node.officer_cli("risk", args);
    assert!(out.status.success(), "risk {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A TCP connection to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(from.parse().unwrap(), 0).into())
        .unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

fn alarms(node: &Node) -> Vec<Value> {
    let answer = node
        .client("officer")
        .request(node.addr, "GET", "/admin/v1/alarms", None)
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()["alarms"].as_array().unwrap().clone()
}

#[test]
fn bursts_are_alarmed_and_quarantined_bad_sources_blocked_and_all_of_it_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    append_config(
        &dir,
        "risk: { rate_min: 20, rate_factor: 5, auto_quarantine: true, handshake_failures: 50 }",
    );
    let node = Node::start(&dir);
    let b = node.client("provider-b");

    // provider-b, with no baseline yet, sends 25 records in one window: the 20th raises the alarm
    // and quarantines it; the rest are refused.
    let statuses: Vec<u16> = (0..25)
        .map(|i| b.submit(node.addr, &loan(&format!("BURST-{i}"))).status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        20,
        "{statuses:?}"
    );
    let refused = b.submit(node.addr, &loan("BURST-X"));
    assert_eq!(
        (refused.status, refused.json()["code"].as_str()),
        (403, Some("quarantined")),
        "{}",
        refused.text()
    );
    // Every route, reads included.
    let read = b.request(node.addr, "GET", "/v1/checkpoint", None).unwrap();
    assert_eq!(read.status, 403);
    // Another subject is not affected.
    let a = node.client("provider-a");
    assert_eq!(a.submit(node.addr, &loan("A-1")).status, 201);

    let listed = alarms(&node);
    let burst = listed
        .iter()
        .find(|a| a["kind"] == "submission_burst")
        .unwrap_or_else(|| panic!("{listed:?}"));
    assert_eq!(burst["subject"], "provider-b");
    assert_eq!(burst["severity"], "high");
    assert_eq!(burst["response"], json!(["quarantined"]));
    assert_eq!(burst["evidence"]["submissions_in_window"], 20);
    let quarantined = risk(&node, &["quarantined"]);
    assert_eq!(quarantined["quarantined"][0]["subject"], "provider-b");
    assert_eq!(quarantined["quarantined"][0]["by"], "gateway");

    // The officer releases it; it works again.
    let released = risk(&node, &["release", "provider-b"]);
    assert_eq!(released["changed"], true);
    assert_eq!(b.submit(node.addr, &loan("AFTER-RELEASE")).status, 201);

    // An officer quarantines provider-a by hand, and releases it.
    let q = risk(
        &node,
        &["quarantine", "provider-a", "--reason", "investigating"],
    );
    assert_eq!(q["changed"], true);
    let refused = a.submit(node.addr, &loan("A-2"));
    assert_eq!(refused.json()["code"], "quarantined");
    risk(&node, &["release", "provider-a"]);
    assert_eq!(a.submit(node.addr, &loan("A-2")).status, 201);
    // A subject the policy does not have cannot be quarantined.
    let unknown = node
        .client("officer")
        .request(
            node.addr,
            "POST",
            "/admin/v1/quarantine",
            Some(br#"{"subject":"nobody"}"#),
        )
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.json()["code"].as_str()),
        (404, Some("not_found"))
    );

    // A non-officer on an admin route: refused, and in the trail.
    let denied = a
        .request(node.addr, "GET", "/admin/v1/alarms", None)
        .unwrap();
    assert_eq!(denied.status, 403);

    // 50 failed handshakes from 127.0.0.2: blocked at accept; 127.0.0.1 is still served.
    for _ in 0..50 {
        let mut s = connect_from("127.0.0.2", node.addr);
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
    eventually("the source to be blocked", || {
        alarms(&node)
            .iter()
            .any(|a| a["kind"] == "handshake_failures" && a["source"] == "127.0.0.2")
            .then_some(())
    });
    let mut s = connect_from("127.0.0.2", node.addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = std::time::Instant::now();
    let mut byte = [0u8; 1];
    // Closed at accept: end of stream (or a reset) at once, not the handshake timeout.
    let read = s.read(&mut byte);
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(a.submit(node.addr, &loan("A-3")).status, 201);
    let handshakes = alarms(&node)
        .into_iter()
        .find(|a| a["kind"] == "handshake_failures")
        .unwrap();
    assert_eq!(handshakes["response"], json!(["blocked"]));

    // Metrics and the audit trail.
    let (_, metrics) = node.monitoring("/metrics");
    for series in [
        r#"ledgergate_alarms_total{kind="submission_burst"} 1"#,
        r#"ledgergate_alarms_total{kind="handshake_failures"} 1"#,
    ] {
        assert!(metrics.contains(series), "{series} in:\n{metrics}");
    }
    assert!(e2e::node::sample(&metrics, "ledgergate_connections_blocked_total").unwrap() >= 1.0);
    let trail = eventually("the risk events in the audit trail", || {
        let trail: Vec<Value> = node.audit_entries().into_iter().map(|(_, e)| e).collect();
        let has = |kind: &str, actor: &str| {
            trail
                .iter()
                .any(|e| e["type"] == kind && e["actor"] == actor)
        };
        (has("audit.alarm.submission_burst", "gateway")
            && has("audit.risk.quarantine", "gateway")
            && has("audit.risk.release", "officer")
            && has("audit.risk.quarantine", "officer")
            && has("audit.alarm.handshake_failures", "gateway")
            && has("audit.admin.refused", "provider-a"))
        .then_some(trail)
    });
    let alarm = trail
        .iter()
        .find(|e| e["type"] == "audit.alarm.submission_burst")
        .unwrap();
    assert_eq!(alarm["target"], "subject provider-b");
    assert_eq!(alarm["details"]["evidence"]["submissions_in_window"], 20);
    let refusal = trail
        .iter()
        .find(|e| e["type"] == "audit.admin.refused")
        .unwrap();
    assert_eq!(refusal["target"], "/admin/v1/alarms");
    // No record content in any of it.
    for e in &trail {
        assert!(!e.to_string().contains("P-BURST"), "{e}");
    }
}

#[test]
fn a_quarantine_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let mut node = Node::start(&dir);
    risk(&node, &["quarantine", "provider-b", "--reason", "kept"]);
    assert_eq!(node.stop(), Some(0));
    let node = Node::start(&dir);
    let refused = node
        .client("provider-b")
        .submit(node.addr, &loan("AFTER-RESTART"));
    assert_eq!(refused.json()["code"], "quarantined", "{}", refused.text());
    let listed = risk(&node, &["quarantined"]);
    assert_eq!(listed["quarantined"][0]["reason"], "kept");
}
