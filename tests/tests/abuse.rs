//! A node under abuse, as an attacker with a valid certificate (or none) would try it: oversized,
//! stalled, idle and too many connections and requests. Each case asserts the exact answer and that a
//! normal client is served while it goes on.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::node::{Node, init_node};
use e2e::raw::{RawAnswer, closed_within, read_answer, tcp_from, tls_from, write_lossy};
use e2e::{gateway, stderr};
use serde_json::{Value, json};

const HOME: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn source(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A node whose gateway.yaml has this `ingress:` section appended.
fn node_with(tmp: &Path, ingress: &str) -> std::path::PathBuf {
    let dir = init_node(tmp);
    e2e::node::append_config(&dir, &format!("ingress: {{ {ingress} }}"));
    dir
}

fn loan(id: &str) -> Value {
    json!({ "type": "loan_application", "id": id, "fields": {
        "applicant_id": format!("P-{id}"), "salary": 61000, "amount": 1000, "currency": "EUR", "age": 44 } })
}

/// A normal client is served: a submission gets its 201.
fn served(node: &Node, id: &str) {
    let a = node.client("provider-b").submit(node.addr, &loan(id));
    assert_eq!(
        a.status,
        201,
        "a normal client was not served: {}",
        a.text()
    );
}

fn assert_problem(a: &RawAnswer, status: u16, code: &str) {
    assert_eq!(a.status, status, "{a:?}");
    assert_eq!(
        a.header("content-type"),
        Some("application/problem+json"),
        "{a:?}"
    );
    assert_eq!(a.json()["code"], code, "{a:?}");
    assert_eq!(a.json()["status"], status, "{a:?}");
}

fn post_head(path: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n{extra}\r\n"
    )
}

#[test]
fn bodies_past_the_subject_limit_are_refused_as_soon_as_they_pass_it() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let pki = node.dir.join("pki");
    // Declared too large: refused before a byte of the body is sent (the example policy allows 64 KiB).
    let mut s = tls_from(&pki, "provider-a", HOME, node.addr, &[]).unwrap();
    write_lossy(
        &mut s,
        post_head("/v1/records", "content-length: 16777216\r\n").as_bytes(),
    );
    let a = read_answer(&mut s).expect("an answer before any body");
    assert_problem(&a, 413, "payload_too_large");
    assert_eq!(
        a.json()["detail"],
        "the body is more than the 65536 bytes this subject may send"
    );
    // Streamed without a length: refused once past the limit, not after 16 MiB.
    let mut s = tls_from(&pki, "provider-a", HOME, node.addr, &[]).unwrap();
    write_lossy(
        &mut s,
        post_head("/v1/records", "transfer-encoding: chunked\r\n").as_bytes(),
    );
    let chunk = format!("{:x}\r\n{}\r\n", 8192, "x".repeat(8192));
    for _ in 0..12 {
        write_lossy(&mut s, chunk.as_bytes());
    }
    assert_problem(&read_answer(&mut s).unwrap(), 413, "payload_too_large");
    // A batch: its own, larger limit, still refused when declared past it.
    let mut s = tls_from(&pki, "provider-a", HOME, node.addr, &[]).unwrap();
    write_lossy(
        &mut s,
        post_head("/v1/records:batch", "content-length: 1073741824\r\n").as_bytes(),
    );
    assert_problem(&read_answer(&mut s).unwrap(), 413, "payload_too_large");
    served(&node, "B-1");
}

