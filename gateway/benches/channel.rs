//! The channel against its baselines, in one run (`cargo bench -p gateway --bench channel`;
//! `CHANNEL_BENCH_MB` sets the bytes per throughput measurement, default 512;
//! `CHANNEL_BENCH_ONLY=channel|rustls|session` runs that one throughput row 10 times, for a
//! profiler):
//!
//! - the raw seal+open rate of ChaCha20-Poly1305 on 64 KiB messages, in aws-lc-rs (what the
//!   channel's transport uses, `channel/cipher.rs`), in ring (what the rustls baseline uses) and in
//!   the pure-Rust `chacha20poly1305` crate: the limit, and the measurement that chose the
//!   implementation;
//! - the session alone (in memory: framing, Noise transport, fragments), one direction;
//! - the channel over loopback TCP, 64 KiB messages, one direction;
//! - rustls TLS 1.3 with mutual authentication and only the ChaCha20-Poly1305 suite, over loopback
//!   TCP, the same bytes;
//! - the same `Session` driven over loopback TCP in the caller's task on each side, without the
//!   transport: an experiment row, the framing and crypto with no locks, queues or timers;
//! - handshakes per second: channel (TCP connect + Noise XX + identity checks) against rustls (TCP
//!   connect + TLS 1.3 with client certificates), 8 at a time; rustls with resumption off (every
//!   handshake verifies both certificates, as every channel handshake checks both identities), and
//!   with its default resumption, for context.
//!
//! Every throughput row also reports the CPU seconds the process spent per GB moved (both ends
//! run here), which varies less than the rate on a shared machine, and the channel/rustls ratio
//! of each round, taken a minute apart at most. The bench runs on the system allocator: under the
//! node's mimalloc the rustls row measured 0.63–0.78 GB/s with 3–5 times the context switches
//! (the channel 0.9–1.2 GB/s), and the comparison is not to gain from that.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use gateway::channel::{
    AcceptLimits, Authorize, Config, Identity, Output, Session, connect, serve,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use zeroize::Zeroizing;

const MESSAGE: usize = 64 * 1024;

fn config(seed: u8) -> Arc<Config> {
    let allow: Authorize = Arc::new(|_: &Identity| true);
    Arc::new(
        Config::new(
            Zeroizing::new([seed.wrapping_add(10); 32]),
            &SigningKey::from_bytes(&[seed; 32]),
            "bench.ledgergate/log",
            allow,
        )
        .unwrap()
        .with_max_message(1 << 20),
    )
}

fn rate(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e9
}

/// Seal+open of 64 KiB messages in place with an AEAD crate of ring's API (ring, aws-lc-rs).
macro_rules! seal_open_rate {
    ($name:ident, $aead:path) => {
        fn $name(total: usize) -> f64 {
            use $aead as aead;
            let key = aead::LessSafeKey::new(
                aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &[7u8; 32]).unwrap(),
            );
            let mut buf = vec![1u8; MESSAGE];
            let started = Instant::now();
            for i in 0..total / MESSAGE {
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&(i as u64).to_le_bytes());
                let tag = key
                    .seal_in_place_separate_tag(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::empty(),
                        &mut buf,
                    )
                    .unwrap();
                buf.extend_from_slice(tag.as_ref());
                let plain = key
                    .open_in_place(
                        aead::Nonce::assume_unique_for_key(nonce),
                        aead::Aad::empty(),
                        &mut buf,
                    )
                    .unwrap()
                    .len();
                buf.truncate(plain);
            }
            rate(total, started.elapsed())
        }
    };
}

seal_open_rate!(aws_lc_aead, aws_lc_rs::aead);
seal_open_rate!(ring_aead, ring::aead);

fn rustcrypto_aead(total: usize) -> f64 {
    use chacha20poly1305::aead::{AeadInOut, KeyInit};
    use chacha20poly1305::{ChaCha20Poly1305, Nonce};
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut buf = vec![1u8; MESSAGE];
    let started = Instant::now();
    for i in 0..total / MESSAGE {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&(i as u64).to_le_bytes());
        let nonce = Nonce::from(nonce);
        let tag = cipher
            .encrypt_inout_detached(&nonce, b"", buf.as_mut_slice().into())
            .unwrap();
        cipher
            .decrypt_inout_detached(&nonce, b"", buf.as_mut_slice().into(), &tag)
            .unwrap();
    }
    rate(total, started.elapsed())
}

