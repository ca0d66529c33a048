//! The node-to-node channel: keys negotiated asymmetrically (Noise `XX`: X25519, each static key bound
//! to the node's Ed25519 identity) and traffic encrypted symmetrically (ChaCha20-Poly1305), over any
//! reliable byte stream. Split by concern as boringtun splits its `noise/`:
//!
//! - `identity`: the binding of a static key to an identity, and its check;
//! - `frame`: the wire format (length, epoch, Noise message) and the plaintext kinds;
//! - `resolver`: the primitives of snow's handshake (aws-lc-rs's X25519, ring's hash and cipher);
//! - `cipher`: a session's transport keys, sealing and opening frames in place;
//! - `session`: one session as a pure state machine (handshake, transport, timers, rekeying).
//!
//! - `transport`: sessions over TCP, one task per connection, with the handshake abuse limits;
//! - `rpc`: requests and responses over a channel (edge → ledger node), and the ledger side's loop;
//! - `upstream`: the edge's reconnecting, multiplexed link to its ledger node.
//!
//! Peer configuration from `gateway.yaml` and keymgr, and the edge/ledger roles that use the channel,
//! come next (#15).

pub mod cipher;
pub mod frame;
pub mod identity;
pub mod resolver;
pub mod rpc;
pub mod session;
pub mod transport;
pub mod upstream;

#[cfg(test)]
mod tests;

pub use identity::Identity;
pub use session::{Authorize, Config, Output, Session, Timers};
pub use transport::{AcceptLimits, Channel, ChannelSender, connect, serve};
pub use upstream::{Upstream, UpstreamError};

/// Why a session ended. Any error closes the session; the transport drops the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// Noise refused a message: it failed to decrypt or authenticate (tampered, replayed, reordered,
    /// truncated), or the handshake went wrong.
    #[error("noise: {0}")]
    Noise(String),
    /// The peer's identity binding did not check out.
    #[error("identity: {0}")]
    Identity(&'static str),
    /// The peer is not configured or was revoked.
    #[error("peer {0} is not authorised")]
    Unauthorized(Identity),
    /// A frame or message that breaks the protocol.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// An application message over the bound.
    #[error("a message over the {0}-byte bound")]
    TooLarge(usize),
    /// A handshake or the peer took too long.
    #[error("timeout: {0}")]
    Timeout(&'static str),
    /// The session's keys are older than `reject_after`.
    #[error("the session's keys expired")]
    Expired,
    /// Sending before the handshake finished.
    #[error("the session is not open yet")]
    NotOpen,
    /// The session was closed before.
    #[error("the session is closed")]
    Closed,
    /// The connection failed or the peer closed it.
    #[error("connection: {0}")]
    Io(String),
}
