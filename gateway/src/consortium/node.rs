//! A member's consortium node: its Raft (log store, the ledger as state machine, the channel as
//! network), how its submissions become proposals, and how it answers other members' requests.

// openraft's error types are large; they are what its calls return.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{Raft, SnapshotPolicy};
use tokio::sync::oneshot;

use super::coalesce::{Coalescer, Propose};
use super::config::ConsortiumSection;
use super::cosigning::{CosignRequest, Cosigning};
use super::network::{
    APPEND, COSIGN, Links, MEMBERS, PROPOSE, SNAPSHOT, SnapshotChunk, VOTE, snapshot_chunk_bytes,
};
use super::raft_log::RaftLog;
use super::roster::Roster;
use super::state::{LedgerMachine, Pending, PendingWrite, Proposer};
use super::types::{Applied, Member, NodeId, Proposal, TypeConfig};
use crate::channel::{self, Identity};
use crate::ledger::{Attachment, Ledger, LedgerError, Receipt};

/// Why a member's consortium node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// This node's identity is not among the configured members.
    #[error("this node's identity {0} is not one of consortium.members")]
    NotAMember(Identity),
    /// Raft's log store.
    #[error("raft log: {0}")]
    Log(String),
    /// The ledger's recorded Raft state.
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    /// openraft refused to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// A running member.
pub struct Consortium {
    pub(super) raft: Raft<TypeConfig>,
    me: Proposer,
    /// This member's name (its cosignatures' key name, the `member` of its audit entries).
    name: String,
    pub(super) roster: Roster,
    pending: Pending,
    next_tag: AtomicU64,
    pub(super) links: Links,
    write_timeout: Duration,
    /// Most entry bytes in one proposal (a larger batch becomes several): half the message bound,
    /// so that one proposal, with base64 and JSON, always fits in one append-entries message.
    max_proposal_bytes: usize,
    /// Submissions that arrive while proposals are in flight go together (see `coalesce`).
    coalescer: Coalescer<Receipt>,
    pub(super) cosigning: Arc<Cosigning>,
}

impl Propose for Consortium {
    type Receipt = Receipt;

    async fn propose_group(
        &self,
        items: Vec<(Vec<u8>, Attachment)>,
    ) -> Result<Vec<Receipt>, LedgerError> {
        self.append_one(items).await
    }
}

impl std::fmt::Debug for Consortium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consortium")
            .field("id", &self.me.id)
            .finish_non_exhaustive()
    }
}

/// An answer to another member: HTTP status and JSON body.
pub type Answer = (u16, Vec<u8>);

fn json<T: serde::Serialize>(value: &T) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => (200, body),
        Err(_) => (500, b"\"an answer that cannot be written\"".to_vec()),
    }
}

fn bad_request(why: &str) -> Answer {
    (400, serde_json::to_vec(why).unwrap_or_default())
}