fn session_alone(total: usize) -> f64 {
    let (mut a, first) = Session::initiator(config(1), Duration::ZERO).unwrap();
    let mut b = Session::responder(config(2), Duration::ZERO).unwrap();
    let mut wire: Vec<Output> = first;
    let now = Duration::from_secs(1);
    // Handshake: deliver until nothing is left to send.
    let mut to_b = true;
    while !wire.is_empty() {
        let mut next = Vec::new();
        for out in wire {
            if let Output::Transmit(bytes) = out {
                let mut r = gateway::channel::frame::FrameReader::default();
                r.push(&bytes);
                while let Some((e, mut m)) = r.next_frame().unwrap() {
                    let s = if to_b { &mut b } else { &mut a };
                    next.extend(s.receive(now, e, &mut m).unwrap());
                }
            }
        }
        wire = next;
        to_b = !to_b;
    }
    let message = vec![3u8; MESSAGE];
    let mut r = gateway::channel::frame::FrameReader::default();
    let mut wire = gateway::channel::frame::FrameWriter::default();
    let started = Instant::now();
    for _ in 0..total / MESSAGE {
        a.send_to(now, &message, &mut wire).unwrap();
        r.push(wire.pending());
        wire.consume(wire.len());
        while let Some((e, m)) = r.take_frame().unwrap() {
            std::hint::black_box(b.receive(now, e, m).unwrap());
        }
    }
    rate(total, started.elapsed())
}

/// Reads frames from `rd` into `reader` and hands them to `session` until `done` says the outputs
/// so far are enough; writes what the session transmits. The session driven in the caller's task,
/// with none of the transport's task hops (an experiment row: what those hops cost).
async fn drive(
    session: &mut Session,
    reader: &mut gateway::channel::frame::FrameReader,
    tcp: &mut TcpStream,
    mut done: impl FnMut(&Output) -> bool,
) {
    loop {
        let n = tcp.read(reader.room(256 * 1024)).await.unwrap();
        assert!(n > 0, "the peer closed");
        reader.filled(n);
        let mut wire = Vec::new();
        let mut finished = false;
        while let Some((e, m)) = reader.take_frame().unwrap() {
            for out in session.receive(Duration::from_secs(1), e, m).unwrap() {
                finished |= done(&out);
                if let Output::Transmit(bytes) = out {
                    wire.extend_from_slice(&bytes);
                }
            }
        }
        if !wire.is_empty() {
            tcp.write_all(&wire).await.unwrap();
        }
        if finished {
            return;
        }
    }
}

async fn session_over_tcp(total: usize) -> f64 {
    use gateway::channel::frame::FrameReader;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let _ = tcp.set_nodelay(true);
        let mut s = Session::responder(config(2), Duration::ZERO).unwrap();
        let mut reader = FrameReader::default();
        let mut got = 0usize;
        // Counts delivered bytes until an empty message, then answers the count.
        drive(&mut s, &mut reader, &mut tcp, |out| match out {
            Output::Deliver(m) if m.is_empty() => true,
            Output::Deliver(m) => {
                got += m.len();
                false
            }
            _ => false,
        })
        .await;
        let mut wire = Vec::new();
        for out in s.send(Duration::from_secs(1), &got.to_le_bytes()).unwrap() {
            if let Output::Transmit(bytes) = out {
                wire.extend_from_slice(&bytes);
            }
        }
        tcp.write_all(&wire).await.unwrap();
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let (mut s, first) = Session::initiator(config(1), Duration::ZERO).unwrap();
    for out in first {
        if let Output::Transmit(bytes) = out {
            tcp.write_all(&bytes).await.unwrap();
        }
    }
    let mut reader = FrameReader::default();
    drive(&mut s, &mut reader, &mut tcp, |out| {
        matches!(out, Output::Established(_))
    })
    .await;
    let message = vec![5u8; MESSAGE];
    let now = Duration::from_secs(1);
    let started = Instant::now();
    // Sealed into one reused writer, as the transport does, and written as it fills.
    let mut wire = gateway::channel::frame::FrameWriter::default();
    for _ in 0..total / MESSAGE {
        s.send_to(now, &message, &mut wire).unwrap();
        tcp.write_all(wire.pending()).await.unwrap();
        wire.consume(wire.len());
    }
    s.send_to(now, &[], &mut wire).unwrap();
    tcp.write_all(wire.pending()).await.unwrap();
    let mut count = None;
    drive(&mut s, &mut reader, &mut tcp, |out| match out {
        Output::Deliver(m) => {
            count = Some(usize::from_le_bytes(m.as_slice().try_into().unwrap()));
            true
        }
        _ => false,
    })
    .await;
    assert_eq!(count, Some(total / MESSAGE * MESSAGE));
    let rate = rate(total, started.elapsed());
    server.await.unwrap();
    rate
}

