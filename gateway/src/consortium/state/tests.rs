//! The state machine's unit tests: applying, and snapshots cut short.

use openraft::{CommittedLeaderId, EntryPayload};

use super::*;
use crate::consortium::types::Proposal;
use crate::ledger::{Ed25519NoteSigner, LedgerConfig};

const ORIGIN: &str = "consortium.example/log";

fn ledger(dir: &std::path::Path) -> Arc<Ledger> {
    let signer = Arc::new(Ed25519NoteSigner::from_seed(ORIGIN, &[9; 32]).unwrap());
    Arc::new(Ledger::open(LedgerConfig::new(dir.join("ledger"), ORIGIN), signer).unwrap())
}

fn proposal(index: u64, origin: NodeId, tag: u64, entries: &[&str]) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            origin,
            tag,
            started: 7,
            entries: entries.iter().map(|e| e.as_bytes().to_vec()).collect(),
        }),
    }
}

/// Applying appends each proposal's entries in order; this member's own proposal gets its
/// attachments in the same write and its receipts; another member's gets neither; the applied
/// log id survives a restart, so nothing is applied twice.
#[tokio::test(flavor = "multi_thread")]
async fn proposals_are_appended_once_with_their_own_attachments_only() {
    let dir = tempfile::tempdir().unwrap();
    let me = Proposer { id: 1, started: 7 };
    let pending = Pending::default();
    let (reply, receipts) = oneshot::channel();
    pending.insert(
        5,
        PendingWrite {
            attachments: vec![Attachment {
                key: b"mine".to_vec(),
                extra: b"sealed".to_vec(),
            }],
            reply,
        },
    );
    let l = ledger(dir.path());
    let mut m = LedgerMachine::open(
        Arc::clone(&l),
        me,
        pending.clone(),
        dir.path().to_path_buf(),
    )
    .unwrap();
    let applied = m
        .apply([
            proposal(1, 2, 5, &["theirs-a", "theirs-b"]),
            proposal(2, 1, 5, &["mine"]),
            // Another run of member 1 (`started` differs): not this process's proposal.
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), 3),
                payload: EntryPayload::Normal(Proposal {
                    origin: 1,
                    tag: 5,
                    started: 6,
                    entries: vec![b"old run".to_vec()],
                }),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        applied,
        vec![
            Applied {
                first_index: 0,
                tree_size: 2
            },
            Applied {
                first_index: 2,
                tree_size: 3
            },
            Applied {
                first_index: 3,
                tree_size: 4
            },
        ]
    );
    // Applying queued the writes; this member's submission is answered once they are durable.
    m.drain().await.unwrap();
    assert_eq!(l.size(), 4);
    assert_eq!(l.entry(2).unwrap(), b"mine");
    let receipts = receipts.await.unwrap().unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].index, 2);
    assert_eq!(
        l.located(b"mine").unwrap().map(|x| (x.index, x.extra)),
        Some((2, b"sealed".to_vec()))
    );
    assert!(pending.take(5).is_none());
    let (last, _) = m.applied_state().await.unwrap();
    assert_eq!(last.map(|l| l.index), Some(3));
    drop(m);
    let l = Arc::into_inner(l).unwrap();
    l.close();

    // Restarted: the applied id comes back from the ledger, with the entries.
    let l = ledger(dir.path());
    let mut m = LedgerMachine::open(
        Arc::clone(&l),
        me,
        Pending::default(),
        dir.path().to_path_buf(),
    )
    .unwrap();
    let (last, _) = m.applied_state().await.unwrap();
    assert_eq!(last.map(|l| l.index), Some(3));
    assert_eq!(l.size(), 4);
}

/// Entries `first..first + n` as bytes.
fn numbered(first: usize, n: usize) -> Vec<Vec<u8>> {
    (first..first + n)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect()
}

fn batch(index: u64, entries: Vec<Vec<u8>>) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            origin: 2,
            tag: index,
            started: 1,
            entries,
        }),
    }
}

