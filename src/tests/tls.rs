//! TLS to PostgreSQL and Redis, against servers that accept nothing else ([`tls_stack`]):
//! a node works over TLS end to end; each `sslmode` and `REDIS_TLS_VERIFY` level checks
//! what it says (a wrong host name or an untrusted CA is refused where it should be); and
//! the binary, given a wrong host name or a plain connection, stops at start-up with exit
//! 69 and says why. Also a Redis Cluster that speaks TLS only.
//!
//! [`tls_stack`]: super::tls_stack

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use super::harness::TestNode;
use super::redis_cluster_harness::RedisCluster;
use super::tls_stack::{TlsStack, tls_stack};
use super::ws_client::Ws;
use crate::config::Config;
use crate::store::Store;

/// `e` and its sources, as an operator would want to read them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// Connects with `url`; whether the session is encrypted, or why it failed.
async fn pg_session(url: &str) -> Result<bool, String> {
    let store = Store::new(url, 1).map_err(|e| chain(&e))?;
    let conn = tokio::time::timeout(Duration::from_secs(10), store.conn())
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| chain(&e))?;
    let row = conn
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| chain(&e))?;
    Ok(row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sslmodes_check_what_libpq_says() {
    let s = tls_stack();
    let (ca, other) = (s.file("ca.crt"), s.file("other-ca.crt"));
    let wrong_name = "not valid for name";
    let untrusted = "UnknownIssuer";
    let refused_plain = "no pg_hba.conf entry";
    // (host, parameters, None = an encrypted session, Some(why) = refused because of `why`)
    let cases = [
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            None,
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-full&sslrootcert={ca}"),
            Some(wrong_name),
        ),
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={other}"),
            Some(untrusted),
        ),
        (
            "127.0.0.1",
            format!("sslmode=verify-ca&sslrootcert={ca}"),
            None,
        ),
        (
            "localhost",
            format!("sslmode=verify-ca&sslrootcert={other}"),
            Some(untrusted),
        ),
        // `require` checks nothing, unless given a root certificate: then as verify-ca.
        ("127.0.0.1", "sslmode=require".to_string(), None),
        (
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={ca}"),
            None,
        ),
        (
            "127.0.0.1",
            format!("sslmode=require&sslrootcert={other}"),
            Some(untrusted),
        ),
        // `prefer` (the default) encrypts when the server offers it.
        ("127.0.0.1", String::new(), None),
        ("127.0.0.1", "sslmode=prefer".to_string(), None),
        (
            "127.0.0.1",
            "sslmode=disable".to_string(),
            Some(refused_plain),
        ),
    ];
    for (host, params, refusal) in cases {
        let got = pg_session(&s.pg_url(host, "postgres", &params)).await;
        match refusal {
            None => assert_eq!(got, Ok(true), "{host} {params}"),
            Some(why) => {
                let e = got.expect_err(&format!("{host} {params} must be refused"));
                assert!(e.contains(why), "{host} {params}: {e}");
            }
        }
    }
}

