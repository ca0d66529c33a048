//! Sessions over TCP, with no task between the application and the socket. The [`Session`] and
//! the socket's write half sit under one lock shared by the senders, the receiver and the
//! connection's task: a sender seals its message straight into the bytes the socket writes and
//! writes them itself; the receiver ([`Channel::recv`]) reads the socket and opens frames in its
//! own task; the connection's task only writes what the socket could not take at once and runs
//! the timers. Handing each message to another task instead cost a quarter of the throughput on
//! the sending side and as much as the socket's copy on the receiving one. Accepting applies the
//! handshake abuse limits before any cryptographic work: a per-source-address handshake rate
//! (governor's keyed GCRA limiter, pruned as it goes) and a cap on handshakes in progress. The
//! session's own timers bound a handshake to `rekey_timeout` (5 s) and check the peer's
//! authorisation every tick, so a revoked peer loses its session within [`TICK`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc};

use super::frame::{FrameReader, FrameWriter};
use super::{ChannelError, Config, Identity, Output, Session};
use crate::metrics::ChannelMetrics;

/// How often a session's timers run (and its peer's authorisation is checked).
pub const TICK: Duration = Duration::from_millis(100);
/// A busy connection reads up to this many bytes at once.
const BATCH: usize = 256 * 1024;

/// Limits on handshakes a listener accepts.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    /// Handshakes per second from one source address (sustained).
    pub per_source_per_second: NonZeroU32,
    /// Handshakes from one source address at once above that rate.
    pub per_source_burst: NonZeroU32,
    /// Handshakes in progress at once, from everyone.
    pub max_half_open: usize,
}

impl Default for AcceptLimits {
    fn default() -> Self {
        AcceptLimits {
            per_source_per_second: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
            per_source_burst: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            max_half_open: 64,
        }
    }
}

/// An established channel: whole application messages both ways. Dropping it closes the session
/// (senders then fail with `Closed`).
///
/// [`Channel::recv`] reads the socket and opens frames in the receiving task itself: a message is
/// opened, delivered and used on one thread, with no hand-off from another task (which cost as
/// much as the socket's copy).
#[derive(Debug)]
pub struct Channel {
    peer: Identity,
    sender: ChannelSender,
    rx: Receiving,
}

/// Sends on a channel from anywhere; clones share the channel.
///
/// A message is sealed and written in the sending task (no hand-off to the connection's task:
/// that hop cost a quarter of the channel's throughput), straight from the caller's buffer into
/// the bytes the socket writes. What the socket does not take at once waits for the connection's
/// task, which writes it as the socket drains. Sealing and queueing happen under one lock with no
/// await between them, so frames go out in nonce order and a send dropped half way (a client
/// gone, a timeout) never leaves half a frame on the wire.
#[derive(Debug, Clone)]
pub struct ChannelSender {
    shared: Arc<Shared>,
    /// Held by every sender: the connection's task ends when the last one is dropped.
    _alive: mpsc::Sender<()>,
}

impl ChannelSender {
    /// Sends one message; `Closed` once the session has ended.
    pub async fn send(&self, message: &[u8]) -> Result<(), ChannelError> {
        loop {
            // Made before looking, so that room freed after the look still wakes this send.
            let room = self.shared.room.notified();
            {
                let mut guard = self.shared.lock();
                let link = &mut *guard;
                if link.ended {
                    return Err(ChannelError::Closed);
                }
                if link.out.len() < BACKLOG {
                    let now = self.shared.clock.elapsed();
                    let sent = match link.session.as_mut() {
                        Some(session) => session.send_to(now, message, &mut link.out),
                        None => Err(ChannelError::Closed),
                    }
                    .and_then(|()| self.shared.flush(link));
                    return sent.map_err(|e| {
                        self.shared.end(link, e);
                        ChannelError::Closed
                    });
                }
            }
            room.await;
        }
    }
}

impl Channel {
    /// A sender for other tasks, while this handle keeps receiving.
    pub fn sender(&self) -> ChannelSender {
        self.sender.clone()
    }

    /// The authenticated peer.
    pub fn peer(&self) -> Identity {
        self.peer
    }

    /// Sends one message; `Closed` once the session has ended.
    pub async fn send(&self, message: &[u8]) -> Result<(), ChannelError> {
        self.sender.send(message).await
    }

