//! Fuzzes token verification, the `Authorization` header rule, query strings and `.env`
//! parsing: nothing panics and no garbage is accepted as a token.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn tokens() -> &'static dinq_message::auth::Tokens {
    static T: OnceLock<dinq_message::auth::Tokens> = OnceLock::new();
    T.get_or_init(|| dinq_message::auth::Tokens::new("fuzz-secret", Default::default()))
}

fuzz_target!(|data: &[u8]| {
    let t = tokens();
    if let Ok(text) = std::str::from_utf8(data) {
        // Random text is (almost surely) not a token signed with our secret.
        if let Ok(caller) = t.verify(text) {
            assert!(!caller.user_id.is_nil());
        }
        let q = dinq_message::http::params::Query::parse(text);
        let _ = (q.limit(20), q.offset(), q.seq("before_seq"), q.text(&["q", "keyword"]));
        let _ = dinq_message::config::parse_dotenv(text);
    }
    let _ = t.from_authorization(Some(data));
});
