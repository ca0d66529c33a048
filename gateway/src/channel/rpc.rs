//! Requests and responses over a channel: what an edge forwards to its ledger node and what comes
//! back. A message is `kind (b'Q' or b'R') ‖ head length (u32 BE) ‖ head (JSON) ‖ body`; the head
//! is small and strict (unknown fields refused, at most [`MAX_HEAD`] bytes), the body opaque. Ids
//! pair responses with requests, so one channel carries many requests at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Channel, ChannelError};

/// Largest head of a request or response.
pub const MAX_HEAD: usize = 16 * 1024;
/// Requests a ledger node runs at once for one channel; more wait (backpressure on the edge).
pub const MAX_IN_FLIGHT: usize = 256;

/// Who sent a request, as the edge's TLS layer verified it (the ledger node trusts its edge's word
/// for this because the channel authenticated the edge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Subject common name.
    pub cn: Option<String>,
    /// URI SANs.
    pub san_uris: Vec<String>,
    /// DNS SANs.
    pub san_dns: Vec<String>,
    /// SHA-256 of the certificate, hex.
    pub fingerprint: String,
}

impl From<&policies::PeerIdentity> for Peer {
    fn from(p: &policies::PeerIdentity) -> Peer {
        Peer {
            cn: p.cn.clone(),
            san_uris: p.san_uris.clone(),
            san_dns: p.san_dns.clone(),
            fingerprint: p.fingerprint.clone(),
        }
    }
}

impl From<Peer> for policies::PeerIdentity {
    fn from(p: Peer) -> policies::PeerIdentity {
        policies::PeerIdentity {
            cn: p.cn,
            san_uris: p.san_uris,
            san_dns: p.san_dns,
            fingerprint: p.fingerprint,
        }
    }
}

/// A forwarded request's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestHead {
    /// Pairs the response with this request.
    pub id: u64,
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The verified client.
    pub peer: Peer,
}

/// A response's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseHead {
    /// The request's id.
    pub id: u64,
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// `Retry-After`, if any.
    pub retry_after: Option<String>,
}

/// One message of either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Edge → ledger node.
    Request(RequestHead, Vec<u8>),
    /// Ledger node → edge.
    Response(ResponseHead, Vec<u8>),
}

fn bad(why: &'static str) -> ChannelError {
    ChannelError::Protocol(why)
}

impl Message {
    /// The bytes of this message.
    pub fn encode(&self) -> Result<Vec<u8>, ChannelError> {
        let (kind, head, body) = match self {
            Message::Request(h, b) => (b'Q', serde_json::to_vec(h), b),
            Message::Response(h, b) => (b'R', serde_json::to_vec(h), b),
        };
        let head = head.map_err(|_| bad("a head that cannot be written"))?;
        if head.len() > MAX_HEAD {
            return Err(bad("a head over its bound"));
        }
        let len = u32::try_from(head.len()).map_err(|_| bad("a head over its bound"))?;
        let mut out = Vec::with_capacity(5 + head.len() + body.len());
        out.push(kind);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(body);
        Ok(out)
    }

    /// Reads a message; anything malformed is a protocol error (the session then closes).
    pub fn decode(mut bytes: Vec<u8>) -> Result<Message, ChannelError> {
        let (&kind, rest) = bytes.split_first().ok_or(bad("an empty message"))?;
        let len = rest
            .first_chunk::<4>()
            .map(|l| u32::from_be_bytes(*l))
            .ok_or(bad("a message without a head"))?;
        let len = usize::try_from(len).map_err(|_| bad("a head over its bound"))?;
        if len > MAX_HEAD {
            return Err(bad("a head over its bound"));
        }
        let head = rest.get(4..4 + len).ok_or(bad("a head cut short"))?;
        let message = match kind {
            b'Q' => Message::Request(
                serde_json::from_slice(head).map_err(|_| bad("a malformed request head"))?,
                Vec::new(),
            ),
            b'R' => Message::Response(
                serde_json::from_slice(head).map_err(|_| bad("a malformed response head"))?,
                Vec::new(),
            ),
            _ => return Err(bad("an unknown message kind")),
        };
        // The body is the rest: the message's own buffer, with the kind and head taken off the
        // front in place (one shift of the body, no new allocation).
        bytes.drain(..5 + len);
        let body = bytes;
        Ok(match message {
            Message::Request(h, _) => Message::Request(h, body),
            Message::Response(h, _) => Message::Response(h, body),
        })
    }
}

