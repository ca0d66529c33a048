//! The chain store: an append-only RFC 9162 Merkle log of opaque entries, kept in redb, with C2SP signed
//! checkpoints and inclusion/consistency proofs.
//!
//! Writes go through one writer thread that group-commits (see `writer`); reads (entries, proofs,
//! the latest checkpoint) run concurrently and only ever see what is durable and published.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use gateway::ledger::{Ledger, LedgerConfig, Ed25519NoteSigner, verify_inclusion};
//!
//! let dir = tempfile::tempdir()?;
//! let signer = Arc::new(Ed25519NoteSigner::generate("example.org/log")?);
//! let ledger = Ledger::open(LedgerConfig::new(dir.path().join("ledger"), "example.org/log"), signer)?;
//! let receipt = ledger.append_blocking(vec![b"hello".to_vec()])?.remove(0);
//! let proof = ledger.inclusion_proof(receipt.index, receipt.tree_size)?;
//! verify_inclusion(&receipt.leaf_hash, receipt.index, receipt.tree_size, &proof, &receipt.checkpoint.checkpoint.root)?;
//! # Ok(()) }
//! ```

mod attachments;
mod bundle;
mod checkpoint;
mod compact;
mod cosignature;
mod error;
mod hash;
mod note;
mod proof;
mod reader;
mod signing;
mod signing_key;
mod store;
#[cfg(any(test, feature = "testing"))]
#[allow(
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation,
    missing_docs
)]
pub mod testing;
mod verify;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

pub use attachments::{Attachment, Located};
pub use bundle::{
    Bundle, MAX_BYTES as BUNDLE_MAX_BYTES, MAX_ENTRIES as BUNDLE_MAX_ENTRIES, encode_bundle,
};
pub use checkpoint::{Checkpoint, CheckpointError, SignedCheckpoint};
pub use compact::CompactRange;
pub use cosignature::{Cosigner, Quorum, cosign, verify_quorum};
pub use error::LedgerError;
pub use hash::{HASH_LEN, Hash, leaf_hash, node_hash};
pub use note::{
    Ed25519NoteSigner, NoteError, NoteSignature, NoteSigner, NoteVerifier, ParsedNote, SignError,
    key_id, open_note, parse_note, sign_note,
};
pub use proof::{
    NodeSource, ProofRequestError, VerifyError, consistency_proof, inclusion_proof, range_root,
    verify_consistency, verify_inclusion,
};
pub use reader::LedgerReader;
pub use signing::{CheckpointKey, Signing};
pub use signing_key::{load_or_create_signing_key, load_signing_key};
pub use verify::{SignedAfterCompromise, VerifyFailure, VerifyOptions, VerifyReport, verify_store};

use compact::peak_positions;
use store::{Batch, Store};

/// The store directory of the ledger inside a node's data directory.
pub fn store_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ledger")
}

/// The interim checkpoint signing key file inside a node's data directory.
pub fn signing_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("checkpoint-signing.key")
}

/// Largest group the writer commits at once, in entries. A bound keeps one flush's latency bounded.
pub const DEFAULT_MAX_BATCH: usize = 4096;
/// Requests that may wait for the writer before `append` itself waits (back-pressure).
pub const DEFAULT_QUEUE: usize = 8192;

/// How to open the ledger.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// The store directory (it holds the database file).
    pub path: PathBuf,
    /// The log's name, written into every checkpoint; fixed for the life of the log.
    pub origin: String,
    /// Most entries per group commit.
    pub max_batch: usize,
    /// Most requests queued for the writer.
    pub queue: usize,
    /// Create the store when it does not exist.
    pub create: bool,
    /// Where the writer reports each group commit's size and write time, if anywhere.
    pub metrics: Option<crate::metrics::LedgerMetrics>,
}

impl LedgerConfig {
    /// Defaults for a store at `path` named `origin`, created if missing.
    pub fn new(path: impl Into<PathBuf>, origin: &str) -> LedgerConfig {
        LedgerConfig {
            path: path.into(),
            origin: origin.to_owned(),
            max_batch: DEFAULT_MAX_BATCH,
            queue: DEFAULT_QUEUE,
            create: true,
            metrics: None,
        }
    }
}

