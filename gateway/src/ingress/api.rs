//! The HTTP API (contract §4): routes, and turning requests into pipeline calls and answers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use policies::PeerIdentity;
use serde::Deserialize;

use super::body::{BodyBudget, HeldBody, read_body};
use super::guard::guard;
use super::observe::observe;
use super::problem::{Problem, for_status, problem};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// The routes, over a pipeline, with request bodies read within `budget` and every request observed
/// in `metrics`. Each connection adds its peer's identity as an extension.
pub fn router(pipeline: Arc<Pipeline>, budget: BodyBudget, metrics: Arc<Metrics>) -> Router {
    // Reads of the ledger: a consortium member whose copy disagreed with the consortium no longer
    // vouches for them.
    let reads = Router::new()
        .route("/v1/proofs/inclusion", get(inclusion))
        .route("/v1/proofs/consistency", get(consistency))
        .route("/v1/entries", get(entries))
        .route("/v1/records/{id}", get(read))
        .route("/v1/records/{id}/openings/{path}", get(opening))
        .route("/v1/checkpoint", get(checkpoint))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&pipeline),
            vouching,
        ));
    Router::new()
        .merge(reads)
        .route("/v1/records", post(submit))
        .route("/v1/records:batch", post(batch))
        .route(
            "/admin/v1/keys",
            post(admin_command).get(admin_list).fallback(admin_unknown),
        )
        .route("/admin/v1/audit", get(admin_audit).fallback(admin_unknown))
        .route(
            "/admin/v1/reload",
            post(admin_reload).fallback(admin_unknown),
        )
        .merge(super::members::routes())
        .merge(super::risk_admin::routes())
        .route("/admin/v1/{*rest}", axum::routing::any(admin_unknown))
        .route("/v1/checkpoint/key", get(checkpoint_key))
        .route("/v1/checkpoint/keys", get(checkpoint_keys))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        // Quarantined subjects are refused before any handler; refusals are counted by source.
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&pipeline),
            super::risk_gate::gate,
        ))
        .layer(axum::middleware::from_fn(guard))
        .layer(axum::Extension(budget))
        .layer(axum::Extension(Arc::clone(&metrics)))
        // Outermost: the id and the clock cover the guard's own answers too.
        .layer(axum::middleware::from_fn_with_state(metrics, observe))
        .with_state(pipeline)
}

fn peer(req: &Request) -> Result<Arc<PeerIdentity>, Problem> {
    req.extensions()
        .get::<Arc<PeerIdentity>>()
        .cloned()
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "no client certificate",
            )
        })
}

/// The node's body budget, set on the router by [`router`].
fn budget_of(req: &Request) -> Result<BodyBudget, Problem> {
    req.extensions()
        .get::<BodyBudget>()
        .cloned()
        .ok_or_else(|| for_status(StatusCode::SERVICE_UNAVAILABLE))
}

/// The peer's identity and the request body, read only once the peer is known and within its rate,
/// and only up to what its subject may send (`limit` of its limits).
async fn admitted_body(
    p: &Pipeline,
    req: Request,
    limit: impl FnOnce(&policies::Limits) -> usize,
) -> Result<(Arc<PeerIdentity>, HeldBody), Problem> {
    let peer = peer(&req)?;
    let limits = p.admission(&peer).map_err(|e| problem(&e))?;
    let budget = budget_of(&req)?;
    let body = read_body(req.into_body(), limit(&limits), &budget).await?;
    Ok((peer, body))
}