fn limits() -> AcceptLimits {
    AcceptLimits {
        per_source_per_second: NonZeroU32::new(1_000_000).unwrap(),
        per_source_burst: NonZeroU32::new(1_000_000).unwrap(),
        max_half_open: 64,
    }
}

async fn channel_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(serve(listener, config(2), limits(), tx));
    // Each accepted channel is drained; its byte count goes back as one message.
    tokio::spawn(async move {
        while let Some(mut ch) = rx.recv().await {
            tokio::spawn(async move {
                let mut got = 0usize;
                while let Some(m) = ch.recv().await {
                    if m.is_empty() {
                        let _ = ch.send(&got.to_le_bytes()).await;
                        got = 0;
                    } else {
                        got += m.len();
                    }
                }
            });
        }
    });
    addr
}

async fn channel_throughput(addr: SocketAddr, client: Arc<Config>, total: usize) -> f64 {
    let mut ch = connect(addr, client).await.unwrap();
    // One buffer sent again and again, as the rustls row writes one buffer again and again.
    let message = vec![5u8; MESSAGE];
    let started = Instant::now();
    for _ in 0..total / MESSAGE {
        ch.send(&message).await.unwrap();
    }
    ch.send(&[]).await.unwrap();
    let got = ch.recv().await.unwrap();
    assert_eq!(
        usize::from_le_bytes(got.try_into().unwrap()),
        total / MESSAGE * MESSAGE
    );
    rate(total, started.elapsed())
}

async fn channel_handshakes(addr: SocketAddr, client: Arc<Config>, n: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                for _ in 0..n / 8 {
                    drop(connect(addr, Arc::clone(&client)).await.unwrap());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (n / 8 * 8) as f64 / started.elapsed().as_secs_f64()
}

struct Tls {
    server: Arc<rustls::ServerConfig>,
    /// Full handshakes: resumption off, so every handshake verifies both certificates, as every
    /// channel handshake checks both identities.
    client: Arc<rustls::ClientConfig>,
    /// rustls's default: TLS 1.3 resumption (a PSK with a fresh ECDHE, no certificates), for context.
    resuming: Arc<rustls::ClientConfig>,
}

fn tls(dir: &std::path::Path) -> Tls {
    gateway::pki::make_dev_pki(dir, time::OffsetDateTime::now_utc()).unwrap();
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256],
        ..rustls::crypto::ring::default_provider()
    });
    let certs = |name: &str| {
        CertificateDer::pem_file_iter(dir.join(name))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in certs("ca.pem") {
        roots.add(c).unwrap();
    }
    let roots = Arc::new(roots);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::clone(&roots),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs("server.pem"),
            PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap(),
        )
        .unwrap();
    let resuming = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates((*roots).clone())
        .with_client_auth_cert(
            certs("provider-a.pem"),
            PrivateKeyDer::from_pem_file(dir.join("provider-a.key")).unwrap(),
        )
        .unwrap();
    let mut client = resuming.clone();
    client.resumption = rustls::client::Resumption::disabled();
    Tls {
        server: Arc::new(server),
        client: Arc::new(client),
        resuming: Arc::new(resuming),
    }
}

