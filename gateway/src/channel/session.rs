//! One channel session as a pure state machine, in boringtun's style: it is given `now` and bytes and
//! returns what to send and what to deliver, so the handshake, the timers and rekeying are tested
//! without sockets and without sleeping. The transport around it owns the socket and the clock.
//!
//! - **Handshake.** Noise `XX` (`Noise_XX_25519_ChaChaPoly_SHA256`, snow). The prologue binds the
//!   protocol, its version, the log's origin and the epoch. Messages 2 and 3 carry each side's
//!   identity binding (`identity.rs`), checked against the static key the handshake authenticated and
//!   then against the caller's authorisation (configured peers, revocation) before any application
//!   data is accepted or sent. The first message must be exactly an ephemeral key: nothing else is
//!   parsed, and no DH or signature check happens, before that.
//! - **Transport.** The handshake's split keys, sealing frames straight into the buffer they are
//!   written from and opening them where they were read (`cipher.rs`):
//!   nonces are implicit counters, so a replayed, dropped, reordered or altered frame fails to
//!   decrypt, and any failure closes the session.
//! - **Lifetime** (WireGuard's timers and names, from its paper §6.1 and boringtun's `timers.rs`): the
//!   connecting side starts a fresh handshake (new ephemerals) when the keys are `rekey_after` old,
//!   inside the old session; keys older than `reject_after` are refused; a handshake that does not
//!   finish in `rekey_timeout` closes the session; a side that has sent nothing for `keepalive`
//!   sends a keepalive, and a peer silent for two keepalives and a handshake timeout is gone.
//!   Traffic continues across a rekey: the frame's epoch says which keys sealed it, and the
//!   initiator keeps the old receiving keys until the peer's first message under the new ones.

use std::sync::Arc;
use std::time::Duration;

use snow::HandshakeState;
use zeroize::Zeroizing;

use super::ChannelError;
use super::cipher::TransportKeys;
use super::frame::{self, FrameWriter, Kind, MAX_FRAGMENT};
use super::identity::{self, Identity};
use super::resolver::{self, StaticKey};

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";
/// The channel protocol and its version, first in every prologue.
pub const PROTOCOL: &[u8] = b"ledgergate-channel/2";
/// Bytes of the first handshake message: one X25519 ephemeral key, no payload.
const FIRST_MESSAGE_LEN: usize = 32;
/// Room for any handshake message or payload of ours: the longest is message 2 (ephemeral, encrypted
/// static and tag, encrypted binding and tag: 32 + 48 + 112 = 192 bytes). A handshake then zeroes
/// a few hundred bytes per message, not 64 KiB.
const HANDSHAKE_ROOM: usize = 512;

/// WireGuard's timers, configurable so that tests can shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// REKEY_AFTER_TIME: the connecting side starts a new handshake when keys are this old.
    pub rekey_after: Duration,
    /// REJECT_AFTER_TIME: keys this old are not used for anything.
    pub reject_after: Duration,
    /// REKEY_TIMEOUT: a handshake must finish within this.
    pub rekey_timeout: Duration,
    /// KEEPALIVE_TIMEOUT: a side that sent nothing for this long sends a keepalive.
    pub keepalive: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            rekey_after: Duration::from_secs(120),
            reject_after: Duration::from_secs(180),
            rekey_timeout: Duration::from_secs(5),
            keepalive: Duration::from_secs(10),
        }
    }
}

/// Decides whether an identity may hold a session (configured peers, not revoked). Asked at every
/// handshake, and by the transport whenever revocations may have changed.
pub type Authorize = Arc<dyn Fn(&Identity) -> bool + Send + Sync>;

/// What a node brings to its sessions. Clones share the static key.
#[derive(Clone)]
pub struct Config {
    /// The node's X25519 static key (keymgr purpose `channel-static`).
    static_key: Arc<StaticKey>,
    /// The node's Ed25519 identity (keymgr purpose `node-identity`).
    identity: Identity,
    /// The binding of the static key to the identity, signed once: every handshake sends it.
    binding: [u8; identity::BINDING_LEN],
    /// The log's origin: nodes of different logs cannot talk by mistake.
    pub origin: String,
    /// Who may connect.
    pub authorize: Authorize,
    /// Timers.
    pub timers: Timers,
    /// Largest application message, reassembled.
    pub max_message: usize,
}

/// The default bound on one application message: 16 MiB.
pub const DEFAULT_MAX_MESSAGE: usize = 16 << 20;

