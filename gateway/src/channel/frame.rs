//! The channel's wire format, and the plaintext kinds inside its transport messages.
//!
//! On the wire every frame is `length (u16, big-endian) ‖ epoch (u8) ‖ Noise message`, the length
//! covering epoch and message; a Noise message is at most 65535 bytes, so here at most 65534. The
//! epoch names the session keys that sealed the message (epoch 0 is the first handshake, each rekey
//! adds one), so that during a rekey either side knows, before decrypting, which keys to use: a
//! flipped epoch only selects keys that then fail to authenticate the message.
//!
//! Inside a transport message the first byte says what follows ([`Kind`]); application messages
//! larger than one frame are split into `More` fragments and a `Last` one and reassembled up to a
//! bound.

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

/// Appends one frame to `wire`, sealing in place: `fill` writes the Noise message right after the
/// 3-byte header (into at most `room` bytes) and returns its length, so the message is never copied
/// again. Frames of one send go into one buffer: one write to the socket.
pub fn build_into(
    wire: &mut Vec<u8>,
    epoch: u8,
    room: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<usize, ChannelError>,
) -> Result<(), ChannelError> {
    let at = wire.len();
    wire.resize(at + 3 + room.min(MAX_NOISE_MESSAGE), 0);
    let filled = wire
        .get_mut(at..)
        .map(|frame| frame.split_at_mut(3))
        .map(|(_, body)| fill(body));
    let n = match filled {
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            wire.truncate(at);
            return Err(e);
        }
        None => return Err(ChannelError::Protocol("a frame outside its buffer")),
    };
    let len = u16::try_from(n + 1)
        .map_err(|_| ChannelError::Protocol("a Noise message over the frame bound"))?;
    if let Some(head) = wire.get_mut(at..at + 3) {
        head.copy_from_slice(&[len.to_be_bytes()[0], len.to_be_bytes()[1], epoch]);
    }
    wire.truncate(at + 3 + n);
    Ok(())
}

/// Splits a byte stream into frames. Taken frames are not shifted out one by one (a 64 KiB move
/// each); the buffer is compacted when it is half consumed.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// Takes bytes from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame as (epoch, Noise message), if one has arrived, borrowed from the
    /// reader (no copy). A frame of length 0 (no epoch) is a protocol error.
    pub fn take_frame(&mut self) -> Result<Option<(u8, &[u8])>, ChannelError> {
        let start = self.start;
        let rest = self.buf.get(start..).unwrap_or_default();
        let Some(head) = rest.first_chunk::<2>() else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes(*head));
        if rest.len() < 2 + len {
            return Ok(None);
        }
        self.start = start + 2 + len;
        let frame = self.buf.get(start + 2..start + 2 + len).unwrap_or_default();
        match frame.split_first() {
            Some((epoch, noise)) => Ok(Some((*epoch, noise))),
            None => Err(ChannelError::Protocol("an empty frame")),
        }
    }

    /// [`FrameReader::take_frame`], copied out.
    pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, ChannelError> {
        let rest = self.buf.get(self.start..).unwrap_or_default();
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
        self.buf.len() - self.start
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
}