async fn tls_server(server: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; MESSAGE];
                let mut got = 0u64;
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n as u64,
                    }
                }
                let _ = tls.write_all(&got.to_le_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

async fn tls_connect(
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    tokio_rustls::TlsConnector::from(client)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

async fn tls_throughput(addr: SocketAddr, client: Arc<rustls::ClientConfig>, total: usize) -> f64 {
    let mut tls = tls_connect(addr, client).await;
    let message = vec![5u8; MESSAGE];
    let started = Instant::now();
    for _ in 0..total / MESSAGE {
        tls.write_all(&message).await.unwrap();
    }
    tls.flush().await.unwrap();
    // Half-close: the server counts what it got and answers.
    let (mut rd, mut wr) = tokio::io::split(tls);
    wr.shutdown().await.unwrap();
    let mut got = [0u8; 8];
    rd.read_exact(&mut got).await.unwrap();
    assert_eq!(u64::from_le_bytes(got), (total / MESSAGE * MESSAGE) as u64);
    rate(total, started.elapsed())
}

async fn tls_handshakes(addr: SocketAddr, client: Arc<rustls::ClientConfig>, n: usize) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                for _ in 0..n / 8 {
                    let mut tls = tls_connect(addr, Arc::clone(&client)).await;
                    // TLS 1.3 finishes the client's side of the handshake before the server has
                    // checked the client certificate: a round trip makes it count.
                    tls.write_all(b"x").await.unwrap();
                    tls.shutdown().await.unwrap();
                    let mut rest = Vec::new();
                    let _ = tls.read_to_end(&mut rest).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (n / 8 * 8) as f64 / started.elapsed().as_secs_f64()
}

/// Runs `work` as a task on the runtime's workers, as a node runs everything: not on the thread
/// that blocks on it (a third thread that only one side of a comparison would get).
fn on_worker<F>(rt: &tokio::runtime::Runtime, work: F) -> f64
where
    F: std::future::Future<Output = f64> + Send + 'static,
{
    rt.block_on(async { tokio::spawn(work).await.unwrap() })
}

/// CPU seconds this process has used so far (user + system; both ends of every connection run
/// here), from `/proc/self/stat`. On a shared machine the work per byte varies less than the
/// wall clock does.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // After the command name: state is field 3 of the line, utime and stime fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // The kernel reports these in USER_HZ, 100 per second on Linux.
    ticks / 100.0
}

/// [`on_worker`] for a throughput row: its rate, and the CPU seconds it took per GB moved.
fn throughput<F>(rt: &tokio::runtime::Runtime, total: usize, work: F) -> (f64, f64)
where
    F: std::future::Future<Output = f64> + Send + 'static,
{
    let cpu = cpu_seconds();
    let rate = on_worker(rt, work);
    (rate, (cpu_seconds() - cpu) / (total as f64 / 1e9))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mb: usize = std::env::var("CHANNEL_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512);
    let total = mb << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tls = tls(dir.path());
    // Like a node, and like the rustls client config: the channel config is made once, so its
    // identity binding is signed once, not per connection.
    let client = config(1);
    let (channel_addr, tls_addr) = rt.block_on(async {
        (
            channel_server().await,
            tls_server(Arc::clone(&tls.server)).await,
        )
    });
    if let Ok(only) = std::env::var("CHANNEL_BENCH_ONLY") {
        for _ in 0..10 {
            let rate = match only.as_str() {
                "channel" => on_worker(
                    &rt,
                    channel_throughput(channel_addr, Arc::clone(&client), total),
                ),
                "rustls" => on_worker(
                    &rt,
                    tls_throughput(tls_addr, Arc::clone(&tls.client), total),
                ),
                "session" => on_worker(&rt, session_over_tcp(total)),
                other => panic!("CHANNEL_BENCH_ONLY={other}: channel, rustls or session"),
            };
            println!("   {only}: {rate:.2} GB/s");
        }
        return;
    }
    println!(
        "channel benchmark: {mb} MiB per throughput run in 64 KiB messages, 4 interleaved rounds, medians"
    );
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("raw AEAD, aws-lc-rs (the channel's)", Vec::new()),
        ("raw AEAD, ring", Vec::new()),
        ("raw AEAD, chacha20poly1305 crate", Vec::new()),
        ("session alone (in memory)", Vec::new()),
        ("channel over loopback TCP", Vec::new()),
        ("session over TCP in the caller's task", Vec::new()),
        ("rustls TLS 1.3 mTLS, ChaCha20-Poly1305", Vec::new()),
        ("channel handshakes/s", Vec::new()),
        ("rustls mTLS handshakes/s, full", Vec::new()),
        ("rustls mTLS handshakes/s, resumed", Vec::new()),
    ];
    // CPU seconds per GB of the channel, session-in-task and rustls rows.
    let mut cpu_per_gb: [Vec<f64>; 3] = Default::default();
    for round in 0..4 {
        // Interleaved, so that a noisy moment hits every row alike.
        rows[0].1.push(aws_lc_aead(total));
        rows[1].1.push(ring_aead(total));
        rows[2].1.push(rustcrypto_aead(total));
        rows[3].1.push(session_alone(total));
        // The channel first in one round, rustls first in the next (two rounds each): neither
        // always runs in the other's wake.
        let order = if round % 2 == 0 { [4, 5, 6] } else { [6, 5, 4] };
        for row in order {
            let (rate, cpu) = match row {
                4 => throughput(
                    &rt,
                    total,
                    channel_throughput(channel_addr, Arc::clone(&client), total),
                ),
                5 => throughput(&rt, total, session_over_tcp(total)),
                _ => throughput(
                    &rt,
                    total,
                    tls_throughput(tls_addr, Arc::clone(&tls.client), total),
                ),
            };
            rows[row].1.push(rate);
            cpu_per_gb[row - 4].push(cpu);
        }
        rows[7]
            .1
            .push(rt.block_on(channel_handshakes(channel_addr, Arc::clone(&client), 800)));
        rows[8]
            .1
            .push(rt.block_on(tls_handshakes(tls_addr, Arc::clone(&tls.client), 800)));
        rows[9]
            .1
            .push(rt.block_on(tls_handshakes(tls_addr, Arc::clone(&tls.resuming), 800)));
    }
    let m: Vec<f64> = rows.iter().map(|(_, v)| median(v.clone())).collect();
    for (i, (name, v)) in rows.iter().enumerate() {
        let unit = if i >= 7 { "/s" } else { " GB/s" };
        let range = format!(
            "{:.2}–{:.2}",
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(0.0, f64::max)
        );
        println!("   {name:<42} {:>10.2}{unit}   (runs {range})", m[i]);
    }
    println!(
        "   channel / rustls throughput: {:.2}x (target >= 1.0)   channel / raw AEAD: {:.2}x (target >= 0.7)   session in the caller's task / rustls: {:.2}x",
        m[4] / m[6],
        m[4] / m[0],
        m[5] / m[6]
    );
    // Each round's channel and rustls rows ran a minute apart at most: their ratio is less
    // exposed to the machine's drift than the ratio of medians taken over the whole run.
    let paired: Vec<String> = rows[4]
        .1
        .iter()
        .zip(&rows[6].1)
        .map(|(c, r)| format!("{:.2}", c / r))
        .collect();
    println!(
        "   channel / rustls throughput, round by round: {}",
        paired.join(", ")
    );
    let cpu: Vec<f64> = cpu_per_gb.iter().map(|v| median(v.clone())).collect();
    println!(
        "   CPU seconds per GB moved, both ends: channel {:.2}, session in the caller's task {:.2}, rustls {:.2}: channel / rustls {:.2}x (lower is cheaper)",
        cpu[0],
        cpu[1],
        cpu[2],
        cpu[0] / cpu[2]
    );
    println!(
        "   channel / rustls full handshakes: {:.2}x (target >= 0.8; / resumed: {:.2}x)   aws-lc-rs / ring / RustCrypto AEAD: {:.2} / {:.2} / 1",
        m[7] / m[8],
        m[7] / m[9],
        m[0] / m[2],
        m[1] / m[2]
    );
}