/// Entries queued by [`Ledger::queue_recording`], not yet known to be durable.
#[derive(Debug)]
pub struct Queued(oneshot::Receiver<ReplyResult>);

impl Queued {
    /// Waits until the queued entries are durable (or failed).
    pub async fn wait(self) -> Result<Vec<Receipt>, LedgerError> {
        self.0.await.map_err(|_| LedgerError::Closed)?
    }
}

/// Proof that an entry is durably in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's index.
    pub index: u64,
    /// RFC 9162 leaf hash of the entry.
    pub leaf_hash: Hash,
    /// Size of the tree of the checkpoint that first includes the entry.
    pub tree_size: u64,
    /// That checkpoint.
    pub checkpoint: Arc<SignedCheckpoint>,
}

/// State shared by the handle (readers) and the writer thread.
pub(crate) struct Shared {
    store: Store,
    origin: String,
    published: RwLock<Arc<SignedCheckpoint>>,
    /// When the published checkpoint was signed (Unix seconds).
    published_at: AtomicI64,
    /// The key that signs new checkpoints (none: appends are refused) and every key's history, as
    /// the writer last switched them.
    keys: RwLock<SigningView>,
    poisoned: AtomicBool,
    barrier: std::sync::OnceLock<Barrier>,
}

/// The signer's public side and the keys' history, as readers see them.
#[derive(Default)]
struct SigningView {
    current: Option<NoteVerifier>,
    expires_at: Option<i64>,
    keys: Vec<CheckpointKey>,
}

/// Run by the writer before each group commit (see [`Ledger::set_barrier`]).
pub type Barrier = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

impl Shared {
    fn publish(&self, checkpoint: Arc<SignedCheckpoint>) {
        self.published_at
            .store(crate::keys::unix_now(), Ordering::Release);
        *self
            .published
            .write()
            .unwrap_or_else(PoisonError::into_inner) = checkpoint;
    }

