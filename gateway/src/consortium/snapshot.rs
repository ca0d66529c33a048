//! Raft snapshots of the ledger, streamed through files.
//!
//! A snapshot is the ledger's first `size` entries. The ledger is append-only and keeps every entry,
//! so a snapshot needs no copy of its own while nobody reads it: the member keeps only its
//! description, and writes the bytes ([`write_image`]) into an unnamed temporary file when Raft
//! first reads them (to send them to a member that is behind the purged Raft log). Raft asks for
//! the current snapshot at every start, too, and then only reads its description: making the bytes
//! lazily keeps a start from copying the whole ledger.
//!
//! The bytes ("image"): the 16-byte magic, the entry count (u64, big-endian), then each entry as a
//! u32 big-endian length and its bytes, and nothing after. The receiving member reads it with
//! [`ImageReader`], which bounds every length it is given (the bytes come from another member and
//! sit on disk).

use std::future::Future;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::ledger::Ledger;

/// The first bytes of every image.
pub const MAGIC: &[u8; 16] = b"ledgergate-snap1";

/// Largest entry an image may hold: no entry is larger than a Raft message
/// (`consortium.max_message_kib` ≤ 8 MiB), so this bounds what a bad length can make us allocate.
pub const MAX_ENTRY_BYTES: u32 = 16 << 20;

/// Entries read from the ledger (and handed on by the reader) at a time.
pub const PAGE: usize = 1024;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Writes the image of `ledger`'s first `size` entries into an unnamed temporary file in `dir`
/// (gone when closed) and returns it rewound.
pub fn write_image(ledger: &Ledger, size: u64, dir: &Path) -> io::Result<std::fs::File> {
    let mut file = tempfile::tempfile_in(dir)?;
    {
        let mut out = BufWriter::with_capacity(1 << 20, &mut file);
        out.write_all(MAGIC)?;
        out.write_all(&size.to_be_bytes())?;
        let mut at = 0;
        while at < size {
            let page = ledger
                .entries(at, (at + PAGE as u64).min(size))
                .map_err(io::Error::other)?;
            if page.is_empty() {
                return Err(io::Error::other(format!(
                    "the ledger holds {at} entries, fewer than the snapshot's {size}"
                )));
            }
            for (_, entry) in &page {
                write_entry(&mut out, entry)?;
            }
            at += page.len() as u64;
        }
        out.flush()?;
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

fn write_entry(out: &mut impl Write, entry: &[u8]) -> io::Result<()> {
    let len = u32::try_from(entry.len())
        .ok()
        .filter(|l| *l <= MAX_ENTRY_BYTES)
        .ok_or_else(|| invalid(format!("an entry of {} bytes", entry.len())))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(entry)
}

/// The image of `entries` in memory (tests and fuzzing).
pub fn encode_image(entries: &[Vec<u8>]) -> io::Result<Vec<u8>> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&(entries.len() as u64).to_be_bytes());
    for e in entries {
        write_entry(&mut out, e)?;
    }
    Ok(out)
}

/// Reads an image's entries in order, checking its framing as it goes: a wrong magic, a length over
/// [`MAX_ENTRY_BYTES`], fewer entries than the count, or bytes after the last are errors.
#[derive(Debug)]
pub struct ImageReader<R> {
    inner: R,
    count: u64,
    left: u64,
}

impl<R: Read> ImageReader<R> {
    /// Reads the image's header.
    pub fn new(mut inner: R) -> io::Result<ImageReader<R>> {
        let mut magic = [0; 16];
        inner
            .read_exact(&mut magic)
            .map_err(|_| invalid("not a ledgergate snapshot (too short)"))?;
        if &magic != MAGIC {
            return Err(invalid("not a ledgergate snapshot (wrong magic)"));
        }
        let mut count = [0; 8];
        inner
            .read_exact(&mut count)
            .map_err(|_| invalid("the snapshot ends in its header"))?;
        let count = u64::from_be_bytes(count);
        Ok(ImageReader {
            inner,
            count,
            left: count,
        })
    }

