//! Ingest load generator: N keep-alive mTLS connections against a real node (`gateway serve` on a fresh
//! `gateway init` directory), reporting records/s and p50/p99 latency for `POST /v1/records` (1 KiB
//! records) and for the batch endpoint.
//!
//! Run: `cargo bench -p e2e --bench ingest` (`INGEST_CONNECTIONS`, `INGEST_SECONDS` to change the load).
//!
//! Issue #6 also asks for an nginx mTLS baseline driven by this same generator; that part is not built
//! yet, so this prints our numbers alone.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss
)]
#![allow(clippy::indexing_slicing, clippy::cast_possible_truncation)] // a benchmark: fixed, known sizes

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tls(pki: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(pki.join("provider-a.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join("provider-a.key")).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap(),
    )
}

/// A 1 KiB loan application with a unique id (padded in fields the example policy allows to be long).
fn record(id: &str) -> String {
    let (name, email, street) = (
        "N".repeat(190),
        format!("{}@example.org", "e".repeat(220)),
        "S".repeat(300),
    );
    format!(
        r#"{{"type":"loan_application","id":"{id}","fields":{{"applicant_id":"P-{id}","name":"{name}","phone":"+49 170 1234567","email":"{email}","age":37,"birth_date":"1987-06-15","salary":52000.5,"amount":250000,"currency":"EUR","address":{{"street":"{street}","city":"Berlin","zip":"10115"}}}}}}"#
    )
}

/// One connection sending requests back to back until `until`; returns each request's latency and
/// the records it carried.
async fn connection(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    worker: usize,
    batch: usize,
    until: Instant,
) -> (Vec<Duration>, u64) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (mut latencies, mut records, mut n) = (Vec::new(), 0u64, 0u64);
    while Instant::now() < until {
        let body = if batch == 1 {
            record(&format!("w{worker}-{n}"))
        } else {
            (0..batch)
                .map(|k| record(&format!("w{worker}-{n}-{k}")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        n += 1;
        let path = if batch == 1 {
            "/v1/records"
        } else {
            "/v1/records:batch"
        };
        let req = hyper::Request::post(path)
            .header("host", "localhost")
            .body(Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let t = Instant::now();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        latencies.push(t.elapsed());
        if batch == 1 {
            assert_eq!(status, 201, "{}", String::from_utf8_lossy(&bytes));
            records += 1;
        } else {
            records += bytes
                .split(|b| *b == b'\n')
                .filter(|l| l.windows(12).any(|w| w == b"\"status\":201"))
                .count() as u64;
        }
    }
    (latencies, records)
}

fn run(
    addr: std::net::SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    connections: usize,
    batch: usize,
    seconds: u64,
) -> (f64, Duration, Duration) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let results = rt.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|w| {
                tokio::spawn(connection(
                    addr,
                    Arc::clone(tls),
                    w + batch * 1000,
                    batch,
                    until,
                ))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let secs = started.elapsed().as_secs_f64();
    let mut all: Vec<Duration> = results
        .iter()
        .flat_map(|(l, _)| l.iter().copied())
        .collect();
    all.sort();
    let records: u64 = results.iter().map(|(_, r)| r).sum();
    let pct = |p: usize| all.get(all.len() * p / 100).copied().unwrap_or_default();
    (records as f64 / secs, pct(50), pct(99))
}

fn main() {
    let connections = env_or("INGEST_CONNECTIONS", 16) as usize;
    let seconds = env_or("INGEST_SECONDS", 10);
    let tmp = tempfile::tempdir().unwrap();
    let dir = e2e::node::init_node(tmp.path());
    e2e::node::unlimited_rate(&dir);
    let node = e2e::node::Node::start(&dir);
    let tls = tls(&dir.join("pki"));
    println!(
        "ingest benchmark: {connections} keep-alive mTLS connections, {seconds} s each, 1 KiB records"
    );
    let (rate, p50, p99) = run(node.addr, &tls, connections, 1, seconds);
    println!(
        "   POST /v1/records:        {rate:>9.0} records/s   p50 {:>7.2} ms   p99 {:>7.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    let (rate, p50, p99) = run(node.addr, &tls, connections.min(4), 256, seconds);
    println!(
        "   POST /v1/records:batch:  {rate:>9.0} records/s   p50 {:>7.2} ms   p99 {:>7.2} ms (256 per request)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!("   (no nginx baseline yet: see issue #6)");
}
