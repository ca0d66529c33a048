//! The channel over real TCP on loopback: messages both ways, refused identities, revocation of a
//! connected peer, a byte flipped by a relay between the nodes, and the handshake abuse limits.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use gateway::channel::{
    AcceptLimits, Authorize, Channel, ChannelError, Config, Identity, connect, serve,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

fn id(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn config(seed: u8, authorize: Authorize) -> Arc<Config> {
    Arc::new(
        Config::new(
            Zeroizing::new([seed.wrapping_add(50); 32]),
            &id(seed),
            "test.ledgergate/log",
            authorize,
        )
        .unwrap(),
    )
}

fn only(seed: u8) -> Authorize {
    let want = Identity::of(&id(seed));
    Arc::new(move |p: &Identity| *p == want)
}

/// A listener for node 2 that accepts node 1; established channels arrive on the receiver.
async fn server(
    authorize: Authorize,
    limits: AcceptLimits,
) -> (SocketAddr, mpsc::Receiver<Channel>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(serve(listener, config(2, authorize), limits, tx));
    (addr, rx)
}

#[tokio::test]
async fn messages_cross_both_ways_between_authenticated_nodes() {
    let (addr, mut accepted) = server(only(1), AcceptLimits::default()).await;
    let client = connect(addr, config(1, only(2))).await.unwrap();
    let mut server_side = accepted.recv().await.unwrap();
    assert_eq!(client.peer(), Identity::of(&id(2)));
    assert_eq!(server_side.peer(), Identity::of(&id(1)));
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    client.send(b"hello").await.unwrap();
    client.send(&big).await.unwrap();
    assert_eq!(server_side.recv().await.unwrap(), b"hello");
    assert_eq!(server_side.recv().await.unwrap(), big);
    server_side.send(b"back").await.unwrap();
    let mut client = client;
    assert_eq!(client.recv().await.unwrap(), b"back");
}

/// Senders write in their own task; a peer that stops reading makes them wait before they seal
/// (bounded memory), and a send given up while waiting (a timeout, a client gone) leaves nothing
/// half written: once the peer reads again, every message sent arrives whole and in order, and
/// the session goes on.
#[tokio::test]
async fn a_send_given_up_while_the_peer_does_not_read_leaves_the_session_whole() {
    let (addr, mut accepted) = server(only(1), AcceptLimits::default()).await;
    let client = connect(addr, config(1, only(2))).await.unwrap();
    let mut server_side = accepted.recv().await.unwrap();
    let message = |n: u32| -> Vec<u8> {
        let mut m = vec![(n % 251) as u8; 1_000_000];
        m[..4].copy_from_slice(&n.to_be_bytes());
        m
    };
    // The server's application does not read: its queue fills, then the socket, then the backlog.
    let mut sent = 0u32;
    let gave_up = loop {
        match tokio::time::timeout(Duration::from_millis(500), client.send(&message(sent))).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(e)) => panic!("send failed: {e}"),
            Err(_) => break true,
        }
        assert!(sent < 1000, "the sender never had to wait");
    };
    assert!(gave_up);
    // Everything sent arrives whole, in order, and nothing of the abandoned send.
    for n in 0..sent {
        assert_eq!(server_side.recv().await.unwrap(), message(n), "message {n}");
    }
    client.send(b"after").await.unwrap();
    assert_eq!(server_side.recv().await.unwrap(), b"after");
    server_side.send(b"back").await.unwrap();
    let mut client = client;
    assert_eq!(client.recv().await.unwrap(), b"back");
}

#[tokio::test]
async fn unknown_identities_are_refused_at_the_handshake() {
    // The server does not know node 1: it refuses message 3 and closes, and the client, which
    // waits for the server to confirm message 3, never gets a channel.
    let (addr, mut accepted) = server(only(3), AcceptLimits::default()).await;
    let refused = connect(addr, config(1, only(2))).await.unwrap_err();
    assert_eq!(
        refused,
        ChannelError::Io("the peer closed the connection".into())
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), accepted.recv())
            .await
            .is_err(),
        "no channel was established on the server"
    );
    // The client does not know the server (node 2): it refuses at message 2.
    let (addr, _accepted) = server(only(1), AcceptLimits::default()).await;
    let refused = connect(addr, config(1, only(4))).await.unwrap_err();
    assert_eq!(refused, ChannelError::Unauthorized(Identity::of(&id(2))));
}

/// A channel's `Debug` shows counts, never what it received: opened frames and queued messages are
/// plaintext.
#[tokio::test]
async fn a_channels_debug_output_holds_none_of_its_messages() {
    let (addr, mut accepted) = server(only(1), AcceptLimits::default()).await;
    let client = connect(addr, config(1, only(2))).await.unwrap();
    let mut server_side = accepted.recv().await.unwrap();
    client.send(b"secret-marker-one").await.unwrap();
    client.send(b"secret-marker-two").await.unwrap();
    // Both arrive in one read: the second waits in the queue, both lie opened in the buffer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server_side.recv().await.unwrap(), b"secret-marker-one");
    let shown = format!("{server_side:?}");
    let as_bytes = b"secret"
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        !shown.contains("secret") && !shown.contains(&as_bytes),
        "{shown}"
    );
    assert!(shown.contains("queued: 1"), "{shown}");
    assert_eq!(server_side.recv().await.unwrap(), b"secret-marker-two");
}