    /// How many entries the image says it holds.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The next entry, or `None` after the last (having checked nothing follows it).
    pub fn next_entry(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.left == 0 {
            let mut extra = [0; 1];
            return match self.inner.read(&mut extra)? {
                0 => Ok(None),
                _ => Err(invalid("bytes after the snapshot's last entry")),
            };
        }
        let at = self.count - self.left;
        let mut len = [0; 4];
        self.inner
            .read_exact(&mut len)
            .map_err(|_| invalid(format!("the snapshot ends before entry {at}")))?;
        let len = u32::from_be_bytes(len);
        if len > MAX_ENTRY_BYTES {
            return Err(invalid(format!(
                "the snapshot's entry {at} claims {len} bytes"
            )));
        }
        // `take` + `read_to_end` allocates as bytes arrive, not what the length claims.
        let mut entry = Vec::new();
        (&mut self.inner)
            .take(u64::from(len))
            .read_to_end(&mut entry)?;
        if entry.len() != len as usize {
            return Err(invalid(format!("the snapshot ends inside entry {at}")));
        }
        self.left -= 1;
        Ok(Some(entry))
    }

    /// Up to `max` next entries (empty after the last).
    pub fn next_page(&mut self, max: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut page = Vec::new();
        while page.len() < max {
            match self.next_entry()? {
                Some(e) => page.push(e),
                None => break,
            }
        }
        Ok(page)
    }
}

/// The bytes of one snapshot, as openraft reads and writes them: a file that is either being
/// received (written chunk by chunk, then installed) or made from the ledger when first read.
pub struct SnapshotData {
    state: State,
    /// A seek asked for before the file was made, done once it is.
    seek: Option<SeekFrom>,
}

/// Makes a snapshot's file (on a blocking thread).
type Make = Box<dyn FnOnce() -> io::Result<std::fs::File> + Send>;

enum State {
    Unmade(Make),
    Making(tokio::task::JoinHandle<io::Result<std::fs::File>>),
    Ready(tokio::fs::File),
    Failed,
}

impl std::fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Unmade(_) => "unmade",
            State::Making(_) => "making",
            State::Ready(_) => "ready",
            State::Failed => "failed",
        };
        f.debug_struct("SnapshotData")
            .field("state", &state)
            .finish()
    }
}

impl SnapshotData {
    /// An empty temporary file in `dir`, to receive a snapshot into.
    pub fn receiving(dir: &Path) -> io::Result<SnapshotData> {
        Ok(SnapshotData {
            state: State::Ready(tokio::fs::File::from_std(tempfile::tempfile_in(dir)?)),
            seek: None,
        })
    }

    /// The image of `ledger`'s first `size` entries, written into a temporary file in `dir` when
    /// first read.
    pub fn image_of(ledger: Arc<Ledger>, size: u64, dir: PathBuf) -> SnapshotData {
        SnapshotData {
            state: State::Unmade(Box::new(move || write_image(&ledger, size, &dir))),
            seek: None,
        }
    }

    /// The file, rewound (made first if it was not yet).
    pub async fn into_file(mut self) -> io::Result<std::fs::File> {
        std::future::poll_fn(|cx| self.poll_made(cx)).await?;
        let State::Ready(file) = self.state else {
            return Err(io::Error::other("the snapshot's file is gone"));
        };
        let mut file = file.into_std().await;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }

    /// Drives the file's making until it is ready.
    fn poll_made(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match std::mem::replace(&mut self.state, State::Failed) {
                State::Ready(f) => {
                    self.state = State::Ready(f);
                    return Poll::Ready(Ok(()));
                }
                State::Failed => {
                    return Poll::Ready(Err(io::Error::other("the snapshot could not be made")));
                }
                State::Unmade(make) => {
                    self.state = State::Making(tokio::task::spawn_blocking(make));
                }
                State::Making(mut job) => match Pin::new(&mut job).poll(cx) {
                    Poll::Pending => {
                        self.state = State::Making(job);
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(Ok(file))) => {
                        let mut file = tokio::fs::File::from_std(file);
                        if let Some(pos) = self.seek.take() {
                            Pin::new(&mut file).start_seek(pos)?;
                        }
                        self.state = State::Ready(file);
                    }
                    Poll::Ready(Ok(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(io::Error::other(e))),
                },
            }
        }
    }

