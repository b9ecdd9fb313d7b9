//! The binary envelope of everything published on a user channel, a fan-out channel or the
//! control channel: a 9-byte header (format version, hash of the origin node's id) and then
//! the body, which the domain encodes. The bus writes the header; each received envelope's
//! header is read once, by [`super::dispatch`].
//!
//! On a fan-out channel the body is a recipient list and then the domain's body, the same
//! for every recipient: a count (u32, big-endian), that many 16-byte user ids, the inner
//! body ([`fanout`], [`split_fanout`]).

use bytes::{BufMut, Bytes, BytesMut};

use crate::model::UserId;

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
pub fn split(envelope: &Bytes) -> Option<(u64, Bytes)> {
    if envelope.len() < HEADER_LEN || envelope[0] != VERSION {
        return None;
    }
    let origin = u64::from_be_bytes(envelope[1..HEADER_LEN].try_into().expect("8 bytes"));
    Some((origin, envelope.slice(HEADER_LEN..)))
}

/// A fan-out envelope: `origin`'s header, then `users` and `inner` (a domain body).
pub fn fanout(origin: u64, users: &[UserId], inner: &[u8]) -> Bytes {
    let mut b = with_header(origin, 4 + 16 * users.len() + inner.len());
    b.put_u32(u32::try_from(users.len()).expect("fewer than 2^32 recipients"));
    for u in users {
        b.put_slice(u.as_bytes());
    }
    b.put_slice(inner);
    b.freeze()
}

/// The recipients and the inner body of a fan-out envelope's body (after the header), or
/// `None` when it is malformed (the list runs past the end).
pub fn split_fanout(body: &Bytes) -> Option<(Vec<UserId>, Bytes)> {
    let count = u32::from_be_bytes(body.get(..4)?.try_into().expect("4 bytes")) as usize;
    let end = count.checked_mul(16)?.checked_add(4)?;
    let ids = body.get(4..end)?;
    let users = ids
        .chunks_exact(16)
        .map(|c| UserId::from_bytes(c.try_into().expect("16 bytes")))
        .collect();
    Some((users, body.slice(end..)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fanout_envelope_round_trips_and_malformed_ones_are_refused() {
        let origin = origin_of("node-a");
        for n in [0, 1, 3, 1000] {
            let users: Vec<UserId> = (0..n).map(|_| UserId::new_v4()).collect();
            let env = fanout(origin, &users, b"inner body");
            assert_eq!(env.len(), HEADER_LEN + 4 + 16 * n + 10);
            let (o, body) = split(&env).expect("a header");
            assert_eq!(o, origin);
            let (got, inner) = split_fanout(&body).expect("well formed");
            assert_eq!(got, users);
            assert_eq!(inner, Bytes::from_static(b"inner body"));
            // Cut anywhere inside the count or the list: refused.
            for cut in [0, 1, 3, 4 + 16 * n - 1]
                .into_iter()
                .filter(|c| *c < 4 + 16 * n)
            {
                assert_eq!(
                    split_fanout(&body.slice(..cut)),
                    None,
                    "cut at {cut} of {n}"
                );
            }
            // Cut right after the list: no inner body, still well formed.
            let (got, inner) = split_fanout(&body.slice(..4 + 16 * n)).expect("empty inner");
            assert_eq!((got.len(), inner.len()), (n, 0));
        }
        // A count that would overflow, or that claims more than is there.
        assert_eq!(split_fanout(&Bytes::from_static(&[0xff; 4])), None);
        assert_eq!(
            split_fanout(&Bytes::from_static(&[0, 0, 0, 2, 1, 2, 3])),
            None
        );
    }

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
