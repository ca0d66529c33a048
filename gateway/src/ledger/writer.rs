//! The one writer: a dedicated thread that owns appends. It drains whatever requests are queued into one
//! group, writes their entries, the new tree nodes and a freshly signed checkpoint in one atomic batch,
//! flushes once, and only then answers every request in the group. Under load the groups grow, so the
//! cost of the flush (an fsync) and of the signature is shared by more entries.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};

use super::attachments::{Attachment, Located};
use super::checkpoint::{Checkpoint, SignedCheckpoint};
use super::compact::CompactRange;
use super::error::LedgerError;
use super::hash::{Hash, leaf_hash};
use super::signing::{Signing, countersigned, record_keys};
use super::store::{Batch, stores_level};
use super::{Receipt, Shared};

/// One caller's entries, appended together, and where to send their receipts.
pub(crate) struct Request {
    pub(crate) entries: Vec<Vec<u8>>,
    /// Empty, or one per entry: what to keep beside it, in the same atomic write.
    pub(crate) attachments: Vec<Attachment>,
    /// A caller's state value to record in the same atomic write (see `Ledger::append_recording`).
    pub(crate) recorded: Option<(&'static str, Vec<u8>)>,
    pub(crate) reply: oneshot::Sender<Result<Vec<Receipt>, LedgerError>>,
}

/// What the writer is asked to do, in order.
pub(crate) enum Job {
    /// Append entries.
    Append(Request),
    /// Switch the checkpoint signer (see `Ledger::set_signing`), and answer with the head after it.
    Sign(
        Signing,
        oneshot::Sender<Result<Arc<SignedCheckpoint>, LedgerError>>,
    ),
}

/// What one group commit produced: each entry's (index, leaf hash), and the checkpoint covering them.
type Committed = (Vec<(u64, Hash)>, Arc<SignedCheckpoint>);

pub(crate) struct Writer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) signing: Signing,
    pub(crate) range: CompactRange,
    pub(crate) max_batch: usize,
    pub(crate) metrics: Option<crate::metrics::LedgerMetrics>,
}

