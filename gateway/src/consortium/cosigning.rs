//! Cosigned checkpoints (docs/consortium.md): every member asks the others to cosign its latest
//! checkpoint; each one cosigns only what its own copy shows ([`Witness`]), and the note with at
//! least `k` cosignatures (this member's own among them) is what `GET /v1/checkpoint` serves.
//!
//! A member's checkpoints are signed by its own checkpoint key and name the consortium's origin;
//! the cosignatures (C2SP `cosignature/v1`, by each member's node identity) are over the checkpoint
//! body, which is the same on every member for the same size. A member whose copy disagrees with a
//! checkpoint it is asked to cosign refuses, raises an alarm, and from then on stops vouching: it
//! cosigns nothing more and serves no checkpoint of its own until an operator has looked at it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use super::network::{COSIGN, Links};
use super::roster::Roster;
use super::types::{Member, NodeId};
use super::witness::{Cosigned, Refusal, Witness};
use crate::ledger::{Checkpoint, Cosigner, Hash, Ledger, LedgerError, parse_note};

/// Where a member records the last checkpoint it cosigned (in its ledger store, durably).
const RECORDED: &str = "witness";
/// How often a member asks for cosignatures of its newest checkpoint.
const ROUND: Duration = Duration::from_millis(250);
/// How long it waits for one member's cosignature.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// A request to cosign: a checkpoint body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CosignRequest {
    /// The checkpoint body (`origin\nsize\nroot\n`).
    pub body: String,
}

/// The answer: the cosignature line, or why not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CosignAnswer {
    /// The cosignature line (newline included).
    Cosigned(String),
    /// This member has not applied that many entries yet; ask again later.
    Behind,
    /// Refused: this member's copy disagrees, or it no longer vouches for anything.
    Refused(String),
}

#[derive(Serialize, Deserialize)]
struct StoredCosigned {
    size: u64,
    root: String,
}

/// One other voter, as a cosigner.
struct Peer {
    id: NodeId,
    member: Member,
    cosigner: Cosigner,
}

impl Peer {
    fn new(id: NodeId, member: Member) -> Result<Peer, String> {
        let key = hex::decode(&member.identity)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| format!("{}: not an Ed25519 key", member.name))?;
        let cosigner = Cosigner::new(&member.name, key).map_err(|e| e.to_string())?;
        Ok(Peer {
            id,
            member,
            cosigner,
        })
    }
}

/// A member's cosigning: its witness, the consortium's voters, and the best note gathered so far.
pub struct Cosigning {
    ledger: Arc<Ledger>,
    witness: Mutex<Witness>,
    me: NodeId,
    own: Cosigner,
    roster: Roster,
    /// Cosignatures required as configured; `None`: a majority of the voters at the time.
    required: Option<usize>,
    best: Mutex<Option<(u64, Arc<str>)>>,
    /// Set when this member's copy disagreed with a checkpoint: it stops vouching.
    diverged: AtomicBool,
    alarms: prometheus::IntCounterVec,
}

impl std::fmt::Debug for Cosigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigning")
            .field("required", &self.required)
            .field("diverged", &self.diverged.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    u64::try_from(crate::keys::unix_now()).unwrap_or(0)
}

impl Cosigning {
    /// This member (`me`, named `name`, cosigning with its node `identity` key) among the voters of
    /// `roster`, needing `required` cosignatures (`None`: a majority of the voters); resumes from
    /// what its ledger recorded.
    pub fn new(
        ledger: Arc<Ledger>,
        me: NodeId,
        name: &str,
        identity: std::sync::Arc<dyn crate::node_key::IdentityKey>,
        required: Option<usize>,
        roster: Roster,
        alarms: prometheus::IntCounterVec,
    ) -> Result<Cosigning, LedgerError> {
        let bad = |why: String| LedgerError::Corrupt(format!("consortium members: {why}"));
        let own = Cosigner::new(name, identity.public()).map_err(|e| bad(e.to_string()))?;
        let last = match ledger.recorded(RECORDED)? {
            Some(bytes) => {
                let s: StoredCosigned = serde_json::from_slice(&bytes)
                    .map_err(|e| LedgerError::Corrupt(format!("the witness state: {e}")))?;
                let root = Hash::from_base64(&s.root)
                    .ok_or_else(|| LedgerError::Corrupt("the witness state's root".into()))?;
                Some(Cosigned { size: s.size, root })
            }
            None => None,
        };
        let witness = Witness::new(ledger.origin(), name, identity, last);
        Ok(Cosigning {
            ledger,
            witness: Mutex::new(witness),
            me,
            own,
            roster,
            required,
            best: Mutex::new(None),
            diverged: AtomicBool::new(false),
            alarms,
        })
    }

    /// The body of this member's newest checkpoint.
    pub fn head_body(&self) -> String {
        self.ledger.checkpoint().checkpoint.body()
    }

    /// Whether this member's copy disagreed with a checkpoint (it no longer vouches).
    pub fn diverged(&self) -> bool {
        self.diverged.load(Ordering::Acquire)
    }

