//! The officers' risk-control routes (docs/risk.md):
//!
//! - `GET /admin/v1/alarms[?limit=N]`: the most recent alarms, newest first;
//! - `GET /admin/v1/quarantine`: the quarantined subjects;
//! - `POST /admin/v1/quarantine` `{subject, reason}`: quarantine a subject of the policy;
//! - `DELETE /admin/v1/quarantine/{subject}`: release it.
//!
//! A quarantine or a release is durable and in the audit trail before it is answered.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use serde::Deserialize;

use super::api::{officer, query_problem};
use super::problem::{Problem, problem};
use crate::pipeline::{Pipeline, PipelineError};
use crate::risk::sentinel::quarantine_event;

/// Alarms listed unless asked for fewer (the list keeps the last 1000).
const DEFAULT_ALARMS: usize = 100;

/// The routes.
pub fn routes() -> Router<Arc<Pipeline>> {
    Router::new()
        .route("/admin/v1/alarms", get(alarms))
        .route("/admin/v1/quarantine", get(list).post(quarantine))
        .route("/admin/v1/quarantine/{subject}", delete(release))
}

#[derive(Debug, Deserialize)]
struct AlarmsQuery {
    limit: Option<usize>,
}

async fn alarms(
    State(p): State<Arc<Pipeline>>,
    q: Result<Query<AlarmsQuery>, QueryRejection>,
    req: Request,
) -> Response {
    if let Err(r) = officer(&p, req).await {
        return r;
    }
    let limit = match q {
        Ok(Query(q)) => q.limit.unwrap_or(DEFAULT_ALARMS),
        Err(e) => return query_problem(&e).into_response(),
    };
    axum::Json(serde_json::json!({ "alarms": p.risk().recent(limit) })).into_response()
}

async fn list(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    if let Err(r) = officer(&p, req).await {
        return r;
    }
    axum::Json(serde_json::json!({ "quarantined": p.risk().quarantined() })).into_response()
}

/// A subject to quarantine, as an officer sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToQuarantine {
    subject: String,
    #[serde(default)]
    reason: String,
}

/// Most bytes of a quarantine's reason (it goes into the audit trail).
const MAX_REASON: usize = 500;

async fn quarantine(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    let (actor, body) = match officer(&p, req).await {
        Ok(ab) => ab,
        Err(r) => return r,
    };
    let asked: ToQuarantine = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("not a quarantine request ({{subject, reason}}): {e}"),
            )
            .into_response();
        }
    };
    if asked.reason.len() > MAX_REASON {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the reason is longer than {MAX_REASON} bytes"),
        )
        .into_response();
    }
    if !p
        .policy()
        .subjects()
        .iter()
        .any(|s| s.name == asked.subject)
    {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the policy has no subject `{}`", asked.subject),
        )
        .into_response();
    }
    match p.risk().quarantine(&asked.subject, &asked.reason, &actor) {
        Ok(changed) => {
            if changed {
                recorded(&p, &asked.subject, &actor, true, &asked.reason).await;
            }
            tracing::warn!(event = "quarantined", subject = %asked.subject, %actor, "subject quarantined");
            axum::Json(serde_json::json!({ "subject": asked.subject, "quarantined": true, "changed": changed }))
                .into_response()
        }
        Err(e) => problem(&PipelineError::Unavailable(e.to_string())).into_response(),
    }
}

async fn release(
    State(p): State<Arc<Pipeline>>,
    Path(subject): Path<String>,
    req: Request,
) -> Response {
    let actor = match officer(&p, req).await {
        Ok((actor, _)) => actor,
        Err(r) => return r,
    };
    match p.risk().release(&subject) {
        Ok(changed) => {
            if changed {
                recorded(&p, &subject, &actor, false, "").await;
            }
            tracing::warn!(event = "released", %subject, %actor, "subject released from quarantine");
            axum::Json(
                serde_json::json!({ "subject": subject, "quarantined": false, "changed": changed }),
            )
            .into_response()
        }
        Err(e) => problem(&PipelineError::Unavailable(e.to_string())).into_response(),
    }
}

/// Puts a quarantine or a release in the audit trail; the change is in force either way (a node
/// must be able to quarantine a subject when its ledger cannot take appends), so a failure is
/// logged.
async fn recorded(p: &Pipeline, subject: &str, actor: &str, quarantine: bool, reason: &str) {
    let event = quarantine_event(subject, actor, quarantine, reason);
    if let Err(e) = p.record_audit(&event, crate::audit::WAIT).await {
        tracing::error!(event = "audit_unrecorded", kind = event.kind, error = %e, "an audit entry could not be appended");
    }
}
