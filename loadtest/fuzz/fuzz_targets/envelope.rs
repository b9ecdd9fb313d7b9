//! Fuzzes the cluster envelope codec: whatever arrives on a user's channel decodes to an
//! event or is dropped, never a panic; what decodes re-encodes to an equal event.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes = bytes::Bytes::copy_from_slice(data);
    if let Some(routed) = dinq_message::domain::routing::Routed::decode(bytes.clone()) {
        let mut again = bytes::BytesMut::new();
        routed.encode_into(&mut again);
        assert_eq!(dinq_message::domain::routing::Routed::decode(again.freeze()), Some(routed));
    }
});
