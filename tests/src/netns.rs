//! Several hosts on one machine: network namespaces joined by veth pairs to a bridge in the test's
//! own namespace, with nftables rules inside a namespace for partitions and packet loss (this
//! kernel has no `tc netem`). Needs root, `ip` (iproute2) and `nft` (nftables), which
//! `scripts/test` installs; everything made is removed on drop.
//!
//! Host `i` is `10.77.S.(i + 2)` in its namespace; the test process reaches every host from the
//! bridge's address `10.77.S.1`, and rules never touch that address unless asked to.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Subnets handed out by this process (with its pid, so parallel test binaries do not clash).
static NEXT: AtomicU32 = AtomicU32::new(0);

/// The hosts of one test.
#[derive(Debug)]
pub struct Hosts {
    tag: String,
    subnet: u8,
    count: usize,
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let (program, rest) = args.split_first().ok_or("no command")?;
    let mut c = Command::new(program);
    c.args(rest)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = c.spawn().map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        use std::io::Write as _;
        input
            .write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Hosts {
    /// Makes `count` hosts, or says why it cannot (not root, no `ip` or `nft`).
    pub fn new(count: usize) -> Result<Hosts, String> {
        let seq = NEXT.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let tag = format!("lg{}{}", pid % 100_000, seq);
        let subnet = u8::try_from((pid.wrapping_mul(7).wrapping_add(seq)) % 250 + 1).unwrap_or(1);
        let hosts = Hosts { tag, subnet, count };
        let bridge = hosts.bridge();
        run(&["ip", "link", "add", &bridge, "type", "bridge"], None)?;
        run(
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", hosts.gateway()),
                "dev",
                &bridge,
            ],
            None,
        )?;
        run(&["ip", "link", "set", &bridge, "up"], None)?;
        for i in 0..count {
            let ns = hosts.namespace(i);
            let outside = format!("{}v{i}", hosts.tag);
            run(&["ip", "netns", "add", &ns], None)?;
            run(
                &[
                    "ip", "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns",
                    &ns,
                ],
                None,
            )?;
            run(&["ip", "link", "set", &outside, "master", &bridge], None)?;
            run(&["ip", "link", "set", &outside, "up"], None)?;
            let inside = |args: &[&str]| {
                let mut all = vec!["ip", "netns", "exec", &ns];
                all.extend_from_slice(args);
                run(&all, None)
            };
            inside(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", hosts.ip(i)),
                "dev",
                "eth0",
            ])?;
            inside(&["ip", "link", "set", "eth0", "up"])?;
            inside(&["ip", "link", "set", "lo", "up"])?;
        }
        Ok(hosts)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// The namespace of host `i`.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    /// Host `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, u8::try_from(i + 2).unwrap_or(2))
    }

    /// The test process's address on the hosts' network.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    /// The command prefix that runs a program on host `i`.
    pub fn prefix(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.namespace(i),
        ]
    }

    /// Replaces host `i`'s rules with `rules` (the body of an `inet` table's `input` and `output`
    /// chains, e.g. `ip saddr 10.77.3.3 drop`).
    pub fn rules(&self, i: usize, input: &str, output: &str) -> Result<(), String> {
        let ns = self.namespace(i);
        let _ = run(
            &[
                "ip", "netns", "exec", &ns, "nft", "delete", "table", "inet", "lg",
            ],
            None,
        );
        let script = format!(
            "table inet lg {{\n chain input {{ type filter hook input priority 0; policy accept;\n {input}\n }}\n chain output {{ type filter hook output priority 0; policy accept;\n {output}\n }}\n}}\n"
        );
        run(
            &["ip", "netns", "exec", &ns, "nft", "-f", "-"],
            Some(&script),
        )
    }

    /// Cuts host `i` off from hosts `others` (both directions); the test process still reaches it.
    pub fn partition(&self, i: usize, others: &[usize]) -> Result<(), String> {
        let set: Vec<String> = others.iter().map(|o| self.ip(*o).to_string()).collect();
        let set = set.join(", ");
        self.rules(
            i,
            &format!("ip saddr {{ {set} }} drop"),
            &format!("ip daddr {{ {set} }} drop"),
        )
    }

    /// Drops one TCP segment in `n` at random, both ways, to and from `ports` (local or remote) on
    /// host `i`.
    pub fn lossy(&self, i: usize, n: u32, ports: &[u16]) -> Result<(), String> {
        let set: Vec<String> = ports.iter().map(ToString::to_string).collect();
        let set = format!("{{ {} }}", set.join(", "));
        let rule = format!(
            "tcp dport {set} numgen random mod {n} == 0 drop\n tcp sport {set} numgen random mod {n} == 0 drop"
        );
        self.rules(i, &rule, &rule)
    }

    /// Removes host `i`'s rules.
    pub fn heal(&self, i: usize) -> Result<(), String> {
        run(
            &[
                "ip",
                "netns",
                "exec",
                &self.namespace(i),
                "nft",
                "delete",
                "table",
                "inet",
                "lg",
            ],
            None,
        )
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for i in 0..self.count {
            let _ = run(&["ip", "netns", "del", &self.namespace(i)], None);
        }
        let _ = run(&["ip", "link", "del", &self.bridge()], None);
    }
}
