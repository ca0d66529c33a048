//! Ingest load generator: N keep-alive mTLS connections against a real node (`gateway serve` on a fresh
//! `gateway init` directory), reporting records/s and p50/p99 latency for `POST /v1/records` (1 KiB
//! records) and for the batch endpoint.
//!
//! Run: `cargo bench --workspace --bench ingest` (`INGEST_CONNECTIONS`, `INGEST_BATCH_CONNECTIONS`,
//! `INGEST_SECONDS` to change the load; `INGEST_ONLY=consortium` runs only the node's own two rows and
//! the consortium's, for comparing versions of the consortium quickly; `INGEST_ONLY=node` only the
//! node's two rows, for comparing versions of the node's hot path; `INGEST_ONLY=handshakes` only the
//! handshake rows; `INGEST_ONLY=hsm` the node with its passphrase KEK against one with its KEK and
//! checkpoint key in a SoftHSM2 token). `--workspace` keeps the binaries' build identical to `cargo test --workspace`'s.
//!
//! The baseline, in the same run and with the same generator and certificates: nginx (Debian's
//! package; installed with apt-get when missing, which needs root) terminating mTLS and answering every
//! request with a static 201. It is what a user would otherwise put in front of a store, and bounds
//! what TLS + HTTP alone cost on this machine.
//!
//! Two rows run the same loads through an edge (`chain: remote`) in front of the same node: mTLS and
//! the record checks on the edge, the Noise channel, then the node; each compared with the same load
//! sent to the node itself right before and right after it (`INGEST_ONLY=edge` runs only these).
//!
//! The consortium rows run a 3-member consortium (`gateway init --role consortium`, all three on
//! these cores) with the same loads at its leader and at a follower (which forwards to the leader),
//! each compared with the same load on a node alone (started empty with the consortium) run right
//! before and right after it; then a member that was down while a batch load ran catches up, and
//! its rate (entries/s, through Raft's log) is reported.
//!
//! The handshake rows open a new connection per request (full mTLS handshake, no resumption) against
//! the same node, with a client offering X25519MLKEM768 (the default) and one offering X25519 only:
//! what the post-quantum key exchange costs.
//!
//! Two more rows say where the gap to it lies: the node answering the same requests on a path it does
//! not serve (404: its TLS, HTTP and routing, no work), and the pipeline alone, opened in this process
//! and called directly with the same records (the node's work with no TLS, HTTP or generator).

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

/// The node's allocator, so that the in-process pipeline runs as it does in `gateway serve`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tls(pki: &std::path::Path) -> Arc<rustls::ClientConfig> {
    tls_with(pki, None)
}

