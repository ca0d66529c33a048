//! Monitoring: a real node's `/metrics` (checked by `promtool check metrics`), `/healthz` and
//! `/readyz`, request ids in answers and problems, and a real Prometheus server scraping the node with
//! `deploy/prometheus/prometheus.yml`, which must see the values the test caused and answer every
//! query of the Grafana dashboard; the alert rules pass `promtool check rules` and their unit tests.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::node::{Node, init_node};
use e2e::stderr;
use serde_json::{Value, json};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn loan(id: &str) -> Value {
    json!({ "type": "loan_application", "id": id, "fields": {
        "applicant_id": format!("P-{id}"), "amount": 10, "currency": "EUR", "salary": 1000 } })
}

/// `promtool check metrics` on a scrape: Prometheus's own linter (names, types, help, units).
fn promtool_check_metrics(text: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

use e2e::node::sample;

#[test]
fn the_node_serves_metrics_health_and_readiness_and_ids_every_request() {
    let tmp = tempfile::tempdir().unwrap();
    let log_path = tmp.path().join("node.log");
    let mut node = Node::start_logging(
        &init_node(tmp.path()),
        &[],
        Stdio::from(std::fs::File::create(&log_path).unwrap()),
        &["--log-format", "json"],
        "warn",
    );
    let (status, body) = node.monitoring("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = node.monitoring("/readyz");
    assert_eq!((status, body.as_str()), (200, r#"{"ready":true}"#));

    let a = node.client("provider-a");
    for id in ["M-1", "M-2", "M-3"] {
        assert_eq!(a.submit(node.addr, &loan(id)).status, 201);
    }
    assert_eq!(a.submit(node.addr, &loan("M-1")).status, 200);
    let mut bad = loan("M-4");
    bad["fields"]["currency"] = json!("XXX");
    let refused = a.submit(node.addr, &bad);
    assert_eq!(refused.status, 422);
    // The problem's instance is the request id the answer carries.
    let id = refused.request_id.clone().expect("x-request-id");
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(
        refused.json()["instance"],
        format!("urn:ledgergate:request:{id}")
    );
    let ok = a.submit(node.addr, &loan("M-5"));
    assert_ne!(ok.request_id, Some(id), "ids differ per request");

    let (status, text) = node.monitoring("/metrics");
    assert_eq!(status, 200);
    promtool_check_metrics(&text);
    for (series, want) in [
        (
            r#"ledgergate_records_total{outcome="created",type="loan_application"}"#,
            4.0,
        ),
        (
            r#"ledgergate_records_total{outcome="duplicate",type="loan_application"}"#,
            1.0,
        ),
        (
            r#"ledgergate_records_total{outcome="invalid_field",type="loan_application"}"#,
            1.0,
        ),
        (
            r#"ledgergate_vault_sealed_values_total{type="loan_application"}"#,
            4.0,
        ),
        (
            r#"ledgergate_request_duration_seconds_count{route="/v1/records"}"#,
            6.0,
        ),
        // Records and the node's own audit entries.
        ("ledgergate_ledger_entries", node.tree_size() as f64),
        ("ledgergate_ready", 1.0),
        (r#"ledgergate_key_usable{key="checkpoint-signing"}"#, 1.0),
        (
            r#"ledgergate_key_versions{key="checkpoint-signing",state="active"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in:\n{text}");
    }
    assert!(
        sample(&text, "ledgergate_ledger_sync_duration_seconds_count").is_some_and(|n| n >= 1.0)
    );
    // Labels are bounded: no record id or subject anywhere in the exposition.
    for id in ["M-1", "P-M-1", "provider-a"] {
        assert!(!text.contains(id), "{id} is in the metrics");
    }

    // A revoked checkpoint key makes the node unready, with the reason, at once.
    let out = node.keymgr(
        "officer",
        &[
            "revoke",
            "checkpoint-signing",
            "--version",
            "1",
            "--reason",
            "retired",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, body) = node.monitoring("/readyz");
    assert_eq!(status, 503, "{body}");
    let problem: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "not_ready");
    assert_eq!(problem["detail"], "no usable checkpoint-signing key");
    let (_, text) = node.monitoring("/metrics");
    assert_eq!(sample(&text, "ledgergate_ready"), Some(0.0));
    assert_eq!(
        sample(&text, r#"ledgergate_key_usable{key="checkpoint-signing"}"#),
        Some(0.0)
    );
    let (status, body) = node.monitoring("/nothing-here");
    assert_eq!(status, 404, "{body}");

    // A warning logged while answering a request carries that request's id.
    let reload = node
        .client("officer")
        .request(node.addr, "POST", "/admin/v1/reload", None)
        .unwrap();
    let reload_id = reload.request_id.clone().expect("x-request-id");
    assert_eq!(node.stop(), Some(0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let line: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["fields"]["event"] == "reload_requested")
        .unwrap_or_else(|| panic!("no reload_requested event in:\n{log}"));
    assert_eq!(line["span"]["id"], reload_id.as_str(), "{line}");
    assert_eq!(line["span"]["route"], "/admin/v1/reload", "{line}");
}

/// A Prometheus server on loopback, scraping with the deployed configuration (faster intervals).
struct Prometheus {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let config = std::fs::read_to_string(deploy("prometheus/prometheus.yml")).unwrap();
        let config = config
            .replace("127.0.0.1:9464", target)
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s");
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        std::fs::copy(deploy("prometheus/alerts.yml"), dir.join("alerts.yml")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/test installs it)");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: dir.join("prometheus.log"),
        }
    }

    /// An instant query through the HTTP API: its result vector (the query must succeed).
    fn query(&self, expr: &str) -> Vec<Value> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--data-urlencode"])
            .arg(format!("query={expr}"))
            .arg(format!("{}/api/v1/query", self.base))
            .output()
            .unwrap();
        let answer: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{expr}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `expr` has exactly `want` as its one value.
    fn wait_for(&self, expr: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = Vec::new();
        while Instant::now() < deadline {
            // `-f`: Prometheus answers 503 until it is ready, and curl without it exits 0 on that.
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", &format!("{}/-/ready", self.base)])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                last = self.query(expr);
                let value = last
                    .first()
                    .and_then(|s| s["value"][1].as_str())
                    .and_then(|v| v.parse::<f64>().ok());
                if last.len() == 1 && value == Some(want) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "{expr} never became {want}: last {last:?}; prometheus log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

#[test]
fn a_real_prometheus_scrapes_the_node_and_answers_every_dashboard_query() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start(&init_node(tmp.path()));
    let prometheus = Prometheus::start(tmp.path(), &node.metrics.to_string());
    prometheus.wait_for(r#"up{job="ledgergate"}"#, 1.0);

    // What the test causes: created records, refused ones, a rate-limited burst, a non-owner's
    // unseal and a reload.
    let a = node.client("provider-a");
    for i in 0..7 {
        assert_eq!(a.submit(node.addr, &loan(&format!("PR-{i}"))).status, 201);
    }
    let lab = json!({ "type": "lab_result", "id": "PR-LAB", "fields": {
        "patient_id": "person-2", "birth_date": "1980-01-02", "test_code": "HB", "value": 13.5,
        "diagnosis": "anaemia", "collected_at": "2026-11-30T10:00:00Z" } });
    assert_eq!(a.submit(node.addr, &lab).status, 201);
    let mut bad = loan("PR-BAD");
    bad["fields"]["currency"] = json!("XXX");
    assert_eq!(a.submit(node.addr, &bad).status, 422);
    let registry = node.client("registry");
    let read = registry
        .request(
            node.addr,
            "GET",
            "/v1/records/PR-LAB?provider=provider-a",
            None,
        )
        .unwrap();
    assert_eq!(read.json()["sealed"]["diagnosis"]["value"], "anaemia");
    // The registry may not submit and has the conservative default rate: a burst is refused with 429s.
    let mut limited = 0;
    for i in 0..60 {
        let answer = registry.submit(node.addr, &loan(&format!("RL-{i}")));
        if answer.status == 429 {
            limited += 1;
        }
    }
    assert!(limited > 0, "no request was rate-limited");
    let reload = node
        .client("officer")
        .request(node.addr, "POST", "/admin/v1/reload", None)
        .unwrap();
    assert_eq!(reload.status, 200, "{}", reload.text());

    // Prometheus sees exactly that.
    prometheus.wait_for(
        r#"ledgergate_records_total{type="loan_application",outcome="created"}"#,
        7.0,
    );
    prometheus.wait_for(
        r#"ledgergate_records_total{type="loan_application",outcome="invalid_field"}"#,
        1.0,
    );
    prometheus.wait_for("ledgergate_rate_limited_total", f64::from(limited));
    prometheus.wait_for(r#"ledgergate_unseals_total{type="lab_result"}"#, 1.0);
    prometheus.wait_for(r#"ledgergate_reloads_total{outcome="ok"}"#, 1.0);
    prometheus.wait_for("ledgergate_ledger_entries", node.tree_size() as f64);
    // Rates need two samples after the last change.
    std::thread::sleep(Duration::from_secs(3));

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/ledgergate.json")).unwrap())
            .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    assert!(exprs.len() >= 15, "{exprs:?}");
    for expr in &exprs {
        let result = prometheus.query(expr);
        assert!(
            !result.is_empty(),
            "the dashboard query {expr} returns no series"
        );
    }

    // The alert rules loaded and none fires on a healthy node.
    let out = Command::new("curl")
        .args(["-sS", &format!("{}/api/v1/rules", prometheus.base)])
        .output()
        .unwrap();
    let rules: Value = serde_json::from_slice(&out.stdout).unwrap();
    let group = &rules["data"]["groups"][0];
    assert_eq!(group["rules"].as_array().map(Vec::len), Some(8), "{rules}");
    for rule in group["rules"].as_array().unwrap() {
        assert_eq!(rule["health"], "ok", "{rule}");
        assert_ne!(rule["state"], "firing", "{rule}");
    }
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts_test.yml"][..],
        &["check", "config", "prometheus.yml"][..],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(deploy("prometheus"))
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
}
