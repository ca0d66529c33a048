//! Raft's RPCs over the Noise channel: each member keeps one [`Upstream`] link to every other member
//! (which must prove the identity the consortium's config gives it), and sends Raft's requests as
//! channel requests to `/raft/v1/…` with JSON bodies. The receiving member's channel handler gives
//! them to [`serve`] only when the channel authenticated a *member* (an edge gets 403).
//!
//! The same links carry proposals forwarded to the leader (`/raft/v1/propose`) and cosignature
//! requests.

// openraft's error types are large; they are what its traits return.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use openraft::Vote;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::SnapshotMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::types::{Member, NodeId, TypeConfig};
use crate::channel::{self, Identity, Upstream, UpstreamError};

/// Where Raft's requests go on the channel.
pub const RAFT_PREFIX: &str = "/raft/v1/";
/// Append-entries (and heartbeats).
pub const APPEND: &str = "/raft/v1/append";
/// Request-vote.
pub const VOTE: &str = "/raft/v1/vote";
/// A snapshot chunk.
pub const SNAPSHOT: &str = "/raft/v1/snapshot";
/// A proposal forwarded to the leader.
pub const PROPOSE: &str = "/raft/v1/propose";
/// A request to cosign a checkpoint.
pub const COSIGN: &str = "/raft/v1/cosign";
/// An officer's membership change, forwarded to the leader.
pub const MEMBERS: &str = "/raft/v1/members";

/// The longest any one call waits, whatever Raft asks.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A snapshot chunk on the wire: openraft's request with its bytes in base64 (serde would make them
/// a JSON array of numbers, up to four bytes a byte).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotChunk {
    vote: Vote<NodeId>,
    meta: SnapshotMeta<NodeId, Member>,
    offset: u64,
    done: bool,
    data: String,
}

impl From<InstallSnapshotRequest<TypeConfig>> for SnapshotChunk {
    fn from(r: InstallSnapshotRequest<TypeConfig>) -> SnapshotChunk {
        SnapshotChunk {
            vote: r.vote,
            meta: r.meta,
            offset: r.offset,
            done: r.done,
            data: STANDARD.encode(&r.data),
        }
    }
}

impl SnapshotChunk {
    /// openraft's request, if the bytes are base64.
    pub fn request(self) -> Option<InstallSnapshotRequest<TypeConfig>> {
        Some(InstallSnapshotRequest {
            vote: self.vote,
            meta: self.meta,
            offset: self.offset,
            data: STANDARD.decode(&self.data).ok()?,
            done: self.done,
        })
    }
}

/// The bytes of snapshot in one chunk that fit a message of `max_message_bytes`: base64 takes four
/// bytes for three, and the rest of the request (the membership) gets 16 KiB.
pub fn snapshot_chunk_bytes(max_message_bytes: usize) -> u64 {
    u64::try_from(max_message_bytes / 4 * 3 - 16 * 1024).unwrap_or(u64::MAX)
}

/// Links to the other members, one per member, made on first use and kept.
#[derive(Clone)]
pub struct Links {
    config: Arc<channel::Config>,
    /// Most entry bytes (encoded) in one append-entries message (`consortium.max_message_kib`).
    max_append_bytes: usize,
    links: Arc<Mutex<LinkMap>>,
}

/// The links by member: the entry each was made for, and the link.
type LinkMap = HashMap<NodeId, (Member, Arc<Upstream>)>;

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").finish_non_exhaustive()
    }
}

/// Why a call to another member failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The member's config entry is unusable (address or identity).
    #[error("member {0}: {1}")]
    BadMember(NodeId, String),
    /// The link is down or broke.
    #[error("member {0}: {1}")]
    Link(NodeId, UpstreamError),
    /// No answer in time.
    #[error("member {0} did not answer in time")]
    Timeout(NodeId),
    /// An answer that is not what was asked for.
    #[error("member {0} answered {1}")]
    Answer(NodeId, String),
}

impl Links {
    /// Links made with this node's channel `config` (identity and static key), sending at most
    /// `max_append_bytes` of encoded entries in one append-entries message.
    pub fn new(config: channel::Config, max_append_bytes: usize) -> Links {
        Links {
            config: Arc::new(config),
            max_append_bytes,
            links: Arc::default(),
        }
    }

    /// The link to `target`, and whether it was made just now (it is still connecting).
    fn link(&self, target: NodeId, member: &Member) -> Result<(Arc<Upstream>, bool), CallError> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((made_for, l)) = links.get(&target)
            && made_for == member
        {
            return Ok((Arc::clone(l), false));
        }
        let addr: SocketAddr = member
            .address
            .parse()
            .map_err(|_| CallError::BadMember(target, "address is not host:port".into()))?;
        let identity = Identity::from_hex(&member.identity)
            .ok_or_else(|| CallError::BadMember(target, "identity is not 64 hex digits".into()))?;
        let link = Arc::new(Upstream::start(addr, identity, &self.config, CALL_TIMEOUT));
        // A link made for another address or identity of this member is replaced (and stops).
        links.insert(target, (member.clone(), Arc::clone(&link)));
        Ok((link, true))
    }

    /// Drops the links to members no longer in `membership`, or whose entry in it changed: their
    /// tasks stop (a removed member is not reconnected to for the life of the process).
    pub fn follow(&self, membership: &openraft::Membership<NodeId, Member>) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, (made_for, _)| membership.get_node(id) == Some(made_for));
    }

    /// How many links are kept.
    #[cfg(test)]
    fn count(&self) -> usize {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Sends `request` to `target` at `path` and reads its JSON answer.
    pub async fn call<Q: Serialize, A: DeserializeOwned>(
        &self,
        target: NodeId,
        member: &Member,
        path: &str,
        request: &Q,
        timeout: Duration,
    ) -> Result<A, CallError> {
        let (link, new) = self.link(target, member)?;
        if new {
            // A first call to a member (one that just joined, a leader never called before)
            // waits for the link to come up rather than failing at once; later calls to a member
            // that is down fail fast (Raft and cosigning retry on their own schedule).
            link.connected(timeout).await;
        }
        let body = serde_json::to_vec(request)
            .map_err(|e| CallError::Answer(target, format!("an unwritable request: {e}")))?;
        let nobody = policies::PeerIdentity::default();
        let call = link.call("POST", path, &nobody, body);
        let (head, body) = tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| CallError::Timeout(target))?
            .map_err(|e| match e {
                UpstreamError::Timeout => CallError::Timeout(target),
                other => CallError::Link(target, other),
            })?;
        if head.status != 200 {
            return Err(CallError::Answer(target, format!("HTTP {}", head.status)));
        }
        serde_json::from_slice(&body)
            .map_err(|e| CallError::Answer(target, format!("an unreadable answer: {e}")))
    }
}

