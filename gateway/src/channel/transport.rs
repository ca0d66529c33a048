//! Sessions over TCP. One task per connection owns the socket, the [`Session`] and its clock; the
//! application holds a [`Channel`] to send and receive whole messages. Accepting applies the
//! handshake abuse limits before any cryptographic work: a per-source-address handshake rate
//! (governor's keyed GCRA limiter, pruned as it goes) and a cap on handshakes in progress. The
//! session's own timers bound a handshake to `rekey_timeout` (5 s) and check the peer's authorisation
//! every tick, so a revoked peer loses its session within [`TICK`].

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::frame::FrameReader;
use super::{ChannelError, Config, Identity, Output, Session};
use crate::metrics::ChannelMetrics;

/// How often a session's timers run (and its peer's authorisation is checked).
pub const TICK: Duration = Duration::from_millis(100);
/// Messages queued per direction before senders wait.
const QUEUE: usize = 64;
/// Queued application messages are sealed into one write up to about this many bytes, and a busy
/// connection reads up to this many at once.
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

/// An established channel: whole application messages both ways. Dropping it closes the session.
#[derive(Debug)]
pub struct Channel {
    peer: Identity,
    outbound: mpsc::Sender<Vec<u8>>,
    inbound: mpsc::Receiver<Vec<u8>>,
    ended: Option<oneshot::Receiver<ChannelError>>,
}

/// Sends on a channel from anywhere; clones share the channel.
#[derive(Debug, Clone)]
pub struct ChannelSender(mpsc::Sender<Vec<u8>>);

impl ChannelSender {
    /// Sends one message; `Closed` once the session has ended.
    pub async fn send(&self, message: Vec<u8>) -> Result<(), ChannelError> {
        self.0.send(message).await.map_err(|_| ChannelError::Closed)
    }
}

impl Channel {
    /// A sender for other tasks, while this handle keeps receiving.
    pub fn sender(&self) -> ChannelSender {
        ChannelSender(self.outbound.clone())
    }

    /// The authenticated peer.
    pub fn peer(&self) -> Identity {
        self.peer
    }

    /// Sends one message; `Closed` once the session has ended.
    pub async fn send(&self, message: Vec<u8>) -> Result<(), ChannelError> {
        self.outbound
            .send(message)
            .await
            .map_err(|_| ChannelError::Closed)
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
    let (to_app, inbound) = mpsc::channel(QUEUE);
    let (outbound, from_app) = mpsc::channel(QUEUE);
    let (open_tx, open_rx) = oneshot::channel();
    let (ended_tx, ended_rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut open = Some(open_tx);
        let error = run(
            stream,
            session,
            (first, clock),
            &mut open,
            (to_app, from_app),
            metrics.as_ref(),
        )
        .await;
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
        outbound,
        inbound,
        ended: Some(ended_rx),
    })
}

type Opened = oneshot::Sender<Result<Identity, ChannelError>>;

/// The connection's loop: socket bytes into the session, application messages out of it, timers.
/// Returns why it ended.
async fn run(
    stream: TcpStream,
    mut session: Session,
    (first, clock): (Vec<Output>, Instant),
    open: &mut Option<Opened>,
    (to_app, mut from_app): (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>),
    metrics: Option<&ChannelMetrics>,
) -> ChannelError {
    let (mut rd, mut wr) = stream.into_split();
    let mut reader = FrameReader::default();
    // Reads ask for room for a few handshake messages, and for several full frames once reads
    // fill what they asked for: a handshaking or quiet connection holds 4 KiB, a busy one reads
    // 256 KiB per system call.
    let mut want = 4096;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Err(e) = act(first, &mut wr, open, &to_app, metrics).await {
        return e;
    }
    loop {
        let outputs = tokio::select! {
            read = rd.read(reader.room(want)) => match read {
                Ok(0) => return ChannelError::Io("the peer closed the connection".into()),
                Ok(n) => {
                    reader.filled(n);
                    if n >= want {
                        want = BATCH;
                    }
                    let mut outs = Vec::new();
                    loop {
                        match reader.take_frame() {
                            Ok(Some((epoch, message))) => {
                                match session.receive(clock.elapsed(), epoch, message) {
                                    Ok(o) => outs.extend(o),
                                    Err(e) => return e,
                                }
                            }
                            Ok(None) => break,
                            Err(e) => return e,
                        }
                    }
                    outs
                }
                Err(e) => return ChannelError::Io(e.to_string()),
            },
            message = from_app.recv(), if session.is_open() => match message {
                Some(m) => {
                    // Messages already queued go out with this one, in one write.
                    let now = clock.elapsed();
                    let mut out = Vec::new();
                    let mut next = Some(m);
                    let mut bytes = 0;
                    while let Some(m) = next.take() {
                        if let Err(e) = session.send_into(now, &m, &mut out) {
                            return e;
                        }
                        bytes += m.len();
                        if bytes < BATCH {
                            next = from_app.try_recv().ok();
                        }
                    }
                    out
                }
                // The application dropped its channel.
                None => return ChannelError::Closed,
            },
            _ = tick.tick() => {
                if !session.still_authorized() {
                    let peer = session.peer();
                    tracing::warn!(event = "channel_peer_revoked", peer = ?peer, "closing the session of a peer no longer authorised");
                    return peer.map_or(ChannelError::Closed, ChannelError::Unauthorized);
                }
                match session.tick(clock.elapsed()) {
                    Ok(o) => o,
                    Err(e) => return e,
                }
            }
        };
        if let Err(e) = act(outputs, &mut wr, open, &to_app, metrics).await {
            return e;
        }
    }
}

/// Carries out a session's outputs: bytes to the socket, messages to the application, the
/// handshake's outcome to whoever waits for it.
async fn act(
    outputs: Vec<Output>,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    open: &mut Option<Opened>,
    to_app: &mpsc::Sender<Vec<u8>>,
    metrics: Option<&ChannelMetrics>,
) -> Result<(), ChannelError> {
    for out in outputs {
        match out {
            Output::Transmit(bytes) => wr
                .write_all(&bytes)
                .await
                .map_err(|e| ChannelError::Io(e.to_string()))?,
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
