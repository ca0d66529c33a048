//! Known-answer tests from the RFC 6962 reference vectors that Certificate Transparency implementations
//! share (the eight-leaf tree of the C++ reference and of transparency-dev/merkle), and property tests.

// Test vectors index small in-memory arrays by tree positions; sizes here are tiny.
#![allow(clippy::cast_possible_truncation)]

use super::*;
use crate::ledger::compact::CompactRange;
use crate::ledger::hash::leaf_hash;
use proptest::prelude::*;
use std::convert::Infallible;

/// Every perfect subtree of a tree held in memory: `levels[l][i]` is the node at (l, i).
struct MemTree {
    levels: Vec<Vec<Hash>>,
}

impl MemTree {
    fn new(entries: &[Vec<u8>]) -> MemTree {
        let mut levels = vec![entries.iter().map(|e| leaf_hash(e)).collect::<Vec<_>>()];
        loop {
            let below = levels.last().map(|l| l.as_slice()).unwrap_or_default();
            if below.len() < 2 {
                break;
            }
            let up = below
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        MemTree { levels }
    }

    fn root(&self, size: u64) -> Hash {
        if size == 0 {
            Hash::empty()
        } else {
            range_root(self, 0, size).unwrap_or_else(|e| match e {})
        }
    }
}

impl NodeSource for MemTree {
    type Error = Infallible;
    fn node(&self, level: u8, index: u64) -> Result<Hash, Infallible> {
        Ok(self.levels[level as usize][index as usize])
    }
}

fn h(hex_str: &str) -> Hash {
    Hash::from_slice(&hex::decode(hex_str).unwrap()).unwrap()
}

fn rfc_leaves() -> Vec<Vec<u8>> {
    [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|s| hex::decode(s).unwrap())
    .collect()
}

const RFC_ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, path): the reference inclusion vectors.
fn rfc_inclusion() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            5,
            8,
            vec![
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            3,
            vec![h(
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            )],
        ),
        (
            1,
            5,
            vec![
                h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
    ]
}

/// (from, to, proof): the reference consistency vectors.
fn rfc_consistency() -> Vec<(u64, u64, Vec<Hash>)> {
    vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
            ],
        ),
        (
            6,
            8,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
        (
            2,
            5,
            vec![
                h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
                h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            ],
        ),
        (
            6,
            7,
            vec![
                h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
                h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
                h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
            ],
        ),
    ]
}

#[test]
fn roots_match_reference_vectors() {
    let leaves = rfc_leaves();
    let tree = MemTree::new(&leaves);
    let mut range = CompactRange::new();
    for (i, leaf) in leaves.iter().enumerate() {
        range.push(leaf_hash(leaf), |_, _, _| {});
        assert_eq!(
            range.root(),
            h(RFC_ROOTS[i]),
            "compact range root of size {}",
            i + 1
        );
        assert_eq!(
            tree.root(i as u64 + 1),
            h(RFC_ROOTS[i]),
            "range root of size {}",
            i + 1
        );
    }
}

#[test]
fn inclusion_proofs_match_reference_vectors_and_verify() {
    let leaves = rfc_leaves();
    let tree = MemTree::new(&leaves);
    for (index, size, want) in rfc_inclusion() {
        let got = inclusion_proof(&tree, index, size).unwrap();
        assert_eq!(got, want, "inclusion proof of {index} in {size}");
        let root = h(RFC_ROOTS[size as usize - 1]);
        verify_inclusion(
            &leaf_hash(&leaves[index as usize]),
            index,
            size,
            &got,
            &root,
        )
        .unwrap();
    }
}

#[test]
fn consistency_proofs_match_reference_vectors_and_verify() {
    let tree = MemTree::new(&rfc_leaves());
    for (from, to, want) in rfc_consistency() {
        let got = consistency_proof(&tree, from, to).unwrap();
        assert_eq!(got, want, "consistency proof {from} -> {to}");
        let (r1, r2) = (
            h(RFC_ROOTS[from as usize - 1]),
            h(RFC_ROOTS[to as usize - 1]),
        );
        verify_consistency(from, to, &got, &r1, &r2).unwrap();
    }
}