async fn settled(l: &Ledger, size: u64) {
    for _ in 0..500 {
        if l.size() == size {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the ledger holds {} entries, not {size}", l.size());
}

const ME: Proposer = Proposer { id: 1, started: 7 };

/// The member over `l` (in `dir`), opened as after a restart.
fn reopen(l: &Arc<Ledger>, dir: &tempfile::TempDir) -> LedgerMachine {
    LedgerMachine::open(Arc::clone(l), ME, Pending::default(), dir.path().into()).unwrap()
}

/// Installs `image` as the snapshot `meta` describes.
async fn install(
    m: &mut LedgerMachine,
    meta: &SnapshotMeta<NodeId, Member>,
    image: &[u8],
) -> Result<()> {
    let mut data = m.begin_receiving_snapshot().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut data, image)
        .await
        .unwrap();
    m.install_snapshot(meta, data).await
}

/// A fresh member that received `image` cut short (refused: it ends early) and wrote its first two
/// pages, stopped: its directory and ledger.
async fn cut_short(
    image: &[u8],
    meta: &SnapshotMeta<NodeId, Member>,
) -> (tempfile::TempDir, Arc<Ledger>) {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    let mut m = reopen(&l, &dir);
    let err = install(&mut m, meta, image).await.unwrap_err();
    assert!(err.to_string().contains("ends"), "{err}");
    settled(&l, 2048).await;
    assert_eq!(m.applied_state().await.unwrap().0, None);
    (dir, l)
}

/// A snapshot install cut short (here: the image ends early, as when a member crashes mid-way)
/// leaves the pages it wrote in the ledger but not applied. After a restart, the committed log
/// brings the member up to date without appending them twice, the snapshot installs on top of
/// them, and a log entry that differs from them is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_cut_short_is_resumed_without_duplicates() {
    // The source member: 3,000 entries in three proposals, and its snapshot's image.
    let src = tempfile::tempdir().unwrap();
    let sl = ledger(src.path());
    let mut source = reopen(&sl, &src);
    let proposals: Vec<_> = (0..3usize)
        .map(|k| batch(k as u64 + 1, numbered(k * 1000, 1000)))
        .collect();
    source.apply(proposals.clone()).await.unwrap();
    let snap = source
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(snap.meta.last_log_id.map(|l| l.index), Some(3));
    let mut image = Vec::new();
    std::io::Read::read_to_end(&mut snap.snapshot.into_file().await.unwrap(), &mut image).unwrap();
    assert_eq!(image, snapshot::encode_image(&numbered(0, 3000)).unwrap());

    // The new member receives the image cut inside its third page: two pages are written.
    let cut = image.len() - 4000;
    let (dir, l) = cut_short(&image[..cut], &snap.meta).await;

    // Restarted: nothing applied; the log's proposals agree with what it holds and fill the rest.
    let mut m = reopen(&l, &dir);
    assert_eq!(m.applied_state().await.unwrap().0, None);
    let applied = m.apply(proposals.clone()).await.unwrap();
    assert_eq!(
        applied[2],
        Applied {
            first_index: 2000,
            tree_size: 3000
        }
    );
    m.drain().await.unwrap();
    assert_eq!(l.size(), 3000);
    let all: Vec<Vec<u8>> = l
        .entries(0, 3000)
        .unwrap()
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(all, numbered(0, 3000));
    drop(m);

    // The same again, but the snapshot comes whole after the restart: it installs on top.
    let (dir2, l2) = cut_short(&image[..cut], &snap.meta).await;
    let mut m = reopen(&l2, &dir2);
    install(&mut m, &snap.meta, &image).await.unwrap();
    assert_eq!(m.applied_state().await.unwrap().0.map(|l| l.index), Some(3));
    assert_eq!(l2.size(), 3000);
    drop(m);
    assert_eq!(reopen(&l2, &dir2).next_index, 3000);

    // And a log entry that differs from what a cut-short install left is refused.
    let (dir3, l3) = cut_short(&image[..cut], &snap.meta).await;
    let mut m = reopen(&l3, &dir3);
    let mut forged = numbered(0, 1000);
    forged[999] = b"{\"n\":\"forged\"}".to_vec();
    let err = m.apply([batch(1, forged.clone())]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("a committed entry at index 999 differs"),
        "{err}"
    );
    // And so is a snapshot that differs from it.
    let mut other = forged;
    other.extend(numbered(1000, 2000));
    let err = install(&mut m, &snap.meta, &snapshot::encode_image(&other).unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the snapshot's entry at index 999 differs"),
        "{err}"
    );
    assert_eq!(l3.size(), 2048);
}

/// A proposal with an audit entry that does not name its proposer (or a forged membership entry)
/// is applied as nothing, and its proposer's submission gets an error; one whose audit entry names
/// its proposer is appended.
#[tokio::test(flavor = "multi_thread")]
async fn audit_entries_are_attributed_to_the_member_that_proposed_them() {
    let dir = tempfile::tempdir().unwrap();
    let me = Proposer { id: 1, started: 7 };
    let pending = Pending::default();
    let (reply, answer) = oneshot::channel();
    pending.insert(
        9,
        PendingWrite {
            attachments: Vec::new(),
            reply,
        },
    );
    let l = ledger(dir.path());
    let mut m = LedgerMachine::open(Arc::clone(&l), me, pending, dir.path().to_path_buf()).unwrap();
    let member = |name: &str| Member {
        name: name.into(),
        address: "127.0.0.1:1".into(),
        identity: "ab".repeat(32),
    };
    let members = openraft::Membership::new(
        vec![std::collections::BTreeSet::from([1, 2])],
        std::collections::BTreeMap::from([(1, member("a")), (2, member("b"))]),
    );
    let act = |who: &str| {
        crate::audit::Event {
            kind: "consortium.member_remove",
            actor: "officer".into(),
            target: "member 1".into(),
            outcome: crate::audit::Outcome::Requested,
            reason: None,
            details: serde_json::Value::Null,
        }
        .entry(Some(0), Some(who))
    };
    let as_text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    let forged_act = as_text(act("a"));
    let own_act = as_text(act("b"));
    let forged_membership = as_text(super::super::audit_entry::membership(
        &LogId::new(CommittedLeaderId::new(1, 1), 1),
        &members,
    ));
    let applied = m
        .apply([
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
                payload: EntryPayload::Membership(members.clone()),
            },
            // Member 2 ("b") in member 1's ("a") name: refused.
            proposal(2, 2, 1, &["record", &forged_act]),
            // A membership entry proposed by a member (this one): refused, and its submission told.
            proposal(3, 1, 9, &[&forged_membership]),
            // Member 2's own act: appended.
            proposal(4, 2, 2, &[&own_act]),
        ])
        .await
        .unwrap();
    let sizes: Vec<u64> = applied.iter().map(|a| a.tree_size).collect();
    assert_eq!(sizes, vec![1, 1, 1, 2]);
    assert!(answer.await.unwrap().is_err());
    m.drain().await.unwrap();
    let held: Vec<Vec<u8>> = l
        .entries(0, l.size())
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(held.len(), 2);
    assert_eq!(held[1], own_act.into_bytes());
}