impl Config {
    /// A node's channel configuration with default timers and message bound. The identity signs
    /// the static key's binding here, once; the signing key is not kept.
    pub fn new(
        static_private: Zeroizing<[u8; 32]>,
        identity: &dyn crate::node_key::IdentityKey,
        origin: impl Into<String>,
        authorize: Authorize,
    ) -> Result<Config, ChannelError> {
        let static_key = StaticKey::new(static_private).map_err(noise)?;
        let binding = identity::bind(identity, &static_key.public())
            .map_err(|e| ChannelError::Noise(format!("binding the static key: {e}")))?;
        Ok(Config {
            static_key: Arc::new(static_key),
            identity: Identity::of(identity),
            binding,
            origin: origin.into(),
            authorize,
            timers: Timers::default(),
            max_message: DEFAULT_MAX_MESSAGE,
        })
    }

    /// The same with other timers.
    #[must_use]
    pub fn with_timers(mut self, timers: Timers) -> Config {
        self.timers = timers;
        self
    }

    /// The same with another message bound.
    #[must_use]
    pub fn with_max_message(mut self, max_message: usize) -> Config {
        self.max_message = max_message;
        self
    }

    /// This node's identity.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// The same keys, authorising exactly `peer` (an edge's link to its one ledger node).
    pub fn for_peer(&self, peer: Identity) -> Config {
        Config {
            static_key: Arc::clone(&self.static_key),
            identity: self.identity,
            binding: self.binding,
            origin: self.origin.clone(),
            authorize: Arc::new(move |p: &Identity| *p == peer),
            timers: self.timers,
            max_message: self.max_message,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("identity", &self.identity)
            .field("origin", &self.origin)
            .field("timers", &self.timers)
            .field("max_message", &self.max_message)
            .finish_non_exhaustive()
    }
}

/// What a call asks the caller to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes (whole frames) to the peer.
    Transmit(Vec<u8>),
    /// An application message from the peer.
    Deliver(Vec<u8>),
    /// The first handshake finished and the peer confirmed it: the peer is this identity. The
    /// responder says so on reading message 3 (and sends a keepalive at once); the initiator only
    /// on opening the responder's first transport frame, so an initiator the responder refused at
    /// message 3 never reports a session.
    Established(Identity),
    /// A rekey finished: this side now seals (responder) or will open (initiator) with this epoch.
    Rekeyed(u8),
}

struct Keys {
    epoch: u8,
    transport: TransportKeys,
    since: Duration,
}

struct Rekey {
    epoch: u8,
    handshake: Box<HandshakeState>,
    started: Duration,
}

/// Which message of the first handshake comes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Awaiting {
    /// The responder waits for message 1.
    First,
    /// The initiator waits for message 2.
    Second,
    /// The responder waits for message 3.
    Third,
}

enum State {
    Handshake {
        handshake: Box<HandshakeState>,
        started: Duration,
        awaiting: Awaiting,
    },
    Open {
        current: Keys,
        /// The initiator's receiving keys of the epoch before, until the peer uses the new ones.
        previous: Option<Keys>,
        rekey: Option<Rekey>,
    },
    Closed,
}

/// One session with one peer.
pub struct Session {
    config: Arc<Config>,
    initiator: bool,
    state: State,
    peer: Option<Identity>,
    /// The initiator, after message 3: the responder has not yet shown that it accepted it.
    unconfirmed: bool,
    reassembly: Vec<u8>,
    last_sent: Duration,
    last_received: Duration,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("initiator", &self.initiator)
            .field("peer", &self.peer)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

fn noise(e: snow::Error) -> ChannelError {
    ChannelError::Noise(e.to_string())
}

fn handshake(config: &Config, initiator: bool, epoch: u8) -> Result<HandshakeState, ChannelError> {
    let params = NOISE_PARAMS.parse().map_err(noise)?;
    let prologue = [PROTOCOL, b"\0", config.origin.as_bytes(), b"\0", &[epoch]].concat();
    let resolver = resolver::resolver(Arc::clone(&config.static_key));
    let builder = snow::Builder::with_resolver(params, resolver)
        .local_private_key(config.static_key.private())
        .map_err(noise)?
        .prologue(&prologue)
        .map_err(noise)?;
    if initiator {
        builder.build_initiator().map_err(noise)
    } else {
        builder.build_responder().map_err(noise)
    }
}

/// The X25519 public key of a static private key.
pub fn static_public(private: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*private)).to_bytes()
}

