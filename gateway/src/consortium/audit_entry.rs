//! Each membership the consortium's Raft commits (a learner added, a joint configuration, the
//! final one) becomes an audit entry (`audit.consortium.membership`) that every member appends at
//! the same place when it applies the Raft entry: the member list (ids, names, identity keys,
//! channel addresses, voter or learner) is then part of the ledger, covered by the tree, replicated
//! and cosigned. Because every member must write the same bytes, the entry is a function of the
//! Raft entry alone: its log id stands for its time (the officer's request, with its time and actor,
//! is an entry of its own: `audit.consortium.member_add` / `member_remove`).
//!
//! Audit entries that members propose are attributed: each names the member that appended it
//! (`member`), and every member, applying a proposal, checks that name against the member Raft says
//! proposed it ([`refusal`]). So a dishonest member can neither forge another member's officer's act
//! nor a membership entry; a proposal that tries is applied as nothing, by every member alike.

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
    .entry(None, None)
}

/// The type of the entries only the consortium's state machine writes.
const MEMBERSHIP: &str = "audit.consortium.membership";

/// Why a proposal of `entries` by the member named `origin` (none: a member no longer in the
/// membership) must not be applied: one of its entries is a membership entry (only the state
/// machine writes those), or an audit entry that does not name `origin` as its member. Records
/// (entries whose type is not `audit.…`) are not checked. A pure function of the Raft entry and the
/// membership in force, so every member decides alike.
pub fn refusal(entries: &[Vec<u8>], origin: Option<&str>) -> Option<String> {
    entries.iter().enumerate().find_map(|(i, bytes)| {
        let Some(typed) = crate::audit::typed(bytes) else {
            // JSON that does not read as a type and a member (a repeated `type`, a type that is not
            // a string) could read as an audit entry to another parser (most keep the last of
            // repeated keys); no member writes such an entry, so none is accepted.
            return serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                .is_ok()
                .then(|| format!("entry {i} is JSON without one plain type"));
        };
        let kind = typed.kind?;
        if !kind.starts_with(crate::audit::TYPE_PREFIX) {
            return None;
        }
        if kind == MEMBERSHIP {
            return Some(format!(
                "entry {i} is a membership entry, which only Raft writes"
            ));
        }
        match (typed.member.as_deref(), origin) {
            (Some(named), Some(origin)) if named == origin => None,
            (named, _) => Some(format!(
                "entry {i} is an audit entry naming member {:?}, not the member that proposed it",
                named.unwrap_or("(none)")
            )),
        }
    })
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
        // Proposed by a member, it is refused: only the state machine writes it.
        assert!(refusal(&[bytes], Some("a")).is_some());
    }

    fn officer_act(member: Option<&str>) -> Vec<u8> {
        Event {
            kind: "consortium.member_add",
            actor: "officer".into(),
            target: "member 4".into(),
            outcome: Outcome::Requested,
            reason: None,
            details: serde_json::Value::Null,
        }
        .entry(Some(0), member)
    }

    #[test]
    fn an_audit_entry_must_name_the_member_that_proposed_it() {
        let record = br#"{"type":"loan_application","member":"someone else"}"#.to_vec();
        assert_eq!(
            refusal(&[record.clone(), officer_act(Some("a"))], Some("a")),
            None
        );
        assert!(refusal(&[record.clone(), officer_act(Some("b"))], Some("a")).is_some());
        assert!(refusal(&[officer_act(None)], Some("a")).is_some());
        // A member no longer in the membership cannot have audit entries attributed to it.
        assert!(refusal(&[officer_act(Some("a"))], None).is_some());
        assert_eq!(refusal(&[record], None), None);
        // An escaped type is still a type.
        let escaped = br#"{"type":"audit\u002econsortium.member_add","member":"b"}"#.to_vec();
        assert!(refusal(&[escaped], Some("a")).is_some());
        // A repeated type reads as the last one elsewhere: refused.
        let repeated =
            br#"{"type":"loan","type":"audit.consortium.member_add","member":"b"}"#.to_vec();
        assert!(refusal(&[repeated], Some("a")).is_some());
        let numeric = br#"{"type":7}"#.to_vec();
        assert!(refusal(&[numeric], Some("a")).is_some());
        // Bytes that are not JSON are no one's audit entry.
        assert_eq!(refusal(&[b"\x00opaque".to_vec()], Some("a")), None);
    }
}
