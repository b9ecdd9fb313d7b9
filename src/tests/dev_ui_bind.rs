//! `DEV_UI=1` (whose token route signs tokens for anyone, admins too) is refused at
//! start-up on a non-loopback address unless `DEV_UI_PUBLIC=1` says so: the binary exits 64
//! naming the variable, before any connection is tried.

use std::collections::HashMap;

use super::metrics_port::run_binary;

#[test]
fn dev_ui_is_refused_on_a_public_address() {
    let base = [
        ("DATABASE_URL", "postgres://u@127.0.0.1:1/db"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
    ];
    let vars = |extra: &[(&str, &str)]| -> HashMap<String, String> {
        base.iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    // Exit 64 naming DEV_UI, before any connection (the database port is closed: 69 else).
    for extra in [
        &[("DEV_UI", "1")][..],
        &[("DEV_UI", "true"), ("BIND_ADDRESS", "0.0.0.0")],
        &[("DEV_UI", "1"), ("BIND_ADDRESS", "10.1.2.3")],
        &[("DEV_UI", "1"), ("BIND_ADDRESS", "::")],
        &[("DEV_UI", "1"), ("DEV_UI_PUBLIC", "0")],
        &[("DEV_UI", "1"), ("DEV_UI_PUBLIC", "yes")],
    ] {
        let (code, stderr) = run_binary(&vars(extra));
        assert_eq!(code, Some(64), "{extra:?}: {stderr}");
        assert!(stderr.contains("DEV_UI"), "{stderr}");
    }
    // Loopback, or said to be intended: accepted.
    for extra in [
        &[("DEV_UI", "1"), ("BIND_ADDRESS", "127.0.0.1")][..],
        &[("DEV_UI", "1"), ("BIND_ADDRESS", "::1")],
        &[("DEV_UI", "1"), ("DEV_UI_PUBLIC", "1")],
        &[("BIND_ADDRESS", "0.0.0.0")],
    ] {
        let c = crate::config::Config::from_env(&vars(extra));
        assert!(c.is_ok(), "{extra:?}: {c:?}");
    }
}
