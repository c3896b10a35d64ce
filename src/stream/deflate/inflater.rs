//! A client's compressed frames inflated below tungstenite (see the
//! module above).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncRead, ReadBuf};

use super::{Negotiated, TAIL};

/// A client message being inflated.
struct Message {
    opcode: u8,
    mask: [u8; 4],
    inflated: Vec<u8>,
}

/// Client frames in, the same frames inflated out (see the module's doc).
pub struct Inflater {
    /// What the socket gave that is not a whole frame yet.
    input: BytesMut,
    /// Frames ready for tungstenite.
    output: BytesMut,
    decompress: Option<Decompress>,
    message: Option<Message>,
    no_context: bool,
    /// The largest frame and message tungstenite takes.
    max: usize,
    /// Past a frame too large to hold: bytes go through as they are, for
    /// tungstenite to refuse (1009).
    passthrough: bool,
}

impl Inflater {
    pub fn new(agreed: Negotiated, max: usize) -> Self {
        Self {
            input: BytesMut::new(),
            output: BytesMut::new(),
            decompress: None,
            message: None,
            no_context: agreed.client_no_context_takeover,
            max,
            passthrough: false,
        }
    }

    /// Reads from `io` through the inflater.
    pub fn poll_read(
        &mut self,
        mut io: Pin<&mut (dyn AsyncRead + Send + Unpin)>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.output.is_empty() {
                let n = self.output.len().min(buf.remaining());
                buf.put_slice(&self.output[..n]);
                self.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 4096];
            let mut read = ReadBuf::new(&mut chunk);
            std::task::ready!(io.as_mut().poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The end of the stream: what is left goes as it is.
                let rest = self.input.split();
                buf.put_slice(&rest[..rest.len().min(buf.remaining())]);
                return Poll::Ready(Ok(()));
            }
            self.feed(read.filled());
        }
    }

    /// Takes bytes from the socket; whole frames come out in `output`.
    fn feed(&mut self, bytes: &[u8]) {
        if self.passthrough {
            self.output.extend_from_slice(bytes);
            return;
        }
        self.input.extend_from_slice(bytes);
        while !self.passthrough
            && let Some(frame) = self.next_frame()
        {
            self.frame(frame);
        }
        if self.passthrough {
            let rest = self.input.split();
            self.output.extend_from_slice(&rest);
        }
    }

    /// The next whole frame of `input`: its header bytes and payload.
    fn next_frame(&mut self) -> Option<Frame> {
        let b = &self.input[..];
        if b.len() < 2 {
            return None;
        }
        let masked = b[1] & 0x80 != 0;
        let (len, at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?), 10),
            126 | 127 => return None,
            n => (u64::from(n), 2),
        };
        let header_len = at + if masked { 4 } else { 0 };
        let too_large = usize::try_from(len).map_or(true, |l| l > self.max);
        if too_large || !masked {
            // Not for the inflater: tungstenite refuses it (1009, or an
            // unmasked client frame); the reserved bit is cleared so that it
            // says which.
            self.input[0] &= !0x40;
            self.passthrough = true;
            return None;
        }
        let total = header_len + usize::try_from(len).ok()?;
        if b.len() < total {
            return None;
        }
        let frame = self.input.split_to(total).freeze();
        Some(Frame {
            bytes: frame,
            header_len,
        })
    }

    fn frame(&mut self, frame: Frame) {
        let b0 = frame.bytes[0];
        let (fin, rsv1, opcode) = (b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x0f);
        let control = opcode >= 0x8;
        // A new message while a compressed one is held, or the reserved bit
        // on a continuation (RFC 7692 sets it on the first frame only): a
        // protocol error, not something to pass on or append.
        if !control && ((opcode != 0 && self.message.is_some()) || (opcode == 0 && rsv1)) {
            self.corrupt();
            return;
        }
        let compressed = !control && (rsv1 || (opcode == 0 && self.message.is_some()));
        if !compressed {
            self.output.extend_from_slice(&frame.bytes);
            return;
        }
        let mask: [u8; 4] = frame.bytes[frame.header_len - 4..frame.header_len]
            .try_into()
            .unwrap_or_default();
        let mut payload = frame.bytes[frame.header_len..].to_vec();
        unmask(&mut payload, mask);
        let message = self.message.get_or_insert(Message {
            opcode,
            mask,
            inflated: Vec::new(),
        });
        let decompress = self
            .decompress
            .get_or_insert_with(|| Decompress::new(false));
        let limit = self.max + 1;
        if inflate(decompress, &payload, &mut message.inflated, limit).is_err() {
            self.corrupt();
            return;
        }
        if !fin {
            return;
        }
        if inflate(decompress, &TAIL, &mut message.inflated, limit).is_err() {
            self.corrupt();
            return;
        }
        let Some(message) = self.message.take() else {
            return;
        };
        if self.no_context {
            self.decompress = None;
        }
        write_frame(
            &mut self.output,
            message.opcode,
            message.mask,
            message.inflated,
        );
    }

    /// Compressed data that does not inflate: a frame tungstenite refuses
    /// as a protocol error (a reserved opcode), then nothing more.
    fn corrupt(&mut self) {
        self.output.extend_from_slice(&[0x83, 0x80, 0, 0, 0, 0]);
        self.passthrough = true;
        self.input.clear();
    }
}

