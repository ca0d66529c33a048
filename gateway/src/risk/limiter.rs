//! Admission control: a token bucket per subject (rate and burst from the policy's limits). Pure: the
//! caller passes `now`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use policies::Limits;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets by subject name.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Takes `cost` tokens for `subject`, or says how many seconds until there are enough.
    pub fn admit(
        &self,
        subject: &str,
        limits: &Limits,
        cost: u32,
        now: Instant,
    ) -> Result<(), u64> {
        self.take(subject, limits, cost, true, now)
    }

    /// Whether `subject` has a token now, without taking it: checked before a request body is read,
    /// so that a subject over its rate costs the node no body bytes. [`RateLimiter::admit`] takes the
    /// token once the record is parsed.
    pub fn check(&self, subject: &str, limits: &Limits, now: Instant) -> Result<(), u64> {
        self.take(subject, limits, 1, false, now)
    }

    fn take(
        &self,
        subject: &str,
        limits: &Limits,
        cost: u32,
        consume: bool,
        now: Instant,
    ) -> Result<(), u64> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let burst = f64::from(limits.burst);
        let b = buckets.entry(subject.to_owned()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * limits.rate_per_second).min(burst);
        b.last = now;
        let cost = f64::from(cost);
        if b.tokens >= cost {
            if consume {
                b.tokens -= cost;
            }
            return Ok(());
        }
        let wait = (cost - b.tokens) / limits.rate_per_second.max(f64::MIN_POSITIVE);
        // Whole seconds for Retry-After, at least 1.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Err(wait.ceil().clamp(1.0, 86_400.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let l = Limits {
            rate_per_second: 2.0,
            burst: 3,
            max_record_bytes: 10,
        };
        let r = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.admit("a", &l, 1, t0), Ok(()));
        }
        assert_eq!(r.admit("a", &l, 1, t0), Err(1));
        assert_eq!(r.admit("b", &l, 1, t0), Ok(()), "buckets are per subject");
        assert_eq!(r.admit("a", &l, 1, t0 + Duration::from_millis(500)), Ok(()));
        assert_eq!(
            r.admit("a", &l, 5, t0 + Duration::from_secs(100)),
            Err(1),
            "never more than the burst"
        );
    }

    #[test]
    fn check_takes_nothing() {
        let l = RateLimiter::default();
        let limits = Limits {
            rate_per_second: 1.0,
            burst: 1,
            max_record_bytes: 10,
        };
        let t = Instant::now();
        assert_eq!(l.check("a", &limits, t), Ok(()));
        assert_eq!(l.check("a", &limits, t), Ok(()));
        assert_eq!(l.admit("a", &limits, 1, t), Ok(()));
        assert_eq!(l.check("a", &limits, t), Err(1));
    }
}
