//! The providers' and officers' listener: connection caps at accept (before TLS), the TLS handshake
//! with its timeout, HTTP/1 and HTTP/2 with their limits, the idle watchdog, and a graceful drain at
//! shutdown. Shared by ledger nodes and edges; what runs behind it is the `router` given.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::conn::{Activity, Backoff, ConnLimits, Throttle, Watched};
use super::{guard, identity};
use crate::config::IngressSection;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// At most one line per this for a warning that repeats (failed accepts, refused connections).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The source address of a request's connection (a request extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source(pub std::net::IpAddr);

/// Serves `router` over mutually authenticated TLS on `listener` until `shutdown` resolves, then
/// drains in-flight requests. `tls` gives the configuration for each new connection (a reload swaps
/// it); each connection's verified client identity and source address are added to its requests.
/// `risk` refuses blocked source addresses at accept and is told of failed handshakes;
/// `handshakes` counts finished handshakes by key exchange group.
pub async fn serve_tls(
    listener: TcpListener,
    tls: impl Fn() -> Arc<rustls::ServerConfig>,
    router: Router,
    limits: &IngressSection,
    risk: Arc<crate::risk::Sentinel>,
    handshakes: prometheus::IntCounterVec,
    shutdown: impl Future<Output = ()>,
) {
    let connections = ConnLimits::new(limits.max_connections, limits.max_connections_per_source);
    let idle_timeout = Duration::from_secs(limits.idle_timeout_seconds);
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_timeout_seconds))
        .max_buf_size(guard::MAX_HEAD_BUFFER);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .max_header_list_size(u32::try_from(guard::MAX_HEAD_BUFFER).unwrap_or(u32::MAX));
    let http = Arc::new(http);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut backoff = Backoff::default();
    let mut accept_log = Throttle::new(LOG_EVERY);
    let mut refused_log = Throttle::new(LOG_EVERY);
    // Shared by the connection tasks: a flood of bad handshakes writes one line per period.
    let handshake_log = Arc::new(std::sync::Mutex::new(Throttle::new(LOG_EVERY)));
    loop {
        let (tcp, remote) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => {
                    backoff.reset();
                    a
                }
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) or memory, accept fails at once and would
                    // spin: pause, longer while it goes on, and say so once per period.
                    if let Some(held_back) = accept_log.admit(std::time::Instant::now()) {
                        tracing::warn!(error = %e, held_back, "accept failed; pausing");
                    }
                    tokio::time::sleep(backoff.failed()).await;
                    continue;
                }
            },
        };
        // Blocks and caps first, before any TLS work: a refused connection costs one accept and
        // one close.
        if risk.is_blocked(remote.ip()) {
            if let Some(held_back) = refused_log.admit(std::time::Instant::now()) {
                tracing::warn!(
                    event = "connection_refused",
                    why = "blocked",
                    held_back,
                    "connection refused at accept: its source address is blocked"
                );
            }
            drop(tcp);
            continue;
        }
        let slot = match connections.admit(remote.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                if let Some(held_back) = refused_log.admit(std::time::Instant::now()) {
                    tracing::warn!(
                        event = "connection_refused",
                        ?why,
                        held_back,
                        "connection refused at accept"
                    );
                }
                drop(tcp);
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(tls());
        let router = router.clone();
        let watcher = graceful.watcher();
        let http = Arc::clone(&http);
        let handshake_log = Arc::clone(&handshake_log);
        let risk = Arc::clone(&risk);
        let handshakes = handshakes.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                failed => {
                    // A connection closed before it sent a byte (a port probe, a load balancer's
                    // TCP check, a client giving up) is not a failed handshake; a handshake that
                    // went wrong or never finished is.
                    let closed_early = matches!(&failed, Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof);
                    if !closed_early {
                        risk.observe(crate::risk::Observation::HandshakeFailed {
                            source: remote.ip(),
                        });
                    }
                    let may_log = handshake_log
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .admit(std::time::Instant::now());
                    if let Some(held_back) = may_log {
                        match failed {
                            Ok(Err(e)) => {
                                tracing::info!(event = "tls_handshake_failed", %remote, error = %e, held_back, "TLS handshake refused");
                            }
                            _ => {
                                tracing::info!(event = "tls_handshake_timeout", %remote, held_back, "TLS handshake timed out")
                            }
                        }
                    }
                    return;
                }
            };
            let tls = stream.get_ref().1;
            // The group's name (its Debug form, e.g. `X25519MLKEM768`): one of the provider's few.
            let group = tls
                .negotiated_key_exchange_group()
                .map_or_else(|| "none".to_owned(), |g| format!("{:?}", g.name()));
            handshakes.with_label_values(&[group.as_str()]).inc();
            // The verifier has checked the chain and the CRLs; this only reads who it is.
            let peer = tls
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| identity::peer_identity(c));
            let Some(peer) = peer else {
                tracing::warn!(event = "client_certificate_unreadable", %remote, "verified client certificate could not be read");
                return;
            };
            let service = TowerToHyperService::new(
                router
                    .layer(axum::Extension(Arc::new(peer)))
                    .layer(axum::Extension(Source(remote.ip()))),
            );
            let activity = Activity::new();
            let io = TokioIo::new(Watched::new(stream, Arc::clone(&activity)));
            let conn = http
                .serve_connection_with_upgrades(io, service)
                .into_owned();
            let conn = watcher.watch(conn);
            tokio::pin!(conn);
            // The idle watchdog: a connection that moves no byte either way for `idle_timeout` is
            // closed (dropped), whatever state its requests are in.
            let check = (idle_timeout / 4).max(Duration::from_millis(100));
            loop {
                tokio::select! {
                    ended = &mut conn => {
                        if let Err(e) = ended {
                            tracing::debug!(%remote, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = tokio::time::sleep(check) => {
                        if activity.idle_for() >= idle_timeout {
                            tracing::debug!(%remote, "idle connection closed");
                            break;
                        }
                    }
                }
            }
        });
    }
    tracing::info!("shutting down: draining in-flight requests");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish in time");
    }
}