struct Frame {
    bytes: Bytes,
    header_len: usize,
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Inflates `input` onto `out`, at most `limit` bytes in all.
fn inflate(d: &mut Decompress, input: &[u8], out: &mut Vec<u8>, limit: usize) -> io::Result<()> {
    let mut input = input;
    while out.len() < limit {
        if out.len() == out.capacity() {
            // Room for what this input likely makes, at least 256 bytes and
            // never past the limit (which may be fewer than 256 bytes away).
            let room = limit - out.len();
            out.reserve_exact((4 * input.len()).max(256).min(room));
        }
        let (taken_before, made_before) = (d.total_in(), d.total_out());
        d.decompress_vec(input, out, FlushDecompress::Sync)
            .map_err(io::Error::other)?;
        let taken = usize::try_from(d.total_in() - taken_before).unwrap_or(input.len());
        let made = d.total_out() - made_before;
        input = &input[taken..];
        // All of it taken and room left: nothing more to come out.
        if input.is_empty() && out.len() < out.capacity() {
            return Ok(());
        }
        if taken == 0 && made == 0 && out.len() < out.capacity() {
            return Ok(());
        }
    }
    Ok(())
}

/// A plain, masked, final frame of `opcode` holding `payload`.
fn write_frame(out: &mut BytesMut, opcode: u8, mask: [u8; 4], mut payload: Vec<u8>) {
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.put_u8(0x80 | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(0x80 | 127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(&mask);
    unmask(&mut payload, mask);
    out.put_slice(&payload);
}

#[cfg(test)]
mod tests {
    use super::super::compress;
    use super::*;

    /// A client's compressed text frame as a browser sends it.
    fn client_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut deflated = compress(payload).to_vec();
        unmask(&mut deflated, mask);
        let mut f = vec![0x80 | 0x40 | 0x1];
        match deflated.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend_from_slice(&deflated);
        f
    }

    fn plain_frame(payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_frame(&mut out, 0x1, mask, payload.to_vec());
        out.to_vec()
    }

    #[test]
    fn what_is_compressed_inflates_back() {
        let text =
            br#"{"id":1,"method":"subscribe","params":{"streams":["EURUSD@point"]}}"#.repeat(20);
        let deflated = compress(&text);
        assert!(deflated.len() < text.len() / 5, "{}", deflated.len());
        let mut d = Decompress::new(false);
        let mut out = Vec::new();
        let mut input = deflated.to_vec();
        input.extend_from_slice(&TAIL);
        inflate(&mut d, &input, &mut out, 1 << 20).unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn compressed_client_frames_come_out_plain_whatever_the_chunks() {
        let mask = [1, 2, 3, 4];
        let a = br#"{"id":1,"method":"list"}"#;
        let b = br#"{"id":2,"method":"subscribe","params":{"streams":["EURUSD@point","USDJPY@point"]}}"#;
        let mut wire = client_frame(a, mask);
        wire.extend_from_slice(&[0x89, 0x80, 9, 9, 9, 9]); // a ping, as it is
        wire.extend(client_frame(b, mask));
        let mut expected = plain_frame(a, mask);
        expected.extend_from_slice(&[0x89, 0x80, 9, 9, 9, 9]);
        expected.extend(plain_frame(b, mask));
        for chunk in [1, 3, 7, wire.len()] {
            let mut inflater = Inflater::new(
                Negotiated {
                    client_no_context_takeover: true,
                },
                1 << 16,
            );
            for piece in wire.chunks(chunk) {
                inflater.feed(piece);
            }
            assert_eq!(&inflater.output[..], &expected[..], "in chunks of {chunk}");
        }
    }

    /// A compressed message in small continuation frames that inflates past
    /// the limit: the inflated message stops at the limit (tungstenite then
    /// refuses it with 1009), whatever the limit and the frames' sizes.
    #[test]
    fn a_message_inflating_past_the_limit_in_fragments_stops_at_it() {
        let mask = [5, 6, 7, 8];
        let deflated = compress(&[b' '; 200_000]).to_vec();
        for (max, piece) in [(65_536, 50), (1_000, 7), (300, 1), (65_536, 125)] {
            let mut wire = Vec::new();
            let pieces: Vec<&[u8]> = deflated.chunks(piece).collect();
            for (i, p) in pieces.iter().enumerate() {
                let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
                let first = if i == 0 { 0x40 | 0x1 } else { 0 };
                wire.push(fin | first);
                wire.push(0x80 | p.len() as u8);
                wire.extend_from_slice(&mask);
                let mut masked = p.to_vec();
                unmask(&mut masked, mask);
                wire.extend_from_slice(&masked);
            }
            let mut inflater = Inflater::new(
                Negotiated {
                    client_no_context_takeover: true,
                },
                max,
            );
            inflater.feed(&wire);
            // One plain text frame of max + 1 bytes: 0x81, the length, the mask.
            assert_eq!(inflater.output[0], 0x81, "max {max}");
            let header = if max < usize::from(u16::MAX) { 8 } else { 14 };
            assert_eq!(
                inflater.output.len(),
                header + max + 1,
                "max {max}, pieces of {piece}"
            );
        }
    }

    /// A data frame that is not a continuation while a compressed message
    /// is held, or the reserved bit on a continuation, is a protocol error
    /// for tungstenite to refuse (a reserved opcode), not a message.
    #[test]
    fn interleaved_or_marked_continuations_are_refused() {
        let mask = [1, 1, 1, 1];
        let mut deflated = compress(b"hello, hello, hello").to_vec();
        unmask(&mut deflated, mask);
        let (a, b) = deflated.split_at(deflated.len() / 2);
        let frame = |b0: u8, payload: &[u8]| {
            let mut f = vec![b0, 0x80 | payload.len() as u8];
            f.extend_from_slice(&mask);
            f.extend_from_slice(payload);
            f
        };
        let refused = [0x83, 0x80, 0, 0, 0, 0];
        for second in [frame(0x81, b"plain"), frame(0xc1, b), frame(0x80 | 0x40, b)] {
            let mut inflater = Inflater::new(
                Negotiated {
                    client_no_context_takeover: true,
                },
                1 << 16,
            );
            let mut wire = frame(0x40 | 0x1, a);
            wire.extend(second);
            inflater.feed(&wire);
            assert_eq!(&inflater.output[..], &refused[..]);
        }
    }

    #[test]
    fn a_frame_over_the_limit_goes_to_tungstenite_to_refuse() {
        let mut inflater = Inflater::new(
            Negotiated {
                client_no_context_takeover: false,
            },
            100,
        );
        let mut frame = vec![0xc1, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4];
        frame.extend(vec![0u8; 256]);
        inflater.feed(&frame);
        assert_eq!(inflater.output[0], 0x81, "the reserved bit cleared");
        assert_eq!(inflater.output.len(), frame.len(), "as it came");
    }
}