    /// The newest checkpoint note with at least the required cosignatures, once there is one.
    pub fn checkpoint(&self) -> Option<Arc<str>> {
        if self.diverged() {
            return None;
        }
        self.best
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(_, note)| Arc::clone(note))
    }

    /// This member's answer to a request to cosign `body`: checked against its own copy, and the
    /// last checkpoint it cosigned recorded durably before the cosignature leaves.
    pub async fn cosign(&self, body: &str) -> CosignAnswer {
        if self.diverged() {
            return CosignAnswer::Refused("this member's copy disagreed earlier".into());
        }
        let Ok(cp) = Checkpoint::parse_body(body) else {
            return CosignAnswer::Refused("not a checkpoint".into());
        };
        if cp.size > self.ledger.size() {
            return CosignAnswer::Behind;
        }
        let own_root = match self.ledger.root_at(cp.size) {
            Ok(r) => r,
            Err(e) => return CosignAnswer::Refused(format!("cannot read its own copy: {e}")),
        };
        let (line, changed) = {
            let mut witness = self.witness.lock().unwrap_or_else(PoisonError::into_inner);
            let before = witness.last();
            let proof = match before {
                Some(last) if last.size != cp.size => {
                    let (a, b) = (last.size.min(cp.size), last.size.max(cp.size));
                    match self.ledger.consistency_proof(a, b) {
                        Ok(p) => p,
                        Err(e) => return CosignAnswer::Refused(format!("no proof: {e}")),
                    }
                }
                _ => Vec::new(),
            };
            match witness.cosign(body, &own_root, &proof, now()) {
                Ok(line) => {
                    let after = witness.last();
                    (line, (after != before).then_some(after).flatten())
                }
                Err(refusal) => {
                    drop(witness);
                    return self.refuse(&refusal, cp.size);
                }
            }
        };
        if let Some(last) = changed {
            let stored = StoredCosigned {
                size: last.size,
                root: last.root.to_base64(),
            };
            let value = serde_json::to_vec(&stored).unwrap_or_default();
            let recorded = match self
                .ledger
                .queue_recording(Vec::new(), Vec::new(), RECORDED, value)
                .await
            {
                Ok(queued) => queued.wait().await,
                Err(e) => Err(e),
            };
            if let Err(e) = recorded {
                // Not durable: the cosignature must not leave (after a crash this member could
                // cosign something inconsistent with it).
                return CosignAnswer::Refused(format!("cannot record the cosigned state: {e}"));
            }
        }
        CosignAnswer::Cosigned(line)
    }

    fn refuse(&self, refusal: &Refusal, size: u64) -> CosignAnswer {
        if matches!(
            refusal,
            Refusal::NotOurRoot { .. } | Refusal::Inconsistent { .. }
        ) {
            self.diverged.store(true, Ordering::Release);
            self.alarms
                .with_label_values(&["consortium_disagreement"])
                .inc();
            tracing::error!(
                event = "consortium_disagreement",
                size,
                why = %refusal,
                "this member's copy disagrees with a checkpoint of the consortium: refusing to cosign, \
                 and no longer vouching for reads"
            );
        }
        CosignAnswer::Refused(refusal.to_string())
    }

    /// One round: cosignatures for this member's newest checkpoint, from itself and the others.
    async fn round(&self, links: &Links) {
        let head = self.ledger.checkpoint();
        let size = head.checkpoint.size;
        let done = self
            .best
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|(s, _)| *s >= size);
        if done || self.diverged() {
            return;
        }
        let body = head.checkpoint.body();
        // The voters now: a learner neither counts nor is asked.
        let voters = self.roster.voters();
        if !voters.iter().any(|(id, _)| *id == self.me) {
            // A learner (or a removed member) serves no checkpoint of its own.
            return;
        }
        let required = self.required.unwrap_or(voters.len() / 2 + 1);
        let mut lines = Vec::new();
        if let CosignAnswer::Cosigned(line) = self.cosign(&body).await
            && verifies(&self.own, &body, &line)
        {
            lines.push(line);
        }
        let peers: Vec<Peer> = voters
            .into_iter()
            .filter(|(id, _)| *id != self.me)
            .filter_map(|(id, m)| match Peer::new(id, m) {
                Ok(p) => Some(p),
                Err(why) => {
                    tracing::warn!(event = "bad_member", why = %why, "a member cannot cosign");
                    None
                }
            })
            .collect();
        let request = CosignRequest { body: body.clone() };
        let asks = peers.iter().map(|p| {
            let request = &request;
            async move {
                let answer: Result<CosignAnswer, _> = links
                    .call(p.id, &p.member, COSIGN, request, ASK_TIMEOUT)
                    .await;
                (p, answer)
            }
        });
        for (peer, answer) in futures_util::future::join_all(asks).await {
            match answer {
                Ok(CosignAnswer::Cosigned(line)) if verifies(&peer.cosigner, &body, &line) => {
                    lines.push(line);
                }
                Ok(CosignAnswer::Cosigned(_)) => {
                    tracing::warn!(event = "bad_cosignature", member = %peer.member.name, "a member's cosignature does not verify");
                }
                Ok(CosignAnswer::Refused(why)) => {
                    tracing::warn!(event = "cosignature_refused", member = %peer.member.name, size, why = %why, "a member refused to cosign");
                }
                Ok(CosignAnswer::Behind) | Err(_) => {}
            }
        }
        if lines.len() >= required {
            let note: Arc<str> = format!("{}{}", head.note, lines.concat()).into();
            *self.best.lock().unwrap_or_else(PoisonError::into_inner) = Some((size, note));
        }
    }

    /// Gathers cosignatures for this member's newest checkpoint, every [`ROUND`], until aborted.
    pub async fn run(self: Arc<Self>, links: Links) {
        let mut tick = tokio::time::interval(ROUND);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.round(&links).await;
        }
    }
}

/// Whether `line` is `member`'s valid cosignature of `body`.
pub fn verifies_member(member: &Member, body: &str, line: &str) -> bool {
    Peer::new(0, member.clone()).is_ok_and(|p| verifies(&p.cosigner, body, line))
}

/// Whether `line` is `cosigner`'s valid cosignature of `body`.
fn verifies(cosigner: &Cosigner, body: &str, line: &str) -> bool {
    let note = format!("{body}\n{line}");
    parse_note(&note).is_ok_and(|n| {
        n.signatures
            .iter()
            .any(|l| cosigner.verifies(n.body, l).is_some())
    })
}
