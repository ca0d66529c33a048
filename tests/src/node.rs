//! A running gateway for the black-box tests: a node directory made by `gateway init`, the real
//! `gateway serve` on a free loopback port, stopped with SIGTERM.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::client::Client;
use crate::{eventually, gateway, gateway_bin, stderr};

/// A node directory made by `gateway init`.
pub fn init_node(parent: &Path) -> PathBuf {
    let dir = parent.join("node");
    let out = gateway(&["init", "--dir", dir.to_str().unwrap_or_default()]);
    assert!(out.status.success(), "gateway init: {}", stderr(&out));
    dir
}

/// Lifts the development policy's rate limit for providers, for load tests.
pub fn unlimited_rate(dir: &Path) {
    let subjects = dir.join("policies/subjects.yaml");
    let text = std::fs::read_to_string(&subjects).unwrap_or_default();
    let lifted = text.replace(
        "rate_per_second: 200, burst: 400",
        "rate_per_second: 100000, burst: 100000",
    );
    assert_ne!(
        text, lifted,
        "the development policy's provider limits changed; update unlimited_rate"
    );
    std::fs::write(&subjects, lifted).unwrap_or_else(|e| panic!("{}: {e}", subjects.display()));
}

/// Appends `line` (a top-level section, e.g. `ingress: { … }`) to the node's gateway.yaml.
pub fn append_config(dir: &Path, line: &str) {
    use std::io::Write as _;
    let config = dir.join("gateway.yaml");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&config)
        .and_then(|mut f| writeln!(f, "{line}"))
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
}

/// Lets one source address hold `connections` connections (a load generator is one address; the
/// default per-source cap is 64), with room for the start-up probe's connection, whose slot the node
/// frees only once it sees that connection end.
pub fn lift_connection_caps(dir: &Path, connections: usize) {
    let n = connections.max(64) + 16;
    append_config(
        dir,
        &format!(
            "ingress: {{ max_connections: {}, max_connections_per_source: {n} }}",
            n * 2
        ),
    );
}

/// `gateway ledger verify` on a stopped node's store; fails the test unless every check holds.
pub fn verify_ledger(dir: &Path) {
    let data = dir.join("data");
    let out = gateway(&["ledger", "verify", "--data", &data.to_string_lossy()]);
    assert!(out.status.success(), "ledger verify: {}", stderr(&out));
}

/// The value of the one sample of `series` in a Prometheus text exposition, if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A running `gateway serve`.
#[derive(Debug)]
pub struct Node {
    /// Its directory.
    pub dir: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where it serves /metrics, /healthz and /readyz (plain HTTP).
    pub metrics: SocketAddr,
    child: Option<Child>,
}

/// The identity (hex) of the Ed25519 key with `seed`, as `keymgr show node-identity` prints one.
pub fn identity_of_seed(seed: [u8; 32]) -> String {
    hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes(),
    )
}

/// An edge at `edge_dir` in front of the ledger node of `ledger_dir`, whose channel listens at
/// `channel`, made by hand as an operator would: the ledger node's PKI and policies, channel keys
/// (identity from `seed`) in a 0600 file in a 0700 directory, and `chain: remote`. `extra` (YAML,
/// starting with a comma) goes into both the `remote` settings. The ledger node must admit the
/// edge's identity (`identity_of_seed(seed)`) itself.
pub fn make_edge(
    edge_dir: &Path,
    ledger_dir: &Path,
    channel: SocketAddr,
    seed: [u8; 32],
    extra: &str,
) {
    use std::os::unix::fs::PermissionsExt as _;
    for sub in ["pki", "policies"] {
        let to = edge_dir.join(sub);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(ledger_dir.join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
    let keys = edge_dir.join("channel.key");
    std::fs::write(
        &keys,
        serde_json::json!({
            "identity": hex::encode(seed),
            "static": hex::encode([seed[0].wrapping_add(1); 32]),
        })
        .to_string(),
    )
    .unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(edge_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        edge_dir.join("gateway.yaml"),
        format!(
            "tls: {{ cert: pki/server.pem, key: pki/server.key, client_ca: pki/ca.pem, crls: [pki/crl.pem] }}\n\
             policies: policies\n\
             chain: {{ remote: {{ address: \"{channel}\", identity: \"{}\", keys: channel.key, timeout_seconds: 10{extra} }} }}\n",
            node_identity(ledger_dir)
        ),
    )
    .unwrap();
}

/// A node's identity (`node-identity`'s public key), read from its (stopped) key store as an
/// officer would.
pub fn node_identity(dir: &Path) -> String {
    let pass = std::fs::read_to_string(dir.join("kek.pass")).expect("kek.pass");
    let out = Command::new(crate::keymgr_bin())
        .args(["--store"])
        .arg(dir.join("data/keys"))
        .args(["--json", "show", "node-identity"])
        .env("LEDGERGATE_KEK_PASSPHRASE", pass.trim_end())
        .output()
        .expect("keymgr runs");
    assert!(out.status.success(), "{}", crate::stderr(&out));
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    shown
        .pointer("/key/versions/0/public_key")
        .and_then(serde_json::Value::as_str)
        .expect("a public key")
        .to_owned()
}

/// A loopback port nobody listens on, and that this process has not handed out before: tests run
/// in parallel threads, and the kernel may give two of them the same port between our probe and the
/// node's bind (each node takes two: its listener and its metrics).
pub fn free_port() -> SocketAddr {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let addr = l.local_addr().expect("its address");
        let mut given = GIVEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return addr;
        }
    }
}

