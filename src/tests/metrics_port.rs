//! `METRICS_PORT` over a real node: `/metrics` moves to its own listener and the public
//! port stops serving it; HTTP metric labels stay bounded whatever method or path clients
//! send; a metrics port that cannot be bound stops start-up (exit 69).

use std::collections::HashMap;

use super::client;
use super::harness::{TestEnv, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_to_their_own_port_with_bounded_labels() {
    let env = TestEnv::new().await;
    let metrics_port = free_port().to_string();
    let node = env.node(&[("METRICS_PORT", &metrics_port)]).await;
    let public = node.url();
    let private = format!("http://127.0.0.1:{metrics_port}");

    // Requests a scanner might send: extension methods, random paths.
    for (method, path) in [
        ("FOO", "/api/v1/conversations"),
        ("BREW", "/x-secret-scan"),
        ("GET", "/wp-admin/setup-config.php"),
        ("GET", "/random-path-7f3a"),
    ] {
        let a = client::send(method, &format!("{public}{path}"), &[], None)
            .await
            .unwrap();
        assert!(
            a.status == 404 || a.status == 405,
            "{method} {path}: {}",
            a.status
        );
    }
    // The public port no longer serves /metrics.
    let a = client::send("GET", &format!("{public}/metrics"), &[], None)
        .await
        .unwrap();
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["error"], "route_not_found");

    let a = client::send("GET", &format!("{private}/metrics"), &[], None)
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let text = String::from_utf8(a.body.to_vec()).unwrap();
    assert!(text.contains("dinq_http_requests_total"), "{text}");
    assert!(
        text.contains(r#"method="other""#),
        "unknown methods collapse"
    );
    assert!(
        text.contains(r#"route="other""#),
        "unmatched routes collapse"
    );
    for raw in ["FOO", "BREW", "wp-admin", "random-path", "x-secret-scan"] {
        assert!(!text.contains(raw), "{raw} leaked into a label");
    }
    // Only /metrics is served there.
    for path in ["/health", "/api/v1/conversations", "/"] {
        let a = client::send("GET", &format!("{private}{path}"), &[], None)
            .await
            .unwrap();
        assert_eq!(a.status, 404, "{path}");
    }
    node.stop().await;
}

pub(super) fn binary() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug/dinq-message")
}

pub(super) fn run_binary(env: &HashMap<String, String>) -> (Option<i32>, String) {
    let out = std::process::Command::new(binary())
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_port_in_use_stops_start_up() {
    let env = TestEnv::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let port = free_port().to_string();
    let vars = env.env(&[("PORT", &port), ("METRICS_PORT", &taken_port)]);
    let (code, stderr) = tokio::task::spawn_blocking(move || run_binary(&vars))
        .await
        .unwrap();
    assert_eq!(code, Some(69), "{stderr}");
    assert!(stderr.contains("METRICS_PORT"), "{stderr}");
    drop(taken);
}

#[test]
fn metrics_port_must_be_a_port_other_than_port() {
    let vars = |extra: &[(&str, &str)]| -> HashMap<String, String> {
        [
            ("DATABASE_URL", "postgres://u@127.0.0.1:1/db"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    for (metrics, port) in [("0", "8083"), ("x", "8083"), ("9000", "9000")] {
        let e =
            crate::config::Config::from_env(&vars(&[("METRICS_PORT", metrics), ("PORT", port)]))
                .unwrap_err();
        assert_eq!(e.var, "METRICS_PORT", "{metrics}");
    }
}