/// Dropping a `Channel` ends its session at once, though a sender of it is still held: the peer
/// sees the end, and the sender fails.
#[tokio::test]
async fn dropping_a_channel_ends_its_session_though_a_sender_lives_on() {
    let (addr, mut accepted) = server(only(1), AcceptLimits::default()).await;
    let client = connect(addr, config(1, only(2))).await.unwrap();
    let mut server_side = accepted.recv().await.unwrap();
    let sender = client.sender();
    sender.send(b"before").await.unwrap();
    assert_eq!(server_side.recv().await.unwrap(), b"before");
    drop(client);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(1), server_side.recv())
            .await
            .expect("the peer saw the end within 1 s"),
        None
    );
    assert!(matches!(server_side.ended().await, ChannelError::Io(_)));
    assert_eq!(sender.send(b"after").await, Err(ChannelError::Closed));
}

#[tokio::test]
async fn a_peer_revoked_while_connected_loses_its_session_within_a_second() {
    let revoked = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&revoked);
    let node1 = Identity::of(&id(1));
    let authorize: Authorize =
        Arc::new(move |p: &Identity| *p == node1 && !flag.load(Ordering::SeqCst));
    let (addr, mut accepted) = server(authorize, AcceptLimits::default()).await;
    let mut client = connect(addr, config(1, only(2))).await.unwrap();
    let mut server_side = accepted.recv().await.unwrap();
    client.send(b"before").await.unwrap();
    assert_eq!(server_side.recv().await.unwrap(), b"before");
    let at = Instant::now();
    revoked.store(true, Ordering::SeqCst);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(1), client.recv())
            .await
            .expect("closed within 1 s"),
        None
    );
    assert!(at.elapsed() < Duration::from_secs(1));
    assert_eq!(server_side.ended().await, ChannelError::Unauthorized(node1));
}

/// A relay that forwards both ways and flips one byte of the client's stream at `flip_at`.
async fn flipping_relay(to: SocketAddr, flip_at: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut inbound, _) = listener.accept().await.unwrap();
        let mut outbound = TcpStream::connect(to).await.unwrap();
        let (mut ri, mut wi) = inbound.split();
        let (mut ro, mut wo) = outbound.split();
        let up = async {
            let (mut seen, mut buf) = (0usize, vec![0u8; 65536]);
            loop {
                let n = match ri.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if (seen..seen + n).contains(&flip_at) {
                    buf[flip_at - seen] ^= 0x20;
                }
                seen += n;
                if wo.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = wo.shutdown().await;
        };
        let down = tokio::io::copy(&mut ro, &mut wi);
        let _ = tokio::join!(up, down);
    });
    addr
}

#[tokio::test]
async fn a_flipped_byte_on_the_wire_closes_the_session() {
    let (addr, mut accepted) = server(only(1), AcceptLimits::default()).await;
    // The client's handshake bytes: message 1 (3 + 32) and message 3 (3 + 48 + 112); flip a byte
    // of the first transport frame after them.
    let relay = flipping_relay(addr, 35 + 163 + 10).await;
    let client = connect(relay, config(1, only(2))).await.unwrap();
    let mut server_side = accepted.recv().await.unwrap();
    client.send(b"tampered in flight").await.unwrap();
    assert_eq!(
        server_side.recv().await,
        None,
        "nothing tampered is delivered"
    );
    assert!(matches!(server_side.ended().await, ChannelError::Noise(_)));
}

#[tokio::test]
async fn handshakes_are_limited_per_source_and_in_progress() {
    let limits = AcceptLimits {
        per_source_per_second: NonZeroU32::new(1).unwrap(),
        per_source_burst: NonZeroU32::new(3).unwrap(),
        max_half_open: 64,
    };
    let (addr, _accepted) = server(only(1), limits).await;
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(connect(addr, config(1, only(2))).await.is_ok());
    }
    assert_eq!(
        outcomes,
        [true, true, true, false, false, false],
        "burst 3 from one address"
    );

    // Two half-open handshakes fill a cap of two: the third connection is closed at once, and the
    // stuck ones are dropped at the handshake timeout (5 s).
    let limits = AcceptLimits {
        max_half_open: 2,
        ..AcceptLimits::default()
    };
    let (addr, _accepted) = server(only(1), limits).await;
    let mut stuck1 = TcpStream::connect(addr).await.unwrap();
    let mut stuck2 = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        connect(addr, config(1, only(2))).await.is_err(),
        "over the cap"
    );
    let started = Instant::now();
    let mut byte = [0u8; 1];
    assert_eq!(stuck1.read(&mut byte).await.unwrap_or(0), 0);
    assert_eq!(stuck2.read(&mut byte).await.unwrap_or(0), 0);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(7),
        "closed at the handshake timeout: {waited:?}"
    );
    assert!(
        connect(addr, config(1, only(2))).await.is_ok(),
        "room again"
    );
}
