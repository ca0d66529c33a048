//! The edge's link to its ledger node over real loopback TCP: requests multiplexed by id, `Unavailable`
//! at once while the ledger node is down, reconnection with backoff when it is back, timeouts, and a
//! ledger node of another identity refused.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use gateway::channel::rpc::{Handler, ResponseHead, serve_requests};
use gateway::channel::{AcceptLimits, Authorize, Config, Identity, Upstream, UpstreamError, serve};
use policies::PeerIdentity;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

fn config(seed: u8) -> Config {
    let allow: Authorize = Arc::new(|_: &Identity| true);
    Config::new(
        Zeroizing::new([seed.wrapping_add(70); 32]),
        &SigningKey::from_bytes(&[seed; 32]),
        "test.ledgergate/log",
        allow,
    )
    .unwrap()
}

fn identity(seed: u8) -> Identity {
    Identity::of(&SigningKey::from_bytes(&[seed; 32]))
}

/// A ledger node (identity 2) on a runtime of its own, answering every request with its target and
/// body echoed after `delay`. Dropping it shuts that runtime down: listener, sessions and connections
/// die with it, as with a killed process.
struct LedgerNode(Option<tokio::runtime::Runtime>);

impl Drop for LedgerNode {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// Binds `addr`, waiting up to 5 s for it to be free: a dropped node's runtime shuts down in the
/// background, so its listener may still hold the port for a moment.
async fn bind_when_free(addr: SocketAddr) -> std::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    }
}

async fn ledger_node(addr: SocketAddr, delay: Duration) -> LedgerNode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = bind_when_free(addr).await;
    listener.set_nonblocking(true).unwrap();
    rt.spawn(async move {
        let listener = TcpListener::from_std(listener).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let accept = tokio::spawn(serve(
            listener,
            Arc::new(config(2)),
            AcceptLimits::default(),
            tx,
        ));
        let handler: Handler = Arc::new(move |head, body| {
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                let mut answer =
                    format!("{} {} {:?} ", head.method, head.target, head.peer.cn).into_bytes();
                answer.extend_from_slice(&body);
                (
                    ResponseHead {
                        id: head.id,
                        status: 201,
                        content_type: "text/plain".into(),
                        retry_after: None,
                    },
                    answer,
                )
            })
        });
        while let Some(channel) = rx.recv().await {
            tokio::spawn(serve_requests(channel, Arc::clone(&handler)));
        }
        accept.abort();
    });
    LedgerNode(Some(rt))
}

fn peer() -> PeerIdentity {
    PeerIdentity {
        cn: Some("provider-a".into()),
        ..Default::default()
    }
}

async fn wait_connected(up: &Upstream) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !up.is_connected() {
        assert!(Instant::now() < deadline, "never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn many_requests_share_the_link_and_each_gets_its_own_answer() {
    let addr = free_addr();
    let _ledger = ledger_node(addr, Duration::from_millis(5)).await;
    let up = Arc::new(Upstream::start(
        addr,
        identity(2),
        &config(1),
        Duration::from_secs(5),
    ));
    wait_connected(&up).await;
    let calls: Vec<_> = (0..200)
        .map(|i| {
            let up = Arc::clone(&up);
            tokio::spawn(async move {
                let body = format!("record-{i}").into_bytes();
                let (head, answer) = up
                    .call("POST", &format!("/v1/records?n={i}"), &peer(), body)
                    .await
                    .unwrap();
                assert_eq!(head.status, 201);
                assert_eq!(
                    String::from_utf8(answer).unwrap(),
                    format!("POST /v1/records?n={i} Some(\"provider-a\") record-{i}")
                );
            })
        })
        .collect();
    for c in calls {
        c.await.unwrap();
    }
}

#[tokio::test]
async fn while_the_ledger_node_is_down_calls_fail_at_once_and_the_link_comes_back() {
    let addr = free_addr();
    let up = Upstream::start(addr, identity(2), &config(1), Duration::from_secs(5));
    // Nothing listens yet: unavailable, immediately.
    let t = Instant::now();
    assert_eq!(
        up.call("GET", "/v1/checkpoint", &peer(), Vec::new())
            .await
            .unwrap_err(),
        UpstreamError::Unavailable
    );
    assert!(t.elapsed() < Duration::from_millis(100));
    // The ledger node starts: the edge connects by itself.
    let ledger = ledger_node(addr, Duration::ZERO).await;
    wait_connected(&up).await;
    assert!(
        up.call("GET", "/v1/checkpoint", &peer(), Vec::new())
            .await
            .is_ok()
    );
    // It dies: calls fail again (broken or unavailable, never a hang), then it comes back.
    drop(ledger);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match up.call("GET", "/x", &peer(), Vec::new()).await {
            Err(UpstreamError::Unavailable | UpstreamError::Broken) => break,
            Ok(_) => assert!(
                Instant::now() < deadline,
                "still answered after the node died"
            ),
            Err(e) => panic!("{e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ledger = ledger_node(addr, Duration::ZERO).await;
    wait_connected(&up).await;
    assert!(
        up.call("GET", "/v1/checkpoint", &peer(), Vec::new())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_slow_answer_times_out_and_a_ledger_node_of_another_identity_is_refused() {
    let addr = free_addr();
    let _ledger = ledger_node(addr, Duration::from_secs(3)).await;
    let up = Upstream::start(addr, identity(2), &config(1), Duration::from_millis(300));
    wait_connected(&up).await;
    assert_eq!(
        up.call("GET", "/slow", &peer(), Vec::new())
            .await
            .unwrap_err(),
        UpstreamError::Timeout
    );
    // Expecting identity 9 at an address where node 2 answers: never connected.
    let wrong = Upstream::start(addr, identity(9), &config(1), Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!wrong.is_connected());
    assert_eq!(
        wrong
            .call("GET", "/", &peer(), Vec::new())
            .await
            .unwrap_err(),
        UpstreamError::Unavailable
    );
}

/// A dropped link stops: its connection closes and nothing reconnects (a consortium drops the link
/// to a removed member; before, its task kept reconnecting for the life of the process).
#[tokio::test]
async fn a_dropped_link_closes_its_connection_and_stops_reconnecting() {
    // A peer that accepts connections and never completes a handshake: the link keeps retrying.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let (accepted, open) = (Arc::clone(&accepted), Arc::clone(&open));
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let open = Arc::clone(&open);
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt as _;
                    open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let mut buf = [0u8; 1024];
                    // Read until the link closes its side.
                    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                    open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
    }
    let up = Upstream::start(addr, identity(2), &config(1), Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while accepted.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the link never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(up);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        assert!(
            Instant::now() < deadline,
            "the dropped link kept its connection open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after_drop = accepted.load(std::sync::atomic::Ordering::SeqCst);
    // Longer than the handshake timeout plus several backoffs: a live link would have come back.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        after_drop,
        "a dropped link reconnected"
    );
}
