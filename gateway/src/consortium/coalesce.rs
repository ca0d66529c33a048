//! Group commit before Raft: submissions that arrive while this member's proposals are in flight
//! wait, and go together as one proposal when one of the [`MAX_IN_FLIGHT`] slots frees.
//!
//! Why: every proposal is one Raft entry, and each entry costs a synced append at the leader, a
//! round trip to the followers with a synced append there, and a synced apply on every member. One
//! record per proposal made single-record ingest latency-bound at a quarter of the single node
//! (docs/consortium.md, Performance). An idle member proposes a submission at once (a free slot is
//! waiting for it), so coalescing adds no latency; a busy one sends fewer, larger entries.

use std::sync::{Arc, Weak};

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::ledger::{Attachment, LedgerError};

/// Proposals of one member in flight at once. Four keep the Raft pipeline busy (a proposal's
/// round trip overlaps the next one's sync) while the rest of the load waits to be coalesced.
pub const MAX_IN_FLIGHT: usize = 4;

/// Submissions waiting for a slot, at most (then submitters wait: back-pressure, not memory).
const MAX_WAITING: usize = 4096;

/// One submission's part: its entries with their attachments, and where its receipts (`R`, one per
/// entry) go.
struct Part<R> {
    items: Vec<(Vec<u8>, Attachment)>,
    bytes: usize,
    reply: oneshot::Sender<Result<Vec<R>, LedgerError>>,
}

/// What proposes a coalesced group: the consortium member (held weakly by the task, so that the
/// member can be dropped).
pub trait Propose: Send + Sync + 'static {
    /// What applying an entry answers (the ledger's receipt).
    type Receipt: Send + 'static;

    /// Proposes `items` as one proposal; answers once they are committed and applied here, one
    /// receipt per entry, in order.
    fn propose_group(
        &self,
        items: Vec<(Vec<u8>, Attachment)>,
    ) -> impl std::future::Future<Output = Result<Vec<Self::Receipt>, LedgerError>> + Send;
}

/// The queue in front of a member's proposals.
pub struct Coalescer<R> {
    queue: mpsc::Sender<Part<R>>,
}

impl<R> Clone for Coalescer<R> {
    fn clone(&self) -> Self {
        Coalescer {
            queue: self.queue.clone(),
        }
    }
}

impl<R> std::fmt::Debug for Coalescer<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("waiting", &(MAX_WAITING - self.queue.capacity()))
            .finish()
    }
}

impl<R: Send + 'static> Coalescer<R> {
    /// Starts the task that drains the queue into proposals of at most `max_bytes` of entries
    /// (a part larger than that goes alone) for `member`.
    pub fn start<P: Propose<Receipt = R>>(member: Weak<P>, max_bytes: usize) -> Coalescer<R> {
        let (queue, waiting) = mpsc::channel(MAX_WAITING);
        tokio::spawn(drain(member, waiting, max_bytes));
        Coalescer { queue }
    }

    /// Proposes `items` with whatever else is waiting; answers their receipts, in order.
    pub async fn submit(&self, items: Vec<(Vec<u8>, Attachment)>) -> Result<Vec<R>, LedgerError> {
        let (reply, receipts) = oneshot::channel();
        let bytes = items.iter().map(|(e, _)| e.len()).sum();
        self.queue
            .send(Part {
                items,
                bytes,
                reply,
            })
            .await
            .map_err(|_| LedgerError::NotReplicated("this member stopped proposing".into()))?;
        receipts
            .await
            .map_err(|_| LedgerError::NotReplicated("this member stopped proposing".into()))?
    }
}

async fn drain<P: Propose>(
    member: Weak<P>,
    mut waiting: mpsc::Receiver<Part<P::Receipt>>,
    max_bytes: usize,
) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut carried: Option<Part<P::Receipt>> = None;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(p) => p,
            None => match waiting.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = first.bytes;
        let mut group = vec![first];
        while let Ok(next) = waiting.try_recv() {
            if bytes + next.bytes > max_bytes {
                carried = Some(next);
                break;
            }
            bytes += next.bytes;
            group.push(next);
        }
        let Some(member) = member.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let _slot = slot;
            propose(&*member, group).await;
        });
    }
}

