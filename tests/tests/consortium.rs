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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::consortium::*;
use e2e::eventually;
use e2e::load::{Load, loan};
use e2e::netns::Hosts;
use e2e::node::{Node, free_port, identity_of_seed, make_edge};
use e2e::powerfs::PowerFs;
use e2e::relay::DelayRelays;
use serde_json::Value;

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
    // A sealed value stays with the member that accepted the record: the same provider reads it
    // there, and every other member, which holds the entry, has no vault record for it.
    let read = |n: &Node, id: &str| {
        n.client("provider-a")
            .request(n.addr, "GET", &format!("/v1/records/{id}"), None)
            .unwrap()
    };
    let at_owner = read(&nodes[0], "FIRST-0");
    assert_eq!(at_owner.status, 200, "{}", at_owner.text());
    assert_eq!(
        at_owner.json()["sealed"]["salary"],
        serde_json::json!({ "status": "sealed", "value": 61000.5 }),
        "{}",
        at_owner.text()
    );
    for other in &nodes[1..] {
        let elsewhere = read(other, "FIRST-0");
        assert_eq!(elsewhere.status, 404, "{}", elsewhere.text());
        assert_eq!(elsewhere.json()["code"], "not_found");
    }

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
    finish(&mut nodes, &dirs, &acknowledged, &members);
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

    // A fourth member joins with the next command, and alpha's officer adds it.
    let delta = dir.join("delta");
    let out = e2e::gateway(&[
        "init",
        "--role",
        "consortium",
        "--join",
        &dirs[0].to_string_lossy(),
        "--dir",
        &delta.to_string_lossy(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", e2e::stderr(&out));
    let joined: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (joined["id"].as_u64(), joined["name"].as_str()),
        (Some(4), Some("delta"))
    );
    let identity = joined["identity"].as_str().unwrap().to_owned();
    nodes.push(start(&delta));
    nodes[3].wait_ready();
    let out = consortium_cli(
        &nodes[0],
        &[
            "add",
            "--id",
            "4",
            "--name",
            "delta",
            "--identity",
            &identity,
            "--address",
            joined["channel"].as_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", e2e::stderr(&out));
    let answer = nodes[3]
        .client("provider-a")
        .submit(nodes[3].addr, &loan("BOOT-2"));
    assert_eq!(answer.status, 201, "{}", answer.text());
    let mut members = members;
    members.push(("delta".to_owned(), identity));
    let all: Vec<&Node> = nodes.iter().collect();
    converged(
        &all,
        &[(1, "BOOT-1".to_owned()), (3, "BOOT-2".to_owned())],
        &members,
    );
    for node in &mut nodes {
        node.stop();
    }
}

/// A leader cut off from the other members (nftables rules in its network namespace): it stops
/// acknowledging (503 `unavailable` within the write timeout, no hang), the majority elects a new
/// leader and goes on; once healed, one history everywhere, the minority's unacknowledged record
/// at most once.
#[test]
fn a_leader_partitioned_into_a_minority_stops_acknowledging_and_the_majority_goes_on() {
    let hosts =
        Hosts::new(3).unwrap_or_else(|why| panic!("network namespaces (run as root): {why}"));
    let tmp = tempfile::tempdir().unwrap();
    let channels: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::new(std::net::IpAddr::V4(hosts.ip(i)), 7000))
        .collect();
    let (dirs, members) = consortium_on(
        tmp.path(),
        &channels,
        &channels,
        &format!("{FAST}, write_timeout_seconds: 3"),
    );
    let mut nodes: Vec<Node> = (0..3).map(|i| start_on(&hosts, i, &dirs[i])).collect();
    let leader = agreed_leader(&nodes.iter().collect::<Vec<_>>());
    let l = usize::try_from(leader - 1).unwrap();
    let others: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let mut acknowledged = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let id = format!("BEFORE-{i}");
        submit_until_acknowledged(n, &id);
        acknowledged.push((i, id));
    }

    hosts.partition(l, &others).unwrap();
    // The minority: refused, within the write timeout, never acknowledged.
    let asked = Instant::now();
    let a = nodes[l]
        .client("provider-a")
        .submit(nodes[l].addr, &loan("MINORITY-1"));
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.json()["code"], "unavailable");
    assert_eq!(a.retry_after.as_deref(), Some("1"));
    assert!(
        asked.elapsed() < Duration::from_secs(6),
        "{:?}",
        asked.elapsed()
    );
    // The majority elects one of its own and goes on.
    let majority: Vec<&Node> = others.iter().map(|o| &nodes[*o]).collect();
    eventually("the majority to elect a new leader", || {
        (agreed_leader(&majority) != leader).then_some(())
    });
    for o in &others {
        let id = format!("MAJORITY-{o}");
        submit_until_acknowledged(&nodes[*o], &id);
        acknowledged.push((*o, id));
    }

    hosts.heal(l).unwrap();
    let all: Vec<&Node> = nodes.iter().collect();
    converged(&all, &acknowledged, &members);
    // The refused record: absent (its proposal was never committed) or, had it been, once.
    let minority_refs = nodes[0]
        .entries()
        .iter()
        .filter(|(_, e)| e["id"] == "MINORITY-1")
        .count();
    assert!(minority_refs <= 1);
    stop_and_verify(&mut nodes, &dirs);
}