impl Writer {
    /// Runs until every sender is gone, then returns after the last group is durable.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut group: Vec<Request> = Vec::new();
        // A signer switch found while gathering a group: it runs after that group, in queue order.
        let mut next_job: Option<Job> = None;
        loop {
            let Some(job) = next_job.take().or_else(|| rx.blocking_recv()) else {
                break;
            };
            let first = match job {
                Job::Append(first) => first,
                Job::Sign(signing, reply) => {
                    let _ = reply.send(self.switch(signing));
                    continue;
                }
            };
            let mut count = first.entries.len();
            group.push(first);
            while count < self.max_batch {
                match rx.try_recv() {
                    Ok(Job::Append(next)) => {
                        count += next.entries.len();
                        group.push(next);
                    }
                    Ok(sign) => {
                        next_job = Some(sign);
                        break;
                    }
                    Err(_) => break,
                }
            }
            if self.shared.poisoned.load(Ordering::Acquire) {
                for req in group.drain(..) {
                    let _ = req.reply.send(Err(LedgerError::Poisoned));
                }
                continue;
            }
            if self
                .signing
                .usable_signer(crate::keys::unix_now())
                .is_none()
            {
                // No key may sign: nothing is appended rather than signed by a compromised key.
                self.poison_if_recorded(&group, "no checkpoint key may sign");
                for req in group.drain(..) {
                    let _ = req.reply.send(Err(LedgerError::NoSigner));
                }
                continue;
            }
            if let Some(barrier) = self.shared.barrier.get()
                && let Err(why) = barrier()
            {
                // Nothing of the group was written: refuse it, and keep taking appends.
                tracing::error!(error = %why, "durability barrier failed; group refused");
                self.poison_if_recorded(&group, "the durability barrier failed");
                for req in group.drain(..) {
                    let _ = req.reply.send(Err(LedgerError::Barrier(why.clone())));
                }
                continue;
            }
            match self.commit(&group) {
                Ok((leaves, checkpoint)) => {
                    let mut leaves = leaves.into_iter();
                    for req in group.drain(..) {
                        let receipts = leaves
                            .by_ref()
                            .take(req.entries.len())
                            .map(|(index, leaf_hash)| Receipt {
                                index,
                                leaf_hash,
                                tree_size: checkpoint.checkpoint.size,
                                checkpoint: Arc::clone(&checkpoint),
                            })
                            .collect();
                        // A caller that gave up waiting still has its entries durably in the log.
                        let _ = req.reply.send(Ok(receipts));
                    }
                }
                Err(LedgerError::Sign(e)) => {
                    // Signing comes before anything is written: the group is refused, the tree
                    // stays as it was, and the next group tries the key again (a token back).
                    tracing::error!(error = %e, "the checkpoint key could not sign; group refused");
                    self.poison_if_recorded(&group, "the checkpoint key could not sign");
                    for req in group.drain(..) {
                        let _ = req.reply.send(Err(LedgerError::Sign(e.clone())));
                    }
                }
                Err(e) => {
                    // The batch may be half-known to the engine and our in-memory tree is now uncertain:
                    // stop taking writes rather than risk signing a tree that is not on disk.
                    tracing::error!(error = %e, "ledger write failed; refusing further appends");
                    self.shared.poisoned.store(true, Ordering::Release);
                    for req in group.drain(..) {
                        let _ = req.reply.send(Err(LedgerError::Poisoned));
                    }
                }
            }
        }
    }

    /// Switches the signer: records the keys' history and countersigns the head when the new signer
    /// has not signed it, in one durable write; then publishes.
    fn switch(&mut self, signing: Signing) -> Result<Arc<SignedCheckpoint>, LedgerError> {
        let mut batch = Batch::default();
        let recorded = self.shared.store.keys()?;
        let mut changed = record_keys(&mut batch, &recorded, &signing);
        let head = self.shared.latest();
        let countersigned = countersigned(&head, &signing)?.map(Arc::new);
        if let Some(new_head) = &countersigned {
            let size = new_head.checkpoint.size;
            batch.put_checkpoint(size, &new_head.note);
            batch.put_signed_at(size, crate::keys::unix_now());
            changed = true;
        }
        if changed {
            self.shared.store.commit(batch)?;
        }
        self.shared.set_keys(&signing);
        self.signing = signing;
        match countersigned {
            Some(new_head) => {
                self.shared.publish(Arc::clone(&new_head));
                Ok(new_head)
            }
            None => Ok(head),
        }
    }

    /// Writes one group; on success the new state is published before returning.
    /// A refused group that holds a recorded write (a caller keeping its progress beside the
    /// entries, as the consortium's state machine does, and queueing the next writes before this
    /// one is durable) stops the writer: taking a later write would leave a gap in that progress.
    fn poison_if_recorded(&self, group: &[Request], why: &str) {
        if group.iter().any(|r| r.recorded.is_some()) {
            tracing::error!(
                why,
                "a recorded write was refused; refusing further appends"
            );
            self.shared.poisoned.store(true, Ordering::Release);
        }
    }

    fn commit(&mut self, group: &[Request]) -> Result<Committed, LedgerError> {
        let mut range = self.range.clone();
        let mut batch = Batch::default();
        let mut leaves = Vec::with_capacity(group.iter().map(|r| r.entries.len()).sum());
        let mut records = Vec::with_capacity(leaves.capacity());
        let first = range.size();
        for entry in group.iter().flat_map(|r| r.entries.iter()) {
            let leaf = leaf_hash(entry);
            let index = range.size();
            range.push(leaf, |level, index, hash| {
                // Leaf hashes live beside their entries; only some interior levels are stored.
                if stores_level(level) {
                    batch.put_node(level, index, hash);
                }
            });
            leaves.push((index, leaf));
            records.push((leaf, entry.as_slice()));
        }
        for (name, value) in group.iter().filter_map(|r| r.recorded.as_ref()) {
            // In queue order: a later request's value replaces an earlier one's.
            batch.put_recorded(name, value);
        }
        if records.is_empty() {
            // Only recorded state: no new tree, so no new checkpoint to sign.
            self.shared.store.commit(batch)?;
            return Ok((leaves, self.shared.latest()));
        }
        batch.put_entries(first, &records);
        let size = range.size();
        let mut index = first;
        for req in group {
            for a in &req.attachments {
                let located = Located {
                    index,
                    tree_size: size,
                    extra: a.extra.clone(),
                };
                batch.put_attachment(&a.key, &located.encode());
                index += 1;
            }
            // Requests without attachments still occupy their entries' indices.
            if req.attachments.is_empty() {
                index += req.entries.len() as u64;
            }
        }
        let checkpoint = Checkpoint {
            origin: self.shared.origin.clone(),
            size,
            root: range.root(),
        };
        let now = crate::keys::unix_now();
        let signer = self
            .signing
            .usable_signer(now)
            .ok_or(LedgerError::NoSigner)?;
        let signed = Arc::new(checkpoint.sign(signer.as_ref())?);
        batch.put_checkpoint(range.size(), &signed.note);
        batch.put_signed_at(range.size(), now);
        batch.set_size(range.size());
        let started = std::time::Instant::now();
        self.shared.store.commit(batch)?;
        if let Some(m) = &self.metrics {
            m.commit_seconds.observe(started.elapsed().as_secs_f64());
            #[allow(clippy::cast_precision_loss)] // a group holds far fewer than 2^52 entries
            m.group_entries.observe(leaves.len() as f64);
        }
        self.range = range;
        self.shared.publish(Arc::clone(&signed));
        Ok((leaves, signed))
    }
}
