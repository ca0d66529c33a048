//! Sessions over TCP. The [`Session`] and the socket's write half sit under one lock shared by the
//! senders and the connection's task: a sender seals and writes its message itself (no hand-off
//! to another task, which cost a quarter of the throughput), the connection's task reads, opens
//! and delivers to the application, writes what the socket could not take at once, and runs the
//! timers. The application holds a [`Channel`] to send and receive whole messages. Accepting applies the
//! handshake abuse limits before any cryptographic work: a per-source-address handshake rate
//! (governor's keyed GCRA limiter, pruned as it goes) and a cap on handshakes in progress. The
//! session's own timers bound a handshake to `rekey_timeout` (5 s) and check the peer's authorisation
//! every tick, so a revoked peer loses its session within [`TICK`].

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use tokio::io::Interest;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use super::frame::FrameReader;
use super::{ChannelError, Config, Identity, Output, Session};
use crate::metrics::ChannelMetrics;

/// How often a session's timers run (and its peer's authorisation is checked).
pub const TICK: Duration = Duration::from_millis(100);
/// Messages received and not yet taken by the application before the connection stops reading.
const QUEUE: usize = 64;
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

/// An established channel: whole application messages both ways. Dropping it (and every
/// [`ChannelSender`]) closes the session.
#[derive(Debug)]
pub struct Channel {
    peer: Identity,
    sender: ChannelSender,
    inbound: mpsc::Receiver<Vec<u8>>,
    ended: Option<oneshot::Receiver<ChannelError>>,
}

/// Sends on a channel from anywhere; clones share the channel.
///
/// A message is sealed and written in the sending task (no hand-off to the connection's task:
/// that hop cost a quarter of the channel's throughput). What the socket does not take at once
/// goes to a backlog the connection's task writes as the socket drains. Sealing and queueing
/// happen under one lock with no await between them, so frames go out in nonce order and a send
/// dropped half way (a client gone, a timeout) never leaves half a frame on the wire.
#[derive(Debug, Clone)]
pub struct ChannelSender {
    shared: Arc<Shared>,
    /// Held by every sender: the connection's task ends when the last one is dropped.
    _alive: mpsc::Sender<()>,
}