async fn submit(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    let (peer, body) = match admitted_body(&p, req, |l| l.max_record_bytes).await {
        Ok(pb) => pb,
        Err(e) => return e.into_response(),
    };
    match p.submit(&peer, &body.bytes).await {
        Ok(a) => {
            let status = if a.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                a.receipt.to_string(),
            )
                .into_response()
        }
        Err(e) => problem(&e).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct ReadQuery {
    provider: Option<String>,
}

async fn read(
    State(p): State<Arc<Pipeline>>,
    Path(id): Path<String>,
    Query(q): Query<ReadQuery>,
    req: Request<Body>,
) -> Response {
    let peer = match peer(&req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let p2 = Arc::clone(&p);
    audited_json(&p, move || p2.read(&peer, q.provider.as_deref(), &id)).await
}

async fn opening(
    State(p): State<Arc<Pipeline>>,
    Path((id, path)): Path<(String, String)>,
    Query(q): Query<ReadQuery>,
    req: Request<Body>,
) -> Response {
    let peer = match peer(&req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let p2 = Arc::clone(&p);
    audited_json(&p, move || {
        p2.opening(&peer, q.provider.as_deref(), &id, &path)
    })
    .await
}

/// Runs a read on the blocking pool (a read in clear by anyone but the owner is audited with a
/// durable write of the key store first) and answers with its JSON or its problem.
async fn blocking_json(
    read: impl FnOnce() -> Result<serde_json::Value, crate::pipeline::PipelineError> + Send + 'static,
) -> Response {
    let span = tracing::Span::current();
    match tokio::task::spawn_blocking(move || span.in_scope(read)).await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => problem(&e).into_response(),
        Err(e) => {
            problem(&crate::pipeline::PipelineError::Unavailable(e.to_string())).into_response()
        }
    }
}

/// [`blocking_json`] for reads that may disclose sealed values: a read in clear by a non-owner is in
/// the key store's journal before the read returns, and on the ledger before the answer leaves; if
/// the ledger cannot take it, the answer is `503 unavailable` and nothing is disclosed.
async fn audited_json(
    p: &Arc<Pipeline>,
    read: impl FnOnce() -> Result<serde_json::Value, crate::pipeline::PipelineError> + Send + 'static,
) -> Response {
    let span = tracing::Span::current();
    // Only a read that wrote to the key store's journal (a disclosure) waits for the copy: an
    // owner's read discloses nothing and is served even while the ledger refuses appends. (Another
    // request's event in between makes this one wait too; never the other way round.)
    let before = p.keys().last_audit_seq();
    match tokio::task::spawn_blocking(move || span.in_scope(read)).await {
        Ok(Ok(v)) => {
            if p.keys().last_audit_seq() > before
                && p.journal_behind()
                && let Err(e) = p.copy_journal(crate::audit::WAIT).await
            {
                return problem(&crate::pipeline::PipelineError::Unavailable(format!(
                    "the read could not be put in the audit trail: {e}"
                )))
                .into_response();
            }
            axum::Json(v).into_response()
        }
        Ok(Err(e)) => problem(&e).into_response(),
        Err(e) => {
            problem(&crate::pipeline::PipelineError::Unavailable(e.to_string())).into_response()
        }
    }
}

/// Refuses reads at a consortium member whose copy disagreed with the consortium.
async fn vouching(
    State(p): State<Arc<Pipeline>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    if p.diverged() {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this member's copy of the ledger disagrees with the consortium; it serves no reads \
             until an operator has looked at it (ask another member)",
        )
        .into_response();
    }
    next.run(req).await
}

/// The newest checkpoint: a node's own; a consortium member's, with the cosignatures the
/// consortium requires (503 until it has them).
async fn checkpoint(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    if let Err(e) = peer(&req) {
        return e.into_response();
    }
    match p.served_checkpoint() {
        Some(note) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response(),
        None => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no checkpoint has the consortium's cosignatures yet",
        )
        .into_response(),
    }
}

async fn checkpoint_key(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    if let Err(e) = peer(&req) {
        return e.into_response();
    }
    match p.ledger().verifier() {
        Some(v) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", v.to_vkey()),
        )
            .into_response(),
        None => problem(&crate::ledger::LedgerError::NoSigner.into()).into_response(),
    }
}

/// Every checkpoint key version with its state and validity, so that a verifier can check old
/// checkpoints and refuse what a compromised version signed after its compromise.
async fn checkpoint_keys(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    if let Err(e) = peer(&req) {
        return e.into_response();
    }
    let ledger = p.ledger();
    axum::Json(serde_json::json!({
        "origin": ledger.origin(),
        "current": ledger.verifier().map(|v| v.to_vkey()),
        "keys": ledger.checkpoint_keys(),
    }))
    .into_response()
}

