//! Admission control: each subject's rate and burst from the policy's `limits`, on `governor`'s keyed
//! GCRA limiter (the generic cell rate algorithm: a token bucket kept as one timestamp per key).
//! Subjects' quotas differ (limits come per role), and one keyed limiter has one quota, so there is
//! one limiter per distinct quota; there are as many quotas as distinct `limits` in the policy.
//!
//! A request takes its subject's first token at admission, before its body is read (a subject over
//! its rate costs the node no body bytes); each further record of a batch takes one more once
//! parsed. Keys whose state says nothing more than a fresh one are dropped by [`RateLimiter::tidy`],
//! which the node runs periodically (governor's `retain_recent`), so the state stays small.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter as Gcra};
use policies::Limits;

/// One keyed limiter.
type Keyed<C> =
    Gcra<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limiters by quota: (the rate's bits, the burst).
type ByQuota<C> = Mutex<HashMap<(u64, u32), Arc<Keyed<C>>>>;

/// Most seconds a `Retry-After` says.
const MAX_RETRY_AFTER: u64 = 86_400;

/// Per-subject limiters, one per quota, on clock `C` (a fake one in tests).
pub struct RateLimiter<C: Clock = DefaultClock> {
    clock: C,
    by_quota: ByQuota<C>,
}

impl Default for RateLimiter<DefaultClock> {
    fn default() -> Self {
        RateLimiter::with_clock(DefaultClock::default())
    }
}

impl<C: Clock> std::fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

/// The GCRA quota of `limits`: `burst` at once, refilled at `rate_per_second`.
fn quota(limits: &Limits) -> Quota {
    let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
    // The policy checks the rate is positive and finite; a tiny one still refills (once a day).
    let period = Duration::try_from_secs_f64(1.0 / limits.rate_per_second)
        .unwrap_or(Duration::from_secs(MAX_RETRY_AFTER))
        .clamp(
            Duration::from_nanos(1),
            Duration::from_secs(MAX_RETRY_AFTER),
        );
    Quota::with_period(period)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// Limiters on `clock`.
    pub fn with_clock(clock: C) -> Self {
        RateLimiter {
            clock,
            by_quota: Mutex::new(HashMap::new()),
        }
    }

    fn limiter(&self, limits: &Limits) -> Arc<Keyed<C>> {
        let key = (limits.rate_per_second.to_bits(), limits.burst);
        let mut all = self
            .by_quota
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(all.entry(key).or_insert_with(|| {
            Arc::new(Gcra::new(
                quota(limits),
                DefaultKeyedStateStore::default(),
                self.clock.clone(),
            ))
        }))
    }

    /// Takes `cost` tokens for `subject`, or says in how many whole seconds (at least 1) there will
    /// be enough. A cost over the burst can never be met at once: it is refused with the time a
    /// burst takes to refill.
    pub fn admit(&self, subject: &str, limits: &Limits, cost: u32) -> Result<(), u64> {
        let Some(n) = NonZeroU32::new(cost) else {
            return Ok(());
        };
        let whole_seconds = |wait: Duration| {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            secs.clamp(1, MAX_RETRY_AFTER)
        };
        match self.limiter(limits).check_key_n(&subject.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(whole_seconds(not_until.wait_time_from(self.clock.now()))),
            Err(_) => Err(whole_seconds(quota(limits).burst_size_replenished_in())),
        }
    }

    /// Forgets subjects whose state is that of a fresh one (governor's `retain_recent`), and gives
    /// the memory back.
    pub fn tidy(&self) {
        let all: Vec<Arc<Keyed<C>>> = self
            .by_quota
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for limiter in all {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Subjects held, over every quota (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.by_quota
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .map(|l| l.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits(rate: f64, burst: u32) -> Limits {
        Limits {
            rate_per_second: rate,
            burst,
            max_record_bytes: 10,
        }
    }

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let clock = FakeRelativeClock::default();
        let r = RateLimiter::with_clock(clock.clone());
        let l = limits(2.0, 3);
        for _ in 0..3 {
            assert_eq!(r.admit("a", &l, 1), Ok(()));
        }
        assert_eq!(r.admit("a", &l, 1), Err(1));
        assert_eq!(r.admit("b", &l, 1), Ok(()), "per subject");
        clock.advance(Duration::from_millis(500));
        assert_eq!(r.admit("a", &l, 1), Ok(()), "one token per 1/rate");
        assert_eq!(r.admit("a", &l, 1), Err(1));
        clock.advance(Duration::from_secs(100));
        assert_eq!(r.admit("a", &l, 3), Ok(()), "never more than the burst…");
        assert_eq!(r.admit("a", &l, 1), Err(1));
        assert_eq!(
            r.admit("a", &l, 5),
            Err(2),
            "…and a cost over it waits for a full refill"
        );
    }

    #[test]
    fn subjects_with_other_limits_have_their_own_quota() {
        let clock = FakeRelativeClock::default();
        let r = RateLimiter::with_clock(clock);
        assert_eq!(r.admit("slow", &limits(0.1, 1), 1), Ok(()));
        assert_eq!(r.admit("slow", &limits(0.1, 1), 1), Err(10));
        assert_eq!(r.admit("fast", &limits(100.0, 50), 50), Ok(()));
    }

    #[test]
    fn idle_subjects_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let r = RateLimiter::with_clock(clock.clone());
        let l = limits(10.0, 10);
        for i in 0..100 {
            assert_eq!(r.admit(&format!("s{i}"), &l, 1), Ok(()));
        }
        assert_eq!(r.tracked(), 100);
        clock.advance(Duration::from_secs(5));
        r.tidy();
        assert_eq!(r.tracked(), 0);
    }
}
