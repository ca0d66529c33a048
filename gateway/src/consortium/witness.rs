//! A member's rules for cosigning (docs/consortium.md): it cosigns a checkpoint only if
//! - it names the consortium's log,
//! - its root is the root of the member's *own* copy at that size, and
//! - it is consistent with the last checkpoint this member cosigned (same size and root, or larger
//!   with a consistency proof from it).
//!
//! So a leader showing different histories to different clients needs a quorum of members to have
//! signed both, and a member whose copy disagrees (a tampered store, a leader that sent another entry
//! at an index it has) refuses, which the caller turns into an alarm. Pure: the caller reads its own
//! root, keeps [`Witness::last`] durably before it hands a cosignature out, and gives the time.

use crate::ledger::{Checkpoint, Hash, cosign, verify_consistency};

/// The last checkpoint a member cosigned: what every later one must be consistent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cosigned {
    /// Its size.
    pub size: u64,
    /// Its root.
    pub root: Hash,
}

/// Why a member did not cosign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a checkpoint body, or not of this log.
    #[error("not a checkpoint of this log: {0}")]
    NotOurs(String),
    /// The member's own copy has another root at that size: the copies disagree.
    #[error("the checkpoint's root at size {size} is not this member's own")]
    NotOurRoot {
        /// The size.
        size: u64,
    },
    /// Not consistent with the last checkpoint this member cosigned.
    #[error("not consistent with the checkpoint this member cosigned at size {cosigned}")]
    Inconsistent {
        /// The size this member cosigned last.
        cosigned: u64,
    },
    /// The signing failed (a bad name or time).
    #[error("cosigning failed: {0}")]
    Signing(String),
}