    fn set_keys(&self, signing: &Signing) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = SigningView {
            current: signing.signer.as_ref().map(|s| s.verifier().clone()),
            expires_at: signing.expires_at,
            keys: signing.keys.clone(),
        };
    }

    fn latest(&self) -> Arc<SignedCheckpoint> {
        Arc::clone(
            &self
                .published
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// An open ledger. Share it behind an `Arc`; dropping the last handle drains queued appends, makes them
/// durable and releases the store.
pub struct Ledger {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<writer::Job>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("path", &self.shared.store.path())
            .field("origin", &self.shared.origin)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Opens (or creates) the ledger with one fixed signer: see [`Ledger::open_with`].
    pub fn open(config: LedgerConfig, signer: Arc<dyn NoteSigner>) -> Result<Ledger, LedgerError> {
        Ledger::open_with(config, Signing::fixed(signer))
    }

    /// Opens (or creates) the ledger, checks that its latest checkpoint verifies and matches the stored
    /// tree, records the checkpoint keys' history, and starts the writer. A head signed by another key
    /// than `signing`'s signer is countersigned by it at once; with no signer the ledger opens for
    /// reading and refuses appends ([`LedgerError::NoSigner`]) until [`Ledger::set_signing`] gives one.
    pub fn open_with(config: LedgerConfig, signing: Signing) -> Result<Ledger, LedgerError> {
        let store = Store::open(&config.path, config.create)?;
        if let Some(stored) = store.origin()?
            && stored != config.origin
        {
            return Err(LedgerError::OriginMismatch {
                stored,
                configured: config.origin,
            });
        }
        let size = store.size()?;
        let snapshot = store.snapshot()?;
        let peaks = peak_positions(size)
            .map(|(l, i)| snapshot.node(l, i))
            .collect::<Result<Vec<_>, _>>()?;
        let range = CompactRange::from_peaks(size, peaks)
            .ok_or_else(|| LedgerError::Corrupt("tree peaks do not match the size".into()))?;
        let recorded = store.keys()?;
        let mut trusted = Vec::new();
        for vkey in recorded
            .iter()
            .map(|(v, _)| v)
            .chain(signing.keys.iter().map(|k| &k.vkey))
        {
            trusted.push(NoteVerifier::from_vkey(vkey).map_err(|e| {
                LedgerError::Corrupt(format!("recorded checkpoint key {vkey:?}: {e}"))
            })?);
        }
        trusted.extend(signing.signer.iter().map(|s| s.verifier().clone()));
        let mut first = Batch::default();
        let mut first_needed = signing::record_keys(&mut first, &recorded, &signing);
        let now = crate::keys::unix_now();
        let latest = match store.last_checkpoint()? {
            None if size == 0 => {
                // A new log publishes the empty tree, so that there is always a checkpoint to serve.
                let signer = signing.signer.as_ref().ok_or(LedgerError::NoSigner)?;
                let cp = Checkpoint {
                    origin: config.origin.clone(),
                    size: 0,
                    root: range.root(),
                };
                let signed = cp.sign(signer.as_ref())?;
                first.set_origin(&config.origin);
                first.put_checkpoint(0, &signed.note);
                first.put_signed_at(0, now);
                first_needed = true;
                signed
            }
            None => {
                return Err(LedgerError::Corrupt(format!(
                    "the tree has {size} entries but no checkpoint"
                )));
            }
            Some((at, note)) => {
                let signed =
                    SignedCheckpoint::open(&note, &trusted).map_err(LedgerError::BadCheckpoint)?;
                let cp = &signed.checkpoint;
                if at != size
                    || cp.size != size
                    || cp.origin != config.origin
                    || cp.root != range.root()
                {
                    return Err(LedgerError::Corrupt(format!(
                        "latest checkpoint (size {}) does not match the stored tree (size {size})",
                        cp.size
                    )));
                }
                match signing::countersigned(&signed, &signing)? {
                    Some(head) => {
                        first.put_checkpoint(size, &head.note);
                        first.put_signed_at(size, now);
                        first_needed = true;
                        head
                    }
                    None => signed,
                }
            }
        };
        if first_needed {
            store.commit(first)?;
        }
        let signed_at = store.signed_at_of(latest.checkpoint.size)?.unwrap_or(now);
        let shared = Arc::new(Shared {
            store,
            origin: config.origin,
            published: RwLock::new(Arc::new(latest)),
            published_at: AtomicI64::new(signed_at),
            keys: RwLock::new(SigningView::default()),
            poisoned: AtomicBool::new(false),
            barrier: std::sync::OnceLock::new(),
        });
        shared.set_keys(&signing);
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let writer = writer::Writer {
            shared: Arc::clone(&shared),
            signing,
            range,
            max_batch: config.max_batch.max(1),
            metrics: config.metrics,
        };
        let handle = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| LedgerError::Storage(Box::new(e)))?;
        Ok(Ledger {
            shared,
            tx: Some(tx),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Switches the checkpoint signer and records the keys' history, in order with appends: every
    /// group committed after this returns is signed by the new signer (or refused, with none). A
    /// head that the new signer has not signed is countersigned at once, so clients that trust only
    /// the new key have a head they can verify. Returns the head after the switch.
    pub async fn set_signing(
        &self,
        signing: Signing,
    ) -> Result<Arc<SignedCheckpoint>, LedgerError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(LedgerError::Closed)?;
        tx.send(writer::Job::Sign(signing, reply))
            .await
            .map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// [`Ledger::set_signing`] for callers outside an async runtime.
    pub fn set_signing_blocking(
        &self,
        signing: Signing,
    ) -> Result<Arc<SignedCheckpoint>, LedgerError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or(LedgerError::Closed)?;
        tx.blocking_send(writer::Job::Sign(signing, reply))
            .map_err(|_| LedgerError::Closed)?;
        rx.blocking_recv().map_err(|_| LedgerError::Closed)?
    }

    fn request(
        &self,
        entries: Vec<Vec<u8>>,
        attachments: Vec<Attachment>,
    ) -> Result<(writer::Job, oneshot::Receiver<ReplyResult>), LedgerError> {
        if self.shared.poisoned.load(Ordering::Acquire) {
            return Err(LedgerError::Poisoned);
        }
        let (reply, rx) = oneshot::channel();
        let req = writer::Request {
            entries,
            attachments,
            recorded: None,
            reply,
        };
        Ok((writer::Job::Append(req), rx))
    }

    async fn send(&self, req: writer::Job, rx: oneshot::Receiver<ReplyResult>) -> ReplyResult {
        let tx = self.tx.as_ref().ok_or(LedgerError::Closed)?;
        tx.send(req).await.map_err(|_| LedgerError::Closed)?;
        rx.await.map_err(|_| LedgerError::Closed)?
    }

    /// Appends entries, in order and atomically together; returns once they are durable.
    pub async fn append(&self, entries: Vec<Vec<u8>>) -> Result<Vec<Receipt>, LedgerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (req, rx) = self.request(entries, Vec::new())?;
        self.send(req, rx).await
    }

    /// Appends entries with what to keep beside each (see [`Attachment`]): entries and attachments
    /// become durable in one atomic write, or none of them does.
    pub async fn append_with(
        &self,
        items: Vec<(Vec<u8>, Attachment)>,
    ) -> Result<Vec<Receipt>, LedgerError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (entries, attachments) = items.into_iter().unzip();
        let (req, rx) = self.request(entries, attachments)?;
        self.send(req, rx).await
    }

    /// Queues entries (possibly none) with their attachments (empty, or one per entry) and a value
    /// to record under `name` in the same atomic write; [`Queued::wait`] gives the receipts once
    /// durable. A caller that keeps its progress there (the consortium's state machine keeps the
    /// last Raft log id it applied) finds, after any crash, either the entries and the value or
    /// neither. Queued requests are written in queue order, several to a group commit. `name` must
    /// not be one of the ledger's own (`format`, `origin`, `size`).
    pub async fn queue_recording(
        &self,
        entries: Vec<Vec<u8>>,
        attachments: Vec<Attachment>,
        name: &'static str,
        value: Vec<u8>,
    ) -> Result<Queued, LedgerError> {
        if matches!(name, "format" | "origin" | "size") {
            return Err(LedgerError::Corrupt(format!(
                "`{name}` is the ledger's own metadata"
            )));
        }
        let (mut req, rx) = self.request(entries, attachments)?;
        if let writer::Job::Append(r) = &mut req {
            r.recorded = Some((name, value));
        }
        let tx = self.tx.as_ref().ok_or(LedgerError::Closed)?;
        tx.send(req).await.map_err(|_| LedgerError::Closed)?;
        Ok(Queued(rx))
    }

    /// The value last recorded under `name` by [`Ledger::append_recording`].
    pub fn recorded(&self, name: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.shared.store.recorded(name)
    }

    /// [`Ledger::append`] for callers outside an async runtime (CLI, tools, benchmarks).
    pub fn append_blocking(&self, entries: Vec<Vec<u8>>) -> Result<Vec<Receipt>, LedgerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let (req, rx) = self.request(entries, Vec::new())?;
        let tx = self.tx.as_ref().ok_or(LedgerError::Closed)?;
        tx.blocking_send(req).map_err(|_| LedgerError::Closed)?;
        rx.blocking_recv().map_err(|_| LedgerError::Closed)?
    }

    /// Sets the durability barrier: a function the writer runs before it writes each group, so that
    /// whatever it makes durable is on disk before any entry appended after it was made. The gateway
    /// passes the key store's shared flush, so a new subject key is on disk before anything sealed
    /// under it, at the cost of one flush per group rather than a hand-off per request. If it fails,
    /// the group is refused (nothing of it is written) and the ledger keeps taking appends. Set once.
    pub fn set_barrier(&self, barrier: Barrier) -> Result<(), LedgerError> {
        self.shared
            .barrier
            .set(barrier)
            .map_err(|_| LedgerError::Barrier("a barrier is already set".into()))
    }

    /// The latest published checkpoint.
    pub fn checkpoint(&self) -> Arc<SignedCheckpoint> {
        self.shared.latest()
    }

    /// When the published checkpoint was signed (Unix seconds; for a store that predates the
    /// record of signing times, when it was opened).
    pub fn checkpoint_signed_at(&self) -> i64 {
        self.shared.published_at.load(Ordering::Acquire)
    }

    /// Whether a failed write has stopped the writer (every append is refused until a restart).
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// The published tree size.
    pub fn size(&self) -> u64 {
        self.shared.latest().checkpoint.size
    }

    /// The key that signs new checkpoints; `None` while no version may (appends are refused).
    pub fn verifier(&self) -> Option<NoteVerifier> {
        let view = self
            .shared
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let now = crate::keys::unix_now();
        // An expired signer signs nothing (the writer checks the same), so it is not served either.
        view.current
            .clone()
            .filter(|_| view.expires_at.is_none_or(|at| now < at))
    }

    /// Every checkpoint key version and its history, as last given to [`Ledger::set_signing`] (or
    /// [`Ledger::open_with`]), oldest first.
    pub fn checkpoint_keys(&self) -> Vec<CheckpointKey> {
        self.shared
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .clone()
    }

    /// The log's name.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// The entry at `index`.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, LedgerError> {
        let size = self.size();
        if index >= size {
            return Err(LedgerError::NoSuchEntry { index, size });
        }
        let stored = self.shared.store.entry(index)?;
        stored
            .map(|e| e.bytes().to_vec())
            .ok_or_else(|| LedgerError::Corrupt(format!("entry {index} is missing")))
    }

    /// Entries `[start, end)`, clipped to the published size.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<(u64, Vec<u8>)>, LedgerError> {
        let end = end.min(self.size());
        let mut out = Vec::with_capacity(usize::try_from(end.saturating_sub(start)).unwrap_or(0));
        let mut expected = start;
        for item in self.shared.store.entries_from(start)? {
            let e = item?;
            if e.index >= end {
                break;
            }
            if e.index != expected {
                return Err(LedgerError::Corrupt(format!("entry {expected} is missing")));
            }
            out.push((e.index, e.bytes().to_vec()));
            expected += 1;
        }
        if expected < end {
            return Err(LedgerError::Corrupt(format!("entry {expected} is missing")));
        }
        Ok(out)
    }

    /// The audit path of entry `index` in the tree of `size` entries (size ≤ published size).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(size)?;
        inclusion_proof(&self.shared.store.snapshot()?, index, size).map_err(proof_error)
    }

    /// The proof that the tree of `from` entries is a prefix of the tree of `to` entries.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(to)?;
        consistency_proof(&self.shared.store.snapshot()?, from, to).map_err(proof_error)
    }

    /// The root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        self.check_size(size)?;
        if size == 0 {
            return Ok(Hash::empty());
        }
        range_root(&self.shared.store.snapshot()?, 0, size)
    }

    fn check_size(&self, asked: u64) -> Result<(), LedgerError> {
        let size = self.size();
        if asked > size {
            return Err(LedgerError::SizeBeyondTree { asked, size });
        }
        Ok(())
    }

    /// Stops taking appends, waits until everything queued is durable, and releases the store: when
    /// this returns the store can be opened again, by this process or another.
    ///
    /// Readers that still hold the shared state (a reader handle, an in-flight request) keep the
    /// database open until they are dropped; `serve` drops them before it closes.
    pub fn close(mut self) {
        self.shutdown();
        drop(self);
    }

    fn shutdown(&mut self) {
        self.tx.take();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("ledger writer thread panicked");
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type ReplyResult = Result<Vec<Receipt>, LedgerError>;

fn proof_error(e: ProofRequestError<LedgerError>) -> LedgerError {
    match e {
        ProofRequestError::Source(inner) => inner,
        other => LedgerError::BadProofRequest(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