    /// The file, once made (`None` while it is being made: `cx` is woken when it is).
    fn poll_file(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Pin<&mut tokio::fs::File>>> {
        ready!(self.poll_made(cx))?;
        match &mut self.state {
            State::Ready(f) => Poll::Ready(Ok(Pin::new(f))),
            _ => Poll::Ready(Err(io::Error::other("the snapshot could not be made"))),
        }
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        ready!(self.get_mut().poll_file(cx))?.poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.get_mut().poll_file(cx))?.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.get_mut().poll_file(cx))?.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.get_mut().poll_file(cx))?.poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        let me = self.get_mut();
        match &mut me.state {
            State::Ready(f) => Pin::new(f).start_seek(position),
            _ => {
                me.seek = Some(position);
                Ok(())
            }
        }
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let me = self.get_mut();
        // A seek asked for while the file is unmade is started when it is made (poll_made).
        ready!(me.poll_file(cx))?.poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;
    use crate::ledger::{Ed25519NoteSigner, LedgerConfig};

    fn read_all(bytes: &[u8]) -> io::Result<Vec<Vec<u8>>> {
        let mut r = ImageReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(e) = r.next_entry()? {
            out.push(e);
        }
        Ok(out)
    }

    proptest! {
        #[test]
        fn images_read_back_as_written(entries in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let image = encode_image(&entries).unwrap();
            prop_assert_eq!(read_all(&image).unwrap(), entries.clone());
            // Every shorter image (but a whole one) and every longer one is refused.
            for cut in 0..image.len() {
                prop_assert!(read_all(&image[..cut]).is_err(), "cut at {}", cut);
            }
            let mut longer = image.clone();
            longer.push(0);
            prop_assert!(read_all(&longer).is_err());
        }
    }

    #[test]
    fn bad_headers_and_lengths_are_refused() {
        let msg = |b: &[u8]| read_all(b).unwrap_err().to_string();
        assert_eq!(
            msg(b"ledgergate-snap2\0\0\0\0\0\0\0\0"),
            "not a ledgergate snapshot (wrong magic)"
        );
        assert_eq!(msg(b"ledger"), "not a ledgergate snapshot (too short)");
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&1u64.to_be_bytes());
        huge.extend_from_slice(&(MAX_ENTRY_BYTES + 1).to_be_bytes());
        assert_eq!(msg(&huge), "the snapshot's entry 0 claims 16777217 bytes");
        // A count far beyond the bytes: an error at the first missing entry, nothing allocated.
        let mut short = MAGIC.to_vec();
        short.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(msg(&short), "the snapshot ends before entry 0");
    }

    /// The lazy file is made on first use, from the ledger's first `size` entries only, and reads,
    /// seeks (before and after it is made) and writes work as on a plain file.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_snapshot_is_made_from_the_ledger_when_first_read() {
        let dir = tempfile::tempdir().unwrap();
        let signer = Arc::new(Ed25519NoteSigner::from_seed("o.example/log", &[9; 32]).unwrap());
        let ledger = Arc::new(
            Ledger::open(
                LedgerConfig::new(dir.path().join("l"), "o.example/log"),
                signer,
            )
            .unwrap(),
        );
        let entries: Vec<Vec<u8>> = (0..2500)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        ledger.append(entries.clone()).await.unwrap();
        let mut data = SnapshotData::image_of(Arc::clone(&ledger), 2000, dir.path().to_path_buf());
        let end = data.seek(SeekFrom::End(0)).await.unwrap();
        let image = encode_image(&entries[..2000]).unwrap();
        assert_eq!(end, image.len() as u64);
        data.seek(SeekFrom::Start(16)).await.unwrap();
        let mut count = [0; 8];
        data.read_exact(&mut count).await.unwrap();
        assert_eq!(u64::from_be_bytes(count), 2000);
        let mut file = data.into_file().await.unwrap();
        let mut all = Vec::new();
        file.read_to_end(&mut all).unwrap();
        assert_eq!(all, image);

        let mut rx = SnapshotData::receiving(dir.path()).unwrap();
        rx.write_all(&image).await.unwrap();
        rx.flush().await.unwrap();
        let file = rx.into_file().await.unwrap();
        assert_eq!(read_all_from(file).unwrap(), entries[..2000]);
    }

    fn read_all_from(file: std::fs::File) -> io::Result<Vec<Vec<u8>>> {
        let mut r = ImageReader::new(io::BufReader::new(file))?;
        let mut out = Vec::new();
        loop {
            let page = r.next_page(300)?;
            if page.is_empty() {
                return Ok(out);
            }
            out.extend(page);
        }
    }
}
