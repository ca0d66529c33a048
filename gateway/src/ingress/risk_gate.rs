//! Risk control at the door of every route: a quarantined subject is refused (`403 quarantined`)
//! before its request reaches a handler; a refused request (401/403) counts against its source
//! address (`authorization_failures`), and a refused admin request is put in the audit trail
//! (the first few per source and window).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use policies::PeerIdentity;

use super::accept::Source;
use super::problem::problem;
use crate::pipeline::{Pipeline, PipelineError};

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn gate(State(p): State<Arc<Pipeline>>, req: Request, next: Next) -> Response {
    let source = req.extensions().get::<Source>().map(|s| s.0);
    let subject = req
        .extensions()
        .get::<Arc<PeerIdentity>>()
        .and_then(|peer| p.policy().identify(peer).ok().map(|s| s.name.clone()));
    if let Some(name) = &subject
        && p.risk().is_quarantined(name)
    {
        return problem(&PipelineError::Quarantined {
            subject: name.clone(),
        })
        .into_response();
    }
    let admin = req
        .uri()
        .path()
        .starts_with("/admin/")
        .then(|| req.uri().path().to_owned());
    let response = next.run(req).await;
    if matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        if let Some(source) = source {
            p.risk()
                .observe(crate::risk::Observation::Unauthorized { source });
        }
        if let Some(route) = admin {
            p.risk()
                .admin_refused(source, subject.as_deref().unwrap_or("unidentified"), &route);
        }
    }
    response
}
