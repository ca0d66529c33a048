//! Writing the audit trail into the ledger (events of the node's own, and the key store's journal)
//! and reading it back a page at a time with proofs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Pipeline, PipelineError, REQUEST_MAC_KEY};
use crate::audit::{Event, journal, listing};
use crate::ledger::{Attachment, LedgerError, Receipt};

/// How long an audit append waits before it is tried again after the consortium did not commit it.
const AUDIT_RETRY: Duration = Duration::from_millis(250);
/// Journal events read from the key store at a time.
const JOURNAL_PAGE: usize = 256;
/// Ledger entries a listing reads at a time.
const READ_CHUNK: u64 = 1000;

/// How far the key store's journal is copied into the ledger.
#[derive(Debug, Default)]
pub(crate) struct JournalCopy {
    /// The key store's id and the next sequence number to copy, once found; held while copying, so
    /// copies are in order and one at a time.
    next: tokio::sync::Mutex<Option<([u8; 8], u64)>>,
    /// The last sequence number known to be on the ledger (for a cheap "anything to copy?").
    copied_through: AtomicU64,
}

impl Pipeline {
    /// Appends an audit event, stamped now, to the ledger (through the consortium when this node is
    /// a member); answers once it is durable (committed, on a consortium). On a consortium, an
    /// append that was not committed (no leader for a moment, a leader that moved) is tried again
    /// until `within` has passed: an audited act must not go unrecorded because of an election. (One
    /// that timed out but committed late is then in the trail twice; an entry is never lost for it.)
    pub async fn record_audit(
        &self,
        event: &Event,
        within: Duration,
    ) -> Result<Receipt, LedgerError> {
        self.record_audit_at(event, crate::keys::unix_now(), None, within)
            .await
    }

    /// [`Pipeline::record_audit`] with the event's own time, and an attachment key that locates it
    /// (default: the SHA-256 of the entry).
    async fn record_audit_at(
        &self,
        event: &Event,
        time: keymgr::Timestamp,
        locator: Option<Vec<u8>>,
        within: Duration,
    ) -> Result<Receipt, LedgerError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // On a consortium the entry names this member; every member checks that against the
            // member that proposed it (consortium::audit_entry).
            let member = self.consortium.get().map(|c| c.name().to_owned());
            let entry = event.entry(Some(time), member.as_deref());
            let attachment = match &locator {
                Some(key) => Attachment {
                    key: key.clone(),
                    extra: Vec::new(),
                },
                None => crate::audit::attachment(&entry),
            };
            match self.append_with(vec![(entry, attachment)]).await {
                Ok(mut receipts) => {
                    return receipts
                        .pop()
                        .ok_or_else(|| LedgerError::Corrupt("an append without a receipt".into()));
                }
                Err(LedgerError::NotReplicated(_))
                    if tokio::time::Instant::now() + AUDIT_RETRY < deadline =>
                {
                    tokio::time::sleep(AUDIT_RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the key store's journal has events not yet copied into the ledger.
    pub fn journal_behind(&self) -> bool {
        self.keys.last_audit_seq() > self.journal.copied_through.load(Ordering::Acquire)
    }

    /// Copies the key store's journal events that are not on the ledger yet into it, in order, each
    /// as an audit entry (`audit::journal`); answers how many it copied. Each append may wait up to
    /// `within` for a consortium to commit it.
    pub async fn copy_journal(&self, within: Duration) -> Result<u64, PipelineError> {
        let mut next = self.journal.next.lock().await;
        // What is read below must be what survives a crash: an event copied but then lost by the
        // key store would leave its sequence number looking copied when a later event reuses it.
        self.keys.sync()?;
        let last = self.keys.last_audit_seq();
        let (store, mut seq) = match *next {
            Some(found) => found,
            None => {
                let Some(first) = self.keys.audit(0, 1)?.pop() else {
                    return Ok(0);
                };
                let store = journal::store_id(&first);
                let from = journal::first_missing(last, |seq| {
                    self.ledger
                        .located(&journal::locator(&store, seq))
                        .map(|l| l.is_some())
                })?;
                if from > 1 {
                    tracing::info!(
                        copied = from - 1,
                        "key store journal: resuming its copy into the ledger"
                    );
                }
                (store, from)
            }
        };
        let mut copied = 0;
        while seq <= last {
            let page = self.keys.audit(seq - 1, JOURNAL_PAGE)?;
            // A journal is dense up to `last`; should it not be, stop rather than spin.
            if page.first().is_none_or(|e| e.seq > last) {
                break;
            }
            for e in page.iter().take_while(|e| e.seq <= last) {
                let event = journal::event(&store, e, |name| self.subject_ref(name));
                self.record_audit_at(&event, e.at, Some(journal::locator(&store, e.seq)), within)
                    .await?;
                seq = e.seq + 1;
                *next = Some((store, seq));
                self.journal.copied_through.store(e.seq, Ordering::Release);
                copied += 1;
            }
        }
        *next = Some((store, seq));
        self.journal
            .copied_through
            .store(seq.saturating_sub(1), Ordering::Release);
        Ok(copied)
    }

    /// The keyed reference that stands for a data subject's key on the ledger: an HMAC of the key's
    /// name under the node's request key, so nobody without the node's keys can test a guessed
    /// subject id against it (the key's name is an unkeyed hash of the id). An officer who knows the
    /// id finds the subject's entries by computing the same with the key version the reference
    /// names. The input is a JSON array, never an object, so it cannot collide with a request MAC.
    pub(crate) fn subject_ref(&self, key_name: &str) -> String {
        match self.keys.primary(REQUEST_MAC_KEY, crate::keys::unix_now()) {
            Ok(key) => policies::pseudonym(
                key.material.expose(),
                key.version,
                &json!(["subject-ref", key_name]),
            ),
            Err(e) => {
                tracing::error!(error = %e, "no request key for a subject reference");
                "(reference unavailable)".to_owned()
            }
        }
    }

    /// A page of the audit trail: the audit entries `filter` keeps among the ledger's entries from
    /// `start` on, at most `limit` of them, each with its inclusion proof against the latest
    /// checkpoint (in the answer). At most [`listing::SCAN_BUDGET`] entries are read; `next` says
    /// where the following page starts (absent at the end). Blocking: it reads the store.
    pub fn audit_page(
        &self,
        start: u64,
        limit: usize,
        filter: &listing::Parsed,
    ) -> Result<Value, PipelineError> {
        let checkpoint = self.ledger.checkpoint();
        let size = checkpoint.checkpoint.size;
        let end = start.saturating_add(listing::SCAN_BUDGET).min(size);
        let limit = limit.clamp(1, listing::MAX_PAGE);
        let mut listed = Vec::new();
        let mut next = (end < size).then_some(end);
        let mut from = start;
        'read: while from < end {
            let to = from.saturating_add(READ_CHUNK).min(end);
            for (index, bytes) in self.ledger.entries(from, to)? {
                let Some(entry) = filter.keeps(&bytes) else {
                    continue;
                };
                listed.push(json!({
                    "index": index,
                    "entry": entry,
                    "proof": self.proof_at(index, size)?,
                }));
                if listed.len() == limit {
                    next = (index + 1 < size).then_some(index + 1);
                    break 'read;
                }
            }
            from = to;
        }
        Ok(json!({
            "entries": listed,
            "tree_size": size,
            "checkpoint": checkpoint.note,
            "next": next,
        }))
    }
}
