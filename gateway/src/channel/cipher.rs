//! A session's transport keys after its handshake, and the frames they seal and open in place.
//!
//! snow's transport copies every message twice (plaintext into its output, ciphertext out of its
//! input) and authenticates no header; rustls copies each plaintext into its record before sealing
//! it in place. Here the two keys of Noise's `Split()` are taken out of the
//! finished handshake and used with aws-lc-rs directly, as Noise's `CipherState` would use them:
//! ChaCha20-Poly1305, nonce = 32 zero bits ‖ a 64-bit little-endian counter, one counter per
//! direction, never reused and never skipped. What changes is that a frame is sealed from the
//! caller's message straight into the buffer it is sent from and opened where it was received, and
//! that its header (length, epoch) is the AEAD's associated data. Implicit counters mean a replayed, reordered, dropped or altered frame fails to
//! authenticate; the session closes on it.
//!
//! aws-lc frees its key objects with `OPENSSL_free`, which cleanses them; the raw keys are held in
//! `Zeroizing` only for the moment it takes to hand them over.

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use snow::HandshakeState;
use zeroize::Zeroizing;

use super::ChannelError;
use super::frame::{FrameWriter, Kind, MAX_NOISE_MESSAGE, TAG_LEN};

/// One direction: a key and the next nonce.
struct Direction {
    key: LessSafeKey,
    counter: u64,
}

impl Direction {
    fn new(raw: &Zeroizing<[u8; 32]>) -> Result<Direction, ChannelError> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, raw.as_slice())
            .map_err(|_| ChannelError::Noise("transport key refused".into()))?;
        Ok(Direction {
            key: LessSafeKey::new(key),
            counter: 0,
        })
    }

    /// The next nonce. Noise reserves 2^64 - 1; a session rekeys long before (REKEY_AFTER_TIME).
    fn next_nonce(&mut self) -> Result<Nonce, ChannelError> {
        if self.counter == u64::MAX {
            return Err(ChannelError::Expired);
        }
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.counter.to_le_bytes());
        self.counter += 1;
        Ok(Nonce::assume_unique_for_key(nonce))
    }
}

/// A frame's header, which is also its associated data.
fn header(message_len: usize, epoch: u8) -> Result<[u8; 3], ChannelError> {
    let len = u16::try_from(message_len + 1)
        .ok()
        .filter(|_| message_len <= MAX_NOISE_MESSAGE)
        .ok_or(ChannelError::Protocol(
            "a Noise message over the frame bound",
        ))?;
    let [hi, lo] = len.to_be_bytes();
    Ok([hi, lo, epoch])
}

/// The keys of one session epoch, both directions.
pub struct TransportKeys {
    send: Direction,
    receive: Direction,
}

impl std::fmt::Debug for TransportKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportKeys")
            .field("sent", &self.send.counter)
            .field("received", &self.receive.counter)
            .finish_non_exhaustive()
    }
}

impl TransportKeys {
    /// The keys of a finished handshake (Noise's `Split()`): the first key seals what the
    /// initiator sends, the second what the responder sends.
    pub fn split(hs: &mut HandshakeState, initiator: bool) -> Result<TransportKeys, ChannelError> {
        if !hs.is_handshake_finished() {
            return Err(ChannelError::Protocol("the handshake did not finish"));
        }
        let (first, second) = {
            let (a, b) = hs.dangerously_get_raw_split();
            (Zeroizing::new(a), Zeroizing::new(b))
        };
        let (send, receive) = if initiator {
            (first, second)
        } else {
            (second, first)
        };
        Ok(TransportKeys {
            send: Direction::new(&send)?,
            receive: Direction::new(&receive)?,
        })
    }

    /// Appends one frame to `wire`: header, then `body ‖ kind` sealed with its tag. The body is
    /// read once, by the cipher, which writes its ciphertext straight into the frame (no copy of
    /// the plaintext first); no plaintext ever sits in the buffer the socket writes from.
    pub fn seal(
        &mut self,
        wire: &mut FrameWriter,
        epoch: u8,
        kind: Kind,
        body: &[u8],
    ) -> Result<(), ChannelError> {
        let len = body.len() + 1 + TAG_LEN;
        let head = header(len, epoch)?;
        let nonce = self.send.next_nonce()?;
        let room = wire.room(3 + len);
        let outside = || ChannelError::Protocol("a frame outside its buffer");
        let (at_head, sealed) = room.split_at_mut_checked(3).ok_or_else(outside)?;
        at_head.copy_from_slice(&head);
        let (ciphertext, kind_and_tag) = sealed
            .split_at_mut_checked(body.len())
            .ok_or_else(outside)?;
        self.send
            .key
            .seal_out_of_place_scatter(
                nonce,
                Aad::from(head),
                body,
                ciphertext,
                &[kind as u8],
                kind_and_tag,
            )
            .map_err(|_| ChannelError::Noise("sealing failed".into()))?;
        wire.filled(3 + len);
        Ok(())
    }

    /// Opens a frame's message in place and returns its plaintext (`body ‖ kind`).
    pub fn open<'a>(
        &mut self,
        epoch: u8,
        message: &'a mut [u8],
    ) -> Result<&'a mut [u8], ChannelError> {
        let head = header(message.len(), epoch)?;
        let nonce = self.receive.next_nonce()?;
        self.receive
            .key
            .open_in_place(nonce, Aad::from(head), message)
            .map_err(|_| ChannelError::Noise("decrypt error".into()))
    }
}
