//! The monitoring listener: plain HTTP (default `127.0.0.1:9464`, loopback: put it behind the host's
//! firewall or a scrape network, never the providers' network) with `/metrics`, `/healthz` and
//! `/readyz`. It carries no personal data and no secrets, so it has no TLS; it is bounded like the
//! main listener so that a stuck or hostile scraper cannot grow the node: a connection cap, a header
//! timeout and an idle timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use super::Metrics;
use crate::ingress::problem::Problem;
use crate::pipeline::{Pipeline, REQUEST_MAC_KEY};

/// Most monitoring connections at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// A scraper has this long to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long (a scrape takes milliseconds).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// What the node is, for its monitoring routes.
#[derive(Clone)]
enum Node {
    /// A ledger node: its pipeline (stores, keys, policy).
    Ledger(Arc<Pipeline>),
    /// An edge: its link to the ledger node, and its policy's digest.
    Edge(
        Arc<crate::channel::Upstream>,
        Arc<dyn Fn() -> String + Send + Sync>,
    ),
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Node::Ledger(_) => "ledger node",
            Node::Edge(..) => "edge",
        })
    }
}

/// What the monitoring routes read.
#[derive(Debug, Clone)]
struct Monitor {
    metrics: Arc<Metrics>,
    node: Node,
}

impl Node {
    fn readiness(&self, now: i64) -> Vec<String> {
        match self {
            Node::Ledger(p) => readiness(p, now),
            Node::Edge(up, _) if !up.is_connected() => {
                vec!["the ledger node is unreachable".to_owned()]
            }
            Node::Edge(..) => Vec::new(),
        }
    }
}

/// Why the node cannot take records now; empty when it can. Checks what a submission needs: a
/// ledger that still writes, a checkpoint key that may sign and a usable request key.
pub fn readiness(pipeline: &Pipeline, now: i64) -> Vec<String> {
    let mut reasons = Vec::new();
    let ledger = pipeline.ledger();
    if ledger.is_poisoned() {
        reasons.push("the ledger stopped taking writes after a failed write".to_owned());
    }
    if ledger.verifier().is_none() {
        reasons.push("no usable checkpoint-signing key".to_owned());
    }
    if pipeline.keys().primary(REQUEST_MAC_KEY, now).is_err() {
        reasons.push(format!("no usable `{REQUEST_MAC_KEY}` key"));
    }
    reasons
}

/// The monitoring routes of a ledger node.
pub fn router(metrics: Arc<Metrics>, pipeline: Arc<Pipeline>) -> Router {
    routes(Monitor {
        metrics,
        node: Node::Ledger(pipeline),
    })
}

/// The monitoring routes of an edge: ready while its link to the ledger node is up.
pub fn edge_router(
    metrics: Arc<Metrics>,
    upstream: Arc<crate::channel::Upstream>,
    policy_digest: Arc<dyn Fn() -> String + Send + Sync>,
) -> Router {
    routes(Monitor {
        metrics,
        node: Node::Edge(upstream, policy_digest),
    })
}

fn routes(monitor: Monitor) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .with_state(monitor)
}

/// Refreshes the scrape-time gauges (reading the key store: on the blocking pool) and renders all.
async fn scrape(State(m): State<Monitor>) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        let now = crate::keys::unix_now();
        let reasons = m.node.readiness(now);
        match &m.node {
            Node::Ledger(p) => {
                let digest = p.policy().digest_hex();
                m.metrics
                    .gauges
                    .refresh(p.ledger(), p.keys(), &digest, &reasons, now);
            }
            Node::Edge(_, digest) => m.metrics.gauges.refresh_edge(&digest(), &reasons),
        }
        m.metrics.render()
    })
    .await;
    match rendered {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => {
            crate::ingress::problem::for_status(StatusCode::SERVICE_UNAVAILABLE).into_response()
        }
    }
}

async fn ready(State(m): State<Monitor>) -> Response {
    let node = m.node.clone();
    let reasons =
        tokio::task::spawn_blocking(move || node.readiness(crate::keys::unix_now())).await;
    match reasons {
        Ok(r) if r.is_empty() => axum::Json(serde_json::json!({ "ready": true })).into_response(),
        Ok(r) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", r.join("; ")).into_response()
        }
        Err(_) => {
            crate::ingress::problem::for_status(StatusCode::SERVICE_UNAVAILABLE).into_response()
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        // Take a slot before accepting: past the cap, connections wait in the backlog.
        let slot = tokio::select! {
            () = &mut shutdown => return,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => return,
            },
        };
        let (tcp, _) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "monitoring accept failed; pausing");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = http.serve_connection(TokioIo::new(tcp), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}
