//! A consortium of real member processes on loopback (docs/consortium.md): every member keeps the
//! whole ledger through Raft over the Noise channel; submissions at any member are committed on a
//! majority and applied everywhere; the leader's death elects another and loses nothing
//! acknowledged; the dead member rejoins and catches up; every member's store verifies and all
//! hold the same entries in the same order.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::eventually;
use e2e::load::{Load, loan};
use e2e::node::{
    Node, append_config, free_port, init_node, node_identity, unlimited_rate, verify_ledger,
};
use ed25519_dalek::VerifyingKey;
use gateway::ledger::{Cosigner, NoteVerifier, verify_quorum};
use serde_json::Value;

/// A consortium's member directories, made as operators would: each its own `gateway init`, and
/// a `channel` and `consortium` section naming every member. Short Raft timers keep the test fast.
/// Returns the directories and the members as clients know them: (name, identity).
fn consortium(tmp: &Path, n: usize) -> (Vec<PathBuf>, Vec<(String, String)>) {
    let dirs: Vec<PathBuf> = (0..n)
        .map(|i| {
            let d = init_node(&tmp.join(format!("m{i}")));
            // The loads below run flat out: the development policy's rate would refuse them.
            unlimited_rate(&d);
            d
        })
        .collect();
    let channels: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
    let known: Vec<(String, String)> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("m{i}"), node_identity(d)))
        .collect();
    let members: Vec<String> = known
        .iter()
        .zip(&channels)
        .enumerate()
        .map(|(i, ((name, identity), c))| {
            format!(
                "{{ id: {}, name: {name}, identity: \"{identity}\", address: \"{c}\" }}",
                i + 1
            )
        })
        .collect();
    for (d, c) in dirs.iter().zip(&channels) {
        append_config(
            d,
            &format!(
                "channel: {{ listen: \"{c}\" }}\nconsortium: {{ members: [{}], heartbeat_ms: 100, election_timeout_ms: 600 }}",
                members.join(", ")
            ),
        );
    }
    (dirs, known)
}

/// Starts a member, logging only errors (a member without a leader warns once per refused request).
fn start(dir: &Path) -> Node {
    Node::start_logging(
        dir,
        &[],
        std::process::Stdio::inherit(),
        &["--log-format", "text"],
        "error",
    )
}

