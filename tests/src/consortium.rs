//! Consortium scenarios' shared parts (docs/consortium.md): member directories made as operators
//! would, members started and watched, and the checker every scenario ends with.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::missing_panics_doc
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use gateway::ledger::{Cosigner, NoteVerifier, verify_quorum};
use serde_json::Value;

use crate::eventually;
use crate::load::loan;
use crate::netns::Hosts;
use crate::node::{
    Node, append_config, free_port, init_node, node_identity, unlimited_rate, verify_ledger,
};

/// A consortium's member directories, made as operators would: each its own `gateway init`, and
/// a `channel` and `consortium` section naming every member. Short Raft timers keep the test fast.
/// Returns the directories and the members as clients know them: (name, identity).
pub fn consortium(tmp: &Path, n: usize) -> (Vec<PathBuf>, Vec<(String, String)>) {
    let channels: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
    consortium_on(tmp, &channels, &channels, FAST)
}

/// Raft's timing for tests on loopback: a new leader well within a second of the old one's death.
pub const FAST: &str = "heartbeat_ms: 100, election_timeout_ms: 600";

/// [`consortium`] with member `i`'s channel listening on `listens[i]` and known to the others at
/// `addresses[i]` (the same, or a relay in front of it), and `settings` (YAML: Raft's timing, the
/// write timeout) in the `consortium` section.
pub fn consortium_on(
    tmp: &Path,
    listens: &[SocketAddr],
    addresses: &[SocketAddr],
    settings: &str,
) -> (Vec<PathBuf>, Vec<(String, String)>) {
    let parents: Vec<PathBuf> = (0..listens.len())
        .map(|i| tmp.join(format!("m{i}")))
        .collect();
    consortium_in(&parents, listens, addresses, settings)
}

/// [`consortium_on`] with member `i`'s directory made under `parents[i]` (one may be on powerfs).
pub fn consortium_in(
    parents: &[PathBuf],
    listens: &[SocketAddr],
    addresses: &[SocketAddr],
    settings: &str,
) -> (Vec<PathBuf>, Vec<(String, String)>) {
    consortium_with_outsiders(parents, listens, addresses, settings, &[])
}

/// [`consortium_in`] with `outsiders` (name, identity, channel address) in every member's list
/// too, after the others: members that run no node here (whose identity a test uses to play a
/// dishonest member). The members returned include them.
pub fn consortium_with_outsiders(
    parents: &[PathBuf],
    listens: &[SocketAddr],
    addresses: &[SocketAddr],
    settings: &str,
    outsiders: &[(String, String, SocketAddr)],
) -> (Vec<PathBuf>, Vec<(String, String)>) {
    let n = listens.len();
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| {
            let d = init_node(&parents[i]);
            // The loads below run flat out: the development policy's rate would refuse them.
            unlimited_rate(&d);
            d
        })
        .collect();
    let known: Vec<(String, String)> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("m{i}"), node_identity(d)))
        .chain(outsiders.iter().map(|(n, id, _)| (n.clone(), id.clone())))
        .collect();
    let addresses: Vec<SocketAddr> = addresses
        .iter()
        .copied()
        .chain(outsiders.iter().map(|o| o.2))
        .collect();
    let members = entries(&known, &addresses);
    for (d, c) in dirs.iter().zip(listens) {
        append_config(
            d,
            &format!(
                "channel: {{ listen: \"{c}\" }}\nconsortium: {{ members: [{}], {settings} }}",
                members.join(", ")
            ),
        );
    }
    (dirs, known)
}

/// `consortium.members` entries for `known` (name, identity) at `addresses`, ids from 1.
fn entries(known: &[(String, String)], addresses: &[SocketAddr]) -> Vec<String> {
    known
        .iter()
        .zip(addresses)
        .enumerate()
        .map(|(i, ((name, identity), c))| {
            format!(
                "{{ id: {}, name: {name}, identity: \"{identity}\", address: \"{c}\" }}",
                i + 1
            )
        })
        .collect()
}

/// A node directory under `parent` that joins the running consortium of `members` (name, identity;
/// channels at `addresses`) as operators would make it: its own `gateway init`, then
/// [`join_config`]. Returns the directory and the new member (name, identity).
pub fn joining(
    parent: &Path,
    members: &[(String, String)],
    addresses: &[SocketAddr],
    listen: SocketAddr,
    settings: &str,
) -> (PathBuf, (String, String)) {
    let dir = init_node(parent);
    unlimited_rate(&dir);
    let me = join_config(&dir, members, addresses, listen, settings);
    (dir, me)
}