/// What a ledger node does with a forwarded request.
pub type Handler = Arc<
    dyn Fn(RequestHead, Vec<u8>) -> Pin<Box<dyn Future<Output = (ResponseHead, Vec<u8>)> + Send>>
        + Send
        + Sync,
>;

/// Answers requests arriving on `channel` with `handler`, up to [`MAX_IN_FLIGHT`] at once, until
/// the channel ends; returns why it ended. A malformed message ends it.
pub async fn serve_requests(mut channel: Channel, handler: Handler) -> ChannelError {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let sender = channel.sender();
    loop {
        let Some(bytes) = channel.recv().await else {
            return channel.ended().await;
        };
        let (head, body) = match Message::decode(bytes) {
            Ok(Message::Request(head, body)) => (head, body),
            Ok(Message::Response(..)) => return bad("a response sent to a ledger node"),
            Err(e) => return e,
        };
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return ChannelError::Closed;
        };
        let (handler, sender) = (Arc::clone(&handler), sender.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let (head, body) = handler(head, body).await;
            if let Ok(bytes) = Message::Response(head, body).encode() {
                // A closed channel drops the answer; the edge answers its client 503.
                let _ = sender.send(&bytes).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer() -> impl Strategy<Value = Peer> {
        (
            proptest::option::of(".{0,20}"),
            proptest::collection::vec(".{0,20}", 0..3),
            proptest::collection::vec(".{0,20}", 0..3),
            "[0-9a-f]{0,64}",
        )
            .prop_map(|(cn, san_uris, san_dns, fingerprint)| Peer {
                cn,
                san_uris,
                san_dns,
                fingerprint,
            })
    }

    proptest! {
        #[test]
        fn messages_round_trip(
            id in any::<u64>(), method in "[A-Z]{1,7}", target in ".{0,100}", peer in peer(),
            status in 100u16..600, retry in proptest::option::of("[0-9]{1,4}"),
            body in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            let q = Message::Request(RequestHead { id, method, target, peer }, body.clone());
            prop_assert_eq!(Message::decode(q.encode().unwrap()).unwrap(), q);
            let r = Message::Response(
                ResponseHead { id, status, content_type: "application/json".into(), retry_after: retry },
                body,
            );
            prop_assert_eq!(Message::decode(r.encode().unwrap()).unwrap(), r);
        }

        #[test]
        fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Message::decode(bytes);
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        for (bytes, why) in [
            (Vec::new(), "an empty message"),
            (vec![b'Q', 0, 0], "a message without a head"),
            (vec![b'Q', 0, 0, 0, 9, b'{'], "a head cut short"),
            (vec![b'Q', 0, 0, 0x40, 1], "a head over its bound"),
            (
                vec![b'X', 0, 0, 0, 2, b'{', b'}'],
                "an unknown message kind",
            ),
            (
                vec![b'Q', 0, 0, 0, 2, b'{', b'}'],
                "a malformed request head",
            ),
        ] {
            assert_eq!(Message::decode(bytes), Err(ChannelError::Protocol(why)));
        }
        let extra = br#"{"id":1,"status":200,"content_type":"x","retry_after":null,"more":1}"#;
        let mut bytes = vec![b'R'];
        bytes.extend_from_slice(&u32::try_from(extra.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(extra);
        assert_eq!(
            Message::decode(bytes),
            Err(ChannelError::Protocol("a malformed response head"))
        );
    }
}
