//! Officers change a running consortium's members (docs/consortium.md, Membership), with the real
//! binaries: `gateway consortium add|remove|list` against a member's admin API.
//!
//! - A new member catches up on 100,000 entries from the Raft log, re-hashing each into its own
//!   tree, proves its copy by cosigning the leader's checkpoint, and only then votes; it takes
//!   submissions and its cosignature counts. A removed member is shut out of the channel and gets
//!   nothing more.
//! - A node whose copy disagrees (it ran on its own before) is never made a voter; every bad request
//!   gets its exact answer.

// Test code: a failed unwrap or index is how a test fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    // The fill and catch-up times are reported (docs/consortium.md quotes them).
    clippy::print_stderr
)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::consortium::{
    FAST, agreed_leader, check_cosigned, consortium_cli, consortium_on, cosigned_size, fill,
    join_config, joining, start, stop_and_verify, submit_until_acknowledged,
};
use e2e::load::loan;
use e2e::node::{Node, free_port};
use e2e::{eventually, stderr, stdout};
use serde_json::Value;

/// The members `at` lists: (id, name, voter).
fn listed(at: &Node) -> Vec<(u64, String, bool)> {
    let out = consortium_cli(at, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["name"].as_str().unwrap().to_owned(),
                m["voter"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// The root line of the cosigned checkpoint `node` serves, at `size`.
/// The size and root of the checkpoint `node` serves now.
fn head(node: &Node) -> Option<(u64, String)> {
    let a = node
        .client("provider-a")
        .request(node.addr, "GET", "/v1/checkpoint", None)
        .ok()?;
    if a.status != 200 {
        return None;
    }
    let text = a.text();
    let mut lines = text.lines().skip(1);
    Some((lines.next()?.parse().ok()?, lines.next()?.to_owned()))
}

/// The audit entries among `entries`: (type without `audit.`, outcome, the entry).
fn audited(entries: &[(u64, Value)]) -> Vec<(String, String, Value)> {
    entries
        .iter()
        .filter_map(|(_, e)| {
            let kind = e["type"].as_str()?.strip_prefix("audit.")?.to_owned();
            Some((kind, e["outcome"].as_str()?.to_owned(), e.clone()))
        })
        .collect()
}

/// A membership audit entry's members: (id, voter).
fn seated(membership: &Value) -> Vec<(u64, bool)> {
    membership["details"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m["voter"].as_bool().unwrap()))
        .collect()
}

/// The audit trail of the add and the removal (from `from` on), the same on every member that
/// stayed: each officer request is recorded before it is carried out and again with its outcome, by
/// the officer, attributed to the member that took the request; each membership Raft committed is
/// an entry listing every member with its identity, written alike by every member. The ledger's
/// first entry names the founding members. (Only the consortium's entries: each member's key store
/// journal is in the trail too.)
fn check_membership_audit(stayed: &[&Node], from: u64, new_identity: &str) {
    let first = audited(&stayed[0].entries_from(0)[..1]);
    assert_eq!(first.len(), 1, "the ledger does not start with its members");
    assert_eq!(first[0].0, "consortium.membership");
    assert_eq!(seated(&first[0].2), vec![(1, true), (2, true), (3, true)]);
    let trail = audited(&stayed[0].entries_from(from));
    for other in &stayed[1..] {
        assert_eq!(
            audited(&other.entries_from(from)),
            trail,
            "two members' audit trails differ"
        );
    }
    let trail: Vec<_> = trail
        .into_iter()
        .filter(|(kind, ..)| kind.starts_with("consortium."))
        .collect();
    // (kind, outcome, the member that took the officer's request and appended the entry)
    let mut acts: Vec<(String, String, String)> = Vec::new();
    for (kind, outcome, e) in trail.iter().filter(|(k, ..)| k != "consortium.membership") {
        assert_eq!(e["actor"], "officer", "{e}");
        assert!(e["time"].is_string(), "{e}");
        let member = e["member"].as_str().unwrap_or("(none)").to_owned();
        // An add answered `catching_up` is asked again: such a round (requested, failed) is left
        // out.
        if outcome == "failed" {
            assert_eq!(
                acts.pop(),
                Some((kind.clone(), "requested".to_owned(), member))
            );
        } else {
            acts.push((kind.clone(), outcome.clone(), member));
        }
    }
    let pair = |kind: &str, at: &str| {
        [
            (kind.to_owned(), "requested".to_owned(), at.to_owned()),
            (kind.to_owned(), "done".to_owned(), at.to_owned()),
        ]
    };
    // The add (asked at m1), the add asked again (at m0), the removal (at the new member, m3).
    let expected: Vec<(String, String, String)> = [
        pair("consortium.member_add", "m1"),
        pair("consortium.member_add", "m0"),
        pair("consortium.member_remove", "m3"),
    ]
    .concat();
    assert_eq!(acts, expected);
    // What Raft committed: member 4 a learner, then a voter; then member 2 gone.
    let seats: Vec<Vec<(u64, bool)>> = trail
        .iter()
        .filter(|(kind, ..)| kind == "consortium.membership")
        .map(|(.., e)| seated(e))
        .collect();
    let learner = seats
        .iter()
        .position(|s| s.contains(&(4, false)))
        .expect("no membership with member 4 as a learner");
    let voter = seats
        .iter()
        .position(|s| s == &vec![(1, true), (2, true), (3, true), (4, true)])
        .expect("no membership with member 4 a voter");
    assert!(learner < voter);
    assert_eq!(
        seats.last().unwrap(),
        &vec![(1, true), (3, true), (4, true)],
        "{seats:?}"
    );
    let listed_identity = trail
        .iter()
        .rev()
        .find(|(kind, ..)| kind == "consortium.membership")
        .and_then(|(.., e)| {
            e["details"]["members"]
                .as_array()?
                .iter()
                .find(|m| m["id"] == 4)
                .map(|m| m["identity"].clone())
        });
    assert_eq!(listed_identity, Some(Value::from(new_identity)));
}

fn add_args(id: u64, name: &str, identity: &str, address: SocketAddr) -> Vec<String> {
    [
        "add",
        "--id",
        &id.to_string(),
        "--name",
        name,
        "--identity",
        identity,
        "--address",
        &address.to_string(),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Raft's default timing (openraft gives each append-entries message one heartbeat to cross and be
/// stored, and catching up sends the largest messages), with a snapshot every 20 Raft entries (the
/// 100 batches of the fill make five), so the Raft log no longer holds the start of the ledger.
const SNAPSHOTS: &str = "heartbeat_ms: 250, election_timeout_ms: 1500, snapshot_every: 20";

#[test]
fn a_new_member_catches_up_from_a_snapshot_of_100_000_entries_proves_its_copy_and_votes() {
    let tmp = tempfile::tempdir().unwrap();
    let channels: Vec<SocketAddr> = (0..3).map(|_| free_port()).collect();
    let (mut dirs, mut members) = consortium_on(tmp.path(), &channels, &channels, SNAPSHOTS);
    let mut nodes: Vec<Node> = dirs.iter().map(|d| start(d)).collect();
    agreed_leader(&nodes.iter().collect::<Vec<_>>());
    let filled = Instant::now();
    fill(&nodes[0], 100_000, "FILL");
    eprintln!("filled 100,000 entries in {:?}", filled.elapsed());
    // Every member snapshotted and cut its Raft log: a new member cannot catch up from the log.
    let purged = |n: &Node| {
        n.metric("ledgergate_consortium_purged_index")
            .unwrap_or(0.0)
    };
    eventually("every member to have purged its Raft log", || {
        nodes.iter().all(|n| purged(n) >= 20.0).then_some(())
    });

    let audited_from = nodes[0].tree_size();
    // The new member: made and started on its own; not a voter, it serves no checkpoint.
    let listen = free_port();
    let (dir, me) = joining(
        &tmp.path().join("m3"),
        &members,
        &channels,
        listen,
        SNAPSHOTS,
    );
    let new = start(&dir);
    new.wait_ready();
    let answer = new
        .client("provider-a")
        .request(new.addr, "GET", "/v1/checkpoint", None)
        .unwrap();
    assert_eq!(answer.status, 503, "{}", answer.text());

    // Added through a member that is not necessarily the leader (the change is forwarded).
    let added = Instant::now();
    let out = consortium_cli(
        &nodes[1],
        &add_args(4, &me.0, &me.1, listen)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "add: {}", stderr(&out));
    let caught_up = added.elapsed();
    let size = nodes[0].tree_size();
    // It holds every entry: it could only cosign the leader's checkpoint from its own full copy.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let held = new.metric("ledgergate_ledger_entries").unwrap() as u64;
    assert!(held >= 100_000, "the new member holds {held} entries");
    // It got the leader's snapshot (the log it could not get).
    assert!(
        new.metric("ledgergate_consortium_snapshot_index")
            .unwrap_or(0.0)
            >= 20.0,
        "the new member has no snapshot"
    );
    #[allow(clippy::cast_precision_loss)]
    let rate = held as f64 / caught_up.as_secs_f64();
    eprintln!(
        "the new member caught up on {held} entries (ledger at {size}) and votes after {caught_up:?}: {rate:.0} entries/s"
    );
    // Every member learns it (one that did not make the change, from the Raft log a moment later).
    eventually("member 3 to list four voters", || {
        let now: Vec<(u64, bool)> = listed(&nodes[2])
            .iter()
            .map(|(id, _, voter)| (*id, *voter))
            .collect();
        (now == vec![(1, true), (2, true), (3, true), (4, true)]).then_some(())
    });
    // Adding it again is done already: the same answer.
    let again = consortium_cli(
        &nodes[0],
        &add_args(4, &me.0, &me.1, listen)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(again.status.success(), "{}", stderr(&again));

    // It takes submissions, and its cosignature counts: 3 of 4 needed now.
    nodes.push(new);
    dirs.push(dir);
    members.push(me);
    submit_until_acknowledged(&nodes[3], "AT-THE-NEW-MEMBER");
    let all: Vec<&Node> = nodes.iter().collect();
    // Members keep appending (audit entries), so the heads are read together until all four
    // serve one size, past the 100,000; one size with two roots would be a fork: it fails at once.
    let size = eventually("all four members to serve the same size", || {
        let heads: Vec<(u64, String)> = all.iter().filter_map(|n| head(n)).collect();
        if heads.len() < 4 || heads.iter().any(|h| h.0 != heads[0].0) || heads[0].0 <= 100_000 {
            return None;
        }
        assert!(heads.iter().all(|h| *h == heads[0]), "{heads:?}");
        Some(heads[0].0)
    });
    for n in &all {
        assert!(check_cosigned(n, &members, 3) >= size);
    }

    // Removed (asked at the new member): the others go on without it; it gets nothing more.
    let out = consortium_cli(&nodes[3], &["remove", "--id", "2"]);
    assert!(out.status.success(), "remove: {}", stderr(&out));
    // The answer already shows it; the others learn it from the Raft log.
    let answered: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u64> = answered["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 3, 4], "{}", stdout(&out));
    eventually("member 1 to list three members", || {
        let now: Vec<u64> = listed(&nodes[0]).iter().map(|(id, ..)| *id).collect();
        (now == vec![1, 3, 4]).then_some(())
    });
    let removed_at = nodes[1].tree_size();
    for i in 0..20 {
        submit_until_acknowledged(&nodes[0], &format!("AFTER-REMOVAL-{i}"));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        nodes[1].tree_size() <= removed_at + 1,
        "the removed member still receives entries"
    );
    let stayed: Vec<&Node> = [0, 2, 3].iter().map(|i| &nodes[*i]).collect();
    let stayed_members: Vec<(String, String)> =
        [0, 2, 3].iter().map(|i| members[*i].clone()).collect();
    eventually(
        "the three members to cosign the entries after the removal",
        || {
            stayed
                .iter()
                .all(|n| cosigned_size(n).is_some_and(|s| s >= size + 20))
                .then_some(())
        },
    );
    for n in &stayed {
        check_cosigned(n, &stayed_members, 2);
    }
    check_membership_audit(&stayed, audited_from, &members[3].1);
    stop_and_verify(&mut nodes, &dirs);
}

/// A node that ran on its own before holds entries of its own: it is never made a voter, and the
/// add answers why. Every bad request to the membership routes gets its exact answer.
#[test]
fn a_node_whose_copy_disagrees_never_votes_and_bad_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let channels: Vec<SocketAddr> = (0..3).map(|_| free_port()).collect();
    let (dirs, members) = consortium_on(tmp.path(), &channels, &channels, FAST);
    let mut nodes: Vec<Node> = dirs.iter().map(|d| start(d)).collect();
    agreed_leader(&nodes.iter().collect::<Vec<_>>());
    for i in 0..5 {
        submit_until_acknowledged(&nodes[0], &format!("FOUNDING-{i}"));
    }

    // A node of its own first: three records in its ledger.
    let listen = free_port();
    let (dir, me) = joining(&tmp.path().join("m3"), &members, &channels, listen, FAST);
    strip_consortium(&dir);
    {
        let mut alone = Node::start(&dir);
        alone.wait_ready();
        for i in 0..3 {
            let a = alone
                .client("provider-a")
                .submit(alone.addr, &loan(&format!("ALONE-{i}")));
            assert_eq!(a.status, 201, "{}", a.text());
        }
        alone.stop();
    }
    let me2 = join_config(&dir, &members, &channels, listen, FAST);
    assert_eq!(me2, me);
    let mut new = start(&dir);
    new.wait_ready();
    let client = nodes[0].client("officer");
    let add = |body: &Value| {
        client
            .request(
                nodes[0].addr,
                "POST",
                "/admin/v1/consortium/members",
                Some(body.to_string().as_bytes()),
            )
            .unwrap()
    };
    let good = serde_json::json!({ "id": 4, "name": me.0, "identity": me.1, "address": listen.to_string() });
    let answer = eventually("the add to be decided", || {
        let a = add(&good);
        (a.status != 503).then_some(a)
    });
    assert_eq!(answer.status, 409, "{}", answer.text());
    assert_eq!(
        answer.json()["code"],
        "member_disagrees",
        "{}",
        answer.text()
    );
    eventually("the node to be taken out again", || {
        (listed(&nodes[0]).len() == 3).then_some(())
    });
    // The node itself raised the alarm and vouches for nothing.
    eventually("the disagreement alarm", || {
        new.metric("ledgergate_alarms_total{kind=\"consortium_disagreement\"}")
            .filter(|v| *v >= 1.0)
    });

    // Bad requests, each with its exact answer.
    let cases = [
        (
            serde_json::json!({ "id": 0, "name": "x", "identity": me.1, "address": "127.0.0.1:1" }),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({ "id": 9, "name": "x", "identity": "beef", "address": "127.0.0.1:1" }),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({ "id": 9, "name": "a b", "identity": me.1, "address": "127.0.0.1:1" }),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({ "id": 9, "name": "x", "identity": me.1, "address": "nowhere" }),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({ "id": 2, "name": "x", "identity": me.1, "address": "127.0.0.1:1" }),
            409,
            "conflict",
        ),
        (
            serde_json::json!({ "id": 9, "name": "m0", "identity": me.1, "address": "127.0.0.1:1" }),
            409,
            "conflict",
        ),
        (
            serde_json::json!({ "id": 9, "name": "x", "identity": members[1].1, "address": "127.0.0.1:1" }),
            409,
            "conflict",
        ),
    ];
    for (body, status, code) in cases {
        let a = add(&body);
        assert_eq!(
            (a.status, a.json()["code"].as_str().unwrap().to_owned()),
            (status, code.to_owned()),
            "{body}: {}",
            a.text()
        );
    }
    let request = |who: &str, method: &str, path: &str| {
        nodes[0]
            .client(who)
            .request(nodes[0].addr, method, path, None)
            .unwrap()
    };
    for (who, method, path, status, code) in [
        (
            "officer",
            "DELETE",
            "/admin/v1/consortium/members/9",
            404,
            "not_found",
        ),
        (
            "officer",
            "DELETE",
            "/admin/v1/consortium/members/x",
            400,
            "invalid_request",
        ),
        (
            "provider-a",
            "GET",
            "/admin/v1/consortium",
            403,
            "forbidden",
        ),
        (
            "provider-a",
            "DELETE",
            "/admin/v1/consortium/members/2",
            403,
            "forbidden",
        ),
    ] {
        let a = request(who, method, path);
        assert_eq!(
            (a.status, a.json()["code"].as_str().unwrap().to_owned()),
            (status, code.to_owned()),
            "{who} {method} {path}: {}",
            a.text()
        );
    }
    // A node that is not a consortium member.
    let single = Node::start(&e2e::node::init_node(&tmp.path().join("single")));
    single.wait_ready();
    let a = single
        .client("officer")
        .request(single.addr, "GET", "/admin/v1/consortium", None)
        .unwrap();
    assert_eq!(
        (a.status, a.json()["code"].as_str().unwrap()),
        (404, "not_a_consortium"),
        "{}",
        a.text()
    );
    new.stop();
    stop_and_verify(&mut nodes, &dirs);
}

/// Takes the `channel` and `consortium` sections out of a node's config (the node runs on its own).
fn strip_consortium(dir: &Path) {
    let path = dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("channel:") && !l.starts_with("consortium:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, kept).unwrap();
}
