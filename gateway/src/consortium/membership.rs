//! Officers add and remove members at run time (docs/consortium.md, Membership). The leader carries
//! out every change; another member forwards an officer's request to it over the channel.
//!
//! Adding is three steps, each repeatable, so that an add that did not finish is finished by asking
//! again:
//! 1. the new member joins as a **learner** (openraft's `add_learner`): it receives the whole Raft log
//!    and applies every entry to its own ledger, re-hashing each into its own Merkle tree;
//! 2. it is asked to **cosign the leader's newest checkpoint**: it does only if its own tree has that
//!    root at that size, so a learner that does not hold exactly the consortium's history never
//!    votes (one that disagrees is taken out again);
//! 3. it becomes a **voter** (joint consensus, openraft's `change_membership`).
//!
//! Removing takes a voter (or a learner) out of the membership entirely; the channel stops admitting
//! it within a tick, and cosignatures no longer count it.

// openraft's error types are large; they are what its calls return.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};

use super::cosigning::{CosignAnswer, CosignRequest, verifies_member};
use super::network::{COSIGN, MEMBERS};
use super::node::Consortium;
use super::roster::Seat;
use super::types::{Member, NodeId};

/// How long one request waits for a new member to catch up and prove its copy before answering
/// `catching_up` (the officer's client asks again; the learner keeps catching up meanwhile). Under the
/// channel's per-call bound, so a forwarded request gets its answer.
const CATCH_UP_WAIT: Duration = Duration::from_secs(20);
/// How long a membership change waits to be committed.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// How far a member being added has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not a member yet.
    New,
    /// A learner (a previous add did not finish).
    Learner,
    /// A voter: the add is done.
    Voter,
}

/// A change an officer asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case", deny_unknown_fields)]
pub enum MemberChange {
    /// Add a member: it catches up as a learner, proves its copy, then votes.
    Add {
        /// Its Raft node id: positive, never used before in this consortium.
        id: NodeId,
        /// Its name (its cosignatures' key name).
        name: String,
        /// Its node identity (64 hex digits).
        identity: String,
        /// Its ledger node's channel listener.
        address: SocketAddr,
    },
    /// Remove a member (voter or learner).
    Remove {
        /// Its Raft node id.
        id: NodeId,
    },
}

/// A change as forwarded to the leader: with the officer who asked, for the leader's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// The change.
    pub change: MemberChange,
    /// The officer who asked (as the member that took the request identified them).
    pub actor: String,
}

/// Why a membership change was not made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MembershipError {
    /// The change itself is wrong (a bad id, name, identity; an unknown member).
    #[error("{0}")]
    Invalid(String),
    /// It contradicts the membership (the id, name or identity is another member's; the last voter).
    #[error("{0}")]
    Conflict(String),
    /// No such member.
    #[error("{0}")]
    NotFound(String),
    /// The new member is a learner still catching up: ask again to finish the add.
    #[error("{0}")]
    CatchingUp(String),
    /// The new member's copy disagrees with the consortium's checkpoint: it was taken out again.
    #[error("{0}")]
    Disagrees(String),
    /// No leader, no quorum, or the leader could not be reached: retry.
    #[error("{0}")]
    Unavailable(String),
}

fn unavailable(e: impl std::fmt::Display) -> MembershipError {
    MembershipError::Unavailable(e.to_string())
}

/// openraft's refusal of a membership change, in our terms.
fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            MembershipError::Conflict(c.to_string())
        }
        other => unavailable(other),
    }
}

impl Consortium {
    /// The members now, voters and learners, and the leader this member knows of.
    pub fn seats(&self) -> (Option<NodeId>, Vec<Seat>) {
        (self.leader(), self.roster.seats())
    }

    /// Carries out an officer's change: here when this member leads, else at the leader.
    pub async fn change_members(
        &self,
        change: MemberChange,
        actor: &str,
    ) -> Result<Vec<Seat>, MembershipError> {
        let leader = self
            .leader()
            .ok_or_else(|| unavailable("no leader; retry shortly"))?;
        if leader != self.id() {
            let member = self
                .roster
                .get(leader)
                .ok_or_else(|| unavailable(format!("the leader {leader} is not a known member")))?;
            let request = ChangeRequest {
                change,
                actor: actor.to_owned(),
            };
            let wait = CATCH_UP_WAIT + COMMIT_WAIT;
            let answer: Result<Vec<Seat>, MembershipError> = self
                .links
                .call(leader, &member, MEMBERS, &request, wait)
                .await
                .map_err(unavailable)?;
            return answer;
        }
        match change {
            MemberChange::Add {
                id,
                name,
                identity,
                address,
            } => {
                let member = Member {
                    name,
                    address: address.to_string(),
                    identity: identity.to_ascii_lowercase(),
                };
                self.add(id, member, actor).await?;
            }
            MemberChange::Remove { id } => self.remove(id, actor).await?,
        }
        Ok(self.roster.seats())
    }

    /// Checks that `member` may join as `id`: a valid entry whose id, name and identity no other
    /// member has. Answers where it is already (a repeated add resumes from there).
    fn admissible(&self, id: NodeId, member: &Member) -> Result<Stage, MembershipError> {
        if let Some(why) = super::config::member_problem(id, &member.name, &member.identity) {
            return Err(MembershipError::Invalid(why));
        }
        for seat in self.roster.seats() {
            let same_id = seat.id == id;
            let same_name = seat.member.name == member.name;
            let same_identity = seat.member.identity.eq_ignore_ascii_case(&member.identity);
            if same_id && same_name && same_identity && seat.member.address == member.address {
                return Ok(if seat.voter {
                    Stage::Voter
                } else {
                    Stage::Learner
                });
            }
            if same_id || same_name || same_identity {
                return Err(MembershipError::Conflict(format!(
                    "member {} ({}) already has that {}",
                    seat.id,
                    seat.member.name,
                    if same_id {
                        "id"
                    } else if same_name {
                        "name"
                    } else {
                        "identity"
                    }
                )));
            }
        }
        Ok(Stage::New)
    }

