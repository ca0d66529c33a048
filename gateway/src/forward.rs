//! A ledger node's side of forwarding: the channel listener for its edges, and requests that arrive
//! over it run through the node's own HTTP routes with the client identity the edge verified. So an
//! edge's provider gets exactly what it would get talking to the ledger node: the same
//! authorisation, limits, desensitization, durability and answers.
//!
//! The ledger node trusts an edge for its clients' identities: that is what an edge is for, and
//! only the identities configured in `channel.peers` get past the handshake. What an edge may not
//! forward: officers' admin commands. They go to the ledger node directly, so that a compromised
//! edge cannot rotate, revoke or shred keys.
//!
//! A consortium member is on the channel too, but it is another organisation: it takes part in Raft
//! and nothing else. It may not forward client requests (it could name any client, say this node's
//! own provider, and read its sealed values), unless this node's operator also lists it in
//! `channel.peers` as an edge it trusts.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use keymgr::KeyManager;
use tower::ServiceExt as _;

use crate::channel::rpc::{Handler, RequestHead, ResponseHead, serve_requests};
use crate::channel::{self, AcceptLimits, Identity};
use crate::config::ChannelSection;
use crate::consortium::Consortium;
use crate::consortium::network::RAFT_PREFIX;
use crate::consortium::roster::Roster;
use crate::ingress::problem::Problem;
use crate::init::{CHANNEL_STATIC_KEY, NODE_IDENTITY_KEY};

/// Largest answer sent back over the channel (the largest API answer is a page of entries).
const MAX_ANSWER: usize = 64 << 20;

/// The identities allowed on the channel: `channel.peers` as it says now (a reload replaces them),
/// and, on a consortium member, the consortium's current members (its roster follows Raft's
/// membership). Every session checks its peer against them at each tick, so a peer taken out of the
/// list, or a member removed from the consortium, loses its session within a second.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    configured: Arc<RwLock<HashSet<Identity>>>,
    members: Option<Roster>,
}

impl Peers {
    /// Peers that also admit the members of `roster`.
    pub fn with_members(roster: Roster) -> Peers {
        Peers {
            configured: Arc::default(),
            members: Some(roster),
        }
    }

    /// Puts `section`'s peers in force.
    pub fn set(&self, section: &ChannelSection) {
        let peers = section
            .peers
            .iter()
            .filter_map(|p| Identity::from_hex(&p.identity))
            .collect();
        *self
            .configured
            .write()
            .unwrap_or_else(PoisonError::into_inner) = peers;
    }

    /// Whether `peer` is one of `channel.peers` (an edge this node trusts for its clients'
    /// identities), as they are now.
    fn is_configured(&self, peer: &Identity) -> bool {
        self.configured
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(peer)
    }

    fn contains(&self, peer: &Identity) -> bool {
        self.members.as_ref().is_some_and(|r| r.admits(peer))
            || self
                .configured
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(peer)
    }
}

/// The node's identity key (`node-identity`, primary version): it proves the node on the channel
/// and signs its cosignatures.
pub fn node_identity_key(
    keys: &KeyManager,
    now: i64,
) -> Result<Arc<dyn crate::node_key::IdentityKey>, keymgr::Error> {
    crate::node_key::primary(keys, NODE_IDENTITY_KEY, now)
}

/// The node's channel configuration: its identity and static key from the key store (primary
/// versions); `peers` as the only identities allowed, less those revoked in the key store
/// (`keymgr revoke-peer`), checked at every handshake and session tick.
pub fn channel_config(
    keys: &Arc<KeyManager>,
    peers: &Peers,
    origin: &str,
    now: i64,
) -> Result<channel::Config, keymgr::Error> {
    let identity = node_identity_key(keys, now)?;
    let static_key = keys.primary(CHANNEL_STATIC_KEY, now)?;
    let static_private: [u8; 32] = static_key.material.expose().try_into().map_err(|_| {
        keymgr::Error::StoreCorrupt(format!("{CHANNEL_STATIC_KEY}: not a 32-byte key"))
    })?;
    let peers = peers.clone();
    let revocations = Arc::clone(keys);
    let authorize: channel::Authorize =
        Arc::new(move |p: &Identity| peers.contains(p) && !revocations.is_peer_revoked(&p.0));
    channel::Config::new(
        zeroize::Zeroizing::new(static_private),
        identity.as_ref(),
        origin,
        authorize,
    )
    .map_err(|e| keymgr::Error::StoreCorrupt(format!("{CHANNEL_STATIC_KEY}: {e}")))
}

/// Answers requests from the channel peer `peer`: a consortium member's Raft requests go to this
/// node's Raft; an edge's (one of `peers`' configured ones) client requests run through `router` as
/// if its client had connected here.
fn handler(
    router: Router,
    consortium: Option<Arc<Consortium>>,
    peers: Peers,
    peer: Identity,
) -> Handler {
    Arc::new(move |head: RequestHead, body: Vec<u8>| {
        let router = router.clone();
        // Per request: membership and `channel.peers` change while a session lasts.
        let member = consortium
            .as_ref()
            .and_then(|c| c.member_id(&peer).map(|id| (Arc::clone(c), id)));
        let edge = peers.is_configured(&peer);
        Box::pin(async move {
            let id = head.id;
            let answer = if head.target.starts_with(RAFT_PREFIX) {
                match member {
                    Some((consortium, from)) => {
                        let (status, body) = consortium.answer(from, &head.target, &body).await;
                        (status, "application/json".to_owned(), None, body)
                    }
                    None => Problem::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "only consortium members take part in its Raft",
                    )
                    .into_response_parts(),
                }
            } else if head.target.starts_with("/admin/") {
                Problem::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "officers' commands go to the ledger node directly, not through an edge",
                )
                .into_response_parts()
            } else if !edge {
                tracing::warn!(event = "channel_request_refused", %peer, "a channel peer that is not one of channel.peers forwarded a client request");
                Problem::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "only this node's edges (channel.peers) forward client requests; a consortium member takes part in Raft only",
                )
                .into_response_parts()
            } else {
                run(router, head, body).await
            };
            let (status, content_type, retry_after, body) = answer;
            (
                ResponseHead {
                    id,
                    status,
                    content_type,
                    retry_after,
                },
                body,
            )
        })
    })
}

