//! The per-user HTTP request rate over a real node: past the burst a caller gets 429
//! `rate_limited` with `Retry-After` and the usual envelope; other users, public routes and
//! the same user after the wait are unaffected; the defaults let a busy client through.

use serde_json::json;
use uuid::Uuid;

use super::client;
use super::harness::TestEnv;

async fn conversations(url: &str, token: &str) -> client::Answer {
    let auth = format!("Bearer {token}");
    client::send(
        "GET",
        &format!("{url}/api/v1/conversations"),
        &[("authorization", &auth)],
        None,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_past_the_burst_gets_429_with_retry_after() {
    let env = TestEnv::new().await;
    let node = env
        .node(&[("HTTP_RATE_PER_SECOND", "1"), ("HTTP_RATE_BURST", "3")])
        .await;
    let url = node.url();
    let script = env.token(Uuid::new_v4(), false);
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let a = conversations(&url, &script).await;
        statuses.push(a.status);
        if a.status == 429 {
            limited = Some(a);
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "the burst goes through");
    let a = limited.expect("requests past the burst are refused");
    assert_eq!(
        a.json(),
        json!({"code": 429, "message": "rate limit exceeded: at most 1 requests per second", "error": "rate_limited"})
    );
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Another user has a bucket of its own; public routes have none.
    let other = env.token(Uuid::new_v4(), false);
    assert_eq!(conversations(&url, &other).await.status, 200);
    for _ in 0..10 {
        assert_eq!(
            client::get(&format!("{url}/health"), None).await.unwrap().0,
            200
        );
    }
    // After Retry-After the script may go on.
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    assert_eq!(conversations(&url, &script).await.status, 200);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_rate_lets_a_busy_client_through() {
    let env = TestEnv::new().await;
    let node = env.node(&[]).await;
    let url = node.url();
    let token = env.token(Uuid::new_v4(), false);
    // 90 requests back to back: within the default burst of 100.
    for i in 0..90 {
        assert_eq!(conversations(&url, &token).await.status, 200, "request {i}");
    }
    node.stop().await;
}

#[test]
fn bad_rate_settings_are_refused() {
    use crate::config::Config;
    for (var, value) in [
        ("HTTP_RATE_PER_SECOND", "-1"),
        ("HTTP_RATE_PER_SECOND", "fast"),
        ("HTTP_RATE_BURST", "0"),
    ] {
        let env: std::collections::HashMap<String, String> = [
            ("DATABASE_URL", "postgres://u@localhost/db"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
            (var, value),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(Config::from_env(&env).unwrap_err().var, var, "{value}");
    }
    let env: std::collections::HashMap<String, String> = [
        ("DATABASE_URL", "postgres://u@localhost/db"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let c = Config::from_env(&env).unwrap();
    assert_eq!((c.http_rate_per_second, c.http_rate_burst), (50, 100));
}