#[test]
fn a_subject_over_its_rate_is_refused_before_its_body_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let subjects = dir.join("policies/subjects.yaml");
    let text = std::fs::read_to_string(&subjects).unwrap();
    let slow = text.replace(
        "rate_per_second: 200, burst: 400",
        "rate_per_second: 0.01, burst: 1",
    );
    assert_ne!(text, slow);
    std::fs::write(&subjects, slow).unwrap();
    let node = Node::start(&dir);
    let a = node.client("provider-a").submit(node.addr, &loan("R-1"));
    assert_eq!(a.status, 201, "{}", a.text());
    // Its bucket is empty: the answer comes with no body sent at all.
    let mut s = tls_from(&node.dir.join("pki"), "provider-a", HOME, node.addr, &[]).unwrap();
    write_lossy(
        &mut s,
        post_head("/v1/records", "content-length: 60000\r\n").as_bytes(),
    );
    let a = read_answer(&mut s).expect("an answer before any body");
    assert_problem(&a, 429, "rate_limited");
    assert!(a.header("retry-after").is_some(), "{a:?}");
    // Another subject has a bucket of its own.
    served(&node, "R-2");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_hundred_large_bodies_at_once_do_not_exhaust_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let pid = node.pid().unwrap();
    served(&node, "M-0");
    let before = rss_kib(pid);
    // 100 connections from 4 addresses, each streaming a 16 MiB body.
    let abusers: Vec<_> = (0..100u8)
        .map(|i| {
            let (pki, addr) = (node.dir.join("pki"), node.addr);
            std::thread::spawn(move || {
                let mut s = tls_from(&pki, "provider-a", source(10 + i % 4), addr, &[]).unwrap();
                write_lossy(
                    &mut s,
                    post_head("/v1/records", "content-length: 16777216\r\n").as_bytes(),
                );
                let a = read_answer(&mut s);
                let mut s = tls_from(&pki, "provider-a", source(10 + i % 4), addr, &[]).unwrap();
                write_lossy(
                    &mut s,
                    post_head("/v1/records", "transfer-encoding: chunked\r\n").as_bytes(),
                );
                let chunk = format!("{:x}\r\n{}\r\n", 65536, "y".repeat(65536));
                for _ in 0..256 {
                    if s.write_all(chunk.as_bytes()).is_err() {
                        break;
                    }
                }
                (a, read_answer(&mut s))
            })
        })
        .collect();
    for t in abusers {
        let (declared, streamed) = t.join().unwrap();
        assert_problem(&declared.unwrap(), 413, "payload_too_large");
        if let Some(a) = streamed {
            assert_problem(&a, 413, "payload_too_large");
        }
    }
    served(&node, "M-1");
    let after = rss_kib(pid);
    // Before: 100 × 16 MiB bodies were read whole (1.7 GB). Now each is cut at 64 KiB.
    assert!(
        after < before + 128 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[test]
fn stalled_requests_and_idle_connections_are_closed_on_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node_with(
        tmp.path(),
        "header_timeout_seconds: 1, body_timeout_seconds: 1, idle_timeout_seconds: 2",
    );
    let node = Node::start(&dir);
    let pki = node.dir.join("pki");
    let patience = Duration::from_secs(6);
    // Headers that never end: the connection is closed.
    let mut s = tls_from(&pki, "provider-a", HOME, node.addr, &[]).unwrap();
    write_lossy(&mut s, b"POST /v1/records HTTP/1.1\r\nhost: localhost\r\n");
    let started = Instant::now();
    assert!(
        closed_within(&mut s, patience),
        "unfinished headers were held"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // A body shorter than its Content-Length: 408, then closed.
    let mut s = tls_from(&pki, "provider-a", HOME, node.addr, &[]).unwrap();
    write_lossy(
        &mut s,
        post_head("/v1/records", "content-length: 100\r\n").as_bytes(),
    );
    write_lossy(&mut s, b"{\"type\":");
    let a = read_answer(&mut s).expect("an answer to a stalled body");
    assert_problem(&a, 408, "request_timeout");
    // A chunked body that never ends: the same.
    let mut s = tls_from(&pki, "provider-a", HOME, node.addr, &[]).unwrap();
    write_lossy(
        &mut s,
        post_head("/v1/records", "transfer-encoding: chunked\r\n").as_bytes(),
    );
    write_lossy(&mut s, b"5\r\n{\"typ\r\n");
    assert_problem(&read_answer(&mut s).unwrap(), 408, "request_timeout");
    // A TLS connection that never sends a request, over HTTP/1.1 and over HTTP/2.
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut s = tls_from(&pki, "provider-a", HOME, node.addr, &[alpn]).unwrap();
        let started = Instant::now();
        assert!(
            closed_within(&mut s, patience),
            "an idle connection was held"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    served(&node, "T-1");
}

#[test]
fn connections_are_capped_per_source_and_in_all() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node_with(
        tmp.path(),
        "max_connections: 8, max_connections_per_source: 3",
    );
    let node = Node::start(&dir);
    let pki = node.dir.join("pki");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tls_from(&pki, "provider-a", source(20), node.addr, &[]).unwrap());
    }
    // A fourth from the same address is closed before the handshake.
    assert!(tls_from(&pki, "provider-a", source(20), node.addr, &[]).is_err());
    served(&node, "C-1");
    // Up to the node's cap from other addresses (one slot kept free for the check below).
    for last in [21, 21, 22, 22] {
        held.push(tls_from(&pki, "provider-a", source(last), node.addr, &[]).unwrap());
    }
    served(&node, "C-2");
    // The normal client's connection gives its slot back once the node sees it close.
    held.push(e2e::eventually(
        "the normal client's slot given back",
        || tls_from(&pki, "provider-a", source(23), node.addr, &[]).ok(),
    ));
    assert!(tls_from(&pki, "provider-a", source(24), node.addr, &[]).is_err());
    // Given back when they close.
    held.clear();
    e2e::eventually("slots given back", || {
        tls_from(&pki, "provider-a", source(20), node.addr, &[])
            .ok()
            .map(drop)
    });
    served(&node, "C-3");
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_file_descriptors_the_node_pauses_logs_once_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = node_with(
        tmp.path(),
        "max_connections: 1000, max_connections_per_source: 1000",
    );
    let log = tmp.path().join("node.log");
    let node = Node::start_with(
        &dir,
        &["prlimit", "--nofile=64:64", "--"],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let pid = node.pid().unwrap();
    // More idle TCP connections than the node has descriptors.
    let held: Vec<_> = (0..100)
        .filter_map(|_| tcp_from(HOME, node.addr, Duration::from_secs(1)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(3));
    let (secs, ticks) = (t0.elapsed().as_secs_f64(), cpu_ticks(pid) - c0);
    // Clock ticks are 1/100 s here: spinning on accept burned a whole core (≈300 ticks in 3 s).
    #[allow(clippy::cast_precision_loss)]
    let share = ticks as f64 / 100.0 / secs;
    assert!(
        share < 0.2,
        "the node used {share:.2} of a core while out of descriptors"
    );
    drop(held);
    e2e::eventually("the node to serve again", || {
        let a = node
            .client("provider-b")
            .request(node.addr, "GET", "/v1/checkpoint", None)
            .ok()?;
        (a.status == 200).then_some(())
    });
    served(&node, "F-1");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = text.matches("accept failed").count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} accept-failure lines:\n{text}"
    );
}

