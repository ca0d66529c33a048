//! The bounds on the in-memory cache of unwrapped primary keys: how many, and for how long.

use std::collections::HashMap;
use std::sync::Arc;

use crate::lifecycle::Timestamp;
use crate::manager::PrimaryKey;

/// Most primary keys kept unwrapped in memory. Data-subject keys are often used once, so without a
/// bound the cache would grow with every subject ever seen.
pub const CACHE_LIMIT: usize = 65_536;

/// Longest a key stays unwrapped in the cache, in seconds. The hot path unwraps a key once per this
/// period, not once per record (a PKCS#11 token's unwrap is a round trip to the token); and a key
/// whose KEK became unusable (a token removed, a store re-wrapped) stops being used within it.
pub const CACHE_TTL: i64 = 300;

/// When a key unwrapped at `now` that expires at `expires_at` leaves the cache.
pub(crate) fn cached_until(expires_at: Timestamp, now: Timestamp) -> Timestamp {
    expires_at.min(now.saturating_add(CACHE_TTL))
}

/// Caches a primary key; a full cache is emptied first (the few hot keys come back on their next
/// use, one store read each), which bounds memory without bookkeeping on the hot path.
pub(crate) fn cache_insert(
    cache: &mut HashMap<String, Arc<PrimaryKey>>,
    name: &str,
    key: Arc<PrimaryKey>,
) {
    if cache.len() >= CACHE_LIMIT && !cache.contains_key(name) {
        cache.clear();
    }
    cache.insert(name.to_owned(), key);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Purpose, Secret};

    #[test]
    fn the_cache_is_bounded() {
        let key = Arc::new(PrimaryKey {
            name: "k".into(),
            version: 1,
            purpose: Purpose::Subject,
            expires_at: i64::MAX,
            cached_until: i64::MAX,
            material: Secret::new(vec![0; 32]),
        });
        let mut cache = HashMap::new();
        for i in 0..CACHE_LIMIT {
            cache_insert(&mut cache, &format!("subject/{i}"), Arc::clone(&key));
        }
        assert_eq!(cache.len(), CACHE_LIMIT);
        // Replacing a cached key keeps the rest; one more name empties the cache first.
        cache_insert(&mut cache, "subject/0", Arc::clone(&key));
        assert_eq!(cache.len(), CACHE_LIMIT);
        cache_insert(&mut cache, "pseudonym", key);
        assert_eq!(cache.len(), 1);
    }
}