    /// The next message; `None` once the session has ended (then [`Channel::ended`] says why).
    /// Cancel-safe: a message is either returned or kept for the next call.
    ///
    /// The session's frames (rekeys, keepalives) are read here too, so a channel must be
    /// received from for as long as it is used, as every user here does (a peer that sends and
    /// is never read from times out, as it would if its messages queued unread).
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        let shared = Arc::clone(&self.sender.shared);
        loop {
            if let Some(message) = self.rx.queue.pop_front() {
                return Some(message);
            }
            // Made before looking, so that an end after the look still wakes this call.
            let closed = shared.closed.notified();
            let Some(rd) = self.rx.rd.as_ref().filter(|_| !shared.lock().ended) else {
                // Done with: the socket closes now, not when the channel is dropped.
                self.rx.rd = None;
                return None;
            };
            tokio::select! {
                ready = rd.readable() => {
                    if let Err(e) = ready.map_err(|e| ChannelError::Io(e.to_string()))
                        .and_then(|()| self.rx.pump(&shared))
                    {
                        shared.end(&mut shared.lock(), e);
                    }
                }
                () = closed => {}
            }
        }
    }

    /// Why the session ended, once it has.
    pub async fn ended(&mut self) -> ChannelError {
        let shared = &self.sender.shared;
        loop {
            let closed = shared.closed.notified();
            {
                let link = shared.lock();
                if link.ended {
                    return link.reason.clone().unwrap_or(ChannelError::Closed);
                }
            }
            closed.await;
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let shared = &self.sender.shared;
        shared.end(&mut shared.lock(), ChannelError::Closed);
    }
}

/// The receiving side of a channel: the socket's read half and what was read but not yet taken.
struct Receiving {
    /// Dropped (closing the socket) once the session has ended and the end was seen.
    rd: Option<OwnedReadHalf>,
    reader: FrameReader,
    /// How much a read asks for: 4 KiB while handshaking or quiet, [`BATCH`] once reads fill it.
    want: usize,
    /// Messages opened and not yet taken: at most those of one read.
    queue: VecDeque<Vec<u8>>,
    /// The peer, once the handshake finished and the peer confirmed it.
    established: Option<Identity>,
    metrics: Option<ChannelMetrics>,
}

/// Counts only: the frame buffer and the queue hold plaintext.
impl std::fmt::Debug for Receiving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiving")
            .field("reader", &self.reader)
            .field("queued", &self.queue.len())
            .field("established", &self.established)
            .finish_non_exhaustive()
    }
}

impl Receiving {
    /// Reads what the socket has now and opens every whole frame in it: messages into the queue,
    /// the session's own frames answered. An error ends the session.
    fn pump(&mut self, shared: &Shared) -> Result<(), ChannelError> {
        let rd = self.rd.as_ref().ok_or(ChannelError::Closed)?;
        let n = match rd.try_read(self.reader.room(self.want)) {
            Ok(0) => return Err(ChannelError::Io("the peer closed the connection".into())),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(ChannelError::Io(e.to_string())),
        };
        self.reader.filled(n);
        if n >= self.want {
            self.want = BATCH;
        }
        let mut link = shared.lock();
        let now = shared.clock.elapsed();
        let mut outputs = Vec::new();
        while let Some((epoch, message)) = self.reader.take_frame()? {
            let session = link.session.as_mut().ok_or(ChannelError::Closed)?;
            outputs.extend(session.receive(now, epoch, message)?);
        }
        for out in shared.transmit(&mut link, outputs)? {
            match out {
                Output::Deliver(message) => self.queue.push_back(message),
                Output::Established(peer) => self.established = Some(peer),
                Output::Rekeyed(epoch) => {
                    if let Some(m) = &self.metrics {
                        m.rekeys.inc();
                    }
                    tracing::debug!(epoch, "channel rekeyed");
                }
                Output::Transmit(_) => {}
            }
        }
        Ok(())
    }
}

/// Once this many sealed bytes wait for the socket, senders wait before sealing more (at most this
/// plus one message waits).
const BACKLOG: usize = 1 << 20;

/// The session and the socket's write half, shared by the senders, the receiver and the
/// connection's task.
struct Link {
    /// Dropped (with its keys) when the session ends.
    session: Option<Session>,
    /// Shared so that the connection's task can wait for the socket to drain without the lock;
    /// dropped (the peer sees the end at once) when the session ends.
    wr: Option<Arc<OwnedWriteHalf>>,
    /// Sealed frames waiting for the socket, in order: senders seal into it and write from it.
    out: FrameWriter,
    /// Why the session ended, once it has.
    reason: Option<ChannelError>,
    /// The session has ended: sends fail at once, receives return `None`.
    ended: bool,
}

/// Writes as much of `bytes` as the socket takes without waiting; how much that was.
fn write_now(wr: Option<&Arc<OwnedWriteHalf>>, bytes: &[u8]) -> Result<usize, ChannelError> {
    let wr = wr.ok_or(ChannelError::Closed)?;
    let mut at = 0;
    while let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
        match wr.try_write(rest) {
            Ok(0) => return Err(ChannelError::Io("the connection closed".into())),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(ChannelError::Io(e.to_string())),
        }
    }
    Ok(at)
}