/// The client's configuration; with `groups`, only those key exchange groups are offered.
fn tls_with(
    pki: &std::path::Path,
    groups: Option<&[rustls::NamedGroup]>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(pki.join("provider-a.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(pki.join("provider-a.key")).unwrap();
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(groups) = groups {
        provider.kx_groups.retain(|g| groups.contains(&g.name()));
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
    )
}

/// Full mTLS handshakes per second against `addr`: `tasks` loops of connect, handshake (no
/// resumption), one request to a path the node does not serve, close.
fn handshake_rate(
    addr: std::net::SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    tasks: usize,
    seconds: u64,
) -> f64 {
    let mut config = (**tls).clone();
    config.resumption = rustls::client::Resumption::disabled();
    let config = Arc::new(config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let done: u64 = rt.block_on(async {
        let tasks: Vec<_> = (0..tasks)
            .map(|_| {
                let config = Arc::clone(&config);
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < until {
                        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                        let stream = tokio_rustls::TlsConnector::from(Arc::clone(&config))
                            .connect(ServerName::try_from("localhost").unwrap(), tcp)
                            .await
                            .unwrap();
                        let (mut sender, conn) =
                            hyper::client::conn::http1::handshake(TokioIo::new(stream))
                                .await
                                .unwrap();
                        tokio::spawn(conn);
                        let req = hyper::Request::get("/bench/handshake")
                            .header("host", "localhost")
                            .body(Full::new(bytes::Bytes::new()))
                            .unwrap();
                        let resp = sender.send_request(req).await.unwrap();
                        assert_eq!(resp.status().as_u16(), 404);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    done as f64 / started.elapsed().as_secs_f64()
}

/// The handshake rows: the same node, clients offering the post-quantum hybrid and X25519 only.
fn handshake_rows(node: &e2e::node::Node, pki: &std::path::Path, seconds: u64) {
    let hybrid = tls_with(pki, None);
    let classic = tls_with(pki, Some(&[rustls::NamedGroup::X25519]));
    let pq = handshake_rate(node.addr, &hybrid, 8, seconds);
    let x25519 = handshake_rate(node.addr, &classic, 8, seconds);
    println!(
        "   new connection per request, X25519MLKEM768: {pq:>8.0} handshakes/s   = {:.2}x X25519",
        pq / x25519
    );
    println!("   new connection per request, X25519 only:    {x25519:>8.0} handshakes/s");
}

/// `batch` 1 KiB loan applications (padded in fields the example policy allows to be long) with
/// unique ids `{prefix}-{n}-{k}`. Each applicant (data subject) is new, so that every record also makes
/// and stores a subject key; with `subjects: Some(m)` they recur among `m` applicants instead.
fn records_of(prefix: &str, n: u64, batch: usize, subjects: Option<u64>) -> Vec<String> {
    // The padding is made once: the generator shares the cores with the node, so it must cost little.
    static PADDING: std::sync::LazyLock<(String, String, String)> =
        std::sync::LazyLock::new(|| {
            (
                "N".repeat(190),
                format!("{}@example.org", "e".repeat(220)),
                "S".repeat(300),
            )
        });
    let (name, email, street) = &*PADDING;
    (0..batch as u64)
        .map(|k| {
            let id = format!("{prefix}-{n}-{k}");
            let subject = match subjects {
                Some(m) => format!("P-{}", (n * batch as u64 + k) % m),
                None => format!("P-{id}"),
            };
            format!(
                r#"{{"type":"loan_application","id":"{id}","fields":{{"applicant_id":"{subject}","name":"{name}","phone":"+49 170 1234567","email":"{email}","age":37,"birth_date":"1987-06-15","salary":52000.5,"amount":250000,"currency":"EUR","address":{{"street":"{street}","city":"Berlin","zip":"10115"}}}}}}"#
            )
        })
        .collect()
}

/// What a connection sends: `batch` records per request to `path` (their subjects as in [`records_of`],
/// their ids starting with `ids`, distinct per load so that no load resubmits another's ids to the same
/// node); a single record must be answered with `status`, a batch line counts when its status is 201.
#[derive(Clone, Copy)]
struct Load {
    ids: &'static str,
    path: &'static str,
    batch: usize,
    subjects: Option<u64>,
    status: u16,
}

/// `POST /v1/records`, one record per request.
const SINGLE: Load = Load {
    ids: "single",
    path: "/v1/records",
    batch: 1,
    subjects: None,
    status: 201,
};

/// `POST /v1/records:batch`, 256 records per request.
const BATCH: Load = Load {
    ids: "batch",
    path: "/v1/records:batch",
    batch: 256,
    subjects: None,
    status: 201,
};

/// Applicants among which the records of the `recurring` rows recur: every record about a known
/// person, as when a bank files many applications of its customers.
const RECURRING_SUBJECTS: u64 = 10_000;

/// The same request to a path nobody serves: the node answers 404 after TLS, HTTP and routing, with
/// no work. Against nginx (which answers 201 on every path) it is the baseline.
const NO_WORK: Load = Load {
    ids: "none",
    path: "/v1/no-such-endpoint",
    batch: 1,
    subjects: None,
    status: 404,
};

/// One connection sending requests back to back until `until`; returns each request's latency and
/// the records it carried.
async fn connection(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    worker: usize,
    load: Load,
    until: Instant,
) -> (Vec<Duration>, u64) {
    let batch = load.batch;
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
        let body = records_of(&format!("{}{worker}", load.ids), n, batch, load.subjects).join("\n");
        n += 1;
        let req = hyper::Request::post(load.path)
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
            assert_eq!(status, load.status, "{}", String::from_utf8_lossy(&bytes));
            records += 1;
        } else {
            // A line is `{"line":…,"receipt":…,"status":201}` (sorted keys): no need to search it.
            let created = bytes
                .split(|b| *b == b'\n')
                .filter(|l| l.ends_with(b"\"status\":201}"))
                .count();
            // Every record is new and valid: anything else is a fault, not a slower rate.
            assert_eq!(created, batch, "{}", String::from_utf8_lossy(&bytes));
            records += created as u64;
        }
    }
    (latencies, records)
}

fn run(
    addr: std::net::SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    connections: usize,
    load: Load,
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
            .map(|w| tokio::spawn(connection(addr, Arc::clone(tls), w, load, until)))
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

/// nginx terminating mTLS with the node's certificates and answering a static 201; stopped on drop.
struct Nginx {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    conf: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // `-s stop` rather than killing the master: its workers would outlive a SIGKILL.
        let _ = std::process::Command::new(nginx_binary())
            .arg("-p")
            .arg(self.dir.path())
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "stop"])
            .status();
        let _ = self.child.wait();
    }
}

/// Debian's nginx, installed first if it is missing.
fn nginx_binary() -> std::path::PathBuf {
    let path = std::path::PathBuf::from("/usr/sbin/nginx");
    if !path.exists() {
        println!("   installing nginx (apt-get install nginx) for the baseline");
        let ok = std::process::Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "nginx"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok && path.exists(),
            "could not install nginx (apt-get needs root)"
        );
    }
    path
}

fn start_nginx(pki: &std::path::Path) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (d, pki) = (dir.path().display(), pki.display());
    // One worker per core, no logging of requests, keep-alive for the whole run, TLS 1.3 only (as the
    // gateway), the client certificate verified against the same CA.
    let conf = format!(
        r#"worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_max_body_size 16m;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate {pki}/server.pem;
        ssl_certificate_key {pki}/server.key;
        ssl_client_certificate {pki}/ca.pem;
        ssl_verify_client on;
        location / {{
            default_type application/json;
            return 201 '{{"status":"accepted"}}\n';
        }}
    }}
}}
"#
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = std::process::Command::new(nginx_binary())
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    e2e::eventually("nginx listening", || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    });
    Nginx {
        child,
        addr,
        conf: conf_path,
        dir,
    }
}

