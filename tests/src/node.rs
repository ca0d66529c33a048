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

/// A running `gateway serve`.
#[derive(Debug)]
pub struct Node {
    /// Its directory.
    pub dir: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Option<Child>,
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    l.local_addr().expect("its address")
}

impl Node {
    /// Starts the node of `dir` and waits until it accepts connections.
    pub fn start(dir: &Path) -> Node {
        let addr = free_port();
        let child = Command::new(gateway_bin())
            .args(["serve", "--config"])
            .arg(dir.join("gateway.yaml"))
            .arg("--listen")
            .arg(addr.to_string())
            .env("LEDGERGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gateway serve starts");
        let node = Node {
            dir: dir.to_owned(),
            addr,
            child: Some(child),
        };
        eventually("the gateway to listen", || {
            TcpStream::connect(addr).ok().map(drop)
        });
        node
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