/// What a channel's senders, its receiver and its connection's task share.
struct Shared {
    link: std::sync::Mutex<Link>,
    clock: Instant,
    /// Wakes the connection's task: frames to write, or the end.
    wake: Notify,
    /// Wakes senders waiting for room (or for the end).
    room: Notify,
    /// Wakes the receiver and whoever waits for the end.
    closed: Notify,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes what the socket takes of the waiting frames now (no await, so nothing can stop half
    /// way); the connection's task writes the rest as the socket drains. Frees room for waiting
    /// senders.
    fn flush(&self, link: &mut Link) -> Result<(), ChannelError> {
        let n = write_now(link.wr.as_ref(), link.out.pending())?;
        link.out.consume(n);
        if !link.out.is_empty() {
            self.wake.notify_one();
        }
        if n > 0 && link.out.len() < BACKLOG {
            self.room.notify_waiters();
        }
        Ok(())
    }

    /// Writes the frames among `outputs` (sealed under this same lock, so in nonce order with
    /// the senders' frames) and returns the rest.
    fn transmit(&self, link: &mut Link, outputs: Vec<Output>) -> Result<Vec<Output>, ChannelError> {
        let mut rest = Vec::new();
        for out in outputs {
            match out {
                Output::Transmit(bytes) => link.out.push(&bytes),
                other => rest.push(other),
            }
        }
        self.flush(link)?;
        Ok(rest)
    }

    /// Ends the session with `e` (the first reason stays): its keys and the write half go now,
    /// and everyone waiting hears of it.
    fn end(&self, link: &mut Link, e: ChannelError) {
        if link.ended {
            return;
        }
        link.reason = Some(e);
        link.ended = true;
        link.session = None;
        link.wr = None;
        link.out = FrameWriter::default();
        self.wake.notify_one();
        self.room.notify_waiters();
        self.closed.notify_waiters();
    }

    /// The session's timers and its peer's authorisation, once.
    fn tick(&self) -> Result<(), ChannelError> {
        let mut link = self.lock();
        let session = link.session.as_mut().ok_or(ChannelError::Closed)?;
        if !session.still_authorized() {
            let peer = session.peer();
            tracing::warn!(event = "channel_peer_revoked", peer = ?peer, "closing the session of a peer no longer authorised");
            return Err(peer.map_or(ChannelError::Closed, ChannelError::Unauthorized));
        }
        let outputs = session.tick(self.clock.elapsed())?;
        self.transmit(&mut link, outputs).map(drop)
    }
}

/// Connects to `addr` and completes the handshake (within the session's handshake timeout).
pub async fn connect(addr: SocketAddr, config: Arc<Config>) -> Result<Channel, ChannelError> {
    connect_observed(addr, config, None).await
}

/// [`connect`], counting the handshake, the session and its rekeys in `metrics`.
pub async fn connect_observed(
    addr: SocketAddr,
    config: Arc<Config>,
    metrics: Option<ChannelMetrics>,
) -> Result<Channel, ChannelError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ChannelError::Io(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let clock = Instant::now();
    let (session, first) = Session::initiator(config, Duration::ZERO)?;
    let connected = start(stream, session, first, clock, metrics.clone()).await;
    if let Some(m) = &metrics {
        let outcome = if connected.is_ok() { "ok" } else { "failed" };
        m.handshakes.with_label_values(&[outcome]).inc();
    }
    connected
}

/// Accepts channels on `listener` until it fails, handing each established one to `established`.
/// Handshakes run concurrently, each bounded in time; a failed one is logged and dropped.
pub async fn serve(
    listener: TcpListener,
    config: Arc<Config>,
    limits: AcceptLimits,
    established: mpsc::Sender<Channel>,
) {
    serve_observed(listener, config, limits, established, None).await;
}

/// [`serve`], counting handshakes, sessions and rekeys in `metrics`.
pub async fn serve_observed(
    listener: TcpListener,
    config: Arc<Config>,
    limits: AcceptLimits,
    established: mpsc::Sender<Channel>,
    metrics: Option<ChannelMetrics>,
) {
    let count = |outcome: &str| {
        if let Some(m) = &metrics {
            m.handshakes.with_label_values(&[outcome]).inc();
        }
    };
    let quota =
        Quota::per_second(limits.per_source_per_second).allow_burst(limits.per_source_burst);
    let per_source: Arc<DefaultKeyedRateLimiter<IpAddr>> = Arc::new(RateLimiter::keyed(quota));
    let half_open = Arc::new(Semaphore::new(limits.max_half_open.max(1)));
    let mut last_prune = Instant::now();
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "channel accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if last_prune.elapsed() >= Duration::from_secs(10) {
            // Sources that went quiet have full buckets: forgetting them loses nothing.
            per_source.retain_recent();
            last_prune = Instant::now();
        }
        if per_source.check_key(&remote.ip()).is_err() {
            count("rate_limited");
            tracing::warn!(event = "channel_handshake_rate_limited", %remote, "channel handshake refused: rate");
            continue;
        }
        let Ok(permit) = Arc::clone(&half_open).try_acquire_owned() else {
            count("half_open_full");
            tracing::warn!(event = "channel_half_open_full", %remote, "channel handshake refused: too many in progress");
            continue;
        };
        let (config, established, metrics) =
            (Arc::clone(&config), established.clone(), metrics.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let clock = Instant::now();
            let accepted = match Session::responder(config, Duration::ZERO) {
                Ok(session) => start(stream, session, Vec::new(), clock, metrics.clone()).await,
                Err(e) => Err(e),
            };
            drop(permit);
            match accepted {
                Ok(channel) => {
                    if let Some(m) = &metrics {
                        m.handshakes.with_label_values(&["ok"]).inc();
                    }
                    let _ = established.send(channel).await;
                }
                Err(e) => {
                    if let Some(m) = &metrics {
                        m.handshakes.with_label_values(&["failed"]).inc();
                    }
                    tracing::info!(event = "channel_handshake_failed", %remote, error = %e, "channel handshake failed");
                }
            }
        });
    }
}