#[test]
fn every_error_is_problem_json_with_a_code() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let pki = node.dir.join("pki");
    let ask = |request: String| {
        let mut s = tls_from(&pki, "provider-a", HOME, node.addr, &[]).unwrap();
        write_lossy(&mut s, request.as_bytes());
        read_answer(&mut s).expect("an answer")
    };
    let get = |target: &str, extra: &str| {
        ask(format!(
            "GET {target} HTTP/1.1\r\nhost: localhost\r\n{extra}\r\n"
        ))
    };
    assert_problem(&get("/v1/records/%ff", ""), 400, "invalid_request");
    assert_problem(
        &get("/v1/records/A-1?provider=a&provider=b", ""),
        400,
        "invalid_request",
    );
    assert_problem(
        &get("/v1/proofs/inclusion?index=x", ""),
        400,
        "invalid_request",
    );
    assert_problem(
        &get(&format!("/v1/records/{}", "a".repeat(10_000)), ""),
        414,
        "uri_too_long",
    );
    let big = format!("x-filler: {}\r\n", "b".repeat(20_000));
    assert_problem(&get("/v1/checkpoint", &big), 431, "header_fields_too_large");
    assert_problem(&get("/nowhere", ""), 404, "not_found");
    assert_problem(
        &ask(post_head("/v1/checkpoint", "content-length: 0\r\n")),
        405,
        "method_not_allowed",
    );
    served(&node, "E-1");
}

#[test]
#[cfg(unix)]
fn a_passphrase_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let dir = init_node(tmp.path());
    let pass = dir.join("kek.pass");
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = gateway(&[
        "serve",
        "--config",
        dir.join("gateway.yaml").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out),
        format!(
            "gateway: serve: key-encryption key: {}: mode 0666 lets others in; it must be the owner's alone (chmod 600)\n",
            pass.display()
        )
    );
}

/// `n` concurrent POSTs of `size` bytes each on one HTTP/2 connection as provider-a: their statuses.
fn h2_streams(node: &Node, n: usize, size: usize) -> Vec<u16> {
    use http_body_util::{BodyExt as _, Full};
    let client = node.client("provider-a").http2();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut sender = client.h2_sender(node.addr).await.unwrap();
        let body = bytes::Bytes::from(vec![b'z'; size]);
        let mut tasks = Vec::new();
        for _ in 0..n {
            let req = hyper::Request::post("https://localhost/v1/records")
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
                .unwrap();
            sender.ready().await.unwrap();
            let answer = sender.send_request(req);
            tasks.push(tokio::spawn(async move {
                match answer.await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let _ = resp.into_body().collect().await;
                        status
                    }
                    Err(_) => 0, // the stream was reset
                }
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    })
}

#[test]
fn forty_large_streams_on_one_http2_connection_are_each_refused_and_memory_stays_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let pid = node.pid().unwrap();
    served(&node, "H-0");
    let before = rss_kib(pid);
    let statuses = h2_streams(&node, 40, 16 * 1024 * 1024);
    assert!(statuses.iter().all(|s| *s == 413), "{statuses:?}");
    let after = rss_kib(pid);
    // Before: 711 MB for this. Each stream is now cut at the subject's 64 KiB.
    assert!(
        after < before + 128 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    served(&node, "H-1");
}

#[test]
fn http2_connections_advertise_the_configured_stream_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&node_with(tmp.path(), "max_streams_per_connection: 7"));
    let client = node.client("provider-a").http2();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let advertised = rt.block_on(async {
        let tls = client.tls(node.addr).await.unwrap();
        let (mut sender, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(conn);
        // One round trip, so that the server's SETTINGS have been read.
        let req = get_request("/v1/checkpoint");
        let (answer, _) = sender.send_request(req, true).unwrap();
        assert_eq!(answer.await.unwrap().status(), 200);
        sender.current_max_send_streams()
    });
    assert_eq!(advertised, 7);
    served(&node, "S-1");
}

fn get_request(path: &str) -> hyper::Request<()> {
    hyper::Request::get(format!("https://localhost{path}"))
        .body(())
        .unwrap()
}
