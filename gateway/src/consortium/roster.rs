//! Who the consortium's members are now. Raft's membership (replicated in its log, changed by
//! officers through the admin API) is the authority; `consortium.members` in `gateway.yaml` only
//! seeds it until this member's Raft has a membership of its own (a founding member before
//! initialization, a joining member before it is added).
//!
//! The channel admits members' identities from here, so that a member added at run time can connect
//! and a removed one loses its sessions within the channel's tick; cosigning asks and counts the
//! voters from here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use super::types::{Member, NodeId};
use crate::channel::Identity;

/// One member, with whether it votes (a learner is still catching up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    /// Its Raft node id.
    pub id: NodeId,
    /// Its name, channel address and identity.
    #[serde(flatten)]
    pub member: Member,
    /// Whether it votes and cosigns (false: a learner).
    pub voter: bool,
}

#[derive(Debug, Default)]
struct Current {
    members: BTreeMap<NodeId, Member>,
    voters: BTreeSet<NodeId>,
    identities: HashMap<Identity, NodeId>,
}

/// The current members, shared by the channel, cosigning and the node.
#[derive(Debug, Clone, Default)]
pub struct Roster(Arc<RwLock<Current>>);

impl Roster {
    /// A roster of `members`, all voters (the configured seed).
    pub fn seeded(members: &BTreeMap<NodeId, Member>) -> Roster {
        let roster = Roster::default();
        roster.set(members.clone(), members.keys().copied().collect());
        roster
    }

    /// Replaces the members (voters and learners) and which of them vote.
    pub fn set(&self, members: BTreeMap<NodeId, Member>, voters: BTreeSet<NodeId>) {
        let identities = members
            .iter()
            .filter_map(|(id, m)| Some((Identity::from_hex(&m.identity)?, *id)))
            .collect();
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Current {
            members,
            voters,
            identities,
        };
    }

    /// Follows Raft's membership as `metrics` report it.
    pub fn follow(&self, metrics: &openraft::RaftMetrics<NodeId, Member>) {
        self.adopt(metrics.membership_config.membership());
    }

    /// Takes `membership` as the current one (a change this member just made, or Raft's).
    pub fn adopt(&self, membership: &openraft::Membership<NodeId, Member>) {
        let members: BTreeMap<NodeId, Member> =
            membership.nodes().map(|(id, m)| (*id, m.clone())).collect();
        // Before Raft has any membership (a joining member not yet added), keep the seed.
        if members.is_empty() {
            return;
        }
        let voters = membership.voter_ids().collect();
        let same = {
            let now = self.0.read().unwrap_or_else(PoisonError::into_inner);
            now.members == members && now.voters == voters
        };
        if !same {
            tracing::info!(
                event = "consortium_members",
                members = members.len(),
                voters = voters.len(),
                "the consortium's members changed"
            );
            self.set(members, voters);
        }
    }

    /// The member whose channel proved `identity`.
    pub fn member_id(&self, identity: &Identity) -> Option<NodeId> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .identities
            .get(identity)
            .copied()
    }

    /// Whether `identity` is a member's (voter or learner).
    pub fn admits(&self, identity: &Identity) -> bool {
        self.member_id(identity).is_some()
    }

    /// The member with id `id`.
    pub fn get(&self, id: NodeId) -> Option<Member> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .members
            .get(&id)
            .cloned()
    }

    /// The voters, with their entries.
    pub fn voters(&self) -> Vec<(NodeId, Member)> {
        let now = self.0.read().unwrap_or_else(PoisonError::into_inner);
        now.voters
            .iter()
            .filter_map(|id| Some((*id, now.members.get(id)?.clone())))
            .collect()
    }

    /// Every member, voters and learners, in id order.
    pub fn seats(&self) -> Vec<Seat> {
        let now = self.0.read().unwrap_or_else(PoisonError::into_inner);
        now.members
            .iter()
            .map(|(id, m)| Seat {
                id: *id,
                member: m.clone(),
                voter: now.voters.contains(id),
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(name: &str, byte: u8) -> Member {
        let key = ed25519_dalek::SigningKey::from_bytes(&[byte; 32]).verifying_key();
        Member {
            name: name.into(),
            address: "127.0.0.1:1".into(),
            identity: hex::encode(key.as_bytes()),
        }
    }

    #[test]
    fn identities_follow_the_members_and_learners_do_not_vote() {
        let a = member("alpha", 1);
        let b = member("bravo", 2);
        let roster = Roster::seeded(&BTreeMap::from([(1, a.clone())]));
        let id_b = Identity::from_hex(&b.identity).unwrap();
        assert!(!roster.admits(&id_b));
        roster.set(
            BTreeMap::from([(1, a.clone()), (2, b.clone())]),
            BTreeSet::from([1]),
        );
        assert_eq!(roster.member_id(&id_b), Some(2));
        assert_eq!(roster.voters(), vec![(1, a.clone())]);
        assert_eq!(
            roster.seats().iter().map(|s| s.voter).collect::<Vec<_>>(),
            vec![true, false]
        );
        // Removed: no longer admitted.
        roster.set(BTreeMap::from([(1, a)]), BTreeSet::from([1]));
        assert!(!roster.admits(&id_b));
        assert_eq!(roster.get(2), None);
    }
}
