//! Entry bundles: how a run of consecutive entries is laid out in one stored value.
//!
//! ```text
//! count (u32 BE) ‖ count × end offset (u32 BE, relative to the records) ‖ records
//! record = leaf hash (32 bytes) ‖ entry bytes
//! ```
//!
//! The writer stores each group commit's entries as bundles of at most [`MAX_ENTRIES`] entries and
//! [`MAX_BYTES`] bytes, written once and never rewritten. One key per bundle instead of one per entry is
//! what lets appends keep up with raw sled and the verifier read at close to memory speed; the offset
//! table keeps reading one entry O(1). Parsing checks every bound, so a damaged value is an error, not a
//! panic.

use super::hash::{HASH_LEN, Hash};

/// Most entries in one bundle: bounds the work of reading one entry from a cold cache.
pub const MAX_ENTRIES: usize = 256;
/// Soft bound on a bundle's size; a bundle holds at least one entry whatever its size. Kept under the
/// allocator's mmap threshold (128 KiB in glibc) so that reading a bundle reuses heap memory instead of
/// faulting in fresh pages: measured, this was a quarter of the verifier's CPU time with 1 MiB bundles.
pub const MAX_BYTES: usize = 64 * 1024;

const COUNT_LEN: usize = 4;
const OFFSET_LEN: usize = 4;

/// Encodes `records` (leaf hash and entry, in index order) as one bundle. Callers keep to
/// [`MAX_ENTRIES`]; entries are bounded far below 4 GiB by the gateway's record limits.
pub fn encode_bundle(records: &[(Hash, &[u8])]) -> Vec<u8> {
    let body: usize = records.iter().map(|(_, e)| HASH_LEN + e.len()).sum();
    let mut out = Vec::with_capacity(COUNT_LEN + OFFSET_LEN * records.len() + body);
    out.extend_from_slice(
        &u32::try_from(records.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    let mut end = 0usize;
    for (_, entry) in records {
        end += HASH_LEN + entry.len();
        out.extend_from_slice(&u32::try_from(end).unwrap_or(u32::MAX).to_be_bytes());
    }
    for (leaf, entry) in records {
        out.extend_from_slice(leaf.as_bytes());
        out.extend_from_slice(entry);
    }
    out
}

/// Splits `records` into runs that each fit one bundle.
pub(crate) fn split<'a, 'b>(
    records: &'a [(Hash, &'b [u8])],
) -> impl Iterator<Item = &'a [(Hash, &'b [u8])]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0usize;
        let mut take = 0usize;
        for (_, e) in rest.iter().take(MAX_ENTRIES) {
            bytes += HASH_LEN + e.len();
            if take > 0 && bytes > MAX_BYTES {
                break;
            }
            take += 1;
        }
        let (run, tail) = rest.split_at(take);
        rest = tail;
        Some(run)
    })
}

/// A parsed bundle over its stored bytes.
#[derive(Debug, Clone)]
pub struct Bundle<B> {
    data: B,
    count: usize,
}

impl<B: AsRef<[u8]>> Bundle<B> {
    /// Checks the layout; `None` when the bytes are not a well-formed bundle.
    pub fn parse(data: B) -> Option<Bundle<B>> {
        let bytes = data.as_ref();
        let count =
            usize::try_from(u32::from_be_bytes(bytes.get(..COUNT_LEN)?.try_into().ok()?)).ok()?;
        let records_at = COUNT_LEN.checked_add(count.checked_mul(OFFSET_LEN)?)?;
        let records_len = bytes.len().checked_sub(records_at)?;
        if count == 0 {
            return None;
        }
        let mut prev = 0usize;
        for j in 0..count {
            let end = read_offset(bytes, j)?;
            if end < prev + HASH_LEN || end > records_len {
                return None;
            }
            prev = end;
        }
        (prev == records_len).then_some(Bundle { data, count })
    }

