//! The channel's wire format, and the plaintext kinds inside its transport messages.
//!
//! On the wire every frame is `length (u16, big-endian) ‖ epoch (u8) ‖ Noise message`, the length
//! covering epoch and message; a Noise message is at most 65535 bytes, so here at most 65534. The
//! epoch names the session keys that sealed the message (epoch 0 is the first handshake, each rekey
//! adds one), so that during a rekey either side knows, before decrypting, which keys to use: a
//! flipped epoch only selects keys that then fail to authenticate the message.
//!
//! Inside a transport message the last byte says what the rest is ([`Kind`], a trailer like TLS 1.3's
//! inner content type: the body can then be sealed straight from the caller's buffer into the
//! frame, the kind after it); application messages larger than one frame are split into `More`
//! fragments and a `Last` one and reassembled up to a bound.

use super::ChannelError;

/// Largest Noise message in a frame.
pub const MAX_NOISE_MESSAGE: usize = 65534;
/// Noise's authentication tag, which every transport message carries.
pub const TAG_LEN: usize = 16;
/// Largest application fragment: a Noise message less its tag and the kind byte.
pub const MAX_FRAGMENT: usize = MAX_NOISE_MESSAGE - TAG_LEN - 1;

/// What a transport message's plaintext carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Nothing: keeps the session alive.
    Keepalive = 0,
    /// The last (or only) fragment of an application message.
    Last = 1,
    /// A fragment with more to come.
    More = 2,
    /// A message of the next epoch's handshake (a rekey).
    Rekey = 3,
}

impl Kind {
    /// The kind of a plaintext's first byte.
    pub fn of(byte: u8) -> Result<Kind, ChannelError> {
        Ok(match byte {
            0 => Kind::Keepalive,
            1 => Kind::Last,
            2 => Kind::More,
            3 => Kind::Rekey,
            _ => return Err(ChannelError::Protocol("unknown message kind")),
        })
    }
}

/// Appends one frame to `out`.
pub fn encode(epoch: u8, noise: &[u8], out: &mut Vec<u8>) -> Result<(), ChannelError> {
    if noise.len() > MAX_NOISE_MESSAGE {
        return Err(ChannelError::Protocol(
            "a Noise message over the frame bound",
        ));
    }
    let len = u16::try_from(noise.len() + 1)
        .map_err(|_| ChannelError::Protocol("a Noise message over the frame bound"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.push(epoch);
    out.extend_from_slice(noise);
    Ok(())
}

/// Splits a byte stream into frames. The socket reads straight into its buffer ([`FrameReader::room`],
/// [`FrameReader::filled`]) and frames are opened where they lie, so received bytes are copied once,
/// out of the kernel. Taken frames are not shifted out one by one; the buffer is compacted when
/// the next read needs the room.
#[derive(Default)]
pub struct FrameReader {
    /// `buf[start..end]` are received bytes not yet taken; the rest is room.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Lengths only: frames are opened in place, so the buffer holds plaintext.
impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("pending", &self.pending())
            .field("capacity", &self.buf.len())
            .finish()
    }
}

impl FrameReader {
    /// Takes bytes from the stream (a copy; sockets use [`FrameReader::room`]).
    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.room(bytes.len());
        if let Some(to) = room.get_mut(..bytes.len()) {
            to.copy_from_slice(bytes);
        }
        self.filled(bytes.len());
    }

    /// At least `want` bytes of room after the received bytes, to read into; then call
    /// [`FrameReader::filled`] with how many were read.
    pub fn room(&mut self, want: usize) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < want && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < want {
            self.buf.resize(self.end + want, 0);
        }
        self.buf.get_mut(self.end..).unwrap_or_default()
    }

    /// `n` bytes were written into the room.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The next whole frame as (epoch, Noise message), if one has arrived, borrowed from the
    /// reader (no copy) and mutable, so that it is opened where it lies. A frame of length 0 (no
    /// epoch) is a protocol error.
    pub fn take_frame(&mut self) -> Result<Option<(u8, &mut [u8])>, ChannelError> {
        let start = self.start;
        let rest = self.buf.get(start..self.end).unwrap_or_default();
        let Some(head) = rest.first_chunk::<2>() else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes(*head));
        if rest.len() < 2 + len {
            return Ok(None);
        }
        self.start = start + 2 + len;
        let frame = self
            .buf
            .get_mut(start + 2..start + 2 + len)
            .unwrap_or_default();
        match frame.split_first_mut() {
            Some((epoch, noise)) => Ok(Some((*epoch, noise))),
            None => Err(ChannelError::Protocol("an empty frame")),
        }
    }

    /// [`FrameReader::take_frame`], copied out.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, ChannelError> {
        let rest = self.buf.get(self.start..self.end).unwrap_or_default();
        let Some(head) = rest.first_chunk::<2>() else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes(*head));
        let Some(frame) = rest.get(2..2 + len) else {
            return Ok(None);
        };
        let Some((epoch, noise)) = frame.split_first() else {
            return Err(ChannelError::Protocol("an empty frame"));
        };
        let taken = (*epoch, noise.to_vec());
        self.start += 2 + len;
        Ok(Some(taken))
    }

    /// Bytes received but not yet taken as frames.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }
}

