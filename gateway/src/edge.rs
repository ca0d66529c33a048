//! An edge node (`chain: { remote: … }`): it terminates providers' mTLS and, before a byte of a body
//! crosses to the ledger node, identifies the client and admits the request by its policy (known
//! subject, within its rate, body within its limits); a submission is then parsed, authorized and
//! validated against its record type (each line of a batch on its own, `edge/batch.rs`) and refused
//! here with the ledger node's own answer if it fails. Then it forwards the request over the
//! channel; the ledger node checks again, desensitizes, seals, appends and answers, and the edge
//! passes the answer on. An edge holds TLS and channel keys only: no key-encryption key, no subject,
//! pseudonym or checkpoint key, no data directory. While its ledger node is unreachable it answers
//! `503 unavailable` with `Retry-After`, never a hang and never a silent loss.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ed25519_dalek::SigningKey;
use policies::{PeerIdentity, PolicySet};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::channel::{self, Identity, Upstream};
use crate::config::{Config, RemoteChain};
use crate::ingress::api::{MAX_BATCH_BYTES, MAX_BATCH_LINES, batch_lines};
use crate::ingress::body::{BodyBudget, read_body};
use crate::ingress::guard::guard;
use crate::ingress::observe::observe;
use crate::ingress::problem::{Problem, problem};
use crate::metrics::Metrics;
use crate::pipeline::{PipelineError, check_record};
use crate::risk::RateLimiter;
use crate::serve::ServeError;

mod batch;

use batch::Split;

/// An edge's channel keys, as its key file holds them (hex).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    identity: String,
    #[serde(rename = "static")]
    static_key: String,
}

