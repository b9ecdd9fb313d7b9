//! Fuzzes the cluster envelope codec: whatever arrives on a user's channel decodes to an
//! event or is dropped, never a panic; what decodes re-encodes to an equal event. The same
//! bytes read as a fan-out envelope's body (recipient list, then an event) split into a list
//! and a body or are dropped, and what splits re-encodes to the same list and body.
#![no_main]

use dinq_message::cluster::envelope;
use dinq_message::domain::routing::Routed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Some(routed) = Routed::decode(bytes.clone()) {
        let mut again = bytes::BytesMut::new();
        routed.encode_into(&mut again);
        assert_eq!(Routed::decode(again.freeze()), Some(routed));
    }
    if let Some((users, inner)) = envelope::split_fanout(&bytes) {
        let _ = Routed::decode(inner.clone());
        let again = envelope::fanout(0, &users, &inner);
        let (_, body) = envelope::split(&again).expect("a header");
        assert_eq!(envelope::split_fanout(&body), Some((users, inner)));
    }
});