impl Session {
    /// The connecting side: the session and its first handshake message to send.
    pub fn initiator(
        config: Arc<Config>,
        now: Duration,
    ) -> Result<(Session, Vec<Output>), ChannelError> {
        let mut hs = handshake(&config, true, 0)?;
        let first = write_handshake(&mut hs, &[])?;
        let mut wire = Vec::with_capacity(first.len() + 3);
        frame::encode(0, &first, &mut wire)?;
        let session = Session {
            config,
            initiator: true,
            state: State::Handshake {
                handshake: Box::new(hs),
                started: now,
                awaiting: Awaiting::Second,
            },
            peer: None,
            unconfirmed: false,
            reassembly: Vec::new(),
            last_sent: now,
            last_received: now,
        };
        Ok((session, vec![Output::Transmit(wire)]))
    }

    /// The accepting side, waiting for the first message.
    pub fn responder(config: Arc<Config>, now: Duration) -> Result<Session, ChannelError> {
        let hs = handshake(&config, false, 0)?;
        Ok(Session {
            config,
            initiator: false,
            state: State::Handshake {
                handshake: Box::new(hs),
                started: now,
                awaiting: Awaiting::First,
            },
            peer: None,
            unconfirmed: false,
            reassembly: Vec::new(),
            last_sent: now,
            last_received: now,
        })
    }

    /// The authenticated peer, once the first handshake finished.
    pub fn peer(&self) -> Option<Identity> {
        self.peer
    }

    /// The epoch of the keys in use (`None` before the first handshake finished or after closing).
    pub fn epoch(&self) -> Option<u8> {
        match &self.state {
            State::Open { current, .. } => Some(current.epoch),
            _ => None,
        }
    }

    /// Whether application messages can be sent.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// Whether the peer is still authorised (configured and not revoked); the transport asks this
    /// when revocations may have changed, and closes the session when it is not.
    pub fn still_authorized(&self) -> bool {
        self.peer.is_none_or(|p| (self.config.authorize)(&p))
    }

    fn close<T>(&mut self, e: ChannelError) -> Result<T, ChannelError> {
        // Dropping the states drops their keys.
        self.state = State::Closed;
        self.reassembly = Vec::new();
        Err(e)
    }

    /// One frame from the peer.
    pub fn receive(
        &mut self,
        now: Duration,
        epoch: u8,
        message: &mut [u8],
    ) -> Result<Vec<Output>, ChannelError> {
        let result = self.receive_inner(now, epoch, message);
        match result {
            Ok(out) => {
                self.last_received = now;
                Ok(out)
            }
            Err(e) => self.close(e),
        }
    }