/// Frames waiting for the socket, in a buffer that is reused: frames are sealed straight into it
/// ([`FrameWriter::room`], [`FrameWriter::filled`]), so a message's plaintext is read once, by the
/// cipher, and nothing is allocated once the buffer has grown; the socket writes from
/// [`FrameWriter::pending`]. Written bytes are not shifted out one by one: the buffer is compacted
/// when the bytes still waiting are no more than those already written before them, so each byte
/// moves at most once on average.
#[derive(Default)]
pub struct FrameWriter {
    /// `buf[start..end]` are sealed bytes not yet written; the rest is room, already initialised.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Lengths only, as for [`FrameReader`].
impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter")
            .field("pending", &self.len())
            .field("capacity", &self.buf.len())
            .finish()
    }
}

/// A writer that has emptied gives back a buffer larger than this (a large message grew it).
const KEEP: usize = 4 << 20;

impl FrameWriter {
    /// Exactly `want` bytes of room after the waiting bytes, to seal into; then call
    /// [`FrameWriter::filled`] with how many were used.
    pub fn room(&mut self, want: usize) -> &mut [u8] {
        let waiting = self.end - self.start;
        if self.buf.len() - self.end < want && self.start > 0 && self.start >= waiting {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = waiting;
        }
        if self.buf.len() - self.end < want {
            self.buf.resize(self.end + want, 0);
        }
        self.buf
            .get_mut(self.end..self.end + want)
            .unwrap_or_default()
    }

    /// `n` bytes of the room now hold sealed frames.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Appends bytes that are already frames (a copy: handshake messages, which snow writes).
    pub fn push(&mut self, bytes: &[u8]) {
        let room = self.room(bytes.len());
        room.copy_from_slice(bytes);
        self.filled(bytes.len());
    }

    /// The frames not yet written, in order.
    pub fn pending(&self) -> &[u8] {
        self.buf.get(self.start..self.end).unwrap_or_default()
    }

    /// How many bytes wait.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The first `n` waiting bytes were written.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP {
                self.buf = Vec::new();
            }
        }
    }

    /// The waiting frames as one buffer.
    pub fn into_vec(mut self) -> Vec<u8> {
        self.buf.truncate(self.end);
        self.buf.drain(..self.start);
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_from_any_chunking() {
        let mut wire = Vec::new();
        encode(0, b"hello", &mut wire).unwrap();
        encode(7, &vec![9u8; MAX_NOISE_MESSAGE], &mut wire).unwrap();
        assert!(encode(1, &vec![0u8; MAX_NOISE_MESSAGE + 1], &mut wire).is_err());
        for chunk in [1usize, 3, 1000, wire.len()] {
            let mut r = FrameReader::default();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                r.push(piece);
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got.len(), 2, "chunk {chunk}");
            assert_eq!(got[0], (0, b"hello".to_vec()));
            assert_eq!(got[1].0, 7);
            assert_eq!(got[1].1.len(), MAX_NOISE_MESSAGE);
            assert_eq!(r.pending(), 0);
        }
        let mut r = FrameReader::default();
        r.push(&[0, 0]);
        assert!(r.next_frame().is_err());
    }

    #[test]
    fn a_writer_keeps_its_bytes_in_order_across_partial_writes_and_compaction() {
        let mut w = FrameWriter::default();
        let mut sent = Vec::new();
        let mut written = Vec::new();
        // Pieces of varied sizes in, partial writes of varied sizes out: what comes out is what
        // went in, and the buffer stays within a few times what waits at most.
        let mut counter = 0u8;
        let mut most_waiting = 0;
        for round in 0..2000usize {
            most_waiting = most_waiting.max(w.len());
            let n = (round * 7919) % 5000 + 1;
            let piece: Vec<u8> = (0..n)
                .map(|_| {
                    counter = counter.wrapping_add(1);
                    counter
                })
                .collect();
            if round % 3 == 0 {
                w.push(&piece);
            } else {
                let room = w.room(n);
                assert_eq!(room.len(), n);
                room.copy_from_slice(&piece);
                w.filled(n);
            }
            sent.extend_from_slice(&piece);
            let take = (round * 104_729) % (w.len() + 1);
            written.extend_from_slice(&w.pending()[..take]);
            w.consume(take);
            assert!(w.buf.len() <= 2 * most_waiting + 5000, "round {round}");
        }
        written.extend_from_slice(w.pending());
        let rest = w.len();
        w.consume(rest);
        assert!(w.is_empty());
        assert_eq!(written, sent);
        // A large message grows the buffer; once written, the buffer is given back.
        let mut w = FrameWriter::default();
        w.push(&vec![1u8; KEEP + 1]);
        w.consume(KEEP);
        assert_eq!(w.buf.len(), KEEP + 1, "kept while bytes wait");
        w.consume(1);
        assert_eq!(w.buf.capacity(), 0);
        let mut w = FrameWriter::default();
        w.push(b"abc");
        w.push(b"def");
        w.consume(2);
        assert_eq!(w.into_vec(), b"cdef");
    }
}
