//! Fuzzes the WebSocket frame decoder: any bytes give a request or a client error, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if let Err(e) = dinq_message::ws::protocol::decode(&mut bytes) {
        assert!(e.is_client());
    }
});
