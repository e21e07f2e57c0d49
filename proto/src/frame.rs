//! Length-delimited framing of protobuf messages on a byte stream: a 4-byte
//! little-endian length, then the encoded message. One write per message.

use std::io::{self, Read, Write};

use prost::Message;

pub use crate::limits::MAX_FRAME;

/// Buffers keep at most this much capacity between frames; a larger frame's
/// buffer is given back after it.
pub const KEEP_CAPACITY: usize = 16 << 10;

/// Why a message cannot be framed.
pub fn too_large() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "message exceeds the maximum frame size")
}

/// Encodes `msg` as one frame into `buf` (reused between calls). A message
/// larger than [`MAX_FRAME`] is an `InvalidInput` error and nothing is
/// encoded.
pub fn encode_frame(msg: &impl Message, buf: &mut Vec<u8>) -> io::Result<()> {
    let len = msg.encoded_len();
    if len > MAX_FRAME {
        return Err(too_large());
    }
    buf.clear();
    buf.reserve(4 + len);
    // MAX_FRAME < u32::MAX, so the length fits.
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    msg.encode(buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes `msg` as one frame, reusing `buf` to avoid an allocation per call.
pub fn write_frame(w: &mut impl Write, msg: &impl Message, buf: &mut Vec<u8>) -> io::Result<()> {
    encode_frame(msg, buf)?;
    let r = w.write_all(buf);
    shrink(buf);
    r
}

/// Gives back the capacity a large frame left in `buf`.
pub fn shrink(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_CAPACITY {
        buf.clear();
        buf.shrink_to(KEEP_CAPACITY);
    }
}

/// The length a frame header announces, checked against [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame exceeds the maximum size",
        ));
    }
    Ok(len)
}

/// Reads one frame and decodes it. An oversized or undecodable frame is an
/// `InvalidData` error: the caller closes the connection. The buffer grows
/// as bytes arrive, not to what the length prefix claims.
pub fn read_frame<M: Message + Default>(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<M> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)?;
    read_frame_body(r, header, buf)?;
    decode(buf)
}

/// Where a frame's length would be, a doorbell of a ring (crate::ring): never a frame's length,
/// which is at most [`MAX_FRAME`]. (A frame of length 0 is a message: an answer of CKR_OK with
/// nothing else encodes to no bytes.)
pub const DOORBELL: [u8; 4] = [0xff; 4];

/// Reads one frame's bytes into `buf`, or a doorbell: `true` for a frame, `false` for a doorbell.
pub fn read_frame_or_doorbell(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)?;
    if header == DOORBELL {
        return Ok(false);
    }
    read_frame_body(r, header, buf)?;
    Ok(true)
}

fn read_frame_body(r: &mut impl Read, header: [u8; 4], buf: &mut Vec<u8>) -> io::Result<()> {
    let len = frame_len(header)?;
    buf.clear();
    let got = r.take(len as u64).read_to_end(buf)?;
    if got < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Decodes the message in `buf`, then gives back the capacity a large one left.
pub fn decode<M: Message + Default>(buf: &mut Vec<u8>) -> io::Result<M> {
    let msg = M::decode(buf.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e));
    shrink(buf);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{request::Call, GenerateRandom, Request, SessionBytes};

    /// Audit finding 3: write_frame never checked the limit and truncated the
    /// length with `as u32`.
    #[test]
    fn a_message_past_the_limit_is_not_framed() {
        let big = Request {
            call: Some(Call::DigestUpdate(SessionBytes {
                session: 1,
                data: vec![0; MAX_FRAME],
            })),
            caller_cpu: 0,
            caller_polls: false,
        };
        let mut out = Vec::new();
        let err = write_frame(&mut out, &big, &mut Vec::new()).expect_err("too large");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(out.is_empty(), "nothing is written");
    }

    #[test]
    fn frames_round_trip_and_buffers_shrink() {
        let msg = Request {
            call: Some(Call::GenerateRandom(GenerateRandom { session: 7, length: 32 })),
            caller_cpu: 1,
            caller_polls: false,
        };
        let mut wire = Vec::new();
        let mut buf = Vec::new();
        write_frame(&mut wire, &msg, &mut buf).expect("fits");
        let back: Request = read_frame(&mut wire.as_slice(), &mut buf).expect("decodes");
        assert_eq!(back, msg);
        let large = Request {
            call: Some(Call::DigestUpdate(SessionBytes {
                session: 1,
                data: vec![1; 256 << 10],
            })),
            caller_cpu: 0,
            caller_polls: false,
        };
        write_frame(&mut Vec::new(), &large, &mut buf).expect("fits");
        assert!(buf.capacity() <= KEEP_CAPACITY, "capacity {} kept", buf.capacity());
    }

    #[test]
    fn a_length_prefix_past_the_limit_is_invalid_data() {
        let mut wire = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        wire.extend_from_slice(&[0; 16]);
        let err = read_frame::<Request>(&mut wire.as_slice(), &mut Vec::new()).expect_err("oversized");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
