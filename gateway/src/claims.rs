//! Claims on record ids: while a submission of (provider, id) is between "was it seen before?" and its
//! durable append, no other submission of the same id may pass that check, or a retry racing its
//! original would append the record twice.
//!
//! A batch claims all its free ids at once and never waits while it holds any, so two batches with
//! overlapping ids cannot deadlock: whatever was busy is retried after the holder releases.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// The ids being submitted right now.
#[derive(Debug, Default)]
pub struct Claims {
    held: Mutex<HashSet<Vec<u8>>>,
    released: Notify,
}

/// Ids held until dropped.
#[derive(Debug)]
pub struct Claimed<'a> {
    claims: &'a Claims,
    ids: Vec<Vec<u8>>,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        let mut held = self
            .claims
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for id in &self.ids {
            held.remove(id);
        }
        drop(held);
        self.claims.released.notify_waiters();
    }
}

/// The claim key of a provider's record id.
pub fn claim_key(provider: &str, id: &str) -> Vec<u8> {
    [provider.as_bytes(), &[0], id.as_bytes()].concat()
}

impl Claims {
    /// Claims every id in `wanted` that nobody holds (the first of duplicates only), all at once.
    /// Returns the claim and the positions in `wanted` that were busy.
    pub fn claim_free<'a>(&'a self, wanted: &[Vec<u8>]) -> (Claimed<'a>, Vec<usize>) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mut ids = Vec::new();
        let mut busy = Vec::new();
        for (i, id) in wanted.iter().enumerate() {
            if held.insert(id.clone()) {
                ids.push(id.clone());
            } else {
                busy.push(i);
            }
        }
        drop(held);
        (Claimed { claims: self, ids }, busy)
    }

    /// Waits until some claim is released (registered before the caller looks again, so a release
    /// between looking and waiting is not missed).
    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn busy_and_duplicate_ids_are_left_for_later() {
        let c = Claims::default();
        let a = claim_key("p", "1");
        let b = claim_key("p", "2");
        let (first, busy) = c.claim_free(&[a.clone(), a.clone()]);
        assert_eq!(busy, [1]);
        let (second, busy) = c.claim_free(&[a.clone(), b.clone()]);
        assert_eq!(busy, [0]);
        drop(first);
        let (third, busy) = c.claim_free(&[a.clone(), b.clone()]);
        assert_eq!(busy, [1]);
        drop((second, third));
        assert!(c.claim_free(&[a, b]).1.is_empty());
    }

    #[tokio::test]
    async fn a_release_wakes_a_waiter_registered_before_it_looked() {
        let c = Claims::default();
        let id = claim_key("p", "1");
        let (held, _) = c.claim_free(std::slice::from_ref(&id));
        let released = c.released();
        tokio::pin!(released);
        released.as_mut().enable();
        assert_eq!(c.claim_free(std::slice::from_ref(&id)).1, [0]);
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), released)
            .await
            .unwrap();
        assert!(c.claim_free(&[id]).1.is_empty());
    }
}