    async fn add(&self, id: NodeId, member: Member, actor: &str) -> Result<(), MembershipError> {
        let stage = self.admissible(id, &member)?;
        if stage == Stage::Voter {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        if stage == Stage::New {
            tracing::info!(event = "consortium_member_adding", id, name = %member.name, actor, "adding a member: it catches up as a learner");
            // 1. A learner, caught up to the membership entry that made it one. (A repeated add
            // of a learner skips this: openraft would append another membership entry.)
            let caught_up =
                tokio::time::timeout_at(deadline, self.raft.add_learner(id, member.clone(), true))
                    .await;
            match caught_up {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(write_error(e)),
                Err(_) => return Err(self.still_catching_up(id)),
            }
        }
        // 2. Its copy proves the leader's checkpoint.
        self.prove_copy(id, &member, deadline).await?;
        // 3. A voter.
        let done = tokio::time::timeout(
            COMMIT_WAIT,
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true),
        )
        .await
        .map_err(|_| unavailable("the membership change was not committed in time; retry"))?
        .map_err(write_error)?;
        // The answer shows the change (the roster's own follower of Raft's metrics may be a moment
        // behind).
        if let Some(m) = &done.membership {
            self.roster.adopt(m);
        }
        tracing::warn!(event = "consortium_member_added", id, name = %member.name, actor, "a member was added and votes");
        Ok(())
    }

    fn still_catching_up(&self, id: NodeId) -> MembershipError {
        let metrics = self.metrics();
        let leader_at = metrics.last_log_index.unwrap_or(0);
        let at = metrics
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map_or(0, |l| l.index);
        MembershipError::CatchingUp(format!(
            "member {id} is a learner catching up (log {at} of {leader_at}); ask again to make it a \
             voter once it has caught up"
        ))
    }

    /// Asks the learner `id` to cosign this leader's newest checkpoint until it does (its own tree
    /// has that root), it refuses (its copy disagrees: it is taken out), or `deadline`.
    async fn prove_copy(
        &self,
        id: NodeId,
        member: &Member,
        deadline: tokio::time::Instant,
    ) -> Result<(), MembershipError> {
        let request = CosignRequest {
            body: self.cosigning.head_body(),
        };
        loop {
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            if wait.is_zero() {
                return Err(self.still_catching_up(id));
            }
            let answer: Result<CosignAnswer, _> =
                self.links.call(id, member, COSIGN, &request, wait).await;
            match answer {
                Ok(CosignAnswer::Cosigned(line))
                    if verifies_member(member, &request.body, &line) =>
                {
                    return Ok(());
                }
                Ok(CosignAnswer::Cosigned(_)) => {
                    return Err(self.take_out(id, "its cosignature does not verify").await);
                }
                Ok(CosignAnswer::Refused(why)) => {
                    return Err(self.take_out(id, &why).await);
                }
                Ok(CosignAnswer::Behind) | Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// Takes a learner whose copy disagreed out of the membership again.
    async fn take_out(&self, id: NodeId, why: &str) -> MembershipError {
        tracing::error!(
            event = "consortium_member_disagrees",
            id,
            why,
            "a new member's copy disagrees with the consortium's checkpoint; it is taken out"
        );
        let removed = tokio::time::timeout(
            COMMIT_WAIT,
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
        )
        .await;
        let outcome = match removed {
            Ok(Ok(done)) => {
                if let Some(m) = &done.membership {
                    self.roster.adopt(m);
                }
                "it was taken out again"
            }
            _ => "taking it out again failed: remove it",
        };
        MembershipError::Disagrees(format!(
            "member {id}'s copy of the ledger disagrees with the consortium's checkpoint ({why}); {outcome}"
        ))
    }

    async fn remove(&self, id: NodeId, actor: &str) -> Result<(), MembershipError> {
        let seats = self.roster.seats();
        let seat = seats
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| MembershipError::NotFound(format!("no member {id}")))?;
        let voters = seats.iter().filter(|s| s.voter).count();
        let change = if seat.voter {
            if voters == 1 {
                return Err(MembershipError::Conflict(
                    "the last voter cannot be removed".into(),
                ));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        // retain = false: a removed voter does not stay on as a learner.
        let done = tokio::time::timeout(COMMIT_WAIT, self.raft.change_membership(change, false))
            .await
            .map_err(|_| unavailable("the membership change was not committed in time; retry"))?
            .map_err(write_error)?;
        if let Some(m) = &done.membership {
            self.roster.adopt(m);
        }
        tracing::warn!(event = "consortium_member_removed", id, name = %seat.member.name, actor, "a member was removed");
        Ok(())
    }

    /// Answers a change forwarded by the member `from` (this member leads; if it no longer does,
    /// the change is forwarded again, to the leader it knows).
    pub(super) async fn answer_change(
        &self,
        from: NodeId,
        request: ChangeRequest,
    ) -> Result<Vec<Seat>, MembershipError> {
        let actor = format!("{}@member-{from}", request.actor);
        if self.leader() != Some(self.id()) {
            return Err(unavailable("leadership moved; retry"));
        }
        Box::pin(self.change_members(request.change, &actor)).await
    }
}
