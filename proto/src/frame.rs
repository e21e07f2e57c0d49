//! Length-delimited framing of protobuf messages on a byte stream: a 4-byte
//! little-endian length, then the encoded message. One write per message.

use std::io::{self, Read, Write};

use prost::Message;

/// Largest frame either side accepts; a longer length prefix means the peer
/// is not speaking this protocol and the connection is closed.
pub const MAX_FRAME: usize = 64 << 20;

/// Writes `msg` as one frame, reusing `buf` to avoid an allocation per call.
pub fn write_frame(w: &mut impl Write, msg: &impl Message, buf: &mut Vec<u8>) -> io::Result<()> {
    let len = msg.encoded_len();
    buf.clear();
    buf.reserve(4 + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    msg.encode(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    w.write_all(buf)
}

/// Reads one frame and decodes it. An oversized or undecodable frame is an
/// `InvalidData` error: the caller closes the connection.
pub fn read_frame<M: Message + Default>(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<M> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)?;
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame exceeds the maximum size"));
    }
    buf.clear();
    buf.resize(len, 0);
    r.read_exact(buf)?;
    M::decode(buf.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
