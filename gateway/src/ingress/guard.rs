//! Every request passes here first and every answer last: a request target or header block larger
//! than the node reads is refused with a problem (414, 431) before routing, and an error answer that
//! the framework made on its own (an extractor's rejection, for instance a path that is not UTF-8 or a
//! repeated query parameter) is turned into the problem for its status. So every error the node's
//! HTTP layer answers is `application/problem+json` with a code.
//!
//! hyper itself answers requests whose head does not fit its read buffer (`MAX_HEAD_BUFFER`, far above
//! these limits) before any of this runs, with a bare 431 or 414: the one answer that is not ours.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::{Problem, for_status};

/// Longest request target (path and query) the node reads.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest header block (names and values) the node reads.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// hyper's read buffer for a request head: above the limits here, so that they answer first.
pub const MAX_HEAD_BUFFER: usize = 64 * 1024;

/// The middleware: limits in, problems out.
pub async fn guard(req: Request, next: Next) -> Response {
    let uri = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri > MAX_URI_BYTES {
        return Problem::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is more than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers > MAX_HEADER_BYTES {
        return Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header_fields_too_large",
            format!("the request headers are more than {MAX_HEADER_BYTES} bytes"),
        )
        .into_response();
    }
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if (status.is_client_error() || status.is_server_error()) && !is_problem {
        return for_status(status).into_response();
    }
    response
}
