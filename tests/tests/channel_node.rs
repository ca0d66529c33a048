//! A real ledger node (`gateway serve` with `channel:` configured) and an edge's link to it, driven
//! from this test: records forwarded over the channel are accepted and read back exactly as on the
//! node itself and verify with `ledger verify`; a recording relay between the two sees none of the
//! submitted values or field names; officers' commands are refused through the channel; an identity
//! that is not configured never gets a session.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::node::{Node, append_config, init_node};
use e2e::stderr;
use ed25519_dalek::SigningKey;
use gateway::channel::{Authorize, Config, Identity, Upstream};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn edge_config(seed: u8) -> Config {
    let anyone: Authorize = Arc::new(|_: &Identity| true);
    Config::new(
        zeroize::Zeroizing::new([seed; 32]),
        &SigningKey::from_bytes(&[seed.wrapping_add(1); 32]),
        "ledgergate.local/log",
        anyone,
    )
    .unwrap()
}

/// The ledger node's identity, as its officers see it, and provider-a's, as an edge's TLS layer
/// would have verified it.
fn identities(node: &Node, dir: &std::path::Path) -> (Identity, policies::PeerIdentity) {
    let out = node.keymgr("officer", &["--json", "show", "node-identity"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ledger =
        Identity::from_hex(shown["key"]["versions"][0]["public_key"].as_str().unwrap()).unwrap();
    let cert = CertificateDer::from_pem_file(dir.join("pki/provider-a.pem")).unwrap();
    let provider = gateway::ingress::identity::peer_identity(&cert).unwrap();
    (ledger, provider)
}

/// A relay that records every byte it forwards, both ways.
async fn recording_relay(to: SocketAddr, seen: Arc<Mutex<Vec<u8>>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let outbound = TcpStream::connect(to).await.unwrap();
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                let pump = |mut r: tokio::net::tcp::OwnedReadHalf,
                            mut w: tokio::net::tcp::OwnedWriteHalf,
                            seen: Arc<Mutex<Vec<u8>>>| async move {
                    let mut buf = vec![0u8; 65536];
                    loop {
                        let n = match r.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        seen.lock().unwrap().extend_from_slice(&buf[..n]);
                        if w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let up = tokio::spawn(pump(ri, wo, Arc::clone(&seen)));
                let down = tokio::spawn(pump(ro, wi, seen));
                let _ = tokio::join!(up, down);
            });
        }
    });
    addr
}

