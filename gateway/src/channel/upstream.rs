//! An edge's link to its ledger node: one channel, kept up by a background task that reconnects
//! with exponential backoff and jitter, and requests multiplexed over it by id. While the link is
//! down a call fails at once with `Unavailable` (the edge answers 503), never waits for a
//! reconnection and never loses a request silently: a request whose answer does not arrive (the
//! link broke, or the ledger node took longer than the timeout) is an error to the caller, who
//! answers 503; a retry with the same record id is answered from the ledger's idempotency index.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use super::rpc::{Message, RequestHead, ResponseHead};
use super::transport::{ChannelSender, connect_observed};
use super::{Config, Identity};
use crate::metrics::ChannelMetrics;

/// First wait after a failed connection; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why a forwarded request has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The ledger node is not connected now.
    #[error("the ledger node is unreachable")]
    Unavailable,
    /// The link broke before the answer came.
    #[error("the link to the ledger node broke before it answered")]
    Broken,
    /// No answer within the timeout.
    #[error("the ledger node did not answer in time")]
    Timeout,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<(ResponseHead, Vec<u8>)>>>>;

struct Link {
    sender: ChannelSender,
    pending: Pending,
}

/// The edge's side of the link.
pub struct Upstream {
    link: Arc<Mutex<Option<Link>>>,
    /// Whether the link is up, for callers that wait for it.
    up: tokio::sync::watch::Receiver<bool>,
    next_id: AtomicU64,
    timeout: Duration,
    /// The task that keeps the link up: stopped when the link is dropped (a consortium member
    /// removed, its address changed), so that nothing keeps reconnecting to a peer no one calls.
    keeper: tokio::task::AbortHandle,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Aborting drops the task's channel, which closes the connection.
        self.keeper.abort();
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Starts keeping a link to the ledger node at `addr`, which must prove `ledger` as its
    /// identity (`config`'s own authorisation is replaced by exactly that). Calls time out after
    /// `timeout`.
    pub fn start(
        addr: SocketAddr,
        ledger: Identity,
        config: &Config,
        timeout: Duration,
    ) -> Upstream {
        Upstream::start_observed(addr, ledger, config, timeout, None)
    }

    /// [`Upstream::start`], counting the link's handshakes, session and rekeys in `metrics`.
    pub fn start_observed(
        addr: SocketAddr,
        ledger: Identity,
        config: &Config,
        timeout: Duration,
        metrics: Option<ChannelMetrics>,
    ) -> Upstream {
        let config = Arc::new(config.for_peer(ledger));
        let link: Arc<Mutex<Option<Link>>> = Arc::new(Mutex::new(None));
        let keeper = Arc::clone(&link);
        let (up_tx, up) = tokio::sync::watch::channel(false);
        let keeper = tokio::spawn(async move {
            let mut backoff = MIN_BACKOFF;
            loop {
                match connect_observed(addr, Arc::clone(&config), metrics.clone()).await {
                    Ok(mut channel) => {
                        backoff = MIN_BACKOFF;
                        tracing::info!(event = "ledger_link_up", %addr, "connected to the ledger node");
                        let pending: Pending = Arc::default();
                        *keeper.lock().unwrap_or_else(PoisonError::into_inner) = Some(Link {
                            sender: channel.sender(),
                            pending: Arc::clone(&pending),
                        });
                        up_tx.send_replace(true);
                        while let Some(bytes) = channel.recv().await {
                            match Message::decode(bytes) {
                                Ok(Message::Response(head, body)) => {
                                    let waiter = pending
                                        .lock()
                                        .unwrap_or_else(PoisonError::into_inner)
                                        .remove(&head.id);
                                    if let Some(w) = waiter {
                                        let _ = w.send((head, body));
                                    }
                                }
                                // Anything else from the ledger node breaks the protocol.
                                _ => break,
                            }
                        }
                        // Down: new calls fail at once; waiting ones learn it as their senders drop.
                        *keeper.lock().unwrap_or_else(PoisonError::into_inner) = None;
                        up_tx.send_replace(false);
                        pending
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .clear();
                        let why = channel.ended().await;
                        tracing::warn!(event = "ledger_link_down", %addr, error = %why, "lost the ledger node");
                    }
                    Err(e) => {
                        tracing::warn!(event = "ledger_link_failed", %addr, error = %e, "cannot reach the ledger node");
                    }
                }
                tokio::time::sleep(jittered(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        Upstream {
            link,
            up,
            next_id: AtomicU64::new(1),
            timeout,
            keeper: keeper.abort_handle(),
        }
    }

    /// Whether the link is up now.
    pub fn is_connected(&self) -> bool {
        self.link
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Waits until the link is up, at most `within`; answers whether it is.
    pub async fn connected(&self, within: Duration) -> bool {
        let mut up = self.up.clone();
        tokio::time::timeout(within, up.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Forwards one request and waits for its answer.
    pub async fn call(
        &self,
        method: &str,
        target: &str,
        peer: &policies::PeerIdentity,
        body: Vec<u8>,
    ) -> Result<(ResponseHead, Vec<u8>), UpstreamError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let (sender, pending) = {
            let link = self.link.lock().unwrap_or_else(PoisonError::into_inner);
            let link = link.as_ref().ok_or(UpstreamError::Unavailable)?;
            link.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id, tx);
            (link.sender.clone(), Arc::clone(&link.pending))
        };
        let head = RequestHead {
            id,
            method: method.to_owned(),
            target: target.to_owned(),
            peer: peer.into(),
        };
        let forget = || {
            pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        };
        let bytes = match Message::Request(head, body).encode() {
            Ok(b) => b,
            Err(_) => {
                forget();
                return Err(UpstreamError::Broken);
            }
        };
        if sender.send(&bytes).await.is_err() {
            forget();
            return Err(UpstreamError::Broken);
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(UpstreamError::Broken),
            Err(_) => {
                forget();
                Err(UpstreamError::Timeout)
            }
        }
    }
}

/// `d` ± 20 %, so that edges that lost the same ledger node do not reconnect in step.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.8 + 0.4 * fastrand::f64())
}