impl Consortium {
    /// Starts this member: opens Raft's log in `data`, resumes the state machine from `ledger`,
    /// and, when Raft has never run here, initializes it with the configured members (every
    /// founding member does the same with the same list, which openraft allows) unless it is
    /// joining. `roster` (seeded with the configured members) follows Raft's membership from then
    /// on.
    #[allow(clippy::too_many_arguments)] // each is a separate thing the member is made of
    pub async fn start(
        section: &ConsortiumSection,
        roster: Roster,
        own: Identity,
        data: &Path,
        ledger: Arc<Ledger>,
        channel: channel::Config,
        identity: Arc<dyn crate::node_key::IdentityKey>,
        alarms: prometheus::IntCounterVec,
    ) -> Result<Arc<Consortium>, StartError> {
        let me = section
            .member_with(&own)
            .ok_or(StartError::NotAMember(own))?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let me = Proposer { id: me.id, started };
        let log = RaftLog::open(&data.join("raft"), true).map_err(StartError::Log)?;
        let pending = Pending::default();
        let members = section.membership();
        let name = members
            .get(&me.id)
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let cosigning = Arc::new(Cosigning::new(
            Arc::clone(&ledger),
            me.id,
            &name,
            identity,
            section.cosignatures_required,
            roster.clone(),
            alarms,
        )?);
        let machine = LedgerMachine::open(ledger, me, pending.clone(), data.join("raft"))?;
        let config = openraft::Config {
            cluster_name: "ledgergate".into(),
            heartbeat_interval: section.heartbeat_ms,
            election_timeout_min: section.election_timeout_ms,
            election_timeout_max: section.election_timeout_ms * 2,
            // A snapshot is the ledger's entries and costs nothing to build (see
            // consortium::snapshot); after one, the Raft log keeps its last entries only. A
            // member that joins, or was down for long, gets the snapshot and applies (and so
            // re-hashes) every entry of it itself. See docs/consortium.md.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(section.snapshot_every),
            max_in_snapshot_log_to_keep: section.snapshot_every.min(1000),
            // A chunk travels in one message, as base64.
            snapshot_max_chunk_size: snapshot_chunk_bytes(section.max_message_bytes()),
            // The last chunk's answer waits for the snapshot to be installed: every entry
            // appended and synced.
            install_snapshot_timeout: 30_000,
            // Up to ~1.5 MB per append-entries message with 1 KiB records: a member catching up
            // gets them in few round trips (the channel carries messages up to 16 MiB).
            max_payload_entries: 1024,
            ..openraft::Config::default()
        }
        .validate()
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let links = Links::new(channel, section.max_message_bytes());
        let raft = Raft::new(me.id, Arc::new(config), links.clone(), log, machine)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let fresh = !raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if fresh && section.join {
            // Not a voter until it is added: it neither gathers cosignatures nor is counted.
            let mut voters: std::collections::BTreeSet<NodeId> = members.keys().copied().collect();
            voters.remove(&me.id);
            roster.set(members.clone(), voters);
            tracing::info!(
                event = "consortium_joining",
                "waiting to be added to the consortium by an officer (consortium.join)"
            );
        } else if fresh {
            match raft.initialize(members.clone()).await {
                Ok(()) => tracing::info!(
                    event = "consortium_initialized",
                    members = members.len(),
                    "consortium initialized"
                ),
                // Another founding member's membership reached this one first.
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(StartError::Raft(e.to_string())),
            }
        }
        // The roster and the links follow Raft's membership until Raft stops.
        {
            let mut watch = raft.metrics();
            let roster = roster.clone();
            let links = links.clone();
            tokio::spawn(async move {
                loop {
                    {
                        let metrics = watch.borrow_and_update();
                        roster.follow(&metrics);
                        links.follow(metrics.membership_config.membership());
                    }
                    if watch.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
        let max_proposal_bytes = section.max_message_bytes() / 2;
        Ok(Arc::new_cyclic(|me_weak| Consortium {
            raft,
            me,
            name,
            roster,
            pending,
            next_tag: AtomicU64::new(1),
            links,
            write_timeout: section.write_timeout(),
            max_proposal_bytes,
            coalescer: Coalescer::start(me_weak.clone(), max_proposal_bytes),
            cosigning,
        }))
    }

    /// This member's node id.
    pub fn id(&self) -> NodeId {
        self.me.id
    }

    /// This member's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The member whose channel proved `identity`, if it is one.
    pub fn member_id(&self, identity: &Identity) -> Option<NodeId> {
        self.roster.member_id(identity)
    }

    /// The leader this member knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Raft's view of this member, for metrics and readiness.
    pub fn metrics(&self) -> openraft::RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    /// Appends a submission's entries through the consortium: proposed (to the leader, over the
    /// channel when that is another member), committed on a majority, and applied here, where the
    /// attachments join them in the same write. Answers only then, or fails within the write
    /// timeout with nothing acknowledged.
    pub async fn append_with(
        &self,
        items: Vec<(Vec<u8>, Attachment)>,
    ) -> Result<Vec<Receipt>, LedgerError> {
        // A batch can be larger than what one Raft message may carry: proposals of at most
        // `max_proposal_bytes` each, in order (a batch's lines are independent records).
        let mut receipts = Vec::with_capacity(items.len());
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for item in items {
            if !chunk.is_empty() && bytes + item.0.len() > self.max_proposal_bytes {
                receipts.extend(self.submit(std::mem::take(&mut chunk)).await?);
                bytes = 0;
            }
            bytes += item.0.len();
            chunk.push(item);
        }
        if !chunk.is_empty() {
            receipts.extend(self.submit(chunk).await?);
        }
        Ok(receipts)
    }

    /// One chunk, proposed with whatever else waits (see `coalesce`), within the write timeout
    /// (a chunk that waited for a slot and then timed out may still be proposed: like a proposal
    /// that timed out, it keeps its attachments, and a retry finds the record).
    async fn submit(&self, items: Vec<(Vec<u8>, Attachment)>) -> Result<Vec<Receipt>, LedgerError> {
        tokio::time::timeout(self.write_timeout, self.coalescer.submit(items))
            .await
            .unwrap_or_else(|_| {
                Err(LedgerError::NotReplicated(format!(
                    "not committed and applied within {} s",
                    self.write_timeout.as_secs()
                )))
            })
    }

    /// One proposal: proposed, committed, applied here.
    async fn append_one(
        &self,
        items: Vec<(Vec<u8>, Attachment)>,
    ) -> Result<Vec<Receipt>, LedgerError> {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let (entries, attachments): (Vec<_>, Vec<_>) = items.into_iter().unzip();
        let (reply, applied) = oneshot::channel();
        self.pending
            .insert(tag, PendingWrite { attachments, reply });
        let proposal = Proposal {
            origin: self.me.id,
            tag,
            started: self.me.started,
            entries,
        };
        let outcome = tokio::time::timeout(self.write_timeout, async {
            self.propose(proposal).await?;
            applied
                .await
                .map_err(|_| LedgerError::NotReplicated("this member stopped applying".into()))?
        })
        .await;
        match outcome {
            Ok(Ok(receipts)) => Ok(receipts),
            // Kept pending: a proposal whose forwarding broke may have reached the leader.
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // It may still be committed and applied later: its attachments stay pending so
                // that they join it then, and a retry finds the record (docs/consortium.md).
                Err(LedgerError::NotReplicated(format!(
                    "not committed and applied within {} s",
                    self.write_timeout.as_secs()
                )))
            }
        }
    }

    /// Hands a proposal to the leader.
    async fn propose(&self, proposal: Proposal) -> Result<(), LedgerError> {
        let unavailable = |why: String| LedgerError::NotReplicated(why);
        let leader = self
            .leader()
            .ok_or_else(|| unavailable("no leader".into()))?;
        if leader == self.me.id {
            return match self.raft.client_write(proposal).await {
                Ok(_) => Ok(()),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    Err(unavailable("leadership moved".into()))
                }
                Err(e) => Err(unavailable(e.to_string())),
            };
        }
        let member = self
            .leader_member(leader)
            .ok_or_else(|| unavailable(format!("the leader {leader} is not a known member")))?;
        let answer: Result<Applied, String> = self
            .links
            .call(leader, &member, PROPOSE, &proposal, self.write_timeout)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        answer.map(|_| ()).map_err(unavailable)
    }

    fn leader_member(&self, leader: NodeId) -> Option<Member> {
        let metrics = self.raft.metrics().borrow().clone();
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
            .or_else(|| self.roster.get(leader))
    }

    /// Answers another member's request at `target` (one of `network`'s paths). `from` is the member
    /// the channel authenticated.
    pub async fn answer(&self, from: NodeId, target: &str, body: &[u8]) -> Answer {
        macro_rules! parse {
            () => {
                match serde_json::from_slice(body) {
                    Ok(request) => request,
                    Err(_) => return bad_request("a malformed request"),
                }
            };
        }
        match target {
            APPEND => json(&self.raft.append_entries(parse!()).await),
            VOTE => json(&self.raft.vote(parse!()).await),
            SNAPSHOT => {
                let chunk: SnapshotChunk = parse!();
                let Some(request) = chunk.request() else {
                    return bad_request("a snapshot chunk whose data is not base64");
                };
                json(&self.raft.install_snapshot(request).await)
            }
            PROPOSE => {
                let proposal: Proposal = parse!();
                if proposal.origin != from {
                    return bad_request("a proposal in another member's name");
                }
                let written =
                    tokio::time::timeout(self.write_timeout, self.raft.client_write(proposal))
                        .await;
                let answer: Result<Applied, String> = match written {
                    Ok(Ok(r)) => Ok(r.data),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("not committed in time".into()),
                };
                json(&answer)
            }
            COSIGN => {
                let request: CosignRequest = parse!();
                json(&self.cosigning.cosign(&request.body).await)
            }
            MEMBERS => json(&self.answer_change(from, parse!()).await),
            _ => (
                404,
                serde_json::to_vec("no such consortium request").unwrap_or_default(),
            ),
        }
    }

    /// Gathers cosignatures for this member's checkpoints until aborted (see `cosigning`).
    pub async fn cosign_checkpoints(&self) {
        Arc::clone(&self.cosigning).run(self.links.clone()).await;
    }

    /// The newest checkpoint with the consortium's required cosignatures; none while there is not
    /// one yet, or when this member's copy disagreed with the consortium (it no longer vouches).
    pub fn checkpoint(&self) -> Option<Arc<str>> {
        self.cosigning.checkpoint()
    }

    /// Whether this member's copy disagreed with a checkpoint of the consortium.
    pub fn diverged(&self) -> bool {
        self.cosigning.diverged()
    }

    /// Keeps `metrics` at Raft's view of this member until Raft stops.
    pub async fn observe(&self, metrics: crate::metrics::ConsortiumMetrics) {
        let mut watch = self.raft.metrics();
        let as_gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        metrics.member.set(as_gauge(self.me.id));
        loop {
            {
                let m = watch.borrow_and_update();
                metrics.leader.set(as_gauge(m.current_leader.unwrap_or(0)));
                metrics.term.set(as_gauge(m.current_term));
                metrics
                    .applied
                    .set(as_gauge(m.last_applied.map_or(0, |l| l.index)));
                metrics
                    .snapshot
                    .set(as_gauge(m.snapshot.map_or(0, |l| l.index)));
                metrics
                    .purged
                    .set(as_gauge(m.purged.map_or(0, |l| l.index)));
            }
            if watch.changed().await.is_err() {
                return;
            }
        }
    }

    /// Stops Raft (the ledger stays open for the caller to close).
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
    }
}