#[test]
fn reference_inclusion_probes_are_all_rejected() {
    // The corruptions the reference suite tries: wrong index, wrong size, wrong leaf or root,
    // garbage before or after, a component removed or inserted.
    let leaves = rfc_leaves();
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for (index, size, path) in rfc_inclusion().into_iter().filter(|(_, s, _)| *s > 1) {
        let root = h(RFC_ROOTS[size as usize - 1]);
        let leaf = leaf_hash(&leaves[index as usize]);
        let mut probes: Vec<(u64, u64, Hash, Hash, Vec<Hash>)> = vec![
            (index.wrapping_sub(1), size, root, leaf, path.clone()),
            (index + 1, size, root, leaf, path.clone()),
            (index ^ 2, size, root, leaf, path.clone()),
            (index, size * 2, root, leaf, path.clone()),
            (index, size / 2, root, leaf, path.clone()),
            (index, size, root, leaf_hash(b"WrongLeaf"), path.clone()),
            (index, size, Hash::empty(), leaf, path.clone()),
            (index, size, some, leaf, path.clone()),
            (index, size, root, leaf, [path.clone(), vec![root]].concat()),
            (index, size, root, leaf, [vec![root], path.clone()].concat()),
            (index, size, root, leaf, path[..path.len() - 1].to_vec()),
        ];
        if path.len() > 1 {
            probes.push((
                index,
                size,
                root,
                leaf,
                [vec![path[0], some], path[1..].to_vec()].concat(),
            ));
        }
        for (i, size, root, leaf, p) in probes {
            assert!(
                verify_inclusion(&leaf, i, size, &p, &root).is_err(),
                "probe {i}/{size} verified"
            );
        }
    }
}

#[test]
fn trivial_consistency_cases() {
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    assert_eq!(verify_consistency(0, 0, &[], &a, &a), Ok(()));
    assert_eq!(verify_consistency(0, 5, &[], &a, &b), Ok(()));
    assert_eq!(verify_consistency(3, 3, &[], &b, &b), Ok(()));
    assert_eq!(
        verify_consistency(3, 3, &[], &a, &b),
        Err(VerifyError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(0, 1, &[a], &a, &b),
        Err(VerifyError::WrongLength)
    );
    assert_eq!(
        verify_consistency(1, 1, &[a], &a, &a),
        Err(VerifyError::WrongLength)
    );
    assert_eq!(
        verify_consistency(2, 1, &[], &a, &b),
        Err(VerifyError::SizesReversed)
    );
    assert_eq!(
        verify_consistency(1, 2, &[], &a, &b),
        Err(VerifyError::WrongLength)
    );
    assert_eq!(
        verify_inclusion(&a, 0, 0, &[], &a),
        Err(VerifyError::IndexOutOfRange)
    );
    let tree = MemTree::new(&rfc_leaves());
    assert_eq!(
        inclusion_proof(&tree, 8, 8),
        Err(ProofRequestError::IndexOutOfRange { index: 8, size: 8 })
    );
    assert_eq!(
        consistency_proof(&tree, 5, 4),
        Err(ProofRequestError::SizesReversed { from: 5, to: 4 })
    );
}

fn flip(hash: &Hash, bit: usize) -> Hash {
    let mut b = hash.0;
    b[(bit / 8) % 32] ^= 1 << (bit % 8);
    Hash(b)
}

fn entries(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("entry-{i}").into_bytes()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_inclusion_proof_verifies_and_any_flip_breaks_it(n in 1usize..300, seed in any::<u64>(), bit in 0usize..256) {
        let leaves = entries(n);
        let tree = MemTree::new(&leaves);
        let size = seed % n as u64 + 1;
        let root = tree.root(size);
        for index in 0..size {
            let path = inclusion_proof(&tree, index, size).unwrap();
            let leaf = leaf_hash(&leaves[index as usize]);
            prop_assert_eq!(verify_inclusion(&leaf, index, size, &path, &root), Ok(()));
            prop_assert!(verify_inclusion(&flip(&leaf, bit), index, size, &path, &root).is_err());
            prop_assert!(verify_inclusion(&leaf, index, size, &path, &flip(&root, bit)).is_err());
            let mut entry = leaves[index as usize].clone();
            let at = bit % entry.len();
            entry[at] ^= 1 << (bit % 8);
            prop_assert!(verify_inclusion(&leaf_hash(&entry), index, size, &path, &root).is_err());
            for k in 0..path.len() {
                let mut bad = path.clone();
                bad[k] = flip(&bad[k], bit);
                prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root).is_err());
            }
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_any_flip_breaks_it(n in 1usize..300, bit in 0usize..256) {
        let tree = MemTree::new(&entries(n));
        let to = n as u64;
        let to_root = tree.root(to);
        for from in 0..=to {
            let from_root = tree.root(from);
            let proof = consistency_proof(&tree, from, to).unwrap();
            prop_assert_eq!(verify_consistency(from, to, &proof, &from_root, &to_root), Ok(()));
            if from == 0 {
                continue; // nothing to flip: every tree extends the empty one
            }
            prop_assert!(verify_consistency(from, to, &proof, &flip(&from_root, bit), &to_root).is_err());
            prop_assert!(verify_consistency(from, to, &proof, &from_root, &flip(&to_root, bit)).is_err());
            for k in 0..proof.len() {
                let mut bad = proof.clone();
                bad[k] = flip(&bad[k], bit);
                prop_assert!(verify_consistency(from, to, &bad, &from_root, &to_root).is_err());
            }
        }
    }
}
