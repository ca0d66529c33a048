//! The one place where the steps of a submission are put in order:
//! identify → admit → parse → authorize → (claim the record id) → already seen? → desensitize →
//! seal → append entry + vault attachments (new subject keys flushed first, by the ledger's
//! barrier) → receipt.
//! Every other module does one step and knows nothing of this order.
//!
//! Durability: a submission costs no fsync of its own. Its entry, sealed values and submission index
//! are one atomic ledger write and share the group commit's flush; new data-subject keys share the
//! key-store flush the ledger runs before each group (its barrier); the key-usage index follows the
//! ledger in the background (`usage`).
//! A batch is one round: one append, one wait.

mod audit;
mod read;
mod submit;

pub use submit::check_record;

use std::sync::Arc;

use keymgr::{KeyManager, Purpose};
use policies::{PeerIdentity, PolicySet, RecordError, RecordErrorCode};
use serde_json::Value;

use crate::claims::{Claims, claim_key};
use crate::ledger::{Ledger, LedgerError};
use crate::risk::RateLimiter;
use crate::usage::UsageIndex;
use crate::vault::{Vault, VaultError};

/// The managed key that makes request MACs (recognising retries without storing the record's hash).
pub const REQUEST_MAC_KEY: &str = "request-mac";
/// The role that may read raw ledger entries (`/v1/entries`).
pub const AUDITOR_ROLE: &str = "auditor";
/// Deepest JSON nesting a submission may have.
pub const MAX_JSON_DEPTH: usize = 32;

/// Why a request failed; `ingress::problem` maps each to a status and a problem `code`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The policy refused the record.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The subject is over its rate.
    #[error("rate limit exceeded; retry in {retry_after} s")]
    RateLimited {
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// The same id was submitted before with another body.
    #[error("record `{id}` was already submitted with different content")]
    Conflict {
        /// The record id.
        id: String,
    },
    /// No such record for this provider.
    #[error("no record `{id}` from provider `{provider}`")]
    NotFound {
        /// The provider.
        provider: String,
        /// The record id.
        id: String,
    },
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The key store failed.
    #[error(transparent)]
    Keys(#[from] keymgr::Error),
    /// An officer's key command was refused or failed.
    #[error(transparent)]
    Admin(keymgr::Error),
    /// An officer's change to the consortium's members was refused or failed.
    #[error(transparent)]
    Membership(#[from] crate::consortium::membership::MembershipError),
    /// The subject is quarantined by risk control: refused on every route until an officer releases
    /// it.
    #[error("subject `{subject}` is quarantined; an officer must release it")]
    Quarantined {
        /// The subject.
        subject: String,
    },
    /// A consortium request on a node that is not a consortium member.
    #[error("this node is not a consortium member")]
    NotAConsortium,
    /// A sealed field whose subject key was shredded: its value and opening are gone for good.
    #[error("the value at `{path}` was shredded")]
    Shredded {
        /// The field path.
        path: String,
    },
    /// A sealed field that has no opening.
    #[error("no opening for `{path}`: {why}")]
    NoOpening {
        /// The field path.
        path: String,
        /// Why.
        why: String,
    },
    /// Storage failed under a whole batch; each of its records gets this (the cause is logged once).
    #[error("storage failed: {0}")]
    Unavailable(String),
}

/// A submission's outcome: new (201) or a retry of one already accepted (200).
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// True when this request created the record.
    pub created: bool,
    /// `{index, leaf_hash, tree_size, checkpoint}`.
    pub receipt: Value,
}

/// Everything a submission passes through.
pub struct Pipeline {
    /// The policy in force; a reload swaps it, and each request keeps the one it started with.
    policy: std::sync::RwLock<Arc<PolicySet>>,
    keys: Arc<KeyManager>,
    ledger: Arc<Ledger>,
    vault: Vault,
    usage: UsageIndex,
    limiter: RateLimiter,
    claims: Claims,
    /// Held shared by a submission from key resolution to its durable append, and exclusively by an
    /// officer's command that takes a key version out of use (revoke, destroy, shred): once such a
    /// command returns, no later entry can carry the version it took away.
    key_changes: tokio::sync::RwLock<()>,
    /// Held while the checkpoint signer is read from the key store and put in force, so that two
    /// refreshes cannot cross: without it, one that read the store before a revocation could put the
    /// revoked key back after the revocation's own refresh.
    signing: std::sync::Mutex<()>,
    metrics: Arc<crate::metrics::Metrics>,
    /// The consortium this node is a member of, once its Raft runs: appends then go through it.
    consortium: std::sync::OnceLock<Arc<crate::consortium::Consortium>>,
    /// How far the key store's journal is copied into the ledger (`audit::journal`).
    journal: audit::JournalCopy,
    /// Risk control: told of submissions, invalid records and foreign reads.
    risk: Arc<crate::risk::Sentinel>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("policy", &self.policy().digest_hex())
            .finish_non_exhaustive()
    }
}