/// Most lines in one batch request.
pub const MAX_BATCH_LINES: usize = 10_000;
/// Largest batch body, whatever the subject's record limit: a batch is read whole before its lines
/// are submitted, so this bounds one request's memory (the node-wide body budget bounds them all).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// The NDJSON batch reader: the body's non-blank lines, at most [`MAX_BATCH_LINES`] of them.
pub fn batch_lines(body: &[u8]) -> Result<Vec<&[u8]>, Problem> {
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .take(MAX_BATCH_LINES + 1)
        .collect();
    if lines.len() > MAX_BATCH_LINES {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("more than {MAX_BATCH_LINES} lines"),
        ));
    }
    Ok(lines)
}

/// A batch line's refusal as the batch answer gives it (`line` counts non-blank lines from 1); the
/// edge answers the lines it refuses itself with the same.
pub fn batch_refusal(line: usize, e: &crate::pipeline::PipelineError) -> serde_json::Value {
    let pr = problem(e);
    serde_json::json!({ "line": line, "status": pr.status.as_u16(), "code": pr.code, "detail": pr.detail })
}

async fn batch(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    // Each line within the record limit, and a newline: the most a full batch of this subject's
    // records can take.
    let limit = |l: &policies::Limits| {
        (l.max_record_bytes.saturating_add(1))
            .saturating_mul(MAX_BATCH_LINES)
            .min(MAX_BATCH_BYTES)
    };
    let metrics = req.extensions().get::<Arc<Metrics>>().cloned();
    let (peer, body) = match admitted_body(&p, req, limit).await {
        Ok(pb) => pb,
        Err(e) => return e.into_response(),
    };
    let lines = match batch_lines(&body.bytes) {
        Ok(lines) => lines,
        Err(e) => return e.into_response(),
    };
    if let Some(m) = metrics {
        #[allow(clippy::cast_precision_loss)] // at most MAX_BATCH_LINES
        m.batch_records.observe(lines.len() as f64);
    }
    // One result per line, in order; each line is a submission of its own, so a bad line refuses only
    // itself. The good lines are appended together, in one group commit.
    let results = p.submit_batch(&peer, &lines).await;
    // A receipt line is ~0.5 KiB (it carries the checkpoint): sized once rather than grown.
    let mut out = Vec::with_capacity(results.len() * 512);
    for (i, r) in results.into_iter().enumerate() {
        let v = match r {
            Ok(a) => {
                serde_json::json!({ "line": i + 1, "status": if a.created { 201 } else { 200 }, "receipt": a.receipt })
            }
            Err(e) => batch_refusal(i + 1, &e),
        };
        // Writing a `Value` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut out, &v);
        out.push(b'\n');
    }
    ([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response()
}

#[derive(Debug, Deserialize)]
struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct EntriesQuery {
    start: u64,
    end: u64,
}

/// Most entries one `/v1/entries` answer carries.
const MAX_ENTRIES: u64 = 1000;

fn hashes(h: &[crate::ledger::Hash]) -> Vec<String> {
    h.iter().map(crate::ledger::Hash::to_base64).collect()
}

pub(super) fn query_problem(e: &QueryRejection) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text())
}

/// An authenticated request's parsed query, or the problem to answer instead.
fn authenticated_query<T>(
    req: &Request,
    q: Result<Query<T>, QueryRejection>,
) -> Result<T, Problem> {
    peer(req)?;
    q.map(|Query(q)| q).map_err(|e| query_problem(&e))
}

/// A ledger answer as JSON, or its problem.
fn ledger_answer<T>(
    result: Result<T, crate::ledger::LedgerError>,
    json: impl FnOnce(T) -> serde_json::Value,
) -> Response {
    match result {
        Ok(v) => axum::Json(json(v)).into_response(),
        Err(e) => problem(&crate::pipeline::PipelineError::Ledger(e)).into_response(),
    }
}