#[test]
fn records_forwarded_over_the_channel_land_on_the_ledger_and_nothing_readable_crosses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let channel_addr = free_addr();
    let edge = edge_config(11);
    append_config(
        &dir,
        &format!(
            "channel: {{ listen: \"{channel_addr}\", peers: [{{ name: test-edge, identity: \"{}\" }}] }}",
            edge.identity()
        ),
    );
    let mut node = Node::start(&dir);
    let (ledger_identity, provider) = identities(&node, &dir);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let relay = recording_relay(channel_addr, Arc::clone(&seen)).await;
        let up = Upstream::start(relay, ledger_identity, &edge, Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !up.is_connected() {
            assert!(Instant::now() < deadline, "the edge never connected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let record = br#"{"type":"loan_application","id":"FWD-MARKER-7731","fields":{"applicant_id":"APPLICANT-MARKER-99","name":"Marker Person","salary":98765.25,"amount":4242,"currency":"EUR"}}"#;
        let (head, body) = up
            .call("POST", "/v1/records", &provider, record.to_vec())
            .await
            .unwrap();
        assert_eq!(head.status, 201, "{}", String::from_utf8_lossy(&body));
        let receipt: Value = serde_json::from_slice(&body).unwrap();
        // The node's own audit entries come first; the record follows them.
        assert!(receipt["index"].as_u64().is_some(), "{receipt}");
        // Read back through the channel: the owner sees its sealed salary.
        let (head, body) = up
            .call("GET", "/v1/records/FWD-MARKER-7731", &provider, Vec::new())
            .await
            .unwrap();
        assert_eq!(head.status, 200);
        let read: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(read["sealed"]["salary"]["value"], 98765.25);
        // A retry over the channel is the same submission.
        let (head, _) = up
            .call("POST", "/v1/records", &provider, record.to_vec())
            .await
            .unwrap();
        assert_eq!(head.status, 200);
        // Officers' commands do not go through an edge.
        let officer = gateway::ingress::identity::peer_identity(
            &CertificateDer::from_pem_file(dir.join("pki/officer.pem")).unwrap(),
        )
        .unwrap();
        let (head, body) = up
            .call("GET", "/admin/v1/keys", &officer, Vec::new())
            .await
            .unwrap();
        assert_eq!(head.status, 403, "{}", String::from_utf8_lossy(&body));
        assert_eq!(head.content_type, "application/problem+json");
        // Nothing readable crossed the wire: no value, no field name, no record id.
        let wire = seen.lock().unwrap().clone();
        assert!(wire.len() > 1000, "the relay saw the traffic");
        for marker in [
            "FWD-MARKER-7731",
            "APPLICANT-MARKER-99",
            "Marker Person",
            "98765.25",
            "applicant_id",
            "salary",
            "loan_application",
            "provider-a",
        ] {
            assert!(
                !wire.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "{marker} crossed the channel in clear"
            );
        }
        // Taken out of `channel.peers` and reloaded (SIGHUP): the edge loses its session within a
        // second, and cannot get another.
        let config_path = dir.join("gateway.yaml");
        let text = std::fs::read_to_string(&config_path).unwrap();
        std::fs::write(
            &config_path,
            text.replace(&format!("identity: \"{}\"", edge.identity()), &format!("identity: \"{}\"", "00".repeat(32))),
        )
        .unwrap();
        node.signal("HUP");
        let revoked = Instant::now();
        while up.is_connected() {
            assert!(revoked.elapsed() < Duration::from_secs(2), "still connected after the reload");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!up.is_connected(), "reconnected after its removal");
        // An identity the ledger node does not list never gets a session.
        let stranger = Upstream::start(channel_addr, ledger_identity, &edge_config(12), Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!stranger.is_connected());
    });
    // The listener's metrics: one handshake that passed, the stranger's refused.
    let (_, metrics) = node.monitoring("/metrics");
    let sample = |series: &str| e2e::node::sample(&metrics, series);
    assert_eq!(
        sample(r#"ledgergate_channel_handshakes_total{outcome="ok"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        sample(r#"ledgergate_channel_handshakes_total{outcome="failed"}"#)
            .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    drop(rt);
    assert_eq!(node.stop(), Some(0));
    e2e::node::verify_ledger(&dir);
}

/// A configured peer that sends a message over the ledger node's bound (16 MiB, reassembled from
/// fragments): the node closes the session without acting on any of it, and the peer's next session
/// works.
#[test]
fn a_message_over_the_bound_closes_the_session_and_nothing_is_appended() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let channel_addr = free_addr();
    // This side would send up to 32 MiB; the node takes 16 MiB.
    let edge = edge_config(13).with_max_message(32 << 20);
    append_config(
        &dir,
        &format!(
            "channel: {{ listen: \"{channel_addr}\", peers: [{{ name: big-edge, identity: \"{}\" }}] }}",
            edge.identity()
        ),
    );
    let node = Node::start(&dir);
    let (ledger_identity, provider) = identities(&node, &dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = Arc::new(edge.for_peer(ledger_identity));
        let mut big = gateway::channel::connect(channel_addr, Arc::clone(&config))
            .await
            .unwrap();
        // A well-formed request head with a body that makes the message 17 MiB.
        let head = gateway::channel::rpc::RequestHead {
            id: 1,
            method: "POST".into(),
            target: "/v1/records".into(),
            peer: gateway::channel::rpc::Peer::from(&provider),
        };
        let message = gateway::channel::rpc::Message::Request(head, vec![b' '; 17 << 20])
            .encode()
            .unwrap();
        big.send(&message).await.unwrap();
        // A channel's end is seen by its receiver (docs/channel.md): nothing comes back, the
        // session just ends.
        let answer = tokio::time::timeout(Duration::from_secs(5), big.recv())
            .await
            .expect("the node did not close the session");
        assert_eq!(answer, None);
        let ended = big.ended().await;
        assert!(
            matches!(ended, gateway::channel::ChannelError::Io(_)),
            "{ended:?}"
        );
        // The next session of the same peer works.
        let up = Upstream::start(channel_addr, ledger_identity, &edge, Duration::from_secs(10));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !up.is_connected() {
            assert!(Instant::now() < deadline, "the peer could not connect again");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let record = br#"{"type":"loan_application","id":"AFTER-BIG","fields":{"applicant_id":"A-1","amount":1,"currency":"EUR"}}"#;
        let (head, body) = up
            .call("POST", "/v1/records", &provider, record.to_vec())
            .await
            .unwrap();
        assert_eq!(head.status, 201, "{}", String::from_utf8_lossy(&body));
    });
    assert_eq!(node.record_count(), 1);
}
