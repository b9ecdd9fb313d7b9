//! The foundation: command line and configuration errors, probes, metrics, envelopes,
//! start-up failures and graceful shutdown. Authentication failures and request bodies are
//! in `foundation_requests`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::client::{self, get};
use super::harness::{TestEnv, TestNode, free_port};

fn env_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn bad_configuration_exits_64_before_binding() {
    let cases: &[&[(&str, &str)]] = &[
        &[("JWT_SECRET", "0123456789abcdef0123456789abcdef-test")],
        &[("DATABASE_URL", "postgres://localhost/x")],
        &[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("JWT_SECRET", ""),
        ],
        &[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("JWT_SECRET", "change-me"),
        ],
        &[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("JWT_SECRET", "short-but-not-a-placeholder"),
        ],
        &[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
            ("PORT", "http"),
        ],
        &[
            ("DATABASE_URL", "postgres://localhost/x"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-test"),
            ("REDIS_URL", "ftp://r"),
        ],
    ];
    for case in cases {
        let code = crate::cli::main_with_env(&[], &env_map(case));
        assert_eq!(code, ExitCode::from(64), "{case:?}");
    }
}

#[test]
fn token_command_usage() {
    let env = env_map(&[("JWT_SECRET", "0123456789abcdef0123456789abcdef-test")]);
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        crate::cli::main_with_env(&args(&["token"]), &env),
        ExitCode::from(64)
    );
    assert_eq!(
        crate::cli::main_with_env(&args(&["token", "--user", "nope"]), &env),
        ExitCode::from(64)
    );
    assert_eq!(
        crate::cli::main_with_env(&args(&["token", "--user", &Uuid::nil().to_string()]), &env),
        ExitCode::from(64)
    );
    let user = Uuid::new_v4().to_string();
    assert_eq!(
        crate::cli::main_with_env(&args(&["token", "--user", &user, "--ttl", "0"]), &env),
        ExitCode::from(64)
    );
    assert_eq!(
        crate::cli::main_with_env(&args(&["token", "--user", &user]), &HashMap::new()),
        ExitCode::from(64)
    );
    assert_eq!(
        crate::cli::main_with_env(
            &args(&["token", "--user", &user, "--admin", "--ttl", "60"]),
            &env
        ),
        ExitCode::SUCCESS
    );
    assert_eq!(
        crate::cli::main_with_env(&args(&["bogus"]), &env),
        ExitCode::from(64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_and_metrics() {
    let env = TestEnv::new().await;
    let node = env.node(&[]).await;
    let a = client::send("GET", &format!("{}/health", node.url()), &[], None)
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        &a.body[..],
        br#"{"code":0,"message":"success","data":{"status":"ok"}}"#
    );
    assert!(
        a.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(a.headers.contains_key("x-request-id"));

    let (status, body) = get(&format!("{}/ready", node.url()), None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["data"]["status"], "ready");

    let m = client::send("GET", &format!("{}/metrics", node.url()), &[], None)
        .await
        .unwrap();
    assert_eq!(m.status, 200);
    assert!(
        m.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    for needle in [
        "# TYPE dinq_http_requests_total counter",
        "dinq_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"}",
        "dinq_http_request_duration_seconds_bucket",
        "process_resident_memory_bytes",
        "process_open_fds",
        "dinq_db_pool_connections",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_get_envelopes() {
    let env = TestEnv::new().await;
    let node = env.node(&[]).await;
    let (status, body) = get(&format!("{}/nope", node.url()), None).await.unwrap();
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"code": 404, "message": "route not found", "error": "route_not_found"})
    );
    let (status, body) = get(&format!("{}/api/v1/ws-token", node.url()), None)
        .await
        .unwrap();
    assert_eq!(status, 405);
    assert_eq!(body["code"], 405);
    assert_eq!(body["error"], "method_not_allowed");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_fails_clearly_without_dependencies() {
    let env = TestEnv::new().await;
    let dead_pg = format!("postgres://postgres@127.0.0.1:{}/x", free_port());
    let config = crate::config::Config::from_env(
        &env.env(&[("DATABASE_URL", &dead_pg), ("STARTUP_TIMEOUT_SECONDS", "1")]),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = std::time::Instant::now();
    let err = crate::app::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, crate::app::StartError::Database(_)), "{err}");
    assert!(err.to_string().contains("not reachable"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let dead_redis = format!("127.0.0.1:{}", free_port());
    let config = crate::config::Config::from_env(
        &env.env(&[("REDIS_URL", &dead_redis), ("STARTUP_TIMEOUT_SECONDS", "1")]),
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = crate::app::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, crate::app::StartError::Redis(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_redis_and_shutdown() {
    let env = TestEnv::new().await;
    let port = free_port();
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start redis-server");
    let redis_url = format!("127.0.0.1:{port}");
    let node = TestNode::start(env.env(&[("REDIS_URL", &redis_url)])).await;
    assert_eq!(
        get(&format!("{}/ready", node.url()), None).await.unwrap().0,
        200
    );
    redis.kill().unwrap();
    redis.wait().unwrap();
    let (status, body) = get(&format!("{}/ready", node.url()), None).await.unwrap();
    assert_eq!(status, 503);
    assert_eq!(body["error"], "not_ready");
    assert!(
        body["message"].as_str().unwrap().contains("Redis"),
        "{body}"
    );
    // Liveness does not depend on Redis.
    assert_eq!(
        get(&format!("{}/health", node.url()), None)
            .await
            .unwrap()
            .0,
        200
    );
    let addr = node.addr;
    node.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "port still open after shutdown"
    );
}
