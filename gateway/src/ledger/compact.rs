//! The compact range of a tree: the roots of the perfect subtrees ("peaks") that make up a tree of any
//! size, one per set bit of the size. It is all that is needed to append a leaf and to compute the root,
//! so the writer and the offline verifier keep only this in memory, never the whole tree.

use super::hash::{Hash, node_hash};

/// The peaks of a tree, largest (leftmost) first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    peaks: Vec<Hash>,
}

/// Where a peak sits: the perfect subtree at `level` (height) and `index` covers leaves
/// `[index << level, (index + 1) << level)`.
pub(crate) fn peak_positions(size: u64) -> impl Iterator<Item = (u8, u64)> {
    let mut start = 0u64;
    (0..64u8).rev().filter_map(move |level| {
        if size & (1u64 << level) == 0 {
            return None;
        }
        let pos = (level, start >> level);
        start += 1u64 << level;
        Some(pos)
    })
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> CompactRange {
        CompactRange::default()
    }

    /// A range from its peaks, largest first; `None` when their number does not match `size`.
    pub fn from_peaks(size: u64, peaks: Vec<Hash>) -> Option<CompactRange> {
        (peaks.len() == size.count_ones() as usize).then_some(CompactRange { size, peaks })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. `completed` is told of every subtree this completes, leaf included, as
    /// `(level, index, hash)`, so that the caller can store them for later proofs.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u8, u64, &Hash)) {
        let mut level = 0u8;
        let mut index = self.size;
        let mut hash = leaf;
        completed(level, index, &hash);
        // A node with an odd index is a right child: its left sibling is the last peak.
        while index & 1 == 1 {
            let Some(left) = self.peaks.pop() else {
                break; // unreachable: one peak per set bit of `size`
            };
            hash = node_hash(&left, &hash);
            index >>= 1;
            level += 1;
            completed(level, index, &hash);
        }
        self.peaks.push(hash);
        self.size += 1;
    }

    /// The tree head: peaks folded from the right, as RFC 9162's MTH splits at the largest power of two.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else {
            return Hash::empty();
        };
        iter.fold(*last, |acc, peak| node_hash(peak, &acc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::hash::leaf_hash;

    #[test]
    fn peak_positions_follow_the_bits_of_the_size() {
        assert_eq!(peak_positions(0).count(), 0);
        assert_eq!(
            peak_positions(7).collect::<Vec<_>>(),
            vec![(2, 0), (1, 2), (0, 6)]
        );
        assert_eq!(peak_positions(8).collect::<Vec<_>>(), vec![(3, 0)]);
    }

    #[test]
    fn push_reports_every_completed_subtree() {
        let mut range = CompactRange::new();
        let mut seen = Vec::new();
        for i in 0..4u8 {
            range.push(leaf_hash(&[i]), |l, i, _| seen.push((l, i)));
        }
        assert_eq!(
            seen,
            vec![(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0)]
        );
        assert_eq!(range.size(), 4);
    }
}