async fn inclusion(
    State(p): State<Arc<Pipeline>>,
    q: Result<Query<InclusionQuery>, QueryRejection>,
    req: Request,
) -> Response {
    let q = match authenticated_query(&req, q) {
        Ok(q) => q,
        Err(problem) => return problem.into_response(),
    };
    let size = q.size.unwrap_or_else(|| p.ledger().size());
    ledger_answer(
        p.ledger().inclusion_proof(q.index, size),
        |h| serde_json::json!({ "leaf_index": q.index, "tree_size": size, "hashes": hashes(&h) }),
    )
}

async fn consistency(
    State(p): State<Arc<Pipeline>>,
    q: Result<Query<ConsistencyQuery>, QueryRejection>,
    req: Request,
) -> Response {
    let q = match authenticated_query(&req, q) {
        Ok(q) => q,
        Err(problem) => return problem.into_response(),
    };
    let to = q.to.unwrap_or_else(|| p.ledger().size());
    ledger_answer(
        p.ledger().consistency_proof(q.from, to),
        |h| serde_json::json!({ "from": q.from, "to": to, "hashes": hashes(&h) }),
    )
}

async fn entries(
    State(p): State<Arc<Pipeline>>,
    q: Result<Query<EntriesQuery>, QueryRejection>,
    req: Request,
) -> Response {
    let peer = match peer(&req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = p.authorize_auditor(&peer) {
        return problem(&e).into_response();
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return query_problem(&e).into_response(),
    };
    if q.end < q.start || q.end - q.start > MAX_ENTRIES {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("need start <= end and at most {MAX_ENTRIES} entries"),
        )
        .into_response();
    }
    match p.ledger().entries(q.start, q.end) {
        Ok(list) => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            let out: Vec<_> = list
                .iter()
                .map(|(i, e)| serde_json::json!({ "index": i, "entry": b64.encode(e) }))
                .collect();
            axum::Json(out).into_response()
        }
        Err(e) => problem(&crate::pipeline::PipelineError::Ledger(e)).into_response(),
    }
}

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The officer behind a request and its (bounded) body, or the answer for a non-officer, on every
/// admin route. The body is read before answering even a refusal: answering an HTTP/2 request early
/// makes the server reset the stream, which some clients (curl 7.88) report as a failure.
pub(super) async fn officer(
    p: &Pipeline,
    req: Request,
) -> Result<(String, axum::body::Bytes), Response> {
    let peer = peer(&req).map_err(IntoResponse::into_response)?;
    let budget = budget_of(&req).map_err(IntoResponse::into_response)?;
    let body = read_body(req.into_body(), MAX_ADMIN_BODY, &budget)
        .await
        .map_err(IntoResponse::into_response)?
        .bytes;
    let actor = crate::admin::officer(p, &peer).map_err(|e| problem(&e.into()).into_response())?;
    let minute_of_day = u32::try_from(crate::keys::unix_now().rem_euclid(86_400) / 60).unwrap_or(0);
    p.risk().observe(crate::risk::Observation::OfficerCommand {
        officer: &actor,
        minute_of_day,
    });
    Ok((actor, body))
}

/// Runs one key command for the officer and answers with its outcome. On the blocking pool: commands
/// flush the key store, and `affected` first brings the usage index up to the ledger.
async fn run_admin(p: &Arc<Pipeline>, command: keymgr::Command, actor: &str) -> Response {
    // The verb and key name only: a shred's subject id is personal data.
    tracing::warn!(event = "officer_command", %actor, verb = command.verb(), key = command.key_name(), "officer key command");
    let (p, actor) = (Arc::clone(p), actor.to_owned());
    let span = tracing::Span::current();
    let pipeline = Arc::clone(&p);
    match tokio::task::spawn_blocking(move || {
        span.in_scope(|| crate::admin::execute(&p, command, &actor))
    })
    .await
    {
        Ok(Ok(outcome)) => {
            // The change and its journal event are durable in the key store; put the event on the
            // ledger before answering. If that fails the change stands (it is done), and the
            // journal's copy task appends the event when the ledger takes it again.
            if pipeline.journal_behind()
                && let Err(e) = pipeline.copy_journal(crate::audit::WAIT).await
            {
                tracing::warn!(event = "audit_copy_pending", error = %e, "the key store journal is not yet on the ledger; it is copied when the ledger takes appends again");
            }
            axum::Json(outcome).into_response()
        }
        Ok(Err(e)) => problem(&e.into()).into_response(),
        Err(e) => {
            problem(&crate::pipeline::PipelineError::Unavailable(e.to_string())).into_response()
        }
    }
}

