//! Two real processes: a ledger node and an edge in front of it (`chain: remote`). Providers talk
//! to the edge as they would to a node; their records land on the ledger node and verify; the edge
//! holds no storage and no storage keys; with the ledger node killed the edge answers 503 at once,
//! and once it is back the edge reconnects by itself and nothing acknowledged was lost.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::load::{Load, loan};
use e2e::node::{
    Node, append_config, free_port, identity_of_seed, init_node, make_edge, node_identity,
    unlimited_rate, verify_ledger,
};
use e2e::stderr;
use serde_json::{Value, json};

fn every_file(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The edge's Ed25519 identity seed in [`pair`].
const EDGE_SEED: [u8; 32] = [21u8; 32];

/// The edge's identity, as `keymgr show node-identity` would print it on the edge.
fn edge_identity() -> String {
    identity_of_seed(EDGE_SEED)
}

/// A ledger node and an edge in front of it, made by hand as an operator would (the edge's keys in
/// a 0600 file, the ledger node's `channel` section naming the edge); `timers` (YAML) goes into
/// both sides' channel settings.
fn pair(tmp: &Path, timers: &str) -> (PathBuf, PathBuf) {
    let ledger_dir = init_node(&tmp.join("l"));
    // The loads below run submitters flat out: the development policy's rate would refuse them.
    unlimited_rate(&ledger_dir);
    let edge_dir = tmp.join("edge");
    let edge_identity = edge_identity();
    let channel = free_port();
    append_config(
        &ledger_dir,
        &format!(
            "channel: {{ listen: \"{channel}\", peers: [{{ name: edge-1, identity: \"{edge_identity}\" }}]{timers} }}"
        ),
    );
    make_edge(&edge_dir, &ledger_dir, channel, EDGE_SEED, timers);
    (ledger_dir, edge_dir)
}

#[test]
fn an_edge_forwards_to_its_ledger_node_holds_no_storage_and_survives_the_node_dying() {
    let tmp = tempfile::tempdir().unwrap();
    let (ledger_dir, edge_dir) = pair(tmp.path(), "");
    let mut ledger = Node::start(&ledger_dir);
    let mut edge = Node::start(&edge_dir);
    let provider = edge.client("provider-a");
    // The edge connects to its ledger node by itself.
    edge.wait_ready();
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let id = format!("EDGE-{i}");
        let answer = provider.submit(edge.addr, &loan(&id));
        assert_eq!(answer.status, 201, "{}", answer.text());
        acknowledged.push(id);
    }
    // Reads, sealed values and checkpoints through the edge, as on the node itself.
    let read = provider
        .request(edge.addr, "GET", "/v1/records/EDGE-0", None)
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["sealed"]["salary"]["value"], 61000.5);
    let checkpoint = provider
        .request(edge.addr, "GET", "/v1/checkpoint", None)
        .unwrap();
    assert!(
        checkpoint
            .text()
            .starts_with(&format!("ledgergate.local/log\n{}\n", ledger.tree_size())),
        "{}",
        checkpoint.text()
    );
    // Refusals are the ledger node's own problems, passed on.
    let mut bad = loan("EDGE-BAD");
    bad["fields"]["currency"] = json!("XXX");
    let refused = provider.submit(edge.addr, &bad);
    assert_eq!(
        (refused.status, refused.json()["code"].clone()),
        (422, json!("invalid_field"))
    );

    // The edge has no storage and no storage keys: TLS material, policies, its channel keys.
    for file in every_file(&edge_dir) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.ends_with(".redb") && name != "kek.pass" && name != "kek.key",
            "an edge holds {}",
            file.display()
        );
    }
    assert!(!edge_dir.join("data").exists());

    // The ledger node is killed mid-stream, under load through the edge: whatever the edge
    // acknowledged must be on the ledger after the restart; the rest is 503, never a hang.
    let load = Load::start(&edge, 4, "LOAD", &[503]);
    std::thread::sleep(Duration::from_millis(700));
    ledger.crash();
    std::thread::sleep(Duration::from_millis(700));
    acknowledged.extend(load.stop());
    assert!(
        acknowledged.len() > 10,
        "the load made records before the kill"
    );

    // The ledger node is dead: the edge answers 503 at once, not a hang and not garbage.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = Instant::now();
        let answer = provider.submit(edge.addr, &loan("EDGE-DOWN"));
        assert!(t.elapsed() < Duration::from_secs(11), "the edge hung");
        if answer.status == 503 {
            assert_eq!(answer.json()["code"], "unavailable", "{}", answer.text());
            assert_eq!(answer.content_type, "application/problem+json");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after the node died",
            answer.status
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(edge.monitoring("/readyz").0, 503);

    // It comes back: the edge reconnects by itself and takes records again.
    let mut ledger = Node::start(&ledger_dir);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let answer = provider.submit(edge.addr, &loan("EDGE-AFTER"));
        if answer.status == 201 || answer.status == 200 {
            acknowledged.push("EDGE-AFTER".into());
            break;
        }
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert!(Instant::now() < deadline, "the edge never reconnected");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Everything acknowledged is on the ledger, each readable by its provider on the ledger node
    // itself (a record in flight at the kill may be there too, unacknowledged); the ledger verifies.
    assert!(ledger.record_count() >= acknowledged.len() as u64);
    let direct = ledger.client("provider-a");
    for id in &acknowledged {
        let read = direct
            .request(ledger.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap();
        assert_eq!(read.status, 200, "{id}: {}", read.text());
    }
    assert_eq!(edge.stop(), Some(0));
    assert_eq!(ledger.stop(), Some(0));
    verify_ledger(&ledger_dir);
}

/// `gateway init --role edge --ledger DIR` makes a working pair with the development ledger node.
#[test]
fn init_makes_an_edge_for_a_development_ledger_node() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger_dir = init_node(tmp.path());
    let edge_dir = tmp.path().join("edge");
    let out = e2e::gateway(&[
        "init",
        "--role",
        "edge",
        "--ledger",
        ledger_dir.to_str().unwrap(),
        "--dir",
        edge_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        made["ledger_identity"].as_str().unwrap(),
        node_identity(&ledger_dir)
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(edge_dir.join("channel.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!edge_dir.join("data").exists() && !edge_dir.join("kek.pass").exists());
    // Once only: the ledger node's channel section is there now.
    let again = e2e::gateway(&[
        "init",
        "--role",
        "edge",
        "--ledger",
        ledger_dir.to_str().unwrap(),
        "--dir",
        tmp.path().join("edge2").to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already has a channel section"),
        "{}",
        stderr(&again)
    );
    assert_eq!(stderr(&again).lines().count(), 1);

    let ledger = Node::start(&ledger_dir);
    let edge = Node::start(&edge_dir);
    edge.wait_ready();
    let answer = edge
        .client("provider-a")
        .submit(edge.addr, &loan("INIT-PAIR-1"));
    assert_eq!(answer.status, 201, "{}", answer.text());
    assert_eq!(ledger.record_count(), 1);
}

/// With timers shortened to seconds, the edge's link rekeys (fresh ephemerals) again and again under
/// continuous submissions: every submission is acknowledged, none twice, and the ledger verifies.
#[test]
fn rekeys_under_continuous_traffic_lose_and_duplicate_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let timers = ", timers: { rekey_after_seconds: 1, reject_after_seconds: 3, rekey_timeout_seconds: 1, keepalive_seconds: 1 }";
    let (ledger_dir, edge_dir) = pair(tmp.path(), timers);
    let ledger = Node::start(&ledger_dir);
    let edge = Node::start(&edge_dir);
    edge.wait_ready();
    let rekeys = |node: &Node| {
        node.metric("ledgergate_channel_rekeys_total")
            .unwrap_or(0.0)
    };
    let before = rekeys(&ledger);
    // Not one refusal, not one 503: the switch of keys is invisible to providers.
    let load = Load::start(&edge, 3, "REKEY", &[]);
    std::thread::sleep(Duration::from_secs(6));
    let acknowledged = load.stop();
    // Keys are replaced every second: several rekeys happened while records flowed.
    let done = rekeys(&ledger) - before;
    assert!(done >= 3.0, "only {done} rekeys in 6 s");
    assert!(rekeys(&edge) >= 3.0);
    // Exactly the acknowledged records, each once.
    assert_eq!(ledger.record_count(), acknowledged.len() as u64);
    let direct = ledger.client("provider-a");
    for id in acknowledged.iter().step_by(7) {
        let read = direct
            .request(ledger.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap();
        assert_eq!(read.status, 200, "{id}: {}", read.text());
    }
    drop(edge);
    let mut ledger = ledger;
    assert_eq!(ledger.stop(), Some(0));
    verify_ledger(&ledger_dir);
}

/// `keymgr revoke-peer` on the ledger node, through its admin API: the edge loses its session within
/// a second, cannot get another, and stays out after the ledger node restarts; the revocation is in
/// the audit trail.
#[test]
fn a_peer_revoked_with_keymgr_is_cut_off_within_a_second_and_stays_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (ledger_dir, edge_dir) = pair(tmp.path(), "");
    let mut ledger = Node::start(&ledger_dir);
    let edge = Node::start(&edge_dir);
    edge.wait_ready();
    let provider = edge.client("provider-a");
    assert_eq!(
        provider.submit(edge.addr, &loan("BEFORE-REVOKE")).status,
        201
    );

    let identity = edge_identity();
    let out = ledger.keymgr(
        "officer",
        &[
            "--json",
            "revoke-peer",
            &identity,
            "--reason",
            "compromised",
        ],
    );
    let revoked = Instant::now();
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["peers"][0]["identity"], json!(identity));
    assert_eq!(answer["peers"][0]["reason"], "compromised");
    assert_eq!(answer["peers"][0]["revoked_by"], "officer");
    // The session is gone within a second: the edge's link is down and it says so.
    while edge.monitoring("/readyz").0 == 200 {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "the revoked edge still had its session after a second"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = provider.submit(edge.addr, &loan("AFTER-REVOKE"));
    assert_eq!(
        (refused.status, refused.json()["code"].clone()),
        (503, json!("unavailable"))
    );
    // Its reconnections are refused at the handshake.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(edge.monitoring("/readyz").0, 503);
    let (_, metrics) = ledger.monitoring("/metrics");
    assert!(
        metrics.contains(r#"ledgergate_channel_handshakes_total{outcome="failed"}"#),
        "{metrics}"
    );

    // Listed, once; a second revocation and a malformed identity are refused with one line.
    let listed = ledger.keymgr("officer", &["--json", "revoked-peers"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["peers"].as_array().unwrap().len(), 1);
    let again = ledger.keymgr(
        "officer",
        &["revoke-peer", &identity, "--reason", "compromised"],
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already revoked"),
        "{}",
        stderr(&again)
    );
    assert_eq!(stderr(&again).lines().count(), 1);
    let bad = ledger.keymgr("officer", &["revoke-peer", "abc", "--reason", "retired"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("`abc` is not an identity: expected 64 hex digits"),
        "{}",
        stderr(&bad)
    );
    // Only officers revoke: a provider is refused.
    let provider_try = ledger.keymgr(
        "provider-a",
        &["revoke-peer", &"11".repeat(32), "--reason", "retired"],
    );
    assert!(!provider_try.status.success());

    // In the audit trail, with who did it.
    let audit = ledger.keymgr("officer", &["--json", "audit"]);
    let audit: Value = serde_json::from_slice(&audit.stdout).unwrap();
    let event = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "revoke-peer")
        .expect("a revoke-peer event");
    assert_eq!(event["actor"], "officer");
    assert!(event["detail"].as_str().unwrap().contains(&identity));

    // Durable: after a restart of the ledger node the edge is still refused.
    assert_eq!(ledger.stop(), Some(0));
    let ledger = Node::start(&ledger_dir);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(edge.monitoring("/readyz").0, 503);
    assert_eq!(ledger.record_count(), 1);
}

/// An edge checks records itself before they cross: each bad submission gets exactly the ledger
/// node's answer, and still gets it with the ledger node stopped (so it was the edge's); a batch's
/// bad lines are answered by the edge and its good lines by the ledger node, in the client's order.
#[test]
fn an_edge_refuses_bad_records_itself_with_the_ledger_nodes_own_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let (ledger_dir, edge_dir) = pair(tmp.path(), "");
    let mut ledger = Node::start(&ledger_dir);
    let edge = Node::start(&edge_dir);
    edge.wait_ready();
    let provider = edge.client("provider-a");
    let direct = ledger.client("provider-a");
    let good = loan("CHECK-OK");
    let mut missing = loan("CHECK-MISSING");
    missing["fields"]
        .as_object_mut()
        .unwrap()
        .remove("applicant_id");
    let mut unknown_field = loan("CHECK-UNKNOWN-FIELD");
    unknown_field["fields"]["shoe_size"] = json!(44);
    let mut mistyped = loan("CHECK-MISTYPED");
    mistyped["fields"]["amount"] = json!("ten");
    let mut constrained = loan("CHECK-CURRENCY");
    constrained["fields"]["currency"] = json!("XXX");
    let mut fractional = loan("CHECK-FRACTION");
    fractional["fields"]["term_months"] = json!(10.5);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("not json", b"{\"type\": \"loan_application\", ".to_vec()),
        ("not an object", b"[1, 2]".to_vec()),
        (
            "unknown type",
            json!({"type": "nope", "id": "X", "fields": {}})
                .to_string()
                .into_bytes(),
        ),
        (
            "envelope field",
            json!({"type": "loan_application", "id": "X", "fields": {}, "extra": 1})
                .to_string()
                .into_bytes(),
        ),
        ("missing field", missing.to_string().into_bytes()),
        ("unknown field", unknown_field.to_string().into_bytes()),
        ("mistyped field", mistyped.to_string().into_bytes()),
        ("constraint", constrained.to_string().into_bytes()),
        ("fractional integer", fractional.to_string().into_bytes()),
    ];
    let answer = |client: &e2e::client::Client, addr, body: &[u8]| {
        let a = client
            .request(addr, "POST", "/v1/records", Some(body))
            .unwrap();
        assert_eq!(a.content_type, "application/problem+json", "{}", a.text());
        let v = a.json();
        (a.status, v["code"].clone(), v["detail"].clone())
    };
    let mut expected = Vec::new();
    for (name, body) in &bad {
        let from_ledger = answer(&direct, ledger.addr, body);
        assert!(
            (400..500).contains(&from_ledger.0),
            "{name}: {from_ledger:?}"
        );
        assert_eq!(answer(&provider, edge.addr, body), from_ledger, "{name}");
        expected.push(from_ledger);
    }
    assert_eq!(ledger.record_count(), 0);

    // The ledger node stopped: the same answers, from the edge alone; a good record waits (503).
    assert_eq!(ledger.stop(), Some(0));
    while edge.monitoring("/readyz").0 == 200 {
        std::thread::sleep(Duration::from_millis(20));
    }
    for ((name, body), want) in bad.iter().zip(&expected) {
        assert_eq!(
            &answer(&provider, edge.addr, body),
            want,
            "{name}, ledger node down"
        );
    }
    assert_eq!(provider.submit(edge.addr, &good).status, 503);
    // A batch of bad lines only: answered by the edge, one line each, in order.
    let all_bad: Vec<u8> = [&bad[4].1, &bad[6].1]
        .map(|b| [b.as_slice(), b"\n"].concat())
        .concat();
    let a = provider
        .request(edge.addr, "POST", "/v1/records:batch", Some(&all_bad))
        .unwrap();
    assert_eq!(
        (a.status, a.content_type.as_str()),
        (200, "application/x-ndjson"),
        "{}",
        a.text()
    );
    let lines: Vec<Value> = a
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| (l["line"].clone(), l["code"].clone()))
            .collect::<Vec<_>>(),
        vec![
            (json!(1), expected[4].1.clone()),
            (json!(2), expected[6].1.clone())
        ]
    );

    // Back up: a mixed batch; the good lines are the ledger node's, renumbered to their places.
    let ledger = Node::start(&ledger_dir);
    edge.wait_ready();
    let mixed = [
        loan("MIX-1").to_string(),
        String::from_utf8(bad[7].1.clone()).unwrap(),
        String::new(),
        loan("MIX-2").to_string(),
        String::from_utf8(bad[5].1.clone()).unwrap(),
    ]
    .join("\n");
    let a = provider
        .request(
            edge.addr,
            "POST",
            "/v1/records:batch",
            Some(mixed.as_bytes()),
        )
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    let got: Vec<(Value, Value)> = a
        .text()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|l| (l["line"].clone(), l["status"].clone()))
        .collect();
    // The blank line is not a line, as on a single node.
    assert_eq!(
        got,
        vec![
            (json!(1), json!(201)),
            (json!(2), json!(422)),
            (json!(3), json!(201)),
            (json!(4), json!(422))
        ]
    );
    assert_eq!(ledger.record_count(), 2);
    let single = direct
        .request(
            ledger.addr,
            "POST",
            "/v1/records:batch",
            Some(mixed.replace("MIX-", "DIRECT-").as_bytes()),
        )
        .unwrap();
    let direct_got: Vec<(Value, Value)> = single
        .text()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|l| (l["line"].clone(), l["status"].clone()))
        .collect();
    assert_eq!(
        direct_got, got,
        "the edge's batch answer is the single node's"
    );
}