/// The Redis part of a configuration with `vars`.
fn redis_config(vars: &[(&str, &str)]) -> crate::config::RedisConfig {
    let mut env: HashMap<String, String> = [
        ("DATABASE_URL", "postgres://u@localhost/db"),
        ("JWT_SECRET", "s"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_env(&env).expect("valid configuration").redis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tls_levels_check_what_they_say() {
    let s = tls_stack();
    let (ca, other) = (s.file("ca.crt"), s.file("other-ca.crt"));
    let at = |host: &str| format!("rediss://{host}:{}", s.redis_port);
    let wrong_name = "not valid for name";
    let untrusted = "UnknownIssuer";
    // (variables, None = connected, Some(why) = refused because of `why`)
    type Case<'a> = (Vec<(&'a str, String)>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("REDIS_URL", at("localhost")),
                ("REDIS_TLS_CA_FILE", ca.clone()),
            ],
            None,
        ),
        (
            vec![
                ("REDIS_URL", at("127.0.0.1")),
                ("REDIS_TLS_CA_FILE", ca.clone()),
            ],
            Some(wrong_name),
        ),
        (
            vec![
                ("REDIS_URL", at("localhost")),
                ("REDIS_TLS_CA_FILE", other.clone()),
            ],
            Some(untrusted),
        ),
        (
            vec![
                ("REDIS_URL", at("127.0.0.1")),
                ("REDIS_TLS_CA_FILE", ca.clone()),
                ("REDIS_TLS_VERIFY", "ca".into()),
            ],
            None,
        ),
        (
            vec![
                ("REDIS_URL", at("localhost")),
                ("REDIS_TLS_CA_FILE", other.clone()),
                ("REDIS_TLS_VERIFY", "ca".into()),
            ],
            Some(untrusted),
        ),
        (
            vec![
                ("REDIS_URL", at("127.0.0.1")),
                ("REDIS_TLS_VERIFY", "none".into()),
            ],
            None,
        ),
        (
            vec![("REDIS_URL", format!("127.0.0.1:{}", s.redis_port))],
            Some("rediss://"),
        ),
    ];
    for (vars, refusal) in cases {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let config = redis_config(&vars);
        let got = crate::cluster::connect(&config, Duration::from_secs(1))
            .await
            .map(|_| ())
            .map_err(|e| chain(&e));
        match refusal {
            None => assert_eq!(got, Ok(()), "{vars:?}"),
            Some(why) => {
                let e = got.expect_err(&format!("{vars:?} must be refused"));
                assert!(e.contains(why), "{vars:?}: {e}");
            }
        }
    }
}