fn report(what: &str, (rate, p50, p99): (f64, Duration, Duration), note: &str) {
    println!(
        "   {what:<26} {rate:>9.0} records/s   p50 {:>7.2} ms   p99 {:>7.2} ms{note}",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
}

/// The node's own work without TLS, HTTP or a generator sharing the cores: the pipeline opened in this
/// process as `gateway serve` opens it (on a fresh node directory), `tasks` submitters calling it with
/// the records `load` describes. What is left when the network side costs nothing: a ceiling for the
/// served rates. (Without the served node's once-a-second key-usage indexer.)
fn in_process(tasks: usize, load: Load, seconds: u64) -> f64 {
    let tmp = tempfile::tempdir().unwrap();
    let dir = e2e::node::init_node(tmp.path());
    e2e::node::unlimited_rate(&dir);
    let config = gateway::config::Config::load(&dir.join("gateway.yaml")).unwrap();
    let der = CertificateDer::from_pem_file(dir.join("pki/provider-a.pem")).unwrap();
    let peer = Arc::new(gateway::ingress::identity::peer_identity(&der).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pipeline, ledger) = gateway::serve::open_pipeline(
        &config,
        std::sync::Arc::new(gateway::metrics::Metrics::new().unwrap()),
    )
    .unwrap();
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let records: u64 = rt.block_on(async {
        let tasks: Vec<_> = (0..tasks)
            .map(|w| {
                let (pipeline, peer) = (Arc::clone(&pipeline), Arc::clone(&peer));
                tokio::spawn(async move {
                    let (mut records, mut n) = (0u64, 0u64);
                    while Instant::now() < until {
                        let lines =
                            records_of(&format!("{}{w}", load.ids), n, load.batch, load.subjects);
                        n += 1;
                        let refs: Vec<&[u8]> = lines.iter().map(String::as_bytes).collect();
                        for outcome in pipeline.submit_batch(&peer, &refs).await {
                            assert!(outcome.unwrap().created);
                            records += 1;
                        }
                    }
                    records
                })
            })
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap();
        }
        sum
    });
    let rate = records as f64 / started.elapsed().as_secs_f64();
    drop(pipeline);
    if let Ok(ledger) = Arc::try_unwrap(ledger) {
        ledger.close();
    }
    rate
}