/// What the tampering relay does to the edge's second transport frame on a connection.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// One bit of the ciphertext flipped.
    Flip,
    /// The frame sent twice.
    Replay,
    /// The frame one byte short (its length field too: the stream stays in step).
    Truncate,
}

/// The faults, one per connection in this order; later connections pass untouched.
const FAULTS: [Fault; 3] = [Fault::Flip, Fault::Replay, Fault::Truncate];

/// A relay between the edge and its ledger node that reads the edge's frames (`u16` length ‖ body)
/// and damages one per connection (`FAULTS`); counts connections in `connections`.
async fn tampering_relay(
    to: std::net::SocketAddr,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let n = connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let fault = FAULTS.get(n).copied();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let (mut from_edge, mut to_edge) = inbound.into_split();
                let (mut from_ledger, mut to_ledger) = outbound.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_ledger, &mut to_edge).await;
                });
                let frame = |body: &[u8]| {
                    let len = u16::try_from(body.len()).unwrap();
                    [&len.to_be_bytes()[..], body].concat()
                };
                // Frames 0 and 1 are the edge's handshake messages; 2 on are transport.
                for index in 0usize.. {
                    let mut head = [0u8; 2];
                    if from_edge.read_exact(&mut head).await.is_err() {
                        break;
                    }
                    let mut body = vec![0u8; usize::from(u16::from_be_bytes(head))];
                    if from_edge.read_exact(&mut body).await.is_err() {
                        break;
                    }
                    let out = match fault.filter(|_| index == 3) {
                        Some(Fault::Flip) => {
                            let middle = body.len() / 2;
                            body[middle] ^= 0x40;
                            frame(&body)
                        }
                        Some(Fault::Replay) => [frame(&body), frame(&body)].concat(),
                        Some(Fault::Truncate) => {
                            body.pop();
                            frame(&body)
                        }
                        None => frame(&body),
                    };
                    if to_ledger.write_all(&out).await.is_err() {
                        break;
                    }
                }
                down.abort();
            });
        }
    });
    addr
}