    /// Checks only that the header (count and offset table) fits: enough for reading single records,
    /// whose bounds [`Bundle::record`] checks on every access. O(1), where [`Bundle::parse`] checks every
    /// record (the verifier's job).
    pub fn parse_header(data: B) -> Option<Bundle<B>> {
        let bytes = data.as_ref();
        let count =
            usize::try_from(u32::from_be_bytes(bytes.get(..COUNT_LEN)?.try_into().ok()?)).ok()?;
        let records_at = COUNT_LEN.checked_add(count.checked_mul(OFFSET_LEN)?)?;
        (count > 0 && bytes.len() >= records_at).then_some(Bundle { data, count })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Always false: a bundle holds at least one entry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The byte range of record `j` within the stored value.
    pub(crate) fn record_range(&self, j: usize) -> Option<(usize, usize)> {
        let bytes = self.data.as_ref();
        let base = COUNT_LEN + self.count * OFFSET_LEN;
        let start = if j == 0 {
            0
        } else {
            read_offset(bytes, j - 1)?
        };
        let end = read_offset(bytes, j)?;
        // A header-only parse has not checked the offsets: refuse any that run backwards or past the end.
        (j < self.count && start + HASH_LEN <= end && base + end <= bytes.len())
            .then_some((base + start, base + end))
    }

    /// Record `j`: its leaf hash and entry bytes.
    pub fn record(&self, j: usize) -> Option<(Hash, &[u8])> {
        let (start, end) = self.record_range(j)?;
        let record = self.data.as_ref().get(start..end)?;
        let (leaf, entry) = record.split_at_checked(HASH_LEN)?;
        Some((Hash::from_slice(leaf)?, entry))
    }

    /// The stored bytes.
    pub fn into_inner(self) -> B {
        self.data
    }
}

fn read_offset(bytes: &[u8], j: usize) -> Option<usize> {
    let at = COUNT_LEN + j * OFFSET_LEN;
    let raw: [u8; 4] = bytes.get(at..at + OFFSET_LEN)?.try_into().ok()?;
    usize::try_from(u32::from_be_bytes(raw)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::hash::leaf_hash;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..40)) {
            let records: Vec<(Hash, &[u8])> = entries.iter().map(|e| (leaf_hash(e), e.as_slice())).collect();
            let bytes = encode_bundle(&records);
            let bundle = Bundle::parse(bytes.as_slice()).unwrap();
            prop_assert_eq!(bundle.len(), entries.len());
            for (j, e) in entries.iter().enumerate() {
                prop_assert_eq!(bundle.record(j), Some((leaf_hash(e), e.as_slice())));
            }
            prop_assert_eq!(bundle.record(entries.len()), None);
        }

        #[test]
        fn never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..200), j in 0usize..10) {
            if let Some(b) = Bundle::parse(bytes.as_slice()) {
                let _ = b.record(j);
            }
            if let Some(b) = Bundle::parse_header(bytes.as_slice()) {
                let _ = b.record(j);
            }
        }

        #[test]
        fn header_parse_reads_the_same_records(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..100), 1..20)) {
            let records: Vec<(Hash, &[u8])> = entries.iter().map(|e| (leaf_hash(e), e.as_slice())).collect();
            let bytes = encode_bundle(&records);
            let light = Bundle::parse_header(bytes.as_slice()).unwrap();
            for (j, e) in entries.iter().enumerate() {
                prop_assert_eq!(light.record(j), Some((leaf_hash(e), e.as_slice())));
            }
        }

        #[test]
        fn truncation_is_detected(entries in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 1..10), cut in 1usize..50) {
            let records: Vec<(Hash, &[u8])> = entries.iter().map(|e| (leaf_hash(e), e.as_slice())).collect();
            let bytes = encode_bundle(&records);
            let cut = cut.min(bytes.len());
            prop_assert!(Bundle::parse(&bytes[..bytes.len() - cut]).is_none());
        }
    }

    #[test]
    fn split_respects_both_bounds() {
        const { assert!(MAX_BYTES >= 32 * 1024) };
        let small = vec![0u8; 10];
        let records: Vec<(Hash, &[u8])> = (0..600)
            .map(|_| (Hash::empty(), small.as_slice()))
            .collect();
        let runs: Vec<usize> = split(&records).map(<[_]>::len).collect();
        assert_eq!(runs, vec![256, 256, 88]);
        let big = vec![0u8; MAX_BYTES / 3]; // two fit, three do not
        let records: Vec<(Hash, &[u8])> = (0..5).map(|_| (Hash::empty(), big.as_slice())).collect();
        let runs: Vec<usize> = split(&records).map(<[_]>::len).collect();
        assert_eq!(runs, vec![2, 2, 1]);
        let huge = vec![0u8; 2 * MAX_BYTES];
        let records = [(Hash::empty(), huge.as_slice())];
        assert_eq!(split(&records).map(<[_]>::len).collect::<Vec<_>>(), vec![1]);
    }
}
