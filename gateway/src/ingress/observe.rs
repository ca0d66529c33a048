//! Every request's id and duration. The id (16 hex digits, random) is answered as `x-request-id`,
//! carried by the request's log span and put in every problem's `instance`, so that a client's
//! report, the node's log and the answer can be matched; the duration goes to
//! `ledgergate_request_duration_seconds` under the route's template (never the path itself, which
//! carries record ids).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use crate::metrics::Metrics;

/// The response header that carries the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being answered on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

fn new_id() -> String {
    // Unique, not secret: 64 bits from a per-thread generator the OS seeds (fastrand's wyrand), so an
    // id costs no system call and says nothing about how many requests came before it.
    format!("{:016x}", fastrand::u64(..))
}

/// The middleware.
pub async fn observe(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let id = new_id();
    // At error level so that it exists whenever anything is logged: a warning of this request
    // carries its id even when the filter is `warn`.
    let span = tracing::error_span!("request", id = %id, route = %route);
    let started = Instant::now();
    let mut response = REQUEST_ID
        .scope(id.clone(), next.run(req).instrument(span))
        .await;
    metrics
        .request_seconds
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}
