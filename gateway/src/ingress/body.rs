//! Reading a request body within bounds, after the sender was identified and admitted: the limit its
//! subject may send (413 as soon as it is passed, before a byte is read when the declared length
//! already does), a deadline for the whole body (408), and a node-wide budget of body bytes held in
//! memory at once (503), so that many large bodies in parallel cannot exhaust memory whatever each
//! subject's limit.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::problem::Problem;

/// The budget's unit: permits are KiB, so a `u32` of them covers any budget a node could have.
const UNIT: usize = 1024;
/// A body refused for its size is still read and thrown away up to this many bytes before the 413
/// is sent (a lingering close, as nginx does): closed with unread bytes in its receive buffer, the
/// socket would reset the connection, and a client still sending would see the reset instead of the
/// answer. Declared larger than this, the body is refused at once.
pub const DRAIN_MAX: usize = 1024 * 1024;
/// While draining, this long with nothing arriving ends the drain (the client stopped sending).
const DRAIN_QUIET: Duration = Duration::from_millis(500);

/// The node-wide budget of request-body bytes in memory, shared by every connection.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    timeout: Duration,
}

impl BodyBudget {
    /// A budget of `bytes` in all, with `timeout` for reading any one body.
    pub fn new(bytes: usize, timeout: Duration) -> BodyBudget {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            permits: Arc::new(Semaphore::new(units)),
            timeout,
        }
    }
}

/// A body read in full, holding its share of the budget until it is dropped.
#[derive(Debug)]
pub struct HeldBody {
    /// The bytes.
    pub bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

fn too_large(limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is more than the {limit} bytes this subject may send"),
    )
}

/// Reads and discards what follows of a refused body: at most [`DRAIN_MAX`] bytes in all, and only
/// while it keeps arriving. Nothing is kept, so it costs no memory.
async fn drain(body: &mut Body, mut seen: usize) {
    while seen < DRAIN_MAX {
        match tokio::time::timeout(DRAIN_QUIET, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                seen = seen.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
            }
            _ => return,
        }
    }
}

/// Reads `body` up to `limit` bytes within the budget's deadline and share.
pub async fn read_body(body: Body, limit: usize, budget: &BodyBudget) -> Result<HeldBody, Problem> {
    use http_body::Body as _;
    let mut body = body;
    // The declared length (Content-Length) already says: refuse before keeping anything; drain a
    // modest body so that the client reads the answer, refuse a huge one at once.
    let declared = usize::try_from(body.size_hint().lower()).unwrap_or(usize::MAX);
    if declared > limit {
        if declared <= DRAIN_MAX {
            let _ = tokio::time::timeout(budget.timeout, drain(&mut body, 0)).await;
        }
        return Err(too_large(limit));
    }
    let collect = async {
        let mut buf = Vec::new();
        let mut share: Option<OwnedSemaphorePermit> = None;
        let mut held = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body could not be read",
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let total = buf.len().saturating_add(data.len());
            if total > limit {
                drain(&mut body, total).await;
                return Err(too_large(limit));
            }
            let need = total.div_ceil(UNIT);
            if need > held {
                let more = u32::try_from(need - held).unwrap_or(u32::MAX);
                let got = Arc::clone(&budget.permits)
                    .try_acquire_many_owned(more)
                    .map_err(|_| {
                        let mut p = Problem::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            "the node holds as many request bodies as it may; retry shortly",
                        );
                        p.retry_after = Some(1);
                        p
                    })?;
                match share.as_mut() {
                    Some(s) => s.merge(got),
                    None => share = Some(got),
                }
                held = need;
            }
            buf.extend_from_slice(&data);
        }
        Ok(HeldBody {
            bytes: Bytes::from(buf),
            _share: share,
        })
    };
    tokio::time::timeout(budget.timeout, collect)
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    budget.timeout.as_secs()
                ),
            )
        })?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn budget(bytes: usize) -> BodyBudget {
        BodyBudget::new(bytes, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn reads_within_the_limit_and_refuses_past_it() {
        let b = budget(1 << 20);
        let held = read_body(Body::from(vec![b'x'; 100]), 100, &b)
            .await
            .unwrap();
        assert_eq!(held.bytes.len(), 100);
        let err = read_body(Body::from(vec![b'x'; 101]), 100, &b)
            .await
            .unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
        );
    }

    #[tokio::test]
    async fn the_budget_is_shared_and_given_back() {
        let b = budget(4 * UNIT);
        let first = read_body(Body::from(vec![b'x'; 3 * UNIT]), 1 << 20, &b)
            .await
            .unwrap();
        let err = read_body(Body::from(vec![b'x'; 2 * UNIT]), 1 << 20, &b)
            .await
            .unwrap_err();
        assert_eq!(
            (err.status, err.code, err.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable", Some(1))
        );
        drop(first);
        read_body(Body::from(vec![b'x'; 2 * UNIT]), 1 << 20, &b)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_stalled_body_times_out() {
        let b = BodyBudget::new(1 << 20, Duration::from_millis(50));
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<axum::body::Bytes, std::io::Error>>(1);
        let body = Body::from_stream(tokio_stream_from(rx));
        let err = read_body(body, 100, &b).await.unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::REQUEST_TIMEOUT, "request_timeout")
        );
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