    fn receive_inner(
        &mut self,
        now: Duration,
        epoch: u8,
        message: &mut [u8],
    ) -> Result<Vec<Output>, ChannelError> {
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Closed => Err(ChannelError::Closed),
            State::Handshake {
                handshake,
                started,
                awaiting,
            } => {
                if epoch != 0 {
                    return Err(ChannelError::Protocol("a handshake frame of another epoch"));
                }
                self.handshake_step(now, handshake, started, awaiting, message)
            }
            State::Open {
                current,
                previous,
                rekey,
            } => self.open_receive(now, current, previous, rekey, epoch, message),
        }
    }

    fn binding(&self) -> [u8; identity::BINDING_LEN] {
        self.config.binding
    }

    /// A first-handshake message as a frame (epoch 0).
    fn handshake_frame(&mut self, now: Duration, message: &[u8]) -> Result<Vec<u8>, ChannelError> {
        let mut wire = Vec::with_capacity(message.len() + 3);
        frame::encode(0, message, &mut wire)?;
        self.last_sent = now;
        Ok(wire)
    }

    /// The peer's identity from a handshake payload, checked against the handshake's static key and
    /// the authorisation (and, in a rekey, against the session's peer).
    fn peer_of(&self, hs: &HandshakeState, payload: &[u8]) -> Result<Identity, ChannelError> {
        let remote = hs
            .get_remote_static()
            .ok_or(ChannelError::Protocol("no remote static key"))?;
        let peer = identity::verify(payload, remote)?;
        if self.peer.is_some_and(|p| p != peer) {
            return Err(ChannelError::Identity(
                "the peer's identity changed in a rekey",
            ));
        }
        if !(self.config.authorize)(&peer) {
            return Err(ChannelError::Unauthorized(peer));
        }
        Ok(peer)
    }

    fn handshake_step(
        &mut self,
        now: Duration,
        mut hs: Box<HandshakeState>,
        started: Duration,
        awaiting: Awaiting,
        message: &[u8],
    ) -> Result<Vec<Output>, ChannelError> {
        if message.len() > HANDSHAKE_ROOM {
            return Err(ChannelError::Protocol("a handshake message over its size"));
        }
        let mut payload = vec![0u8; HANDSHAKE_ROOM];
        let mut out = Vec::new();
        if awaiting == Awaiting::First {
            // Message 1: exactly an ephemeral key. Checked before snow parses anything.
            if message.len() != FIRST_MESSAGE_LEN {
                return Err(ChannelError::Protocol(
                    "a first handshake message of the wrong size",
                ));
            }
            hs.read_message(message, &mut payload).map_err(noise)?;
            let second = write_handshake(&mut hs, &self.binding())?;
            out.push(Output::Transmit(self.handshake_frame(now, &second)?));
            self.state = State::Handshake {
                handshake: hs,
                started,
                awaiting: Awaiting::Third,
            };
            return Ok(out);
        }
        let n = hs.read_message(message, &mut payload).map_err(noise)?;
        let peer = self.peer_of(&hs, payload.get(..n).unwrap_or_default())?;
        if awaiting == Awaiting::Second {
            // Message 2 read: answer with message 3. The session is open, but established only
            // when the responder's first transport frame shows that it accepted message 3.
            let third = write_handshake(&mut hs, &self.binding())?;
            out.push(Output::Transmit(self.handshake_frame(now, &third)?));
        }
        let transport = TransportKeys::split(&mut hs, self.initiator)?;
        let mut current = Keys {
            epoch: 0,
            transport,
            since: now,
        };
        self.peer = Some(peer);
        if self.initiator {
            self.unconfirmed = true;
        } else {
            // Message 3 accepted: a keepalive confirms it to the initiator at once.
            self.seal_into(now, &mut current, Kind::Keepalive, &[], &mut out)?;
            out.push(Output::Established(peer));
        }
        self.state = State::Open {
            current,
            previous: None,
            rekey: None,
        };
        Ok(out)
    }

    fn open_receive(
        &mut self,
        now: Duration,
        mut current: Keys,
        mut previous: Option<Keys>,
        mut rekey: Option<Rekey>,
        epoch: u8,
        message: &mut [u8],
    ) -> Result<Vec<Output>, ChannelError> {
        if now.saturating_sub(current.since) >= self.config.timers.reject_after {
            return Err(ChannelError::Expired);
        }
        let plain: &[u8] = if epoch == current.epoch {
            let plain = current.transport.open(epoch, message)?;
            // The peer uses the new keys: the old receiving keys are done with.
            previous = None;
            plain
        } else if let Some(old) = previous.as_mut().filter(|k| k.epoch == epoch) {
            old.transport.open(epoch, message)?
        } else {
            return Err(ChannelError::Protocol("a frame of an unknown epoch"));
        };
        let (kind, body) = plain
            .split_last()
            .ok_or(ChannelError::Protocol("an empty transport message"))?;
        let kind = Kind::of(*kind)?;
        let mut out = Vec::new();
        if std::mem::take(&mut self.unconfirmed)
            && let Some(peer) = self.peer
        {
            // The responder sealed this under the new keys: it accepted message 3.
            out.push(Output::Established(peer));
        }
        match kind {
            Kind::Keepalive => {}
            Kind::More | Kind::Last => {
                if self.reassembly.len() + body.len() > self.config.max_message {
                    return Err(ChannelError::TooLarge(self.config.max_message));
                }
                if kind == Kind::Last && self.reassembly.is_empty() {
                    // A whole message in one frame: one copy, out of the receive buffer.
                    out.push(Output::Deliver(body.to_vec()));
                } else {
                    if self.reassembly.is_empty() {
                        // Room for this fragment and the next at once (no copy on the second).
                        self.reassembly.reserve(body.len() * 2);
                    }
                    self.reassembly.extend_from_slice(body);
                    if kind == Kind::Last {
                        out.push(Output::Deliver(std::mem::take(&mut self.reassembly)));
                    }
                }
            }
            Kind::Rekey => {
                let switched = self.rekey_step(now, &mut current, &mut rekey, body, &mut out)?;
                if let Some(new) = switched {
                    out.push(Output::Rekeyed(new.epoch));
                    let old = std::mem::replace(&mut current, new);
                    // The initiator may still get the peer's frames sealed before it switched.
                    previous = self.initiator.then_some(old);
                }
            }
        }
        self.state = State::Open {
            current,
            previous,
            rekey,
        };
        Ok(out)
    }

    /// A rekey handshake message. Returns the new keys when this side switches to them.
    fn rekey_step(
        &mut self,
        now: Duration,
        current: &mut Keys,
        rekey: &mut Option<Rekey>,
        message: &[u8],
        out: &mut Vec<Output>,
    ) -> Result<Option<Keys>, ChannelError> {
        let next = current.epoch.wrapping_add(1);
        if message.len() > HANDSHAKE_ROOM {
            return Err(ChannelError::Protocol("a handshake message over its size"));
        }
        let mut payload = vec![0u8; HANDSHAKE_ROOM];
        match (self.initiator, rekey.take()) {
            (false, None) => {
                // Message 1 of a rekey: answer with message 2.
                if message.len() != FIRST_MESSAGE_LEN {
                    return Err(ChannelError::Protocol(
                        "a first handshake message of the wrong size",
                    ));
                }
                let mut hs = handshake(&self.config, false, next)?;
                hs.read_message(message, &mut payload).map_err(noise)?;
                let binding = self.binding();
                let reply = write_handshake(&mut hs, &binding)?;
                self.seal_into(now, current, Kind::Rekey, &reply, out)?;
                *rekey = Some(Rekey {
                    epoch: next,
                    handshake: Box::new(hs),
                    started: now,
                });
                Ok(None)
            }
            (false, Some(mut r)) => {
                // Message 3: the responder switches both ways.
                let n = r
                    .handshake
                    .read_message(message, &mut payload)
                    .map_err(noise)?;
                self.peer_of(&r.handshake, payload.get(..n).unwrap_or_default())?;
                let transport = TransportKeys::split(&mut r.handshake, self.initiator)?;
                Ok(Some(Keys {
                    epoch: r.epoch,
                    transport,
                    since: now,
                }))
            }
            (true, Some(mut r)) => {
                // Message 2: answer with message 3 under the old keys, then send under the new.
                let n = r
                    .handshake
                    .read_message(message, &mut payload)
                    .map_err(noise)?;
                self.peer_of(&r.handshake, payload.get(..n).unwrap_or_default())?;
                let binding = self.binding();
                let last = write_handshake(&mut r.handshake, &binding)?;
                self.seal_into(now, current, Kind::Rekey, &last, out)?;
                let transport = TransportKeys::split(&mut r.handshake, self.initiator)?;
                Ok(Some(Keys {
                    epoch: r.epoch,
                    transport,
                    since: now,
                }))
            }
            (true, None) => Err(ChannelError::Protocol("a rekey message nobody asked for")),
        }
    }

    /// Seals one plaintext of `kind` under `keys` as a frame, appended to the frames in `out`:
    /// the frames of one call go out in one buffer (one write).
    fn seal_into(
        &mut self,
        now: Duration,
        keys: &mut Keys,
        kind: Kind,
        body: &[u8],
        out: &mut Vec<Output>,
    ) -> Result<(), ChannelError> {
        let mut wire = FrameWriter::default();
        keys.transport.seal(&mut wire, keys.epoch, kind, body)?;
        self.last_sent = now;
        match out.last_mut() {
            Some(Output::Transmit(frames)) => frames.extend_from_slice(wire.pending()),
            _ => out.push(Output::Transmit(wire.into_vec())),
        }
        Ok(())
    }

    /// Seals an application message (split into fragments as needed) for the peer.
    pub fn send(&mut self, now: Duration, message: &[u8]) -> Result<Vec<Output>, ChannelError> {
        let mut wire = FrameWriter::default();
        self.send_to(now, message, &mut wire)?;
        Ok(vec![Output::Transmit(wire.into_vec())])
    }

    /// [`Session::send`], sealing straight into `wire` after the frames already there: a
    /// transport keeps one writer, so a message is sealed from the caller's buffer into the bytes
    /// the socket writes, with no copy and no allocation. On an error the session is closed and
    /// what `wire` holds must not be sent.
    pub fn send_to(
        &mut self,
        now: Duration,
        message: &[u8],
        wire: &mut FrameWriter,
    ) -> Result<(), ChannelError> {
        if message.len() > self.config.max_message {
            return Err(ChannelError::TooLarge(self.config.max_message));
        }
        let State::Open {
            mut current,
            previous,
            rekey,
        } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Err(ChannelError::NotOpen);
        };
        if now.saturating_sub(current.since) >= self.config.timers.reject_after {
            return self.close(ChannelError::Expired);
        }
        // Fragments of equal size rather than full ones and a remainder: the receiver reserves
        // twice the first fragment, which then holds a two-fragment message (64 KiB, the common
        // large one) exactly, instead of 128 KiB for 64 KiB and a 19-byte tail.
        let fragment = message
            .len()
            .div_ceil(message.len().div_ceil(MAX_FRAGMENT).max(1))
            .max(1);
        let mut chunks = message.chunks(fragment).peekable();
        let mut result = Ok(());
        if message.is_empty() {
            result = current.transport.seal(wire, current.epoch, Kind::Last, &[]);
        }
        while let Some(chunk) = chunks.next() {
            let kind = if chunks.peek().is_some() {
                Kind::More
            } else {
                Kind::Last
            };
            result = current.transport.seal(wire, current.epoch, kind, chunk);
            if result.is_err() {
                break;
            }
        }
        self.last_sent = now;
        self.reopen(current, previous, rekey, result.map(|()| Vec::new()))
            .map(drop)
    }

    /// Puts the keys back after a call that took them out, and closes the session if it failed.
    fn reopen(
        &mut self,
        current: Keys,
        previous: Option<Keys>,
        rekey: Option<Rekey>,
        result: Result<Vec<Output>, ChannelError>,
    ) -> Result<Vec<Output>, ChannelError> {
        self.state = State::Open {
            current,
            previous,
            rekey,
        };
        match result {
            Ok(out) => Ok(out),
            Err(e) => self.close(e),
        }
    }

    /// The timers: call at least every few hundred milliseconds. Starts a rekey, sends a keepalive,
    /// or closes the session (an error) when a handshake timed out, the keys are too old or the
    /// peer went silent.
    pub fn tick(&mut self, now: Duration) -> Result<Vec<Output>, ChannelError> {
        let t = self.config.timers;
        let silent_limit = t.keepalive * 2 + t.rekey_timeout;
        match std::mem::replace(&mut self.state, State::Closed) {
            State::Closed => Err(ChannelError::Closed),
            State::Handshake {
                handshake,
                started,
                awaiting,
            } => {
                if now.saturating_sub(started) >= t.rekey_timeout {
                    return self.close(ChannelError::Timeout(
                        "the handshake did not finish in time",
                    ));
                }
                self.state = State::Handshake {
                    handshake,
                    started,
                    awaiting,
                };
                Ok(Vec::new())
            }
            State::Open {
                mut current,
                previous,
                mut rekey,
            } => {
                if now.saturating_sub(current.since) >= t.reject_after {
                    return self.close(ChannelError::Expired);
                }
                if self.unconfirmed && now.saturating_sub(current.since) >= t.rekey_timeout {
                    return self.close(ChannelError::Timeout(
                        "the handshake was not confirmed in time",
                    ));
                }
                if rekey
                    .as_ref()
                    .is_some_and(|r| now.saturating_sub(r.started) >= t.rekey_timeout)
                {
                    return self.close(ChannelError::Timeout("a rekey did not finish in time"));
                }
                if now.saturating_sub(self.last_received) >= silent_limit {
                    return self.close(ChannelError::Timeout("the peer went silent"));
                }
                let mut out = Vec::new();
                let mut result = Ok(());
                if self.initiator
                    && rekey.is_none()
                    && now.saturating_sub(current.since) >= t.rekey_after
                {
                    let next = current.epoch.wrapping_add(1);
                    match handshake(&self.config, true, next).and_then(|mut hs| {
                        let first = write_handshake(&mut hs, &[])?;
                        Ok((hs, first))
                    }) {
                        Ok((hs, first)) => {
                            result =
                                self.seal_into(now, &mut current, Kind::Rekey, &first, &mut out);
                            rekey = Some(Rekey {
                                epoch: next,
                                handshake: Box::new(hs),
                                started: now,
                            });
                        }
                        Err(e) => result = Err(e),
                    }
                } else if now.saturating_sub(self.last_sent) >= t.keepalive {
                    result = self.seal_into(now, &mut current, Kind::Keepalive, &[], &mut out);
                }
                self.reopen(current, previous, rekey, result.map(|()| out))
            }
        }
    }
}

fn write_handshake(hs: &mut HandshakeState, payload: &[u8]) -> Result<Vec<u8>, ChannelError> {
    let mut buf = vec![0u8; HANDSHAKE_ROOM];
    let n = hs.write_message(payload, &mut buf).map_err(noise)?;
    buf.truncate(n);
    Ok(buf)
}