/// A member as a cosigner of its consortium's checkpoints.
pub struct Witness {
    origin: String,
    name: String,
    key: std::sync::Arc<dyn crate::node_key::IdentityKey>,
    last: Option<Cosigned>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("origin", &self.origin)
            .field("name", &self.name)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl Witness {
    /// The member `name` of the log `origin`, signing with its node identity `key`, having last
    /// cosigned `last` (as kept on disk).
    pub fn new(
        origin: &str,
        name: &str,
        key: std::sync::Arc<dyn crate::node_key::IdentityKey>,
        last: Option<Cosigned>,
    ) -> Witness {
        Witness {
            origin: origin.to_owned(),
            name: name.to_owned(),
            key,
            last,
        }
    }

    /// The last checkpoint cosigned: to be stored durably before the cosignature is handed out.
    pub fn last(&self) -> Option<Cosigned> {
        self.last
    }

    /// Cosigns `body` (a checkpoint) at `now`, if the rules allow; `own_root` is the root of this
    /// member's copy at the checkpoint's size, and `proof` a consistency proof from the last
    /// cosigned size and this one, from the smaller to the larger (empty when the sizes are equal
    /// or nothing was cosigned yet). `last` only grows.
    pub fn cosign(
        &mut self,
        body: &str,
        own_root: &Hash,
        proof: &[Hash],
        now: u64,
    ) -> Result<String, Refusal> {
        let cp = Checkpoint::parse_body(body).map_err(|e| Refusal::NotOurs(e.to_string()))?;
        if cp.origin != self.origin {
            return Err(Refusal::NotOurs(format!("origin {:?}", cp.origin)));
        }
        if cp.root != *own_root {
            return Err(Refusal::NotOurRoot { size: cp.size });
        }
        if let Some(last) = self.last {
            // Members ask each other to cosign checkpoints of whatever size their own group
            // commits made, so a smaller one than the last cosigned is normal; it must still be a
            // prefix of the same history.
            let consistent = match cp.size.cmp(&last.size) {
                std::cmp::Ordering::Equal => cp.root == last.root,
                std::cmp::Ordering::Greater => {
                    verify_consistency(last.size, cp.size, proof, &last.root, &cp.root).is_ok()
                }
                std::cmp::Ordering::Less => {
                    verify_consistency(cp.size, last.size, proof, &cp.root, &last.root).is_ok()
                }
            };
            if !consistent {
                return Err(Refusal::Inconsistent {
                    cosigned: last.size,
                });
            }
        }
        let line = cosign(body, &self.name, self.key.as_ref(), now)
            .map_err(|e| Refusal::Signing(e.to_string()))?;
        if self.last.is_none_or(|l| cp.size > l.size) {
            self.last = Some(Cosigned {
                size: cp.size,
                root: cp.root,
            });
        }
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ledger::{Cosigner, Ed25519NoteSigner, Ledger, LedgerConfig, NoteSigner as _};
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "consortium.example/log";

    /// A real ledger of `n` entries (its roots and proofs are what members compute).
    fn ledger(dir: &std::path::Path, n: usize, tag: &str) -> Ledger {
        let signer = Arc::new(Ed25519NoteSigner::from_seed(ORIGIN, &[9; 32]).unwrap());
        let l = Ledger::open(LedgerConfig::new(dir.join(tag), ORIGIN), signer).unwrap();
        for i in 0..n {
            l.append_blocking(vec![format!("{tag} entry {i}").into_bytes()])
                .unwrap();
        }
        l
    }

    fn body(size: u64, root: Hash) -> String {
        Checkpoint {
            origin: ORIGIN.to_owned(),
            size,
            root,
        }
        .body()
    }

    #[test]
    fn cosigns_a_growing_consistent_history_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let honest = ledger(dir.path(), 8, "a");
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut w = Witness::new(ORIGIN, "member-3", std::sync::Arc::new(key.clone()), None);
        let root4 = honest.root_at(4).unwrap();
        let line = w.cosign(&body(4, root4), &root4, &[], 100).unwrap();
        // The line verifies as a cosignature by this member.
        let note = format!(
            "{}{line}",
            crate::ledger::sign_note(
                &body(4, root4),
                &Ed25519NoteSigner::from_seed(ORIGIN, &[9; 32]).unwrap()
            )
            .unwrap()
        );
        let log = Ed25519NoteSigner::from_seed(ORIGIN, &[9; 32]).unwrap();
        let member = Cosigner::new("member-3", key.verifying_key()).unwrap();
        assert!(crate::ledger::verify_quorum(&note, log.verifier(), &[member], 1).is_ok());
        assert_eq!(
            w.last(),
            Some(Cosigned {
                size: 4,
                root: root4
            })
        );

        // Larger, with a proof from 4: cosigned.
        let root8 = honest.root_at(8).unwrap();
        let proof = honest.consistency_proof(4, 8).unwrap();
        assert!(w.cosign(&body(8, root8), &root8, &proof, 101).is_ok());
        // The same again: fine. Smaller, a prefix of what it cosigned: fine, and `last` stays.
        assert!(w.cosign(&body(8, root8), &root8, &[], 102).is_ok());
        let proof48 = honest.consistency_proof(4, 8).unwrap();
        assert!(w.cosign(&body(4, root4), &root4, &proof48, 103).is_ok());
        assert_eq!(w.last().map(|l| l.size), Some(8));
        // Smaller but of another history: refused.
        let other = ledger(dir.path(), 8, "c");
        let other4 = other.root_at(4).unwrap();
        assert_eq!(
            w.cosign(&body(4, other4), &other4, &proof48, 103),
            Err(Refusal::Inconsistent { cosigned: 8 })
        );

        // A forked history (another entry 9) with a root the member's own copy also has (a
        // tampered copy): not consistent with what it cosigned, refused, and `last` stays.
        let forked = ledger(dir.path(), 10, "b");
        let root10 = forked.root_at(10).unwrap();
        let fake_proof = forked.consistency_proof(8, 10).unwrap();
        assert_eq!(
            w.cosign(&body(10, root10), &root10, &fake_proof, 104),
            Err(Refusal::Inconsistent { cosigned: 8 })
        );
        assert_eq!(
            w.last(),
            Some(Cosigned {
                size: 8,
                root: root8
            })
        );
        // A root that is not the member's own copy's: refused whatever else holds.
        assert_eq!(
            w.cosign(&body(8, root8), &forked.root_at(8).unwrap(), &[], 105),
            Err(Refusal::NotOurRoot { size: 8 })
        );
        // Another log, and garbage.
        assert!(matches!(
            w.cosign(
                &body(8, root8).replace(ORIGIN, "other/log"),
                &root8,
                &[],
                106
            ),
            Err(Refusal::NotOurs(_))
        ));
        assert!(matches!(
            w.cosign("not a checkpoint", &root8, &[], 107),
            Err(Refusal::NotOurs(_))
        ));
        // Same size, another root, after a restart with `last` from disk: refused.
        let mut restarted = Witness::new(ORIGIN, "member-3", std::sync::Arc::new(key), w.last());
        let other8 = forked.root_at(8).unwrap();
        assert_eq!(
            restarted.cosign(&body(8, other8), &other8, &[], 108),
            Err(Refusal::Inconsistent { cosigned: 8 })
        );
    }
}