async fn admin_command(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    let (actor, body) = match officer(&p, req).await {
        Ok(ab) => ab,
        Err(r) => return r,
    };
    match serde_json::from_slice::<keymgr::Command>(&body) {
        Ok(command) if crate::admin::takes_version_out_of_use(&command) => {
            let _exclusive = p.exclusive_key_change().await;
            run_admin(&p, command, &actor).await
        }
        Ok(command) => run_admin(&p, command, &actor).await,
        Err(e) => Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("not a key command: {e}"),
        )
        .into_response(),
    }
}

/// `GET /admin/v1/keys`: a page of keys (`?subjects=true&purpose=P&after=NAME&limit=N`).
#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    subjects: bool,
    purpose: Option<keymgr::Purpose>,
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /admin/v1/audit`: a page of the ledger's audit trail
/// (`?start=INDEX&limit=N&actor=A&kind=K&since=T&until=T`).
#[derive(Debug, Deserialize)]
struct AuditQuery {
    start: Option<u64>,
    limit: Option<usize>,
    #[serde(flatten)]
    filter: crate::audit::listing::Filter,
}

/// A read-only admin command built from the request's query, for the officer behind the request.
async fn admin_query<Q>(
    p: &Arc<Pipeline>,
    q: Result<Query<Q>, QueryRejection>,
    req: Request,
    command: impl FnOnce(Q) -> keymgr::Command,
) -> Response {
    let actor = match officer(p, req).await {
        Ok((actor, _)) => actor,
        Err(r) => return r,
    };
    match q {
        Ok(Query(q)) => run_admin(p, command(q), &actor).await,
        Err(e) => query_problem(&e).into_response(),
    }
}

async fn admin_list(
    State(p): State<Arc<Pipeline>>,
    q: Result<Query<ListQuery>, QueryRejection>,
    req: Request,
) -> Response {
    admin_query(&p, q, req, |q| keymgr::Command::List {
        subjects: q.subjects,
        purpose: q.purpose,
        after: q.after,
        limit: q.limit,
    })
    .await
}

async fn admin_audit(
    State(p): State<Arc<Pipeline>>,
    q: Result<Query<AuditQuery>, QueryRejection>,
    req: Request,
) -> Response {
    if let Err(r) = officer(&p, req).await {
        return r;
    }
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return query_problem(&e).into_response(),
    };
    let filter = match q.filter.parse() {
        Ok(f) => f,
        Err(why) => {
            return Problem::new(StatusCode::BAD_REQUEST, "invalid_request", why).into_response();
        }
    };
    let (start, limit) = (
        q.start.unwrap_or(0),
        q.limit.unwrap_or(crate::audit::listing::DEFAULT_PAGE),
    );
    blocking_json(move || p.audit_page(start, limit, &filter)).await
}

async fn admin_unknown(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    // Non-officers learn nothing of which admin routes exist.
    match officer(&p, req).await {
        Ok(_) => Problem::new(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint")
            .into_response(),
        Err(r) => r,
    }
}

async fn admin_reload(
    State(p): State<Arc<Pipeline>>,
    axum::Extension(reloader): axum::Extension<Arc<crate::reload::Reloader>>,
    req: Request,
) -> Response {
    let actor = match officer(&p, req).await {
        Ok((actor, _)) => actor,
        Err(r) => return r,
    };
    tracing::warn!(event = "reload_requested", %actor, "reload requested");
    match reloader.reload_audited(&actor, "admin_api").await {
        Ok(r) => axum::Json(serde_json::json!({ "ok": true, "policy": r.policy })).into_response(),
        Err(errors) => {
            let detail = format!("nothing changed; {}", errors.join("; "));
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "reload_failed", detail).into_response()
        }
    }
}