impl Node {
    /// Starts the node of `dir` and waits until it accepts connections.
    pub fn start(dir: &Path) -> Node {
        Node::start_with(dir, &[], Stdio::inherit())
    }

    /// Starts the node of `dir` under `prefix` (a command that runs it, e.g. `prlimit --nofile=64`),
    /// with its standard error sent to `stderr`, and waits until it accepts connections.
    pub fn start_with(dir: &Path, prefix: &[&str], stderr: Stdio) -> Node {
        Node::start_logging(dir, prefix, stderr, &["--log-format", "text"], "warn")
    }

    /// [`Node::start_with`] with the log's global arguments (`--log-format json`) and filter
    /// (`LEDGERGATE_LOG`) given.
    pub fn start_logging(
        dir: &Path,
        prefix: &[&str],
        stderr: Stdio,
        log_args: &[&str],
        filter: &str,
    ) -> Node {
        let (addr, metrics) = (free_port(), free_port());
        Node::start_listening(dir, prefix, stderr, log_args, filter, addr, metrics)
    }

    /// [`Node::start_logging`] with the node's listener and metrics listener given (a node on a
    /// host of `netns::Hosts` listens on that host's address).
    pub fn start_listening(
        dir: &Path,
        prefix: &[&str],
        stderr: Stdio,
        log_args: &[&str],
        filter: &str,
        addr: SocketAddr,
        metrics: SocketAddr,
    ) -> Node {
        let mut command = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(gateway_bin());
                c
            }
            None => Command::new(gateway_bin()),
        };
        let child = command
            .args(log_args)
            .args(["serve", "--config"])
            .arg(dir.join("gateway.yaml"))
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .env("LEDGERGATE_LOG", filter)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("gateway serve starts");
        let node = Node {
            dir: dir.to_owned(),
            addr,
            metrics,
            child: Some(child),
        };
        eventually("the gateway to listen", || {
            TcpStream::connect(addr).ok().map(drop)
        });
        node
    }

    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A handle on a node another handle started (for its directory and address); dropping it does
    /// not stop the node.
    pub fn attach(dir: &Path, addr: SocketAddr, metrics: SocketAddr) -> Node {
        Node {
            dir: dir.to_owned(),
            addr,
            metrics,
            child: None,
        }
    }

    /// The value of the one sample of `series` (name and labels, e.g.
    /// `ledgergate_channel_handshakes_total{outcome="ok"}`) in the node's metrics, if it has one.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (status, text) = self.monitoring("/metrics");
        assert_eq!(status, 200, "GET /metrics: {text}");
        sample(&text, series)
    }

    /// Waits (up to 15 s) until `/readyz` answers 200: for an edge, until its link to the ledger
    /// node is up.
    pub fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        // Until the monitoring listener is bound (a node binds it after its stores and Raft are
        // open), a refused connection means not ready yet.
        while TcpStream::connect(self.metrics).is_err() || self.monitoring("/readyz").0 != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "{} never became ready",
                self.dir.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `GET` on the monitoring listener (plain HTTP/1.1): status and body.
    pub fn monitoring(&self, path: &str) -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let mut s = TcpStream::connect(self.metrics).expect("the monitoring listener");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.metrics
        )
        .expect("a request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("an answer");
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// `keymgr --gateway … <args>` against this node, as the development identity `who`.
    pub fn keymgr(&self, who: &str, args: &[&str]) -> std::process::Output {
        let pki = self.dir.join("pki");
        Command::new(crate::keymgr_bin())
            .args([
                "--gateway",
                &format!("https://localhost:{}", self.addr.port()),
            ])
            .arg("--cert")
            .arg(pki.join(format!("{who}.pem")))
            .arg("--key")
            .arg(pki.join(format!("{who}.key")))
            .arg("--cacert")
            .arg(pki.join("ca.pem"))
            .args(args)
            .env_remove("LEDGERGATE_KEK_PASSPHRASE")
            .output()
            .expect("keymgr runs")
    }

    /// `gateway <command> --gateway … <args>` (an officer's command against this node's admin API:
    /// `consortium`, `risk`) as the development officer.
    pub fn officer_cli(&self, command: &str, args: &[&str]) -> std::process::Output {
        let pki = self.dir.join("pki");
        Command::new(crate::gateway_bin())
            .arg(command)
            .args([
                "--gateway",
                &format!("https://localhost:{}", self.addr.port()),
            ])
            .arg("--cert")
            .arg(pki.join("officer.pem"))
            .arg("--key")
            .arg(pki.join("officer.key"))
            .arg("--cacert")
            .arg(pki.join("ca.pem"))
            .args(args)
            .env("LEDGERGATE_LOG", "warn")
            .output()
            .expect("gateway runs")
    }

    /// A client presenting one of the node's development identities.
    pub fn client(&self, who: &str) -> Client {
        Client::for_identity(&self.dir.join("pki"), who)
    }

    /// The size of the published tree, read through the API.
    pub fn tree_size(&self) -> u64 {
        let a = self
            .client("provider-a")
            .request(self.addr, "GET", "/v1/checkpoint", None)
            .expect("checkpoint");
        a.text()
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .expect("a checkpoint size")
    }

    /// Every record entry of the ledger, decoded, read as the auditor (`officer`): (index, entry
    /// JSON), in pages of the most one answer carries. Audit entries (type `audit.*`) are left out:
    /// see [`Node::audit_entries`].
    pub fn entries(&self) -> Vec<(u64, serde_json::Value)> {
        self.entries_from(0)
            .into_iter()
            .filter(|(_, e)| !is_audit(e))
            .collect()
    }

    /// How many records the ledger holds (its entries that are not audit entries).
    pub fn record_count(&self) -> u64 {
        self.entries().len() as u64
    }

    /// The ledger's audit entries: (index, entry JSON).
    pub fn audit_entries(&self) -> Vec<(u64, serde_json::Value)> {
        self.entries_from(0)
            .into_iter()
            .filter(|(_, e)| is_audit(e))
            .collect()
    }

    /// Every ledger entry from index `first` on, records and audit entries.
    pub fn entries_from(&self, first: u64) -> Vec<(u64, serde_json::Value)> {
        use base64::Engine as _;
        const PAGE: usize = 1000;
        let size = self.tree_size();
        let mut out = Vec::new();
        for start in (first..size).step_by(PAGE) {
            let end = (start + PAGE as u64).min(size);
            let answer = self
                .client("officer")
                .request(
                    self.addr,
                    "GET",
                    &format!("/v1/entries?start={start}&end={end}"),
                    None,
                )
                .expect("entries");
            assert_eq!(
                answer.status,
                200,
                "entries {start}..{end}: {}",
                answer.text()
            );
            let page = answer.json();
            for e in page.as_array().expect("a list of entries") {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(e["entry"].as_str().expect("an entry"))
                    .expect("base64");
                // Entries that are not JSON (none the gateway writes today) are left out.
                if let Ok(entry) = serde_json::from_slice(&bytes) {
                    out.push((e["index"].as_u64().expect("an index"), entry));
                }
            }
        }
        out
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the node.
    pub fn signal(&self, name: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{name}"))
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        child.wait().ok().and_then(|s| s.code())
    }

    /// Kills the node with SIGKILL, as a crash would.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.crash();
    }
}

/// Whether a ledger entry is an audit entry (its type starts with `audit.`).
pub fn is_audit(entry: &serde_json::Value) -> bool {
    entry["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("audit."))
}
