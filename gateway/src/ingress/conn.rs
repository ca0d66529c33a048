//! Bounds on connections, applied before any TLS work: how many the node holds at once, how many one
//! source address may hold, what the accept loop does when the process runs out of file descriptors,
//! how often a repeated warning may be logged, and when a connection that does nothing is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Connections held now, in all and per source address.
#[derive(Debug)]
pub struct ConnLimits {
    max_total: usize,
    max_per_source: usize,
    held: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The node holds `max_connections` already.
    NodeFull,
    /// That source address holds `max_connections_per_source` already.
    SourceFull,
}

/// A held connection's place; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<ConnLimits>,
    source: IpAddr,
}

impl ConnLimits {
    /// At most `max_total` connections, and `max_per_source` from any one address.
    pub fn new(max_total: usize, max_per_source: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_total,
            max_per_source,
            held: Mutex::new((0, HashMap::new())),
        })
    }

    /// A slot for a new connection from `source`, or why not. The map holds only sources with a
    /// connection now, so it is bounded by `max_total`.
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Slot, Refused> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.0 >= self.max_total {
            return Err(Refused::NodeFull);
        }
        let mine = held.1.entry(source).or_insert(0);
        if *mine >= self.max_per_source {
            return Err(Refused::SourceFull);
        }
        *mine += 1;
        held.0 += 1;
        Ok(Slot {
            limits: Arc::clone(self),
            source,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self
            .limits
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.0 = held.0.saturating_sub(1);
        if let Some(n) = held.1.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                held.1.remove(&self.source);
            }
        }
    }
}

/// How long the accept loop pauses after a failed accept, doubling up to a ceiling while failures
/// continue: out of descriptors, an accept that fails at once would otherwise spin a core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

/// First pause after a failed accept.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// Longest pause: a freed descriptor is used within this.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    /// The pause after one more failure.
    pub fn failed(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        now
    }

    /// An accept succeeded: the next failure starts from the first pause.
    pub fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }
}

/// Lets one of a repeated warning through per period and counts the rest, so that a flood of one
/// failure writes a line per period, not a line per failure. Pure: the caller passes `now`.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// At most one line per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be written now, `n` being how many were held back since the last;
    /// `None` when this one is held back.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// When a connection last moved a byte either way, for the idle watchdog.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    /// Active now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since a byte moved.
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// A stream that stamps [`Activity`] whenever a byte is read or written.
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// Watches `inner`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Watched<S> {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_source_and_gives_back() {
        let limits = ConnLimits::new(3, 2);
        let (a, b) = ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
        let a1 = limits.admit(a).unwrap();
        let _a2 = limits.admit(a).unwrap();
        assert_eq!(limits.admit(a).unwrap_err(), Refused::SourceFull);
        let _b1 = limits.admit(b).unwrap();
        assert_eq!(limits.admit(b).unwrap_err(), Refused::NodeFull);
        drop(a1);
        limits.admit(b).unwrap();
    }

    #[test]
    fn backoff_doubles_to_a_ceiling_and_resets() {
        let mut b = Backoff::default();
        let pauses: Vec<_> = (0..9).map(|_| b.failed()).collect();
        assert_eq!(pauses[0], BACKOFF_FIRST);
        assert_eq!(pauses[1], BACKOFF_FIRST * 2);
        assert_eq!(pauses[8], BACKOFF_MAX);
        b.reset();
        assert_eq!(b.failed(), BACKOFF_FIRST);
    }

    #[test]
    fn throttle_lets_one_line_a_period_through_and_counts_the_rest() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.admit(start), Some(0));
        for i in 1..=1000 {
            assert_eq!(t.admit(start + Duration::from_millis(i)), None);
        }
        assert_eq!(t.admit(start + Duration::from_secs(10)), Some(1000));
        assert_eq!(t.admit(start + Duration::from_secs(11)), None);
    }
}
