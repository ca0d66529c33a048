//! Inclusion and consistency proofs (RFC 9162 §2.1.3–2.1.4): generation over any source of subtree
//! hashes, and verification exactly as a client does it. Nothing here touches storage, so a client, a
//! mirror and the offline verifier all run this same code.

use super::hash::{Hash, node_hash};

/// Where proof generation reads the hashes of perfect subtrees.
pub trait NodeSource {
    /// Why a read failed.
    type Error;
    /// Hash of the perfect subtree at `level` and `index` (leaves `[index << level, (index+1) << level)`).
    /// Only subtrees inside the tree being proven are ever asked for.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// Why a proof could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofRequestError<E> {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The leaf asked for.
        index: u64,
        /// The tree size asked for.
        size: u64,
    },
    /// The older size is larger than the newer one.
    #[error("tree size {from} is larger than {to}")]
    SizesReversed {
        /// The older size asked for.
        from: u64,
        /// The newer size asked for.
        to: u64,
    },
    /// The hash source failed.
    #[error("reading the tree failed")]
    Source(#[source] E),
}

/// Why a proof did not verify. The variants say which check failed; none of them means "maybe".
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyError {
    /// The leaf index is not below the tree size.
    #[error("leaf index is not below the tree size")]
    IndexOutOfRange,
    /// The older tree is larger than the newer one.
    #[error("the first tree is larger than the second")]
    SizesReversed,
    /// The proof has more or fewer hashes than the sizes call for.
    #[error("proof has the wrong number of hashes")]
    WrongLength,
    /// The proof leads to a root other than the one given.
    #[error("proof does not lead to the given root")]
    RootMismatch,
}

/// The largest power of two strictly below `n` (for `n >= 2`).
fn split_point(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start:end]) read from `src` with O(log n) reads: the left part of every split is a perfect,
/// aligned subtree that the source holds directly.
pub fn range_root<S: NodeSource>(src: &S, start: u64, end: u64) -> Result<Hash, S::Error> {
    let n = end - start;
    if n.is_power_of_two() && start.is_multiple_of(n) {
        // Truncation is impossible: trailing_zeros of a u64 is at most 63.
        #[allow(clippy::cast_possible_truncation)]
        let level = n.trailing_zeros() as u8;
        return src.node(level, start >> level);
    }
    let k = split_point(n);
    let left = range_root(src, start, start + k)?;
    let right = range_root(src, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The audit path of leaf `index` in the tree of the first `size` leaves (RFC 9162 §2.1.3.1), leaf first.
pub fn inclusion_proof<S: NodeSource>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProofRequestError<S::Error>> {
    if index >= size {
        return Err(ProofRequestError::IndexOutOfRange { index, size });
    }
    let mut path = Vec::with_capacity(64);
    let (mut start, mut end) = (0u64, size);
    // Walk from the root down, collecting siblings; the RFC's recursion emits them leaf first.
    while end - start > 1 {
        let k = split_point(end - start);
        if index < start + k {
            path.push(range_root(src, start + k, end).map_err(ProofRequestError::Source)?);
            end = start + k;
        } else {
            path.push(range_root(src, start, start + k).map_err(ProofRequestError::Source)?);
            start += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The proof that the tree of `from` leaves is a prefix of the tree of `to` leaves
/// (RFC 9162 §2.1.4.1). Empty when `from` is 0 or equal to `to`.
pub fn consistency_proof<S: NodeSource>(
    src: &S,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, ProofRequestError<S::Error>> {
    if from > to {
        return Err(ProofRequestError::SizesReversed { from, to });
    }
    let mut proof = Vec::with_capacity(64);
    if from == 0 || from == to {
        return Ok(proof);
    }
    // SUBPROOF(m, D[start:end], b), unrolled; hashes are collected root first and reversed at the end.
    let (mut m, mut start, mut end, mut whole) = (from, 0u64, to, true);
    loop {
        let n = end - start;
        if m == n {
            if !whole {
                proof.push(range_root(src, start, end).map_err(ProofRequestError::Source)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            proof.push(range_root(src, start + k, end).map_err(ProofRequestError::Source)?);
            end = start + k;
        } else {
            proof.push(range_root(src, start, start + k).map_err(ProofRequestError::Source)?);
            m -= k;
            start += k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves whose head is `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange);
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return Err(VerifyError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(VerifyError::WrongLength);
    }
    if r != *root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Checks that the tree of `from` leaves with head `from_root` is a prefix of the tree of `to` leaves
/// with head `to_root` (RFC 9162 §2.1.4.2, plus the trivial cases the RFC leaves to the caller).
pub fn verify_consistency(
    from: u64,
    to: u64,
    proof: &[Hash],
    from_root: &Hash,
    to_root: &Hash,
) -> Result<(), VerifyError> {
    if from > to {
        return Err(VerifyError::SizesReversed);
    }
    if from == to {
        if !proof.is_empty() {
            return Err(VerifyError::WrongLength);
        }
        return if from_root == to_root {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    if from == 0 {
        // Every tree extends the empty one; a non-empty proof here is malformed.
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(VerifyError::WrongLength)
        };
    }
    let (first, rest) = match proof.split_first() {
        Some(split) => split,
        None => return Err(VerifyError::WrongLength),
    };
    // When `from` is a power of two its root is itself a node of the new tree and the proof omits it.
    let (seed, rest) = if from.is_power_of_two() {
        (from_root, proof)
    } else {
        (first, rest)
    };
    let (mut fnode, mut snode) = (from - 1, to - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if snode == 0 {
            return Err(VerifyError::WrongLength);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(VerifyError::WrongLength);
    }
    if fr != *from_root || sr != *to_root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
