//! The binary envelope of everything published on a user channel or the control channel: a
//! 9-byte header (format version, hash of the origin node's id) and then the body, which the
//! domain encodes. The bus writes the header; each received envelope's header is read once,
//! by [`super::dispatch`].

use bytes::{BufMut, Bytes, BytesMut};

/// Envelope format version.
const VERSION: u8 = 1;
/// Bytes before the body: version, origin node hash.
pub(super) const HEADER_LEN: usize = 9;

/// Hash of a node id, carried in every envelope.
pub fn origin_of(node_id: &str) -> u64 {
    // FNV-1a: stable across processes and builds.
    node_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// An empty envelope with `origin`'s header, for the caller to append a body of about
/// `capacity` bytes to.
pub(super) fn with_header(origin: u64, capacity: usize) -> BytesMut {
    let mut b = BytesMut::with_capacity(HEADER_LEN + capacity);
    b.put_u8(VERSION);
    b.put_u64(origin);
    b
}

/// The origin and the body of an envelope, or `None` when it is malformed.
pub(super) fn split(envelope: &Bytes) -> Option<(u64, Bytes)> {
    if envelope.len() < HEADER_LEN || envelope[0] != VERSION {
        return None;
    }
    let origin = u64::from_be_bytes(envelope[1..HEADER_LEN].try_into().expect("8 bytes"));
    Some((origin, envelope.slice(HEADER_LEN..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_differ() {
        assert_ne!(origin_of("node-a"), origin_of("node-b"));
        assert_eq!(origin_of("node-a"), origin_of("node-a"));
    }

    #[test]
    fn a_header_splits_back_into_origin_and_body() {
        let origin = origin_of("node-a");
        let mut env = with_header(origin, 3);
        env.extend_from_slice(b"abc");
        let env = env.freeze();
        assert_eq!(env.len(), HEADER_LEN + 3);
        assert_eq!(split(&env), Some((origin, Bytes::from_static(b"abc"))));
        assert_eq!(split(&env.slice(..HEADER_LEN - 1)), None);
        let mut other_version = env.to_vec();
        other_version[0] = VERSION + 1;
        assert_eq!(split(&Bytes::from(other_version)), None);
    }
}