/// A node's environment on the TLS stack with database `db`, verifying everything.
fn node_env(s: &TlsStack, db: &str) -> HashMap<String, String> {
    [
        ("DATABASE_URL", s.pg_verified(db)),
        ("REDIS_URL", format!("rediss://localhost:{}", s.redis_port)),
        ("REDIS_TLS_CA_FILE", s.file("ca.crt")),
        ("REDIS_KEY_PREFIX", format!("{}:", &db[2..14])),
        ("JWT_SECRET", "tls-test-secret".into()),
        ("DB_POOL_SIZE", "4".into()),
        ("STARTUP_TIMEOUT_SECONDS", "10".into()),
        ("SHUTDOWN_GRACE_SECONDS", "5".into()),
        ("BIND_ADDRESS", "127.0.0.1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_serves_a_message_over_tls() {
    let s = tls_stack();
    let db = s.create_database().await;
    let node = TestNode::start(node_env(s, &db)).await;
    let tokens = crate::auth::Tokens::new("tls-test-secret", Default::default());
    let (ua, ub) = (Uuid::new_v4(), Uuid::new_v4());
    let ttl = Duration::from_secs(600);
    let a = Ws::connect(node.addr, &tokens.issue(ua.into(), false, ttl), ua)
        .await
        .expect("connect a");
    let mut b = Ws::connect(node.addr, &tokens.issue(ub.into(), false, ttl), ub)
        .await
        .expect("connect b");
    a.text_to(None, Some(ub), "over TLS").await;
    let got = b.expect("message").await;
    assert_eq!(got["content"], "over TLS");
    assert_eq!(got["sender_id"], ua.to_string());
    // Stored in the TLS PostgreSQL.
    let store = Store::new(&s.pg_verified(&db), 1).unwrap();
    let row = store
        .conn()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM messages WHERE content = 'over TLS'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    node.stop().await;
}

/// Runs the binary with `env` until it exits; its exit code and standard error.
async fn run_binary(env: HashMap<String, String>) -> (Option<i32>, String) {
    let bin =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug/dinq-message");
    assert!(
        bin.exists(),
        "build the binary first: cargo build --bin dinq-message"
    );
    let out = tokio::process::Command::new(bin)
        .env_clear()
        .envs(env)
        .env("PORT", super::harness::free_port().to_string())
        .env("STARTUP_TIMEOUT_SECONDS", "1")
        .env("LOG_LEVEL", "error")
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_stops_with_69_on_a_wrong_host_name_or_a_plain_connection() {
    let s = tls_stack();
    let db = s.create_database().await;
    let ca = s.file("ca.crt");
    let cases = [
        (
            "DATABASE_URL",
            s.pg_url(
                "127.0.0.1",
                &db,
                &format!("sslmode=verify-full&sslrootcert={ca}"),
            ),
            "not valid for name",
        ),
        (
            "DATABASE_URL",
            s.pg_url("127.0.0.1", &db, "sslmode=disable"),
            "no pg_hba.conf entry",
        ),
        (
            "REDIS_URL",
            format!("rediss://127.0.0.1:{}", s.redis_port),
            "not valid for name",
        ),
        (
            "REDIS_URL",
            format!("redis://127.0.0.1:{}", s.redis_port),
            "use a rediss:// URL",
        ),
    ];
    for (var, value, why) in cases {
        let mut env = node_env(s, &db);
        if var == "REDIS_URL" && value.starts_with("redis://") {
            env.remove("REDIS_TLS_CA_FILE");
        }
        env.insert(var.to_string(), value.clone());
        let (code, stderr) = run_binary(env).await;
        assert_eq!(code, Some(69), "{var}={value}: {stderr}");
        assert!(
            stderr.contains("start-up failed") && stderr.contains(why),
            "{var}={value}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_a_tls_only_redis_cluster_delivers_and_pipelines_per_master() {
    let s = tls_stack();
    let certs = s.certs.clone();
    let rc = tokio::task::spawn_blocking(move || RedisCluster::start_tls(3, 0, &certs))
        .await
        .unwrap();
    let seeds = rc
        .seeds()
        .split(',')
        .map(|a| format!("rediss://{a}"))
        .collect::<Vec<_>>()
        .join(",");
    let ca = s.file("ca.crt");
    // The nodes are announced (and the seeds given) as 127.0.0.1, which the certificate
    // does not name: verify-full refuses them, `ca` checks the chain only.
    let full = redis_config(&[("REDIS_CLUSTER_URLS", &seeds), ("REDIS_TLS_CA_FILE", &ca)]);
    let e = crate::cluster::connect(&full, Duration::from_secs(1))
        .await
        .map(|_| ())
        .expect_err("verify-full against 127.0.0.1");
    assert!(chain(&e).contains("not valid for name"), "{}", chain(&e));
    let vars = [
        ("REDIS_CLUSTER_URLS", seeds.as_str()),
        ("REDIS_TLS_CA_FILE", ca.as_str()),
        ("REDIS_TLS_VERIFY", "ca"),
    ];
    let redis = crate::cluster::connect(&redis_config(&vars), Duration::from_secs(10))
        .await
        .expect("TLS cluster connection");
    // Once the slot map is read, a batch goes as one pipeline per master, on the
    // per-master TLS connections (nothing resent, nothing sent on its own).
    let batch = || {
        (0..100)
            .map(|i| {
                let mut set = redis::cmd("SET");
                set.arg(format!("tls:{{user-{i}}}"))
                    .arg("v")
                    .arg("EX")
                    .arg(60);
                set
            })
            .collect::<Vec<_>>()
    };
    let mut all_pipelined = false;
    for _ in 0..50 {
        let before = redis.pipeline_stats().expect("a cluster connection");
        redis.run_all(batch()).await.expect("run_all over TLS");
        let after = redis.pipeline_stats().unwrap();
        if after.pipelined - before.pipelined == 100
            && after.resent == before.resent
            && after.direct == before.direct
        {
            all_pipelined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(all_pipelined, "{:?}", redis.pipeline_stats());
    // A node on it delivers a message (sharded Pub/Sub over TLS).
    let db = s.create_database().await;
    let mut env = node_env(s, &db);
    env.remove("REDIS_URL");
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    let node = TestNode::start(env).await;
    let tokens = crate::auth::Tokens::new("tls-test-secret", Default::default());
    let (ua, ub) = (Uuid::new_v4(), Uuid::new_v4());
    let ttl = Duration::from_secs(600);
    let a = Ws::connect(node.addr, &tokens.issue(ua.into(), false, ttl), ua)
        .await
        .expect("connect a");
    let mut b = Ws::connect(node.addr, &tokens.issue(ub.into(), false, ttl), ub)
        .await
        .expect("connect b");
    a.text_to(None, Some(ub), "over a TLS cluster").await;
    assert_eq!(b.expect("message").await["content"], "over a TLS cluster");
    node.stop().await;
    drop(rc);
}