/// Gives the node of `dir` the sections that make it join the consortium of `members`: `join:
/// true`, the members and itself (id n + 1, named `m<n>`) in its list, its channel on `listen`.
/// Returns the new member (name, identity).
pub fn join_config(
    dir: &Path,
    members: &[(String, String)],
    addresses: &[SocketAddr],
    listen: SocketAddr,
    settings: &str,
) -> (String, String) {
    let me = (format!("m{}", members.len()), node_identity(dir));
    let mut known = members.to_vec();
    known.push(me.clone());
    let mut at = addresses.to_vec();
    at.push(listen);
    append_config(
        dir,
        &format!(
            "channel: {{ listen: \"{listen}\" }}\nconsortium: {{ join: true, members: [{}], {settings} }}",
            entries(&known, &at).join(", ")
        ),
    );
    me
}

/// `gateway consortium <args>` as the officer of the member `at` (its own PKI).
pub fn consortium_cli(at: &Node, args: &[&str]) -> std::process::Output {
    at.officer_cli("consortium", args)
}

/// Submits `total` records at `node` in batches (two submitters, 1,000 records a request), ids
/// `PREFIX-n`; each must be acknowledged (a 503 is retried).
pub fn fill(node: &Node, total: usize, prefix: &str) {
    const BATCH: usize = 1000;
    let batches: Vec<usize> = (0..total.div_ceil(BATCH)).collect();
    std::thread::scope(|scope| {
        for half in batches.chunks(batches.len().div_ceil(2).max(1)) {
            scope.spawn(move || {
                let client = node.client("provider-a");
                for b in half {
                    let body: String = (b * BATCH..((b + 1) * BATCH).min(total))
                        .map(|i| format!("{}\n", loan(&format!("{prefix}-{i}"))))
                        .collect();
                    eventually(&format!("batch {b} acknowledged"), || {
                        let a = client
                            .request(
                                node.addr,
                                "POST",
                                "/v1/records:batch",
                                Some(body.as_bytes()),
                            )
                            .ok()?;
                        if a.status == 503 {
                            return None;
                        }
                        assert_eq!(a.status, 200, "batch {b}: {}", a.text());
                        let all = a.text().lines().all(|l| {
                            let v: Value = serde_json::from_str(l).unwrap_or_default();
                            matches!(v["status"].as_u64(), Some(200 | 201))
                        });
                        all.then_some(())
                    });
                }
            });
        }
    });
}

/// Starts a member, logging only errors (a member without a leader warns once per refused request).
pub fn start(dir: &Path) -> Node {
    Node::start_logging(
        dir,
        &[],
        std::process::Stdio::inherit(),
        &["--log-format", "text"],
        "error",
    )
}

/// Starts the member of `dir` on host `i` of `hosts`, listening on the host's address.
pub fn start_on(hosts: &Hosts, i: usize, dir: &Path) -> Node {
    let prefix = hosts.prefix(i);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let ip = std::net::IpAddr::V4(hosts.ip(i));
    Node::start_listening(
        dir,
        &prefix,
        std::process::Stdio::inherit(),
        &["--log-format", "text"],
        "error",
        SocketAddr::new(ip, 8443),
        SocketAddr::new(ip, 9464),
    )
}