/// 50 ms of delay (a relay in front of every member's channel) and 10 % packet loss (nftables, on
/// every member's channel traffic) between all members: elections settle, records are acknowledged
/// at every member, and the members end with one history.
#[test]
fn progress_continues_through_delay_and_loss() {
    let hosts =
        Hosts::new(3).unwrap_or_else(|why| panic!("network namespaces (run as root): {why}"));
    let relays = DelayRelays::new();
    let tmp = tempfile::tempdir().unwrap();
    let listens: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::new(std::net::IpAddr::V4(hosts.ip(i)), 7000))
        .collect();
    let gateway = std::net::IpAddr::V4(hosts.gateway());
    let addresses: Vec<SocketAddr> = listens
        .iter()
        .map(|l| relays.start(SocketAddr::new(gateway, 0), *l, Duration::from_millis(50)))
        .collect();
    let mut ports: Vec<u16> = addresses.iter().map(SocketAddr::port).collect();
    ports.push(7000);
    for i in 0..3 {
        hosts.lossy(i, 10, &ports).unwrap();
    }
    // Timing for a slow network: heartbeats well under the election timeout's round trips.
    let (dirs, members) = consortium_on(
        tmp.path(),
        &listens,
        &addresses,
        "heartbeat_ms: 250, election_timeout_ms: 2000, write_timeout_seconds: 10",
    );
    let mut nodes: Vec<Node> = (0..3).map(|i| start_on(&hosts, i, &dirs[i])).collect();
    agreed_leader(&nodes.iter().collect::<Vec<_>>());
    let loads: Vec<Load> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Load::start(n, 2, &format!("SLOW{i}"), &[503]))
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    let mut acknowledged = Vec::new();
    for (i, load) in loads.into_iter().enumerate() {
        let acked = load.stop();
        assert!(!acked.is_empty(), "member {i} acknowledged nothing");
        acknowledged.extend(acked.into_iter().map(|id| (i, id)));
    }
    finish(&mut nodes, &dirs, &acknowledged, &members);
}