impl RaftNetworkFactory<TypeConfig> for Links {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        Peer {
            links: self.clone(),
            target,
            member: node.clone(),
        }
    }
}

/// Raft's view of one other member.
#[derive(Debug)]
pub struct Peer {
    links: Links,
    target: NodeId,
    member: Member,
}

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl Peer {
    async fn rpc<Q: Serialize, T: DeserializeOwned, E>(
        &self,
        path: &str,
        request: &Q,
        option: &RPCOption,
    ) -> Rpc<T, E>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<T, RaftError<NodeId, E>> = self
            .links
            .call(
                self.target,
                &self.member,
                path,
                request,
                option.hard_ttl().min(CALL_TIMEOUT),
            )
            .await
            .map_err(|e| match e {
                CallError::Answer(..) => RPCError::Network(NetworkError::new(&e)),
                _ => RPCError::Unreachable(Unreachable::new(&e)),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        // Raft counts entries, not bytes: one entry can be a batch of thousands of records. Over
        // the bound, openraft is asked to send fewer (it retries with the hint). openraft gives an
        // append-entries call one heartbeat interval: a message that cannot cross and be stored
        // in that time is never acknowledged, and the member never catches up.
        let size: usize = rpc
            .entries
            .iter()
            .map(|e| match &e.payload {
                openraft::EntryPayload::Normal(p) => p.entries.iter().map(Vec::len).sum(),
                _ => 0,
            })
            .sum();
        // base64 and JSON add about a third.
        let encoded = size / 3 * 4;
        let bound = self.links.max_append_bytes;
        if encoded > bound && rpc.entries.len() > 1 {
            let fit = (rpc.entries.len() * bound / encoded.max(1)).max(1);
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(u64::try_from(fit).unwrap_or(1)),
            ));
        }
        self.rpc(APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(SNAPSHOT, &SnapshotChunk::from(rpc), &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        self.rpc(VOTE, &rpc, &option).await
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;

    /// A chunk crosses as base64 and comes back whole; data that is not base64 is refused; a chunk
    /// fits the smallest message allowed.
    #[test]
    fn a_snapshot_chunk_crosses_in_base64() {
        let request = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 40)),
                last_membership: openraft::StoredMembership::default(),
                snapshot_id: "40-1000".into(),
            },
            offset: 65_536,
            data: (0..=255u8).collect(),
            done: true,
        };
        let text = serde_json::to_string(&SnapshotChunk::from(request.clone())).unwrap();
        assert!(text.contains("\"data\":\"AAECAwQF"), "{text}");
        let back: SnapshotChunk = serde_json::from_str(&text).unwrap();
        assert_eq!(back.request(), Some(request));
        let bad = text.replace("AAECAwQF", "!!!!");
        assert_eq!(
            serde_json::from_str::<SnapshotChunk>(&bad)
                .unwrap()
                .request(),
            None
        );
        assert_eq!(snapshot_chunk_bytes(64 * 1024), 32 * 1024);
    }

    /// Links follow the membership: one to a member that left, or whose entry changed, is dropped
    /// (and its task stops: `channel::upstream`); the others stay.
    #[tokio::test]
    async fn links_to_members_that_left_are_dropped() {
        let allow: channel::Authorize = Arc::new(|_: &Identity| true);
        let config = channel::Config::new(
            zeroize::Zeroizing::new([7; 32]),
            &ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
            "test.ledgergate/log",
            allow,
        )
        .unwrap();
        let links = Links::new(config, 1 << 20);
        let member = |n: u8| Member {
            name: format!("m{n}"),
            address: format!("127.0.0.1:{}", 9 + u16::from(n)),
            identity: hex::encode(
                ed25519_dalek::SigningKey::from_bytes(&[n; 32])
                    .verifying_key()
                    .as_bytes(),
            ),
        };
        for n in [2, 3, 4] {
            links.link(u64::from(n), &member(n)).unwrap();
        }
        assert_eq!(links.count(), 3);
        let mut moved = member(3);
        moved.address = "127.0.0.1:1".into();
        let nodes = std::collections::BTreeMap::from([(2, member(2)), (3, moved.clone())]);
        let membership =
            openraft::Membership::new(vec![std::collections::BTreeSet::from([2, 3])], nodes);
        links.follow(&membership);
        // 4 left; 3 moved (its next call makes a new link to the new address).
        assert_eq!(links.count(), 1);
        let (_, new) = links.link(3, &moved).unwrap();
        assert!(new);
        assert_eq!(links.count(), 2);
    }
}