type Answer = (u16, String, Option<String>, Vec<u8>);

async fn run(router: Router, head: RequestHead, body: Vec<u8>) -> Answer {
    let peer = Arc::new(policies::PeerIdentity::from(head.peer));
    let request = Request::builder()
        .method(head.method.as_str())
        .uri(head.target.as_str())
        .extension(peer)
        .body(Body::from(body));
    let Ok(request) = request else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the forwarded request is malformed",
        )
        .into_response_parts();
    };
    let Ok(response) = router.oneshot(request).await;
    let status = response.status().as_u16();
    let (content_type, retry_after) = {
        let headers = response.headers();
        let text = |name| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            text(header::CONTENT_TYPE).unwrap_or_default(),
            text(header::RETRY_AFTER),
        )
    };
    match axum::body::to_bytes(response.into_body(), MAX_ANSWER).await {
        Ok(bytes) => (status, content_type, retry_after, bytes.to_vec()),
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the answer could not be read",
        )
        .into_response_parts(),
    }
}

/// Accepts edges on `listener` and answers their requests through `router`, until aborted.
pub async fn listen(
    listener: tokio::net::TcpListener,
    config: channel::Config,
    router: Router,
    metrics: crate::metrics::ChannelMetrics,
    consortium: Option<Arc<Consortium>>,
    peers: Peers,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    // The accept loop and every peer's loop belong to this task: when the node shuts down and aborts
    // it, the set is dropped and aborts them, so no session keeps the node's stores open. (A
    // request already running finishes and answers first.)
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(channel::transport::serve_observed(
        listener,
        Arc::new(config),
        AcceptLimits::default(),
        tx,
        Some(metrics),
    ));
    while let Some(ch) = rx.recv().await {
        let peer = ch.peer();
        tracing::info!(event = "channel_peer_connected", %peer, "a peer connected over the channel");
        let handler = handler(router.clone(), consortium.clone(), peers.clone(), peer);
        tasks.spawn(async move {
            let why = serve_requests(ch, handler).await;
            tracing::info!(event = "channel_peer_gone", %peer, error = %why, "a peer's session ended");
        });
        // Reap the loops of peers that left.
        while tasks.try_join_next().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::rpc::Peer;

    fn head(target: &str) -> RequestHead {
        RequestHead {
            id: 7,
            method: "POST".into(),
            target: target.into(),
            peer: Peer {
                cn: None,
                san_uris: Vec::new(),
                san_dns: Vec::new(),
                fingerprint: String::new(),
            },
        }
    }

    /// A channel peer that is not a consortium member (an edge) gets 403 for Raft's and the
    /// officers' paths, before anything runs; nothing reaches the router.
    #[tokio::test]
    async fn only_members_reach_raft_and_nobody_reaches_admin_over_the_channel() {
        let edge = Identity([5; 32]);
        let router = Router::new().fallback(|| async { "the router ran" });
        let peers = Peers::default();
        peers.set(&edge_section(&edge));
        let answer = handler(router, None, peers, edge);
        for target in [
            "/raft/v1/append",
            "/raft/v1/vote",
            "/raft/v1/propose",
            "/raft/v1/cosign",
            "/admin/v1/keys",
        ] {
            let (response, body) = answer(head(target), b"{}".to_vec()).await;
            assert_eq!(response.status, 403, "{target}");
            assert_eq!(response.id, 7);
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["code"], "forbidden", "{target}");
        }
        // Anything else runs through the router, as the edge's client would.
        let (response, body) = answer(head("/v1/checkpoint"), Vec::new()).await;
        assert_eq!(response.status, 200);
        assert_eq!(body, b"the router ran");
    }

    fn edge_section(edge: &Identity) -> ChannelSection {
        serde_yaml::from_str(&format!(
            "listen: 127.0.0.1:1\npeers: [{{name: edge, identity: {}}}]\n",
            hex::encode(edge.0)
        ))
        .unwrap()
    }

    /// A peer admitted only as a consortium member (not in `channel.peers`) cannot forward a client
    /// request: it would name any client, such as this node's provider, and read its sealed values.
    /// Nothing reaches the router; once the operator lists it as an edge, it can.
    #[tokio::test]
    async fn a_peer_that_is_not_a_configured_edge_cannot_forward_client_requests() {
        let member = Identity([6; 32]);
        let router = Router::new().fallback(|| async { "the router ran" });
        let peers = Peers::default();
        let answer = handler(router, None, peers.clone(), member);
        for target in [
            "/v1/records",
            "/v1/records/A-1/openings/salary",
            "/v1/checkpoint",
        ] {
            let (response, body) = answer(head(target), b"{}".to_vec()).await;
            assert_eq!(response.status, 403, "{target}");
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["code"], "forbidden", "{target}");
        }
        peers.set(&edge_section(&member));
        let (response, body) = answer(head("/v1/checkpoint"), Vec::new()).await;
        assert_eq!(response.status, 200);
        assert_eq!(body, b"the router ran");
    }
}
