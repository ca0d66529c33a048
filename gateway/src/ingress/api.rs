//! The HTTP API (contract §4): routes, and turning requests into pipeline calls and answers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use policies::PeerIdentity;
use serde::Deserialize;

use super::problem::{Problem, problem};
use crate::pipeline::Pipeline;

/// Largest request body read at all; the policy's per-subject limit is checked after.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The routes, over a pipeline. Each connection adds its peer's identity as an extension.
pub fn router(pipeline: Arc<Pipeline>) -> Router {
    Router::new()
        .route("/v1/records", post(submit))
        .route("/v1/records/{id}", get(read))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/checkpoint/key", get(checkpoint_key))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
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

async fn submit(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    let peer = match peer(&req) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("more than {MAX_BODY} bytes"),
            )
            .into_response();
        }
    };
    match p.submit(&peer, &body).await {
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
    match p.read(&peer, q.provider.as_deref(), &id) {
        Ok(v) => ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response(),
        Err(e) => problem(&e).into_response(),
    }
}

async fn checkpoint(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    if let Err(e) = peer(&req) {
        return e.into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        p.ledger().checkpoint().note.clone(),
    )
        .into_response()
}

async fn checkpoint_key(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    if let Err(e) = peer(&req) {
        return e.into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{}\n", p.ledger().verifier().to_vkey()),
    )
        .into_response()
}