/// Proposes a group and hands each part its receipts (or the error).
async fn propose<P: Propose>(member: &P, group: Vec<Part<P::Receipt>>) {
    let mut counts = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    let mut items = Vec::new();
    for part in group {
        counts.push(part.items.len());
        replies.push(part.reply);
        items.extend(part.items);
    }
    match member.propose_group(items).await {
        Ok(receipts) if receipts.len() == counts.iter().sum::<usize>() => {
            let mut receipts = receipts.into_iter();
            for (n, reply) in counts.into_iter().zip(replies) {
                let _ = reply.send(Ok(receipts.by_ref().take(n).collect()));
            }
        }
        Ok(receipts) => {
            let why = format!(
                "{} receipts for {} entries",
                receipts.len(),
                counts.iter().sum::<usize>()
            );
            for reply in replies {
                let _ = reply.send(Err(LedgerError::NotReplicated(why.clone())));
            }
        }
        Err(e) => {
            // Every part failed alike; the error itself goes to the first, the others get it as
            // "not replicated" (what it means for them: not committed and applied).
            let why = match &e {
                LedgerError::NotReplicated(why) => why.clone(),
                other => other.to_string(),
            };
            let mut first = Some(e);
            for reply in replies {
                let e = first
                    .take()
                    .unwrap_or_else(|| LedgerError::NotReplicated(why.clone()));
                let _ = reply.send(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// Records the groups it is asked to propose; answers after `delay` with one receipt per entry
    /// (index = the entry's first byte).
    struct Recorder {
        groups: Mutex<Vec<usize>>,
        delay: Duration,
        fail: bool,
    }

    impl Propose for Recorder {
        type Receipt = u64;

        async fn propose_group(
            &self,
            items: Vec<(Vec<u8>, Attachment)>,
        ) -> Result<Vec<u64>, LedgerError> {
            self.groups.lock().unwrap().push(items.len());
            tokio::time::sleep(self.delay).await;
            if self.fail {
                return Err(LedgerError::NotReplicated("no leader".into()));
            }
            Ok(items.iter().map(|(e, _)| u64::from(e[0])).collect())
        }
    }

    fn item(n: u8) -> (Vec<u8>, Attachment) {
        (
            vec![n; 10],
            Attachment {
                key: vec![n],
                extra: Vec::new(),
            },
        )
    }

    /// An idle member proposes at once; while its slots are busy, submissions wait and go as one
    /// group; each gets exactly its own receipts, in order; no group exceeds the byte bound unless
    /// one part alone does.
    #[tokio::test]
    async fn busy_slots_coalesce_submissions_and_each_gets_its_receipts() {
        let member = Arc::new(Recorder {
            groups: Mutex::new(Vec::new()),
            delay: Duration::from_millis(100),
            fail: false,
        });
        let c = Coalescer::start(Arc::downgrade(&member), 45);
        // Alone: proposed at once, not waiting for company.
        let r = c.submit(vec![item(1)]).await.unwrap();
        assert_eq!(r, vec![1]);
        assert_eq!(*member.groups.lock().unwrap(), vec![1]);
        // 40 at once: 4 go into the four slots; the other 36 wait and go 4 per group (45 bytes).
        let all: Vec<_> = (0..40u8)
            .map(|n| {
                let c = c.clone();
                tokio::spawn(async move { c.submit(vec![item(n), item(n + 100)]).await })
            })
            .collect();
        for (n, h) in (0..40u8).zip(all) {
            let r = h.await.unwrap().unwrap();
            assert_eq!(r, vec![u64::from(n), u64::from(n) + 100]);
        }
        let groups = member.groups.lock().unwrap().clone();
        assert_eq!(groups.iter().sum::<usize>(), 81);
        assert!(groups.len() < 30, "{groups:?}");
        assert!(groups.iter().all(|g| *g <= 4), "{groups:?}");
        // A part over the bound goes alone.
        let big: Vec<_> = (0..9u8).map(item).collect();
        assert_eq!(c.submit(big).await.unwrap().len(), 9);
    }

    #[tokio::test]
    async fn a_failed_group_fails_every_part_and_a_dropped_member_stops_it() {
        let member = Arc::new(Recorder {
            groups: Mutex::new(Vec::new()),
            delay: Duration::from_millis(10),
            fail: true,
        });
        let c = Coalescer::start(Arc::downgrade(&member), 1 << 20);
        let all: Vec<_> = (0..10u8)
            .map(|n| {
                let c = c.clone();
                tokio::spawn(async move { c.submit(vec![item(n)]).await })
            })
            .collect();
        for h in all {
            let e = h.await.unwrap().unwrap_err();
            assert_eq!(
                e.to_string(),
                LedgerError::NotReplicated("no leader".into()).to_string()
            );
        }
        drop(member);
        let e = c.submit(vec![item(1)]).await.unwrap_err();
        assert!(e.to_string().contains("stopped proposing"), "{e}");
    }
}
