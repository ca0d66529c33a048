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
use crate::consortium::Consortium;
use crate::consortium::membership::MemberChange;
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

async fn change(p: &Pipeline, change: MemberChange, actor: &str) -> Response {
    let Some(c) = consortium(p) else {
        return not_a_consortium();
    };
    tracing::warn!(event = "officer_membership_change", %actor, change = ?change, "officer membership change");
    match c.change_members(change, actor).await {
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