/// Reads an edge's channel keys: the file must be the owner's alone, like every secret.
pub fn channel_keys(remote: &RemoteChain) -> Result<(SigningKey, Zeroizing<[u8; 32]>), ServeError> {
    let bad = |why: String| ServeError::ChannelKeyFile(format!("{}: {why}", remote.keys.display()));
    keymgr::durable::check_private(&remote.keys).map_err(|e| bad(e.to_string()))?;
    let text =
        Zeroizing::new(std::fs::read_to_string(&remote.keys).map_err(|e| bad(e.to_string()))?);
    let file: KeyFile = serde_json::from_str(&text).map_err(|_| {
        bad(r#"expected {"identity": "<64 hex digits>", "static": "<64 hex digits>"}"#.into())
    })?;
    let decode = |hex_text: &str| -> Option<Zeroizing<[u8; 32]>> {
        let bytes = Zeroizing::new(hex::decode(hex_text.trim()).ok()?);
        let array: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(Zeroizing::new(array))
    };
    let seed = decode(&file.identity).ok_or_else(|| bad("identity: not 64 hex digits".into()))?;
    let static_key =
        decode(&file.static_key).ok_or_else(|| bad("static: not 64 hex digits".into()))?;
    Ok((SigningKey::from_bytes(&seed), static_key))
}

/// What the edge's handler needs.
struct Edge {
    policy: RwLock<Arc<PolicySet>>,
    limiter: RateLimiter,
    upstream: Arc<Upstream>,
}

impl Edge {
    fn policy(&self) -> Arc<PolicySet> {
        Arc::clone(&self.policy.read().unwrap_or_else(PoisonError::into_inner))
    }
}

fn ndjson(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

fn unavailable(why: &str) -> Response {
    let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why);
    p.retry_after = Some(1);
    p.into_response()
}

/// Identify, admit, forward, answer.
async fn forward(State(edge): State<Arc<Edge>>, req: Request) -> Response {
    let Some(peer) = req.extensions().get::<Arc<PeerIdentity>>().cloned() else {
        return Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "no client certificate",
        )
        .into_response();
    };
    let policy = edge.policy();
    let subject = match policy.identify(&peer) {
        Ok(s) => s,
        Err(e) => return problem(&PipelineError::Record(e)).into_response(),
    };
    let limits = policy.limits_for(subject);
    if let Err(retry_after) = edge.limiter.admit(&subject.name, &limits, 1) {
        return problem(&PipelineError::RateLimited { retry_after }).into_response();
    }
    let method = req.method().as_str().to_owned();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let limit = if req.uri().path() == "/v1/records:batch" {
        (limits.max_record_bytes.saturating_add(1))
            .saturating_mul(MAX_BATCH_LINES)
            .min(MAX_BATCH_BYTES)
    } else {
        limits.max_record_bytes
    };
    let Some(budget) = req.extensions().get::<BodyBudget>().cloned() else {
        return unavailable("no body budget");
    };
    let is_post = req.method() == axum::http::Method::POST;
    let path = req.uri().path().to_owned();
    let body = match read_body(req.into_body(), limit, &budget).await {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    // Records are checked here, before they cross: parsed, authorized for the subject and valid for
    // their type, refused with the ledger node's own answers. (It checks again.)
    let check = |line: &[u8]| check_record(&policy, subject, &limits, line);
    let mut batch = None;
    let forwarded = match (is_post, path.as_str()) {
        (true, "/v1/records") => {
            if let Err(e) = check(&body.bytes) {
                return problem(&e).into_response();
            }
            body.bytes.to_vec()
        }
        (true, "/v1/records:batch") => {
            let lines = match batch_lines(&body.bytes) {
                Ok(lines) => lines,
                Err(p) => return p.into_response(),
            };
            let split = Split::of(&lines, check);
            if split.all_passed() {
                body.bytes.to_vec()
            } else if !split.forwards_any() {
                return ndjson(split.merge(b"").unwrap_or_default());
            } else {
                let forward = split.forward(&lines);
                batch = Some(split);
                forward
            }
        }
        _ => body.bytes.to_vec(),
    };
    drop(body);
    match edge.upstream.call(&method, &target, &peer, forwarded).await {
        Ok((head, answer)) if head.status == 200 && batch.is_some() => {
            match batch.and_then(|split| split.merge(&answer)) {
                Some(merged) => ndjson(merged),
                None => unavailable("the ledger node's batch answer did not match the batch"),
            }
        }
        Ok((head, answer)) => {
            let mut response = Response::new(Body::from(answer));
            *response.status_mut() =
                StatusCode::from_u16(head.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let headers = response.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&head.content_type) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            if let Some(v) = head
                .retry_after
                .and_then(|r| HeaderValue::from_str(&r).ok())
            {
                headers.insert(header::RETRY_AFTER, v);
            }
            response
        }
        Err(e) => unavailable(&format!("the ledger node: {e}")),
    }
}

/// Runs an edge until `shutdown` resolves.
pub async fn serve_edge(
    config: Config,
    remote: RemoteChain,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let server_tls = Arc::new(crate::ingress::tls::server_config(&config.tls)?);
    let policy = Arc::new(PolicySet::load(&config.policies).map_err(ServeError::Policy)?);
    let (identity, static_key) = channel_keys(&remote)?;
    let ledger = Identity::from_hex(&remote.identity).ok_or_else(|| {
        ServeError::ChannelKeyFile("chain.remote.identity is not 64 hex digits".into())
    })?;
    let anyone: channel::Authorize = Arc::new(|_: &Identity| true);
    let channel_config =
        channel::Config::new(static_key, &identity, config.ledger.origin.clone(), anyone)
            .map_err(|e| ServeError::ChannelKeyFile(e.to_string()))?
            .with_timers(remote.timers.timers());
    let metrics = Arc::new(Metrics::new().map_err(|e| ServeError::Metrics(e.to_string()))?);
    let upstream = Arc::new(Upstream::start_observed(
        remote.address,
        ledger,
        &channel_config,
        Duration::from_secs(remote.timeout_seconds.max(1)),
        Some(metrics.channel.clone()),
    ));
    let edge = Arc::new(Edge {
        policy: RwLock::new(Arc::clone(&policy)),
        limiter: RateLimiter::default(),
        upstream: Arc::clone(&upstream),
    });
    let limits = &config.ingress;
    let budget = BodyBudget::new(
        limits.max_body_memory_bytes,
        Duration::from_secs(limits.body_timeout_seconds),
    );
    let router = Router::new()
        .fallback(forward)
        .layer(axum::middleware::from_fn(guard))
        .layer(axum::Extension(budget))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&metrics),
            observe,
        ))
        .with_state(Arc::clone(&edge));
    let tls_now = Arc::new(RwLock::new(server_tls));
    let mut tasks = Vec::new();
    {
        // Rate-limit state of subjects that went quiet is dropped once a minute.
        let edge = Arc::clone(&edge);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                edge.limiter.tidy();
            }
        }));
    }
    #[cfg(unix)]
    {
        // SIGHUP: the policy and TLS material again, all or nothing.
        let (edge, tls_now, config) = (Arc::clone(&edge), Arc::clone(&tls_now), config.clone());
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            tasks.push(tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match (
                        PolicySet::load(&config.policies),
                        crate::ingress::tls::server_config(&config.tls),
                    ) {
                        (Ok(p), Ok(t)) => {
                            *edge.policy.write().unwrap_or_else(PoisonError::into_inner) =
                                Arc::new(p);
                            *tls_now.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(t);
                            tracing::warn!(
                                event = "reloaded",
                                "edge reloaded policies and TLS material"
                            );
                        }
                        _ => tracing::error!(
                            event = "reload_failed",
                            "edge reload refused; the previous configuration stays"
                        ),
                    }
                }
            }));
        }
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let monitoring = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.metrics_listen,
            source,
        })?;
    let digest_of = Arc::clone(&edge);
    let digest: Arc<dyn Fn() -> String + Send + Sync> =
        Arc::new(move || digest_of.policy().digest_hex());
    tasks.push(tokio::spawn(crate::metrics::server::serve(
        monitoring,
        crate::metrics::server::edge_router(Arc::clone(&metrics), upstream, digest),
        std::future::pending(),
    )));
    tracing::info!(listen = %config.listen, metrics = %config.metrics_listen, ledger = %remote.address, "serving as an edge");
    let tls = move || Arc::clone(&tls_now.read().unwrap_or_else(PoisonError::into_inner));
    // An edge blocks source addresses itself (it terminates TLS); it keeps no quarantine list and no
    // audit trail of its own: the ledger node behind it applies both to forwarded requests.
    let risk = Arc::new(crate::risk::Sentinel::new(
        config.risk.clone(),
        crate::risk::quarantine::Quarantine::in_memory(),
        metrics.alarms.clone(),
        metrics.connections_blocked.clone(),
    ));
    let handshakes = metrics.tls_handshakes.clone();
    crate::ingress::accept::serve_tls(listener, tls, router, limits, risk, handshakes, shutdown)
        .await;
    for task in &tasks {
        task.abort();
    }
    tracing::info!("stopped");
    Ok(())
}