impl ChannelSender {
    /// Sends one message; `Closed` once the session has ended.
    pub async fn send(&self, message: Vec<u8>) -> Result<(), ChannelError> {
        loop {
            // Made before looking, so that room freed after the look still wakes this send.
            let room = self.shared.room.notified();
            {
                let mut link = self.shared.lock();
                if link.ended {
                    return Err(ChannelError::Closed);
                }
                if link.backlog.len() < BACKLOG {
                    let mut out = Vec::new();
                    let now = self.shared.clock.elapsed();
                    let sealed = match link.session.as_mut() {
                        Some(session) => session.send_into(now, &message, &mut out),
                        None => Err(ChannelError::Closed),
                    };
                    let written = sealed.and_then(|()| {
                        out.into_iter().try_for_each(|o| match o {
                            Output::Transmit(bytes) => self.shared.push(&mut link, &bytes),
                            _ => Ok(()),
                        })
                    });
                    return written.map_err(|e| {
                        self.shared.fail(&mut link, e);
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
    pub async fn send(&self, message: Vec<u8>) -> Result<(), ChannelError> {
        self.sender.send(message).await
    }

    /// The next message; `None` once the session has ended (then [`Channel::ended`] says why).
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.inbound.recv().await
    }

    /// Why the session ended, once it has.
    pub async fn ended(&mut self) -> ChannelError {
        match self.ended.take() {
            Some(rx) => rx.await.unwrap_or(ChannelError::Closed),
            None => ChannelError::Closed,
        }
    }
}

/// Once the socket's backlog holds this many sealed bytes, senders wait before sealing more (it
/// holds at most this plus one message).
const BACKLOG: usize = 1 << 20;

/// The session and the socket's write half, shared by the senders and the connection's task.
struct Link {
    /// Dropped (with its keys) when the connection's task ends.
    session: Option<Session>,
    wr: Option<OwnedWriteHalf>,
    /// Sealed bytes waiting for the socket, in order.
    backlog: Vec<u8>,
    /// A sender's failure, for the connection's task to end with.
    failure: Option<ChannelError>,
    /// The connection's task has ended: sends fail at once.
    ended: bool,
}

/// Writes as much of `bytes` as the socket takes without waiting; how much that was.
fn write_now(wr: Option<&OwnedWriteHalf>, bytes: &[u8]) -> Result<usize, ChannelError> {
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

/// What a channel's senders share with its connection's task.
struct Shared {
    link: std::sync::Mutex<Link>,
    clock: Instant,
    /// Wakes the connection's task: a backlog to write, or a sender's failure.
    wake: Notify,
    /// Wakes senders waiting for the backlog to shrink (or for the end).
    room: Notify,
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

    /// Writes `bytes` after the backlog: at once as far as the socket takes them (no await, so
    /// nothing can stop half way), the rest into the backlog for the connection's task.
    fn push(&self, link: &mut Link, bytes: &[u8]) -> Result<(), ChannelError> {
        let at = if link.backlog.is_empty() {
            write_now(link.wr.as_ref(), bytes)?
        } else {
            0
        };
        if let Some(rest) = bytes.get(at..).filter(|r| !r.is_empty()) {
            link.backlog.extend_from_slice(rest);
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Writes what the socket takes of the backlog now; frees room for waiting senders.
    fn flush(&self, link: &mut Link) -> Result<(), ChannelError> {
        let at = write_now(link.wr.as_ref(), &link.backlog)?;
        link.backlog.drain(..at);
        if link.backlog.len() < BACKLOG {
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
                Output::Transmit(bytes) => self.push(link, &bytes)?,
                other => rest.push(other),
            }
        }
        Ok(rest)
    }

    /// A sender failed: the session is done with; the connection's task ends with `e`.
    fn fail(&self, link: &mut Link, e: ChannelError) {
        link.failure.get_or_insert(e);
        link.ended = true;
        self.wake.notify_one();
        self.room.notify_waiters();
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

/// Runs the connection's task and waits for the handshake's outcome.
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
            wr: Some(wr),
            backlog: Vec::new(),
            failure: None,
            ended: false,
        }),
        clock,
        wake: Notify::new(),
        room: Notify::new(),
    });
    let (to_app, inbound) = mpsc::channel(QUEUE);
    let (alive, gone) = mpsc::channel(1);
    let (open_tx, open_rx) = oneshot::channel();
    let (ended_tx, ended_rx) = oneshot::channel();
    let task = Arc::clone(&shared);
    tokio::spawn(async move {
        let mut open = Some(open_tx);
        let error = run(
            rd,
            &task,
            first,
            &mut open,
            (to_app, gone),
            metrics.as_ref(),
        )
        .await;
        {
            // Senders fail from now on; the write half goes now (the peer sees the end at once,
            // not when the last sender is dropped), and the session's keys with it.
            let mut link = task.lock();
            link.ended = true;
            link.wr = None;
            link.session = None;
            link.backlog = Vec::new();
        }
        task.room.notify_waiters();
        if open.is_none()
            && let Some(m) = &metrics
        {
            // It was counted open when its handshake finished (in `act`).
            m.sessions.dec();
        }
        match open.take() {
            // The handshake never finished: the caller hears why.
            Some(tx) => {
                let _ = tx.send(Err(error));
            }
            None => {
                let _ = ended_tx.send(error);
            }
        }
    });
    let peer = open_rx.await.map_err(|_| ChannelError::Closed)??;
    Ok(Channel {
        peer,
        sender: ChannelSender {
            shared,
            _alive: alive,
        },
        inbound,
        ended: Some(ended_rx),
    })
}

type Opened = oneshot::Sender<Result<Identity, ChannelError>>;

/// The connection's loop: socket bytes into the session, the senders' backlog out, timers.
/// Returns why it ended.
async fn run(
    rd: OwnedReadHalf,
    shared: &Shared,
    first: Vec<Output>,
    open: &mut Option<Opened>,
    (to_app, mut gone): (mpsc::Sender<Vec<u8>>, mpsc::Receiver<()>),
    metrics: Option<&ChannelMetrics>,
) -> ChannelError {
    let mut reader = FrameReader::default();
    // Reads ask for room for a few handshake messages, and for several full frames once reads
    // fill what they asked for: a handshaking or quiet connection holds 4 KiB, a busy one reads
    // 256 KiB per system call.
    let mut want = 4096;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let first = {
        let mut link = shared.lock();
        shared.transmit(&mut link, first)
    };
    if let Err(e) = match first {
        Ok(rest) => act(rest, open, &to_app, metrics).await,
        Err(e) => Err(e),
    } {
        return e;
    }
    loop {
        let backlog = !shared.lock().backlog.is_empty();
        let interest = if backlog {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let outputs = tokio::select! {
            ready = rd.ready(interest) => {
                let ready = match ready {
                    Ok(r) => r,
                    Err(e) => return ChannelError::Io(e.to_string()),
                };
                if backlog && ready.is_writable() {
                    let mut link = shared.lock();
                    if let Err(e) = shared.flush(&mut link) {
                        return e;
                    }
                }
                if !(ready.is_readable() || ready.is_read_closed()) {
                    continue;
                }
                match rd.try_read(reader.room(want)) {
                    Ok(0) => return ChannelError::Io("the peer closed the connection".into()),
                    Ok(n) => {
                        reader.filled(n);
                        if n >= want {
                            want = BATCH;
                        }
                        let mut link = shared.lock();
                        let mut outs = Vec::new();
                        let now = shared.clock.elapsed();
                        loop {
                            let Some(session) = link.session.as_mut() else {
                                return ChannelError::Closed;
                            };
                            match reader.take_frame() {
                                Ok(Some((epoch, message))) => {
                                    match session.receive(now, epoch, message) {
                                        Ok(o) => outs.extend(o),
                                        Err(e) => return e,
                                    }
                                }
                                Ok(None) => break,
                                Err(e) => return e,
                            }
                        }
                        match shared.transmit(&mut link, outs) {
                            Ok(rest) => rest,
                            Err(e) => return e,
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return ChannelError::Io(e.to_string()),
                }
            },
            () = shared.wake.notified() => {
                // A backlog to write (the next turn waits for the socket) or a sender's failure.
                if let Some(e) = shared.lock().failure.take() {
                    return e;
                }
                Vec::new()
            },
            // Every sender was dropped: the application is done with the channel.
            _ = gone.recv() => return ChannelError::Closed,
            _ = tick.tick() => {
                let mut link = shared.lock();
                let Some(session) = link.session.as_mut() else {
                    return ChannelError::Closed;
                };
                if !session.still_authorized() {
                    let peer = session.peer();
                    tracing::warn!(event = "channel_peer_revoked", peer = ?peer, "closing the session of a peer no longer authorised");
                    return peer.map_or(ChannelError::Closed, ChannelError::Unauthorized);
                }
                match session.tick(shared.clock.elapsed()) {
                    Ok(o) => match shared.transmit(&mut link, o) {
                        Ok(rest) => rest,
                        Err(e) => return e,
                    },
                    Err(e) => return e,
                }
            }
        };
        if let Err(e) = act(outputs, open, &to_app, metrics).await {
            return e;
        }
    }
}

/// Carries out a session's outputs other than frames (those are written where they are sealed):
/// messages to the application, the handshake's outcome to whoever waits for it.
async fn act(
    outputs: Vec<Output>,
    open: &mut Option<Opened>,
    to_app: &mpsc::Sender<Vec<u8>>,
    metrics: Option<&ChannelMetrics>,
) -> Result<(), ChannelError> {
    for out in outputs {
        match out {
            // Written by `Shared::transmit` before this.
            Output::Transmit(_) => {}
            Output::Deliver(message) => to_app
                .send(message)
                .await
                .map_err(|_| ChannelError::Closed)?,
            Output::Established(peer) => {
                if let Some(m) = metrics {
                    m.sessions.inc();
                }
                if let Some(tx) = open.take() {
                    let _ = tx.send(Ok(peer));
                }
            }
            Output::Rekeyed(epoch) => {
                if let Some(m) = metrics {
                    m.rekeys.inc();
                }
                tracing::debug!(epoch, "channel rekeyed");
            }
        }
    }
    Ok(())
}
