//! Each membership the consortium's Raft commits (a learner added, a joint configuration, the
//! final one) becomes an audit entry (`audit.consortium.membership`) that every member appends at
//! the same place when it applies the Raft entry: the member list (ids, names, identity keys,
//! channel addresses, voter or learner) is then part of the ledger, covered by the tree, replicated
//! and cosigned. Because every member must write the same bytes, the entry is a function of the
//! Raft entry alone: its log id stands for its time (the officer's request, with its time and actor,
//! is an entry of its own: `audit.consortium.member_add` / `member_remove`).

use openraft::{LogId, Membership};
use serde_json::json;

use super::types::{Member, NodeId};
use crate::audit::{Event, Outcome};

/// The audit entry for `membership`, committed at `log_id`.
pub fn membership(log_id: &LogId<NodeId>, membership: &Membership<NodeId, Member>) -> Vec<u8> {
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    let members: Vec<_> = membership
        .nodes()
        .map(|(id, m)| {
            json!({
                "id": id,
                "name": m.name,
                "identity": m.identity,
                "address": m.address,
                "voter": voters.contains(id),
            })
        })
        .collect();
    Event {
        kind: "consortium.membership",
        actor: "consortium".into(),
        target: "members".into(),
        outcome: Outcome::Committed,
        reason: None,
        details: json!({
            "raft_log": {
                "term": log_id.leader_id.term,
                "index": log_id.index,
            },
            // One set of voters, or two during a joint consensus (old and new).
            "configs": membership.get_joint_config(),
            "members": members,
        }),
    }
    .entry(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::CommittedLeaderId;

    use super::*;

    fn member(name: &str) -> Member {
        Member {
            name: name.into(),
            address: "127.0.0.1:1".into(),
            identity: "ab".repeat(32),
        }
    }

    #[test]
    fn the_entry_lists_every_member_and_is_the_same_on_every_member() {
        let nodes = BTreeMap::from([(1, member("a")), (2, member("b")), (3, member("c"))]);
        let m = Membership::new(vec![BTreeSet::from([1, 2])], nodes);
        let at = LogId::new(CommittedLeaderId::new(3, 1), 42);
        let bytes = membership(&at, &m);
        assert_eq!(bytes, membership(&at, &m.clone()));
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["type"], "audit.consortium.membership");
        assert_eq!(v["details"]["raft_log"]["index"], 42);
        assert_eq!(v["details"]["configs"], json!([[1, 2]]));
        let listed: Vec<(u64, bool)> = v["details"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["id"].as_u64().unwrap(), m["voter"].as_bool().unwrap()))
            .collect();
        assert_eq!(listed, vec![(1, true), (2, true), (3, false)]);
        assert!(v.get("time").is_none());
    }
}