/// The leader every running member agrees on (member id, 1-based), once they do.
fn agreed_leader(nodes: &[&Node]) -> u64 {
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
fn cosigned_size(node: &Node) -> Option<u64> {
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
fn check_cosigned(node: &Node, members: &[(String, String)], k: usize) -> u64 {
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
fn converged(
    nodes: &[&Node],
    acknowledged: &[(usize, String)],
    members: &[(String, String)],
) -> u64 {
    let size = eventually("the members to reach the same cosigned size", || {
        let sizes: Vec<u64> = nodes.iter().filter_map(|n| cosigned_size(n)).collect();
        (sizes.len() == nodes.len()
            && sizes.iter().all(|s| *s == sizes[0])
            && sizes[0] >= acknowledged.len() as u64)
            .then_some(sizes[0])
    });
    for n in nodes {
        assert_eq!(check_cosigned(n, members, members.len() / 2 + 1), size);
    }
    let first = nodes[0].entries();
    assert_eq!(first.len() as u64, size);
    for other in &nodes[1..] {
        assert!(
            other.entries() == first,
            "two members hold different entries"
        );
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

#[test]
fn three_members_keep_one_history_through_the_leaders_death() {
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, members) = consortium(tmp.path(), 3);
    let mut nodes: Vec<Node> = dirs.iter().map(|d| start(d)).collect();
    for n in &nodes {
        n.wait_ready();
    }
    let leader = agreed_leader(&nodes.iter().collect::<Vec<_>>());
    // A record at each member: the leader appends it itself, the others forward it.
    let mut acknowledged = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let id = format!("FIRST-{i}");
        let answer = n.client("provider-a").submit(n.addr, &loan(&id));
        assert_eq!(answer.status, 201, "member {i}: {}", answer.text());
        acknowledged.push((i, id));
    }
    converged(&nodes.iter().collect::<Vec<_>>(), &acknowledged, &members);

    // Load at both followers; then the leader dies (SIGKILL).
    let leader_at = usize::try_from(leader - 1).unwrap();
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader_at).collect();
    // While there is no leader, submissions are refused with 503 `unavailable`, never hang.
    let loads: Vec<Load> = followers
        .iter()
        .map(|f| Load::start(&nodes[*f], 2, &format!("LOAD{f}"), &[503]))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let killed = Instant::now();
    nodes[leader_at].crash();
    let survivors: Vec<&Node> = followers.iter().map(|f| &nodes[*f]).collect();
    let new_leader = eventually("a new leader", || {
        let l = agreed_leader(&survivors);
        (l != leader).then_some(l)
    });
    let elected = killed.elapsed();
    // Progress under the new leader: every follower's load gets records acknowledged again.
    let before: Vec<u64> = survivors.iter().map(|n| n.tree_size()).collect();
    eventually("appends under the new leader", || {
        survivors
            .iter()
            .zip(&before)
            .all(|(n, b)| n.tree_size() > *b + 10)
            .then_some(())
    });
    for (load, f) in loads.into_iter().zip(&followers) {
        acknowledged.extend(load.stop().into_iter().map(|id| (*f, id)));
    }
    assert!(
        elected < Duration::from_secs(10),
        "a new leader ({new_leader}) took {elected:?}"
    );
    // At the survivors, the records they accepted (the dead leader's vault is not readable now;
    // its record is checked once it is back).
    let at_survivors: Vec<(usize, String)> = acknowledged
        .iter()
        .filter_map(|(at, id)| {
            let p = followers.iter().position(|f| f == at)?;
            Some((p, id.clone()))
        })
        .collect();
    converged(&survivors, &at_survivors, &members);

    // The old leader comes back as a follower and catches up.
    nodes[leader_at] = start(&dirs[leader_at]);
    nodes[leader_at].wait_ready();
    let all: Vec<&Node> = nodes.iter().collect();
    let size = converged(&all, &acknowledged, &members);
    assert!(size >= acknowledged.len() as u64);
    for n in &mut nodes {
        n.stop();
    }
    for d in &dirs {
        verify_ledger(d);
    }
}

/// The development bootstrap: one command makes a working consortium whose members agree and
/// cosign, each started from its own generated configuration.
#[test]
fn one_command_makes_a_development_consortium_that_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("consortium");
    let out = e2e::gateway(&[
        "init",
        "--role",
        "consortium",
        "--members",
        "3",
        "--json",
        "--dir",
        &dir.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", e2e::stderr(&out));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = made["members"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let members: Vec<(String, String)> = list
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["identity"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let dirs: Vec<PathBuf> = list
        .iter()
        .map(|m| PathBuf::from(m["dir"].as_str().unwrap()))
        .collect();
    // Made again over the same directory: refused, nothing changed.
    let again = e2e::gateway(&[
        "init",
        "--role",
        "consortium",
        "--dir",
        &dir.to_string_lossy(),
    ]);
    assert!(!again.status.success());
    let mut nodes: Vec<Node> = dirs.iter().map(|d| start(d)).collect();
    agreed_leader(&nodes.iter().collect::<Vec<_>>());
    let n = &nodes[1];
    let answer = n.client("provider-a").submit(n.addr, &loan("BOOT-1"));
    assert_eq!(answer.status, 201, "{}", answer.text());
    let all: Vec<&Node> = nodes.iter().collect();
    converged(&all, &[(1, "BOOT-1".to_owned())], &members);
    for node in &mut nodes {
        node.stop();
    }
}