fn forbidden(why: &str) -> PipelineError {
    PipelineError::Record(RecordError {
        code: RecordErrorCode::Forbidden,
        path: None,
        reason: why.to_owned(),
    })
}

impl Pipeline {
    /// Assembles the pipeline over the ledger (whose attachments hold the vault); makes the
    /// request-MAC key on first use and brings the key-usage index up to the ledger.
    pub fn new(
        policy: Arc<PolicySet>,
        keys: Arc<KeyManager>,
        ledger: Arc<Ledger>,
        metrics: Arc<crate::metrics::Metrics>,
        risk: Arc<crate::risk::Sentinel>,
    ) -> Result<Pipeline, PipelineError> {
        if let Err(keymgr::Error::NoSuchKey(_)) = keys.show(REQUEST_MAC_KEY) {
            keys.create(
                REQUEST_MAC_KEY,
                Purpose::Pseudonym,
                Some(90 * 86_400),
                None,
                crate::keys::unix_now(),
                "gateway",
            )?;
        }
        // A new subject key must be on disk before anything sealed under it: the key store's shared
        // flush runs before every group commit (a no-op when no key was made since the last one).
        let sync = Arc::clone(&keys);
        ledger.set_barrier(Box::new(move || sync.sync().map_err(|e| e.to_string())))?;
        let p = Pipeline {
            policy: std::sync::RwLock::new(policy),
            vault: Vault::new(Arc::clone(&ledger)),
            usage: UsageIndex::new(Arc::clone(&keys), Arc::clone(&ledger)),
            keys,
            ledger,
            limiter: RateLimiter::default(),
            claims: Claims::default(),
            key_changes: tokio::sync::RwLock::new(()),
            signing: std::sync::Mutex::new(()),
            metrics,
            consortium: std::sync::OnceLock::new(),
            journal: audit::JournalCopy::default(),
            risk,
        };
        // After a crash the index may trail the ledger by the last unindexed entries.
        p.index_usage()?;
        Ok(p)
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<PolicySet> {
        Arc::clone(
            &self
                .policy
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts a new policy in force for the requests that start from now on.
    pub fn set_policy(&self, policy: Arc<PolicySet>) {
        *self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy;
    }

    /// Risk control.
    pub fn risk(&self) -> &Arc<crate::risk::Sentinel> {
        &self.risk
    }

    /// The key store.
    pub fn keys(&self) -> &KeyManager {
        &self.keys
    }

    /// Sends every later append through `consortium` (set once, when its Raft has started).
    pub fn replicate_through(&self, consortium: Arc<crate::consortium::Consortium>) {
        let _ = self.consortium.set(consortium);
    }

    /// Appends a submission's entries with their attachments: to the local ledger, or through the
    /// consortium when this node is a member.
    pub(crate) async fn append_with(
        &self,
        items: Vec<(Vec<u8>, crate::ledger::Attachment)>,
    ) -> Result<Vec<crate::ledger::Receipt>, crate::ledger::LedgerError> {
        match self.consortium.get() {
            Some(c) => c.append_with(items).await,
            None => self.ledger.append_with(items).await,
        }
    }

    /// The checkpoint to serve: the ledger's own, or, on a consortium member, the newest one with
    /// the cosignatures the consortium requires (none yet, or none when this member diverged).
    pub fn served_checkpoint(&self) -> Option<String> {
        match self.consortium.get() {
            Some(c) => c.checkpoint().map(|n| n.to_string()),
            None => Some(self.ledger.checkpoint().note.clone()),
        }
    }

    /// The consortium this node is a member of, once its Raft runs.
    pub fn consortium(&self) -> Option<&Arc<crate::consortium::Consortium>> {
        self.consortium.get()
    }

    /// Whether this node is a consortium member whose copy disagreed with the consortium.
    pub fn diverged(&self) -> bool {
        self.consortium.get().is_some_and(|c| c.diverged())
    }

    /// The key store, shared (for components that outlive a call, such as the channel's checks).
    pub fn shared_keys(&self) -> Arc<KeyManager> {
        Arc::clone(&self.keys)
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Brings the key-usage index (`keymgr affected`) up to the ledger; returns how many entries it
    /// now covers. Blocking: it reads entries and flushes the key store.
    pub fn index_usage(&self) -> Result<u64, PipelineError> {
        self.usage.catch_up()
    }

    /// Puts the key store's checkpoint-signing key in force on the ledger if it changed (rotated,
    /// revoked, destroyed, expired): the next checkpoint is signed by the new primary, or appends are
    /// refused when there is none. Blocking (it waits for the ledger's writer); says whether anything
    /// changed.
    pub fn refresh_signing(&self) -> Result<bool, PipelineError> {
        let _one_at_a_time = self
            .signing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = crate::keys::unix_now();
        let signing = crate::checkpoint_keys::signing(&self.keys, self.ledger.origin(), now)?;
        let wanted = signing.usable_signer(now).map(|s| s.verifier().clone());
        if wanted == self.ledger.verifier() && signing.keys == self.ledger.checkpoint_keys() {
            return Ok(false);
        }
        let head = self.ledger.set_signing_blocking(signing)?;
        match wanted {
            Some(v) => tracing::info!(
                key = %v.to_vkey(),
                size = head.checkpoint.size,
                "checkpoint signer in force; the head is signed by it"
            ),
            None => tracing::warn!(
                event = "no_checkpoint_signer",
                "no usable checkpoint-signing key: submissions are refused until an officer rotates it"
            ),
        }
        Ok(true)
    }

    /// Waits until no submission is between key resolution and append, and keeps new ones out while
    /// the guard lives: for officer commands that take a key version out of use.
    pub async fn exclusive_key_change(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.key_changes.write().await
    }

    /// Who `peer` is and what it may send, decided before a byte of its request body is read: an
    /// unknown peer is refused, a subject over its rate gets `RateLimited`, and the answer carries
    /// the subject's limits, by which the caller bounds the body it reads. The request takes its
    /// first token here (a refused or invalid request costs its token too); each further record of
    /// a batch takes one once parsed.
    pub fn admission(&self, peer: &PeerIdentity) -> Result<policies::Limits, PipelineError> {
        let policy = self.policy();
        let subject = policy.identify(peer)?;
        let limits = policy.limits_for(subject);
        self.limiter
            .admit(&subject.name, &limits, 1)
            .map_err(|retry_after| self.rate_limited(retry_after))?;
        Ok(limits)
    }

    /// Forgets rate-limit state that says nothing more than a fresh subject's (periodically).
    pub fn tidy_limits(&self) {
        self.limiter.tidy();
    }

    /// The refusal of a subject over its rate, counted.
    fn rate_limited(&self, retry_after: u64) -> PipelineError {
        self.metrics.rate_limited.inc();
        PipelineError::RateLimited { retry_after }
    }

    /// Submits one record (`{type, id, fields}`) from `peer`.
    pub async fn submit(
        &self,
        peer: &PeerIdentity,
        body: &[u8],
    ) -> Result<Accepted, PipelineError> {
        self.submit_batch(peer, &[body])
            .await
            .pop()
            .unwrap_or(Err(PipelineError::Unavailable("no outcome".into())))
    }

    /// Submits many records from `peer`, each refused or accepted on its own; one outcome per line, in
    /// order. The lines share one append (one group commit) per round; a round takes every line whose
    /// id nobody else is submitting, and a line whose id is busy (or repeated in the batch) waits for
    /// a later round, so a repeated id is answered as a retry of the first.
    pub async fn submit_batch(
        &self,
        peer: &PeerIdentity,
        lines: &[&[u8]],
    ) -> Vec<Result<Accepted, PipelineError>> {
        let policy = self.policy();
        let mut outcomes: Vec<Option<Result<Accepted, PipelineError>>> =
            lines.iter().map(|_| None).collect();
        let mut waiting = Vec::with_capacity(lines.len());
        // Each line's record type for the metrics: a declared type, or `unknown` before that is known.
        let mut types = vec![crate::metrics::UNKNOWN_TYPE; lines.len()];
        for (i, line) in lines.iter().enumerate() {
            // The first record's token was taken at admission.
            match self.parse_line(&policy, peer, line, i == 0) {
                Ok(parsed) => {
                    if let Some(t) = types.get_mut(i) {
                        *t = parsed.record_type_name();
                    }
                    waiting.push((i, parsed));
                }
                Err(e) => set(&mut outcomes, i, Err(e)),
            }
        }
        while !waiting.is_empty() {
            let released = self.claims.released();
            tokio::pin!(released);
            released.as_mut().enable();
            let ids: Vec<Vec<u8>> = waiting
                .iter()
                .map(|(_, p)| claim_key(p.provider(), &p.id))
                .collect();
            let (claim, busy) = self.claims.claim_free(&ids);
            let mut now = Vec::with_capacity(waiting.len().saturating_sub(busy.len()));
            let mut later = Vec::with_capacity(busy.len());
            for (k, item) in waiting.into_iter().enumerate() {
                if busy.binary_search(&k).is_ok() {
                    later.push(item);
                } else {
                    now.push(item);
                }
            }
            let progressed = !now.is_empty();
            for (i, outcome) in self.commit_round(&policy, now).await {
                set(&mut outcomes, i, outcome);
            }
            drop(claim);
            waiting = later;
            if !progressed {
                // Every remaining id is held by another request: wait for a release.
                released.await;
            }
        }
        let outcomes: Vec<_> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Err(PipelineError::Unavailable("no outcome".into()))))
            .collect();
        let subject = policy.identify(peer).ok().map(|s| s.name.as_str());
        for (outcome, record_type) in outcomes.iter().zip(types) {
            let label = match outcome {
                Ok(a) if a.created => "created",
                Ok(_) => "duplicate",
                Err(e) => crate::ingress::problem::problem(e).code,
            };
            self.metrics.record(record_type, label);
            if let Some(subject) = subject {
                match outcome {
                    Ok(_) => self.risk.observe(crate::risk::Observation::Submitted {
                        subject,
                        record_type,
                    }),
                    Err(PipelineError::Record(e)) if e.code != RecordErrorCode::Forbidden => {
                        self.risk
                            .observe(crate::risk::Observation::Invalid { subject });
                    }
                    Err(_) => {}
                }
            }
        }
        outcomes
    }
}

fn set(
    outcomes: &mut [Option<Result<Accepted, PipelineError>>],
    i: usize,
    outcome: Result<Accepted, PipelineError>,
) {
    if let Some(slot) = outcomes.get_mut(i) {
        *slot = Some(outcome);
    }
}