/// Submits `id` at `node` until it is acknowledged (a member answers 503 while there is no leader).
pub fn submit_until_acknowledged(node: &Node, id: &str) {
    let client = node.client("provider-a");
    eventually(&format!("{id} acknowledged"), || {
        let a = client.submit(node.addr, &loan(id));
        match a.status {
            201 => Some(()),
            503 => {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
            other => panic!("{id}: {other} {}", a.text()),
        }
    });
}

/// The leader every running member agrees on (member id, 1-based), once they do.
pub fn agreed_leader(nodes: &[&Node]) -> u64 {
    for n in nodes {
        n.wait_ready();
    }
    eventually("the members to agree on a leader", || {
        let leaders: Vec<f64> = nodes
            .iter()
            .map(|n| n.metric("ledgergate_consortium_leader_id").unwrap_or(0.0))
            .collect();
        let first = leaders[0];
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        (first > 0.0 && leaders.iter().all(|l| *l == first)).then_some(first as u64)
    })
}

/// The size of the checkpoint `node` serves with the consortium's cosignatures, once it has one.
pub fn cosigned_size(node: &Node) -> Option<u64> {
    let a = node
        .client("provider-a")
        .request(node.addr, "GET", "/v1/checkpoint", None)
        .ok()?;
    if a.status != 200 {
        return None;
    }
    a.text().lines().nth(1)?.parse().ok()
}

/// Checks the checkpoint `node` serves as a client of the consortium would: signed by that member's
/// checkpoint key and cosigned by at least `k` of the `members` (name, identity).
pub fn check_cosigned(node: &Node, members: &[(String, String)], k: usize) -> u64 {
    let client = node.client("provider-a");
    let note = client
        .request(node.addr, "GET", "/v1/checkpoint", None)
        .unwrap()
        .text();
    let vkey = client
        .request(node.addr, "GET", "/v1/checkpoint/key", None)
        .unwrap()
        .text();
    let log = NoteVerifier::from_vkey(vkey.trim_end()).unwrap();
    let cosigners: Vec<Cosigner> = members
        .iter()
        .map(|(name, identity)| {
            let key: [u8; 32] = hex::decode(identity).unwrap().try_into().unwrap();
            Cosigner::new(name, VerifyingKey::from_bytes(&key).unwrap()).unwrap()
        })
        .collect();
    let quorum =
        verify_quorum(&note, &log, &cosigners, k).unwrap_or_else(|e| panic!("{e}: {note}"));
    // Every cosignature line is a member's: a checkpoint a member serves, every member has.
    assert!(quorum.cosigned_by.len() >= k, "{note}");
    note.lines().nth(1).unwrap().parse().unwrap()
}

/// The checker every scenario ends with: the members converge on one history of at least
/// `acknowledged` records (each with the position in `nodes` of the member that accepted it), the
/// same entries at the same indices on every member, and each acknowledged record in it exactly
/// once: its accepting member finds it (its vault knows where it landed), and the record reference
/// at that index appears nowhere else.
/// Every member's served checkpoint carries a majority of the members' valid cosignatures.
pub fn converged(
    nodes: &[&Node],
    acknowledged: &[(usize, String)],
    members: &[(String, String)],
) -> u64 {
    // Quiet: every member's cosigned checkpoint covers all it holds, and all hold the same size.
    let size = eventually("the members to reach the same cosigned size", || {
        let sizes: Vec<u64> = nodes
            .iter()
            .filter_map(|n| {
                let cosigned = cosigned_size(n)?;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let held = n.metric("ledgergate_ledger_entries")? as u64;
                (cosigned == held).then_some(cosigned)
            })
            .collect();
        (sizes.len() == nodes.len()
            && sizes.iter().all(|s| *s == sizes[0])
            && sizes[0] >= acknowledged.len() as u64)
            .then(|| sizes[0])
    });
    for n in nodes {
        assert_eq!(check_cosigned(n, members, members.len() / 2 + 1), size);
    }
    // Every entry, audit entries too (a member may append one of its own after `size`: its start
    // or its key store's journal, so the comparison stops there).
    let upto = |n: &Node| -> Vec<(u64, Value)> {
        n.entries_from(0)
            .into_iter()
            .take(usize::try_from(size).unwrap())
            .collect()
    };
    let first = upto(nodes[0]);
    assert_eq!(first.len() as u64, size);
    for other in &nodes[1..] {
        assert!(upto(other) == first, "two members hold different entries");
    }
    // A record's reference: its id, or the keyed reference that stands for it.
    let reference = |e: &Value| e.get("id").or_else(|| e.get("ref")).cloned();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, e) in &first {
        if let Some(r) = reference(e) {
            *seen.entry(r.to_string()).or_default() += 1;
        }
    }
    for (at, id) in acknowledged {
        let n = nodes[*at];
        let read = n
            .client("provider-a")
            .request(n.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap();
        assert_eq!(read.status, 200, "{id}: {}", read.text());
        let index = usize::try_from(read.json()["proof"]["leaf_index"].as_u64().unwrap()).unwrap();
        let r = reference(&first[index].1).unwrap().to_string();
        assert_eq!(seen.get(&r), Some(&1), "{id}: not exactly once");
    }
    size
}

/// The end of a scenario: the members converge (see [`converged`]), stop, and every store verifies
/// offline.
pub fn finish(
    nodes: &mut [Node],
    dirs: &[PathBuf],
    acknowledged: &[(usize, String)],
    members: &[(String, String)],
) {
    let all: Vec<&Node> = nodes.iter().collect();
    converged(&all, acknowledged, members);
    stop_and_verify(nodes, dirs);
}

/// Stops every member, then checks every store offline with `gateway ledger verify`.
pub fn stop_and_verify(nodes: &mut [Node], dirs: &[PathBuf]) {
    for n in nodes {
        n.stop();
    }
    for d in dirs {
        verify_ledger(d);
    }
}