/// Completes the handshake in the caller's task, then runs the connection's task.
async fn start(
    stream: TcpStream,
    session: Session,
    first: Vec<Output>,
    clock: Instant,
    metrics: Option<ChannelMetrics>,
) -> Result<Channel, ChannelError> {
    let (rd, wr) = stream.into_split();
    let shared = Arc::new(Shared {
        link: std::sync::Mutex::new(Link {
            session: Some(session),
            wr: Some(Arc::new(wr)),
            out: FrameWriter::default(),
            reason: None,
            ended: false,
        }),
        clock,
        wake: Notify::new(),
        room: Notify::new(),
        closed: Notify::new(),
    });
    let mut rx = Receiving {
        rd: Some(rd),
        reader: FrameReader::default(),
        want: 4096,
        queue: VecDeque::new(),
        established: None,
        metrics: metrics.clone(),
    };
    let handshake = async {
        shared.transmit(&mut shared.lock(), first)?;
        let mut tick = tokio::time::interval(TICK);
        loop {
            if let Some(peer) = rx.established {
                return Ok::<Identity, ChannelError>(peer);
            }
            let rd = rx.rd.as_ref().ok_or(ChannelError::Closed)?;
            tokio::select! {
                ready = rd.readable() => {
                    ready.map_err(|e| ChannelError::Io(e.to_string()))?;
                    rx.pump(&shared)?;
                }
                // The session bounds the handshake to its `rekey_timeout`.
                _ = tick.tick() => shared.tick()?,
            }
        }
    };
    let peer = match handshake.await {
        Ok(peer) => peer,
        Err(e) => {
            shared.end(&mut shared.lock(), e.clone());
            return Err(e);
        }
    };
    if let Some(m) = &metrics {
        m.sessions.inc();
    }
    let (alive, gone) = mpsc::channel(1);
    tokio::spawn(run(Arc::clone(&shared), gone, metrics));
    Ok(Channel {
        peer,
        sender: ChannelSender {
            shared,
            _alive: alive,
        },
        rx,
    })
}

/// The connection's task: writes what the senders could not, runs the timers, and ends the
/// session when every sender is gone.
async fn run(shared: Arc<Shared>, mut gone: mpsc::Receiver<()>, metrics: Option<ChannelMetrics>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let waiting = {
            let link = shared.lock();
            if link.ended {
                break;
            }
            link.wr.clone().filter(|_| !link.out.is_empty())
        };
        let drained = async {
            match &waiting {
                Some(wr) => wr.writable().await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            ready = drained => ready
                .map_err(|e| ChannelError::Io(e.to_string()))
                .and_then(|()| shared.flush(&mut shared.lock())),
            // Frames to write (the next turn waits for the socket), or the end.
            () = shared.wake.notified() => Ok(()),
            // Every sender was dropped: the application is done with the channel.
            _ = gone.recv() => Err(ChannelError::Closed),
            _ = tick.tick() => shared.tick(),
        };
        drop(waiting);
        if let Err(e) = result {
            shared.end(&mut shared.lock(), e);
        }
    }
    if let Some(m) = &metrics {
        // It was counted open when its handshake finished (in `start`).
        m.sessions.dec();
    }
}
