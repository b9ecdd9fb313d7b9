//! Writing server frames: unmasked WebSocket frames encoded straight into one buffer, so
//! everything queued for a connection goes out in a single write (fastwebsockets reads and
//! upgrades; this replaces its one-write-per-frame writer on the hot path).

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Text frame opcode.
pub const TEXT: u8 = 0x1;
/// Close frame opcode.
pub const CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const PING: u8 = 0x9;
/// Pong frame opcode.
pub const PONG: u8 = 0xA;

/// Appends one final, unmasked frame to `out`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// A connection's write side with its batch buffer.
pub struct FrameWriter<W> {
    io: W,
    buf: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// Wraps the write half of a connection.
    pub fn new(io: W) -> Self {
        FrameWriter {
            io,
            buf: Vec::with_capacity(1024),
        }
    }

    /// Queues a frame in the buffer.
    pub fn push(&mut self, opcode: u8, payload: &[u8]) {
        encode(&mut self.buf, opcode, payload);
    }

    /// Queues a close frame with `code` and `reason`.
    pub fn push_close(&mut self, code: u16, reason: &str) {
        let mut payload = Vec::with_capacity(2 + reason.len());
        payload.extend_from_slice(&code.to_be_bytes());
        payload.extend_from_slice(reason.as_bytes());
        self.push(CLOSE, &payload);
    }

    /// Bytes waiting in the buffer.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Writes the buffer out (at most 10 s). The buffer shrinks back after a large batch.
    pub async fn flush(&mut self) -> Result<(), ()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written =
            tokio::time::timeout(Duration::from_secs(10), self.io.write_all(&self.buf)).await;
        self.buf.clear();
        if self.buf.capacity() > 64 * 1024 {
            self.buf.shrink_to(1024);
        }
        match written {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        for (len, header) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
        ] {
            let mut out = Vec::new();
            encode(&mut out, TEXT, &vec![b'a'; len]);
            assert_eq!(out.len(), header + len, "{len}");
            assert_eq!(out[0], 0x81);
        }
        let mut out = Vec::new();
        encode(&mut out, PING, b"");
        assert_eq!(out, [0x89, 0]);
    }
}