/// A member whose stored copy was altered on disk (an entry replaced, with a matching leaf hash, as
/// an attacker with the disk would) detects it at start and refuses to take part, saying why; the
/// other two go on, and their checkpoints still reach the required cosignatures.
#[test]
fn a_member_with_a_tampered_copy_refuses_to_take_part_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, members) = consortium(tmp.path(), 3);
    let mut nodes: Vec<Node> = dirs.iter().map(|d| start(d)).collect();
    agreed_leader(&nodes.iter().collect::<Vec<_>>());
    let mut acknowledged = Vec::new();
    for i in 0..9 {
        let at = i % 3;
        let id = format!("T-{i}");
        submit_until_acknowledged(&nodes[at], &id);
        acknowledged.push((at, id));
    }
    converged(&nodes.iter().collect::<Vec<_>>(), &acknowledged, &members);

    // Member 2 is stopped and its entry 4 rewritten.
    nodes[2].stop();
    gateway::ledger::testing::Tamper::open(&gateway::ledger::store_dir(&dirs[2].join("data")))
        .replace_entry(4, br#"{"v":1,"forged":true}"#);
    let mut serve = std::process::Command::new(e2e::gateway_bin())
        .args(["serve", "--config"])
        .arg(dirs[2].join("gateway.yaml"))
        .args(["--listen", &free_port().to_string()])
        .args(["--metrics-listen", &free_port().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = eventually("the tampered member to exit", || serve.try_wait().unwrap());
    let mut stderr = String::new();
    std::io::Read::read_to_string(serve.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        // The root, or a stored inner node of the tree, over the altered entry.
        stderr.contains("does not verify")
            && (stderr.contains("root does not match")
                || stderr.contains("do not match the stored tree node")),
        "{stderr}"
    );

    // The other two: still a majority, still acknowledging, still cosigning each other.
    for (at, node) in nodes[..2].iter().enumerate() {
        let id = format!("AFTER-{at}");
        submit_until_acknowledged(node, &id);
        acknowledged.push((at, id));
    }
    let survivors: Vec<&Node> = nodes[..2].iter().collect();
    let at_survivors: Vec<(usize, String)> = acknowledged
        .iter()
        .filter(|(at, _)| *at < 2)
        .cloned()
        .collect();
    converged(&survivors, &at_survivors, &members);
    for n in &mut nodes[..2] {
        n.stop();
    }
}

/// Five members lose two (SIGKILL): the three left are a majority, elect if they must, and go on
/// acknowledging and cosigning; the two come back and catch up.
#[test]
fn five_members_lose_two_and_keep_going() {
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, members) = consortium(tmp.path(), 5);
    let mut nodes: Vec<Node> = dirs.iter().map(|d| start(d)).collect();
    let leader = agreed_leader(&nodes.iter().collect::<Vec<_>>());
    let l = usize::try_from(leader - 1).unwrap();
    let mut acknowledged = Vec::new();
    submit_until_acknowledged(&nodes[0], "FIVE-0");
    acknowledged.push((0, "FIVE-0".to_owned()));
    // The leader and one other die.
    let lost = [l, (l + 1) % 5];
    for i in lost {
        nodes[i].crash();
    }
    let left: Vec<usize> = (0..5).filter(|i| !lost.contains(i)).collect();
    let alive: Vec<&Node> = left.iter().map(|i| &nodes[*i]).collect();
    eventually("the three left to elect one of them", || {
        let now = agreed_leader(&alive);
        left.contains(&usize::try_from(now - 1).unwrap())
            .then_some(())
    });
    for i in &left {
        let id = format!("FIVE-LEFT-{i}");
        submit_until_acknowledged(&nodes[*i], &id);
        acknowledged.push((*i, id));
    }
    let at_left: Vec<(usize, String)> = acknowledged
        .iter()
        .filter_map(|(at, id)| Some((left.iter().position(|i| i == at)?, id.clone())))
        .collect();
    converged(&alive, &at_left, &members);
    for i in lost {
        nodes[i] = start(&dirs[i]);
    }
    let all: Vec<&Node> = nodes.iter().collect();
    converged(&all, &acknowledged, &members);
    for n in &mut nodes {
        n.stop();
    }
}

/// A member whose directory is on powerfs (a file system that keeps only what was synced) loses
/// power again and again while the others take load: each time it restarts from what it synced,
/// rejoins, and the consortium ends with one history that verifies everywhere. Raft's promise that
/// a vote or an append it acknowledged is on its disk is what keeps a committed entry from being
/// lost here.
#[test]
fn a_member_that_loses_power_rejoins_consistently() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fs = PowerFs::mount(&tmp.path().join("mnt"));
    let parents = vec![
        tmp.path().join("m0"),
        tmp.path().join("m1"),
        fs.path().join("m2"),
    ];
    let channels: Vec<SocketAddr> = (0..3).map(|_| free_port()).collect();
    let (dirs, members) = consortium_in(&parents, &channels, &channels, FAST);
    // What init and the test wrote on powerfs, synced, then a cut: the member starts from disk.
    for file in ["gateway.yaml", "policies/subjects.yaml"] {
        std::fs::File::open(dirs[2].join(file))
            .unwrap()
            .sync_all()
            .unwrap();
    }
    fs.cut();
    let mut nodes: Vec<Node> = dirs.iter().map(|d| start(d)).collect();
    agreed_leader(&nodes.iter().collect::<Vec<_>>());
    let mut acknowledged = Vec::new();
    for cycle in 0..3 {
        let loads: Vec<Load> = (0..2)
            .map(|i| Load::start(&nodes[i], 2, &format!("PC{cycle}-{i}"), &[503]))
            .collect();
        std::thread::sleep(Duration::from_millis(1500 + 300 * cycle));
        nodes[2].crash();
        fs.cut();
        std::thread::sleep(Duration::from_millis(500));
        nodes[2] = start(&dirs[2]);
        std::thread::sleep(Duration::from_millis(500));
        for (i, load) in loads.into_iter().enumerate() {
            acknowledged.extend(load.stop().into_iter().map(|id| (i, id)));
        }
    }
    finish(&mut nodes, &dirs, &acknowledged, &members);
}

/// openraft's own log (an error per failed RPC to an unreachable member, several a second) is off
/// unless `LEDGERGATE_LOG` names it.
#[test]
fn openrafts_log_is_off_unless_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let (dirs, _) = consortium(tmp.path(), 3);
    // Member 0 alone: its elections fail against two unreachable members.
    let run = |filter: &str| {
        let mut serve = std::process::Command::new(e2e::gateway_bin())
            .args(["--log-format", "text", "serve", "--config"])
            .arg(dirs[0].join("gateway.yaml"))
            .args(["--listen", &free_port().to_string()])
            .args(["--metrics-listen", &free_port().to_string()])
            .env("LEDGERGATE_LOG", filter)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_secs(4));
        let _ = serve.kill();
        let out = serve.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let quiet = run("error");
    assert!(!quiet.contains("openraft"), "{quiet}");
    let asked = run("error,openraft=error");
    assert!(asked.contains("openraft"), "{asked}");
}