/// A flipped, a replayed and a truncated frame between an edge and its ledger node: each closes the
/// session, the edge reconnects by itself, the provider's retries (same ids) succeed, and the ledger
/// holds every record exactly once and verifies.
#[test]
fn damaged_frames_close_the_session_and_nothing_is_appended_twice_or_wrongly() {
    let tmp = tempfile::tempdir().unwrap();
    let (ledger_dir, edge_dir) = pair(tmp.path(), "");
    // Put the relay between them.
    let edge_config = edge_dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&edge_config).unwrap();
    let start = text.find("address: \"").unwrap() + "address: \"".len();
    let end = start + text[start..].find('"').unwrap();
    let channel: std::net::SocketAddr = text[start..end].parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let relay = rt.block_on(tampering_relay(
        channel,
        std::sync::Arc::clone(&connections),
    ));
    std::fs::write(
        &edge_config,
        text.replace(&text[start..end], &relay.to_string()),
    )
    .unwrap();

    let mut ledger = Node::start(&ledger_dir);
    let edge = Node::start(&edge_dir);
    let provider = edge.client("provider-a");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut acknowledged = Vec::new();
    let mut unavailable = 0;
    let mut i = 0;
    // Until every fault has happened and the connection after them carried records too.
    while connections.load(std::sync::atomic::Ordering::SeqCst) <= FAULTS.len()
        || acknowledged.len() < 20
    {
        assert!(
            Instant::now() < deadline,
            "stuck after {} records",
            acknowledged.len()
        );
        let id = format!("TAMPER-{i}");
        let answer = provider.submit(edge.addr, &loan(&id));
        match answer.status {
            200 | 201 => {
                acknowledged.push(id);
                i += 1;
            }
            // The session was closed under the request: the same id again, later.
            503 => {
                assert_eq!(answer.json()["code"], "unavailable", "{}", answer.text());
                unavailable += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => panic!("{id}: {other} {}", answer.text()),
        }
    }
    assert!(unavailable >= 1, "no fault reached a request");
    // Each record once: nothing appended twice (a replayed request, a retry) or from damage.
    assert_eq!(ledger.record_count(), acknowledged.len() as u64);
    let direct = ledger.client("provider-a");
    for id in &acknowledged {
        let read = direct
            .request(ledger.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap();
        assert_eq!(read.status, 200, "{id}: {}", read.text());
        assert_eq!(read.json()["sealed"]["salary"]["value"], 61000.5, "{id}");
    }
    // Every damaged session was refused by the ledger node, which the edge survived by reconnecting.
    let ok = ledger
        .metric(r#"ledgergate_channel_handshakes_total{outcome="ok"}"#)
        .unwrap_or(0.0);
    assert!(ok >= 4.0, "{ok} sessions for 3 faults and the clean one");
    drop(edge);
    assert_eq!(ledger.stop(), Some(0));
    verify_ledger(&ledger_dir);
}
