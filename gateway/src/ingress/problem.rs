//! Every failure as `application/problem+json` (RFC 9457) with a stable `code`, and the one function
//! that decides status and code for every error (as rustls maps every error to its alert in one place).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use policies::RecordErrorCode;
use serde_json::json;

use crate::ledger::LedgerError;
use crate::pipeline::PipelineError;

/// A problem response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine code.
    pub code: &'static str,
    /// Human detail; never quotes submitted values.
    pub detail: String,
    /// Seconds for `Retry-After`, when there is one.
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with no retry hint.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }
}

/// The problem for an error status that the HTTP framework or a limit produced without one of ours
/// (an extractor's rejection, a method or path no route takes): the same code for the same status
/// everywhere.
pub fn for_status(status: StatusCode) -> Problem {
    let (code, detail) = match status {
        StatusCode::BAD_REQUEST => ("invalid_request", "the request is malformed"),
        StatusCode::UNAUTHORIZED => ("unauthenticated", "no client certificate"),
        StatusCode::FORBIDDEN => ("forbidden", "not allowed"),
        StatusCode::NOT_FOUND => ("not_found", "no such endpoint"),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "method not allowed here"),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request did not arrive in time"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::URI_TOO_LONG => ("uri_too_long", "the request target is too long"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "the request body's type is not accepted",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "header_fields_too_large",
            "the request headers are too large",
        ),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests"),
        s if s.is_client_error() => ("invalid_request", "the request cannot be served"),
        _ => ("unavailable", "the gateway cannot complete the request now"),
    };
    Problem::new(status, code, detail)
}

/// The status and code of every pipeline error.
pub fn problem(e: &PipelineError) -> Problem {
    use RecordErrorCode as C;
    let (status, code) = match e {
        PipelineError::Record(r) => match r.code {
            C::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            C::MalformedJson => (StatusCode::BAD_REQUEST, "malformed_json"),
            C::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            C::KeyRevoked => (StatusCode::SERVICE_UNAVAILABLE, "key_revoked"),
            C::KeyUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            other => (StatusCode::UNPROCESSABLE_ENTITY, other.as_str()),
        },
        PipelineError::RateLimited { retry_after } => {
            return Problem {
                status: StatusCode::TOO_MANY_REQUESTS,
                code: "rate_limited",
                detail: e.to_string(),
                retry_after: Some(*retry_after),
            };
        }
        PipelineError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
        PipelineError::Shredded { .. } => (StatusCode::GONE, "shredded"),
        PipelineError::NoOpening { .. } => (StatusCode::NOT_FOUND, "not_found"),
        PipelineError::NotFound { .. } | PipelineError::Ledger(LedgerError::NoSuchEntry { .. }) => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        PipelineError::Ledger(
            LedgerError::SizeBeyondTree { .. } | LedgerError::BadProofRequest(_),
        ) => (StatusCode::BAD_REQUEST, "invalid_request"),
        // A consortium member without a leader or quorum: expected while one is elected; the
        // client retries (logged once, as a warning, where it happened).
        PipelineError::Ledger(LedgerError::NotReplicated(_)) => {
            return Problem {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "unavailable",
                detail: "the consortium cannot commit records now; retry shortly".into(),
                retry_after: Some(1),
            };
        }
        PipelineError::Ledger(LedgerError::NoSigner) => {
            (StatusCode::SERVICE_UNAVAILABLE, "key_revoked")
        }
        PipelineError::Keys(k) if matches!(k.code(), "key_revoked" | "key_expired") => {
            (StatusCode::SERVICE_UNAVAILABLE, "key_revoked")
        }
        // An officer's command: the key manager's own code, with a status for who is at fault.
        PipelineError::Admin(k) => {
            let status = match k.code() {
                "not_found" => StatusCode::NOT_FOUND,
                "conflict" | "illegal_transition" | "key_revoked" | "key_expired" => {
                    StatusCode::CONFLICT
                }
                "invalid_argument" => StatusCode::BAD_REQUEST,
                _ => {
                    tracing::error!(error = %k, "key command failed");
                    let detail = "the key store cannot complete the command now";
                    return Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail);
                }
            };
            (status, k.code())
        }
        PipelineError::Membership(m) => {
            use crate::consortium::membership::MembershipError as M;
            match m {
                M::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
                M::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                M::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                M::Disagrees(_) => (StatusCode::CONFLICT, "member_disagrees"),
                // Expected while a new member catches up, or a leader is elected: ask again.
                M::CatchingUp(_) | M::Unavailable(_) => {
                    return Problem {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        code: if matches!(m, M::CatchingUp(_)) {
                            "catching_up"
                        } else {
                            "unavailable"
                        },
                        detail: e.to_string(),
                        retry_after: Some(2),
                    };
                }
            }
        }
        PipelineError::NotAConsortium => (StatusCode::NOT_FOUND, "not_a_consortium"),
        PipelineError::Quarantined { .. } => (StatusCode::FORBIDDEN, "quarantined"),
        PipelineError::Ledger(_)
        | PipelineError::Vault(_)
        | PipelineError::Keys(_)
        | PipelineError::Unavailable(_) => {
            // Internal detail goes to the log, not to the client.
            tracing::error!(error = %e, "request failed");
            return Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the gateway cannot complete the request now",
            );
        }
    };
    Problem::new(status, code, e.to_string())
}

impl Problem {
    /// The JSON body, with this request's id as `instance` when there is one.
    fn body(&self) -> serde_json::Value {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let mut body = json!({
            "type": format!("urn:ledgergate:problem:{}", self.code),
            "title": title,
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        // This occurrence: the request id the answer's `x-request-id` and the node's log carry.
        if let (Some(id), Some(fields)) =
            (super::observe::current_request_id(), body.as_object_mut())
        {
            fields.insert(
                "instance".to_owned(),
                format!("urn:ledgergate:request:{id}").into(),
            );
        }
        body
    }

    /// Status, content type, `Retry-After` and body, for answers that travel as data (over the
    /// channel) rather than as an HTTP response.
    pub fn into_response_parts(self) -> (u16, String, Option<String>, Vec<u8>) {
        (
            self.status.as_u16(),
            "application/problem+json".to_owned(),
            self.retry_after.map(|s| s.to_string()),
            self.body().to_string().into_bytes(),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body().to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}