/// An edge in front of a member works as in front of a single node: submissions through it are
/// committed by the consortium, and the sealed values stay with that member, read back through the
/// edge. A consortium member is another organisation: over the channel it takes part in Raft and
/// nothing else. One that forwards client requests, naming the member's own provider, is refused
/// (403 `forbidden`): it cannot submit in that provider's name or read its sealed values.
#[test]
fn an_edge_in_front_of_a_member_works_and_a_member_cannot_forward_client_requests() {
    const EDGE_SEED: [u8; 32] = [31; 32];
    // A fourth member in every list that runs no node here: its identity plays a dishonest member.
    const OUTSIDER_SEED: [u8; 32] = [41; 32];
    let tmp = tempfile::tempdir().unwrap();
    let channels: Vec<SocketAddr> = (0..3).map(|_| free_port()).collect();
    let parents: Vec<PathBuf> = (0..3).map(|i| tmp.path().join(format!("m{i}"))).collect();
    let outsider = (
        "m3".to_owned(),
        identity_of_seed(OUTSIDER_SEED),
        free_port(),
    );
    let (dirs, members) = consortium_with_outsiders(
        &parents,
        &channels,
        &channels,
        FAST,
        std::slice::from_ref(&outsider),
    );
    // Member 0 admits the edge as its operator would: in `channel.peers`.
    let config = dirs[0].join("gateway.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    let listen = format!("channel: {{ listen: \"{}\" }}", channels[0]);
    assert!(text.contains(&listen));
    let text = text.replace(
        &listen,
        &format!(
            "channel: {{ listen: \"{}\", peers: [{{ name: edge, identity: \"{}\" }}] }}",
            channels[0],
            identity_of_seed(EDGE_SEED)
        ),
    );
    std::fs::write(&config, text).unwrap();
    // The edge, and a dishonest member's "edge" in front of member 0 with the outsider's identity.
    let edge_dir = tmp.path().join("edge");
    make_edge(&edge_dir, &dirs[0], channels[0], EDGE_SEED, "");
    let outsider_dir = tmp.path().join("outsider");
    make_edge(&outsider_dir, &dirs[0], channels[0], OUTSIDER_SEED, "");

    let mut nodes: Vec<Node> = dirs.iter().map(|d| start(d)).collect();
    agreed_leader(&nodes.iter().collect::<Vec<_>>());
    let edge = Node::start(&edge_dir);
    edge.wait_ready();
    let provider = edge.client("provider-a");
    // Right after the election the consortium may not commit yet (503): retried, as a client would.
    let answer = eventually("the record through the edge to be acknowledged", || {
        let a = provider.submit(edge.addr, &loan("VIA-EDGE"));
        (a.status != 503).then_some(a)
    });
    assert_eq!(answer.status, 201, "{}", answer.text());
    let read = provider
        .request(edge.addr, "GET", "/v1/records/VIA-EDGE", None)
        .unwrap();
    assert_eq!(read.status, 200, "{}", read.text());
    assert_eq!(read.json()["sealed"]["salary"]["value"], 61000.5);

    // The outsider's channel is admitted (it is a member), but its client requests are not.
    let outsider_edge = Node::start(&outsider_dir);
    let as_provider = outsider_edge.client("provider-a");
    let refused = eventually("the outsider's link to come up", || {
        let a = as_provider
            .request(outsider_edge.addr, "GET", "/v1/records/VIA-EDGE", None)
            .ok()?;
        (a.status != 503).then_some(a)
    });
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["code"], "forbidden", "{}", refused.text());
    for path in ["/v1/records/VIA-EDGE/openings/salary", "/v1/checkpoint"] {
        let a = as_provider
            .request(outsider_edge.addr, "GET", path, None)
            .unwrap();
        assert_eq!(a.status, 403, "{path}: {}", a.text());
    }
    let submitted = as_provider.submit(outsider_edge.addr, &loan("FORGED"));
    assert_eq!(submitted.status, 403, "{}", submitted.text());
    drop(outsider_edge);
    drop(edge);

    // One history with the record through the edge (accepted by member 0), and nothing forged.
    let all: Vec<&Node> = nodes.iter().collect();
    converged(&all, &[(0, "VIA-EDGE".to_owned())], &members);
    let records: Vec<Value> = nodes[0]
        .entries()
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| !e["type"].as_str().unwrap_or("").starts_with("audit."))
        .collect();
    assert_eq!(
        records.len(),
        1,
        "a forged record reached the ledger: {records:?}"
    );
    stop_and_verify(&mut nodes, &dirs);
}
