//! `gateway quickstart`: the README's first command. Its printed curl commands must work as printed.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};

use e2e::{eventually, gateway_bin};
use serde_json::Value;

#[test]
fn the_printed_curl_commands_work_exactly_as_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let free = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, metrics_port) = (free(), free());
    let mut child = Command::new(gateway_bin())
        .current_dir(tmp.path())
        .args([
            "quickstart",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .env("LEDGERGATE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut commands = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(cmd) = line.strip_prefix("  curl ") {
            commands.push(format!("curl -sS {cmd}"));
        }
        if line.starts_with("Stop with") {
            break;
        }
    }
    assert_eq!(
        commands.len(),
        5,
        "submit, read back, checkpoint, metrics, readiness: {commands:?}"
    );
    assert!(
        tmp.path().join("ledgergate-data/gateway.yaml").exists(),
        "the default directory is ./ledgergate-data"
    );
    let run = |cmd: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let receipt: Value = eventually("the quickstart node to answer", || {
        let (ok, out) = run(&commands[0]);
        ok.then(|| serde_json::from_str(&out).ok()).flatten()
    });
    // The node's own audit entries (its start, its keys' creation) come before the record.
    assert!(receipt["index"].as_u64().is_some(), "{receipt}");
    let (ok, read) = run(&commands[1]);
    assert!(ok, "{read}");
    let read: Value = serde_json::from_str(&read).unwrap();
    assert_eq!(read["record"]["payload"]["phone"], "***********4567");
    let (ok, note) = run(&commands[2]);
    assert!(
        ok && note.starts_with(&format!(
            "ledgergate.local/log\n{}\n",
            receipt["index"].as_u64().unwrap() + 1
        )),
        "{note}"
    );
    // Where metrics are served, as printed: the record just submitted is counted.
    let (ok, metrics) = run(&commands[3]);
    assert!(
        ok && metrics
            .contains("ledgergate_records_total{outcome=\"created\",type=\"loan_application\"} 1"),
        "{metrics}"
    );
    let (ok, ready) = run(&commands[4]);
    assert!(ok && ready.contains("\"ready\":true"), "{ready}");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