fn main() {
    let connections = env_or("INGEST_CONNECTIONS", 64) as usize;
    let seconds = env_or("INGEST_SECONDS", 10);
    let tmp = tempfile::tempdir().unwrap();
    let dir = e2e::node::init_node(tmp.path());
    e2e::node::unlimited_rate(&dir);
    e2e::node::lift_connection_caps(&dir, connections);
    // An edge in front of the same node (`gateway init --role edge`, before the node starts: it reads
    // the stopped key store and adds the node's channel listener).
    let edge_dir = tmp.path().join("edge");
    let made = e2e::gateway(&[
        "init",
        "--role",
        "edge",
        "--ledger",
        dir.to_str().unwrap(),
        "--dir",
        edge_dir.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", e2e::stderr(&made));
    e2e::node::lift_connection_caps(&edge_dir, connections);
    let tls = tls(&dir.join("pki"));
    println!(
        "ingest benchmark: {connections} keep-alive mTLS connections, {seconds} s each, 1 KiB records, generator on the same machine"
    );
    let batch_connections = env_or("INGEST_BATCH_CONNECTIONS", 8) as usize;
    let only = std::env::var("INGEST_ONLY").unwrap_or_default();
    if only == "hsm" {
        hsm_rows(
            tmp.path(),
            &dir,
            &tls,
            connections,
            batch_connections,
            seconds,
        );
        return;
    }
    if only == "edge" {
        let node = e2e::node::Node::start(&dir);
        let edge = e2e::node::Node::start(&edge_dir);
        edge_rows(&node, &edge, &tls, connections, batch_connections, seconds);
        return;
    }
    if only == "handshakes" {
        let node = e2e::node::Node::start(&dir);
        handshake_rows(&node, &dir.join("pki"), seconds);
        return;
    }
    if only == "consortium" || only == "node" {
        let node = e2e::node::Node::start(&dir);
        let single = run(node.addr, &tls, connections, SINGLE, seconds);
        report("POST /v1/records:", single, "");
        let batch = run(node.addr, &tls, batch_connections, BATCH, seconds);
        report("POST /v1/records:batch:", batch, "   (256 per request)");
        if only == "node" {
            return;
        }
        drop(node);
        consortium_rows(tmp.path(), connections, batch_connections, seconds);
        return;
    }
    let baseline = {
        let nginx = start_nginx(&dir.join("pki"));
        run(nginx.addr, &tls, connections, SINGLE, seconds)
    };
    report("nginx static 201 (base):", baseline, "");
    let node = e2e::node::Node::start(&dir);
    let no_work = run(node.addr, &tls, connections, NO_WORK, seconds);
    report(
        "node, 404 (no work):",
        no_work,
        &format!("   = {:.2}x nginx", no_work.0 / baseline.0),
    );
    let single = run(node.addr, &tls, connections, SINGLE, seconds);
    report(
        "POST /v1/records:",
        single,
        &format!("   = {:.2}x nginx", single.0 / baseline.0),
    );
    let batch = run(node.addr, &tls, batch_connections, BATCH, seconds);
    report("POST /v1/records:batch:", batch, "   (256 per request)");
    handshake_rows(&node, &dir.join("pki"), seconds);
    let recurring = Load {
        ids: "recurring",
        subjects: Some(RECURRING_SUBJECTS),
        ..BATCH
    };
    let batch_recurring = run(node.addr, &tls, batch_connections, recurring, seconds);
    report(
        "  the same, recurring:",
        batch_recurring,
        "   (10,000 applicants: a key is made once each)",
    );
    let edge = e2e::node::Node::start(&edge_dir);
    edge_rows(&node, &edge, &tls, connections, batch_connections, seconds);
    drop(edge);
    drop(node);
    consortium_rows(tmp.path(), connections, batch_connections, seconds);
    println!("   in process, no TLS, HTTP or generator:");
    let alone = [
        ("POST /v1/records", connections, SINGLE),
        ("batch", batch_connections, BATCH),
        ("batch, recurring", batch_connections, recurring),
    ];
    for (what, tasks, load) in alone {
        let rate = in_process(tasks, load, seconds);
        println!("   pipeline alone, {what:<17} {rate:>8.0} records/s   ({tasks} tasks)");
    }
}

/// The same loads against the node with its passphrase KEK and against a second node whose KEK and
/// checkpoint key are in a SoftHSM2 token (migrated with `keymgr change-kek --to-pkcs11`, the
/// checkpoint key rotated into the token), one after the other in this run. Every record has a new
/// applicant, so every record makes a subject key, wrapped in the token.
fn hsm_rows(
    tmp: &std::path::Path,
    dir: &std::path::Path,
    tls: &Arc<rustls::ClientConfig>,
    connections: usize,
    batch_connections: usize,
    seconds: u64,
) {
    let node = e2e::node::Node::start(dir);
    let single = run(node.addr, tls, connections, SINGLE, seconds);
    report("passphrase KEK, POST /v1/records:", single, "");
    let batch = run(node.addr, tls, batch_connections, BATCH, seconds);
    report("passphrase KEK, batch:", batch, "   (256 per request)");
    let recurring = Load {
        ids: "recurring",
        subjects: Some(RECURRING_SUBJECTS),
        ..BATCH
    };
    let known = run(node.addr, tls, batch_connections, recurring, seconds);
    report("passphrase KEK, batch, recurring:", known, "");
    drop(node);
    let hsm_dir = e2e::node::init_node(&tmp.join("hsm"));
    e2e::node::unlimited_rate(&hsm_dir);
    e2e::node::lift_connection_caps(&hsm_dir, connections);
    let hsm = e2e::softhsm::SoftHsm::new(&tmp.join("hsm"));
    hsm.migrate(&hsm_dir);
    let node = hsm.start(&hsm_dir);
    let rotated = node.keymgr("officer", &["rotate", "checkpoint-signing"]);
    assert!(rotated.status.success(), "{}", e2e::stderr(&rotated));
    let hsm_tls = tls_with(&hsm_dir.join("pki"), None);
    let single_hsm = run(node.addr, &hsm_tls, connections, SINGLE, seconds);
    report(
        "SoftHSM2 KEK + signer, POST /v1/records:",
        single_hsm,
        &format!("   = {:.2}x the passphrase KEK", single_hsm.0 / single.0),
    );
    let batch_hsm = run(node.addr, &hsm_tls, batch_connections, BATCH, seconds);
    report(
        "SoftHSM2 KEK + signer, batch:",
        batch_hsm,
        &format!("   = {:.2}x the passphrase KEK", batch_hsm.0 / batch.0),
    );
    let known_hsm = run(node.addr, &hsm_tls, batch_connections, recurring, seconds);
    report(
        "SoftHSM2 KEK + signer, batch, recurring:",
        known_hsm,
        &format!("   = {:.2}x the passphrase KEK", known_hsm.0 / known.0),
    );
}

/// CPU time (user + system) the node's process has used so far, in seconds; 0 where /proc does not
/// say.
fn cpu_seconds(node: &e2e::node::Node) -> f64 {
    // Clock ticks per second: 100 on Linux on every architecture this runs on (`getconf CLK_TCK`).
    const TICKS: f64 = 100.0;
    let Some(stat) = node
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
    else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces, so split after its closing paren):
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / TICKS
}

/// Through the edge: its TLS, HTTP and checks, then the channel, then `node`. On this machine the
/// edge shares the two cores with the node and the generator. Each row is compared with the same
/// load sent to the node itself right before and right after it (the edge idle meanwhile), as the
/// consortium's rows are: the machine's speed drifts within minutes.
fn edge_rows(
    node: &e2e::node::Node,
    edge: &e2e::node::Node,
    tls: &Arc<rustls::ClientConfig>,
    connections: usize,
    batch_connections: usize,
    seconds: u64,
) {
    edge.wait_ready();
    let rows = [
        (
            "edge → node, POST /v1/records:",
            SINGLE,
            ["edge", "edge-alone-1", "edge-alone-2"],
            connections,
        ),
        (
            "edge → node, batch:",
            BATCH,
            ["edge-batch", "edge-batch-alone-1", "edge-batch-alone-2"],
            batch_connections,
        ),
    ];
    for (what, load, [ids, before_ids, after_ids], conns) in rows {
        let with = |ids| Load { ids, ..load };
        let before = run(node.addr, tls, conns, with(before_ids), seconds);
        let through = run(edge.addr, tls, conns, with(ids), seconds);
        let after = run(node.addr, tls, conns, with(after_ids), seconds);
        report(
            what,
            through,
            &format!(
                "   = {:.2}x the node alone ({:.0} / {:.0} before / after)",
                through.0 / ((before.0 + after.0) / 2.0),
                before.0,
                after.0
            ),
        );
    }
}

/// The consortium's rows (see the module's doc). Each is compared with the same load on a node alone
/// (idle meanwhile, started empty with the consortium, so both grow alike) measured right before
/// and right after it: the machine's speed drifts by a third within a run, and rows minutes apart
/// compared its moments, not the code.
fn consortium_rows(
    tmp: &std::path::Path,
    connections: usize,
    batch_connections: usize,
    seconds: u64,
) {
    let alone_parent = tmp.join("alone");
    std::fs::create_dir_all(&alone_parent).unwrap();
    let alone_dir = e2e::node::init_node(&alone_parent);
    e2e::node::unlimited_rate(&alone_dir);
    e2e::node::lift_connection_caps(&alone_dir, connections);
    let node = e2e::node::Node::start(&alone_dir);
    let node_tls = &tls(&alone_dir.join("pki"));
    let dir = tmp.join("consortium");
    let made = e2e::gateway(&[
        "init",
        "--role",
        "consortium",
        "--members",
        "3",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(made.status.success(), "{}", e2e::stderr(&made));
    let dirs: Vec<_> = ["alpha", "bravo", "charlie"]
        .iter()
        .map(|n| dir.join(n))
        .collect();
    for d in &dirs {
        e2e::node::unlimited_rate(d);
        e2e::node::lift_connection_caps(d, connections);
    }
    let mut nodes: Vec<e2e::node::Node> = dirs
        .iter()
        .map(|d| {
            e2e::node::Node::start_logging(
                d,
                &[],
                std::process::Stdio::null(),
                &["--log-format", "text"],
                "error",
            )
        })
        .collect();
    // Each member is waited for until it is ready, then until all agree on a leader (asking a
    // member for its metrics before it listens failed some runs).
    let leader = e2e::consortium::agreed_leader(&nodes.iter().collect::<Vec<_>>()) as usize - 1;
    let follower = (leader + 1) % 3;
    let addrs: Vec<std::net::SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let at = |i: usize, load: Load, conns: usize| {
        let tls = tls(&dirs[i].join("pki"));
        run(addrs[i], &tls, conns, load, seconds)
    };
    // (row, member, load, its ids at the node alone before and after it, connections)
    let rows = [
        (
            "consortium, at the leader, single:",
            leader,
            Load {
                ids: "c-single",
                ..SINGLE
            },
            ["a-single-1", "a-single-2"],
            connections,
        ),
        (
            "consortium, at the leader, batch:",
            leader,
            Load {
                ids: "c-batch",
                ..BATCH
            },
            ["a-batch-1", "a-batch-2"],
            batch_connections,
        ),
        (
            "consortium, at a follower, single:",
            follower,
            Load {
                ids: "c-f-single",
                ..SINGLE
            },
            ["a-single-3", "a-single-4"],
            connections,
        ),
        (
            "consortium, at a follower, batch:",
            follower,
            Load {
                ids: "c-f-batch",
                ..BATCH
            },
            ["a-batch-3", "a-batch-4"],
            batch_connections,
        ),
    ];
    for (what, i, load, [before_ids, after_ids], conns) in rows {
        let alone_before = run(
            node.addr,
            node_tls,
            conns,
            Load {
                ids: before_ids,
                ..load
            },
            seconds,
        );
        let before: Vec<f64> = nodes.iter().map(cpu_seconds).collect();
        let started = Instant::now();
        let r = at(i, load, conns);
        let wall = started.elapsed().as_secs_f64();
        let alone_after = run(
            node.addr,
            node_tls,
            conns,
            Load {
                ids: after_ids,
                ..load
            },
            seconds,
        );
        let alone = (alone_before.0 + alone_after.0) / 2.0;
        // Where the cores went: each member's CPU time over the row, as a share of one core.
        let shares: Vec<String> = nodes
            .iter()
            .zip(&before)
            .enumerate()
            .map(|(m, (n, b))| {
                let role = if m == leader { "leader" } else { "follower" };
                format!("{role} {:.0}%", (cpu_seconds(n) - b) / wall * 100.0)
            })
            .collect();
        report(
            what,
            r,
            &format!(
                "   = {:.2}x the node alone ({:.0} / {:.0} before / after)   (cpu: {})",
                r.0 / alone,
                alone_before.0,
                alone_after.0,
                shares.join(", ")
            ),
        );
    }
    // Catch-up: a member down while a batch load runs, then started again; timed from its start
    // (which includes verifying its own copy) until it holds what the leader holds.
    let entries = |n: &e2e::node::Node| n.metric("ledgergate_ledger_entries").unwrap_or(0.0) as u64;
    let lagging = (leader + 2) % 3;
    let had = entries(&nodes[lagging]);
    nodes[lagging].stop();
    let _ = at(
        leader,
        Load {
            ids: "c-catch-up",
            ..BATCH
        },
        batch_connections,
    );
    let target = entries(&nodes[leader]);
    let started = Instant::now();
    nodes[lagging] = e2e::node::Node::start_logging(
        &dirs[lagging],
        &[],
        std::process::Stdio::null(),
        &["--log-format", "text"],
        "error",
    );
    // Catching up tens of thousands of entries takes longer than the tests' patience.
    let deadline = Instant::now() + Duration::from_secs(600);
    while std::net::TcpStream::connect(nodes[lagging].metrics).is_err()
        || entries(&nodes[lagging]) < target
    {
        assert!(
            Instant::now() < deadline,
            "the member did not catch up in 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "   consortium catch-up: {} entries in {took:.1} s = {:.0} entries/s (from the member's start, its own copy verified first)",
        target - had,
        (target - had) as f64 / took
    );
}
