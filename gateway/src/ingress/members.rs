//! The officers' consortium routes (docs/consortium.md, Membership):
//!
//! - `GET /admin/v1/consortium`: this member, the leader it knows of, and every member (voter or
//!   learner);
//! - `POST /admin/v1/consortium/members`: add a member (`{id, name, identity, address}`); answered
//!   once it votes, or `503 catching_up` while it is a learner still catching up (ask again);
//! - `DELETE /admin/v1/consortium/members/{id}`: remove a member.
//!
//! Any member takes them; the change is carried out by the leader.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;

use super::api::officer;
use super::problem::{Problem, problem};
use crate::audit::{Event, Outcome};
use crate::consortium::Consortium;
use crate::consortium::membership::{MemberChange, MembershipError};
use crate::consortium::types::NodeId;
use crate::pipeline::{Pipeline, PipelineError};

/// The consortium's admin routes.
pub fn routes() -> Router<Arc<Pipeline>> {
    Router::new()
        .route("/admin/v1/consortium", get(list))
        .route("/admin/v1/consortium/members", post(add))
        .route("/admin/v1/consortium/members/{id}", delete(remove))
}

/// A member to add, as an officer sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    id: NodeId,
    name: String,
    identity: String,
    address: std::net::SocketAddr,
}

/// The consortium this node is a member of; `None`: answer [`not_a_consortium`].
fn consortium(p: &Pipeline) -> Option<Arc<Consortium>> {
    p.consortium().cloned()
}

fn not_a_consortium() -> Response {
    problem(&PipelineError::NotAConsortium).into_response()
}

/// The membership as an answer.
fn seats(c: &Consortium) -> Response {
    let (leader, seats) = c.seats();
    axum::Json(serde_json::json!({ "id": c.id(), "leader": leader, "members": seats }))
        .into_response()
}

async fn list(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    if let Err(r) = officer(&p, req).await {
        return r;
    }
    match consortium(&p) {
        Some(c) => seats(&c),
        None => not_a_consortium(),
    }
}

/// The audit trail's words for a change: its kind and target, and its facts.
fn described(change: &MemberChange) -> (&'static str, String, serde_json::Value) {
    match change {
        MemberChange::Add {
            id,
            name,
            identity,
            address,
        } => (
            "consortium.member_add",
            format!("member {id}"),
            serde_json::json!({ "id": id, "name": name, "identity": identity, "address": address }),
        ),
        MemberChange::Remove { id } => (
            "consortium.member_remove",
            format!("member {id}"),
            serde_json::json!({ "id": id }),
        ),
    }
}

/// Carries out an officer's change, recorded in the audit trail before (no change happens that the
/// ledger does not hold a request for: if the request cannot be appended, nothing is changed) and
/// after (its outcome). What the change did is also in the ledger: Raft's membership entries
/// (`consortium::audit_entry`).
async fn change(p: &Pipeline, change: MemberChange, actor: &str) -> Response {
    let Some(c) = consortium(p) else {
        return not_a_consortium();
    };
    tracing::warn!(event = "officer_membership_change", %actor, change = ?change, "officer membership change");
    let (kind, target, details) = described(&change);
    let mut event = Event {
        kind,
        actor: actor.to_owned(),
        target,
        outcome: Outcome::Requested,
        reason: None,
        details,
    };
    if let Err(e) = p.record_audit(&event, crate::audit::WAIT).await {
        return problem(&e.into()).into_response();
    }
    let result = c.change_members(change, actor).await;
    (event.outcome, event.reason) = match &result {
        Ok(_) => (Outcome::Done, None),
        Err(e @ (MembershipError::Unavailable(_) | MembershipError::CatchingUp(_))) => {
            (Outcome::Failed, Some(e.to_string()))
        }
        Err(e) => (Outcome::Refused, Some(e.to_string())),
    };
    if let Err(e) = p.record_audit(&event, crate::audit::WAIT).await {
        // The request is on the ledger, and what Raft committed is too; only this outcome is not.
        tracing::error!(event = "audit_append_failed", kind, error = %e, "the outcome of a membership change is not in the audit trail");
    }
    match result {
        // The members as the member that made the change (the leader) answered: this member may
        // learn the change from the Raft log a moment later.
        Ok(members) => axum::Json(
            serde_json::json!({ "id": c.id(), "leader": c.leader(), "members": members }),
        )
        .into_response(),
        Err(e) => problem(&e.into()).into_response(),
    }
}

async fn add(State(p): State<Arc<Pipeline>>, req: Request) -> Response {
    let (actor, body) = match officer(&p, req).await {
        Ok(ab) => ab,
        Err(r) => return r,
    };
    let new: NewMember = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("not a member: {e}"),
            )
            .into_response();
        }
    };
    let add = MemberChange::Add {
        id: new.id,
        name: new.name,
        identity: new.identity,
        address: new.address,
    };
    change(&p, add, &actor).await
}

async fn remove(State(p): State<Arc<Pipeline>>, Path(id): Path<String>, req: Request) -> Response {
    let actor = match officer(&p, req).await {
        Ok((actor, _)) => actor,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<NodeId>() else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a member id is a positive number",
        )
        .into_response();
    };
    change(&p, MemberChange::Remove { id }, &actor).await
}
