//! The test harness: one real PostgreSQL and Redis per test run (started by
//! `deploy/local/stack.sh` on free ports and stopped when the test process exits), a fresh
//! database and Redis key prefix per test, and real nodes started in-process.
//!
//! Set `DINQ_TEST_DATABASE_URL` (an admin URL, e.g. `postgres://postgres@127.0.0.1:5433/postgres`)
//! and `DINQ_TEST_REDIS_URL` to use servers you started yourself.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::config::Config;

/// The shared servers of this test run.
pub struct Stack {
    /// Admin URL without a database name, e.g. `postgres://postgres@127.0.0.1:5433`.
    pub pg_base: String,
    /// Redis `host:port`.
    pub redis: String,
}

static STACK: OnceLock<Stack> = OnceLock::new();

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// The servers, started on first use. Also installs a log subscriber writing through the
/// test harness (level from `TEST_LOG`, default `warn`).
pub fn stack() -> &'static Stack {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    STACK.get_or_init(|| {
        if let (Ok(pg), Ok(redis)) = (
            std::env::var("DINQ_TEST_DATABASE_URL"),
            std::env::var("DINQ_TEST_REDIS_URL"),
        ) {
            let base = pg
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .unwrap_or(pg);
            return Stack {
                pg_base: base,
                redis,
            };
        }
        let repo = env!("CARGO_MANIFEST_DIR");
        let dir = format!("{repo}/target/test-stack-{}", std::process::id());
        let pg_port = free_port();
        let redis_port = free_port();
        let out = Command::new(format!("{repo}/deploy/local/stack.sh"))
            .args(["start", "--fast", "--dir", &dir])
            .args(["--pg-port", &pg_port.to_string()])
            .args(["--redis-port", &redis_port.to_string()])
            .args(["--watch-pid", &std::process::id().to_string()])
            .output()
            .expect("run deploy/local/stack.sh");
        assert!(
            out.status.success(),
            "stack.sh start failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Stack {
            pg_base: format!("postgres://postgres@127.0.0.1:{pg_port}"),
            redis: format!("127.0.0.1:{redis_port}"),
        }
    })
}

/// One test's database and Redis key space.
pub struct TestEnv {
    /// URL of this test's own database.
    pub database_url: String,
    /// Redis `host:port`.
    pub redis: String,
    /// Key and channel prefix private to this test.
    pub prefix: String,
    /// JWT secret used by the nodes and by [`TestEnv::token`].
    pub secret: String,
}

/// Creates an empty database and returns its name.
pub async fn create_database(stack: &Stack) -> String {
    let name = format!("t_{}", Uuid::new_v4().simple());
    let (client, conn) = tokio_postgres::connect(
        &format!("{}/postgres", stack.pg_base),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect to the test PostgreSQL");
    tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    name
}

impl TestEnv {
    /// A fresh database and key prefix.
    pub async fn new() -> TestEnv {
        let stack = stack();
        let name = create_database(stack).await;
        TestEnv {
            database_url: format!("{}/{name}", stack.pg_base),
            redis: stack.redis.clone(),
            prefix: format!("{}:", &name[2..14]),
            secret: "test-secret-0123456789abcdef0123456789".into(),
        }
    }

    /// The environment a node of this test runs with, plus `extra`.
    pub fn env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = [
            ("DATABASE_URL", self.database_url.as_str()),
            ("REDIS_URL", self.redis.as_str()),
            ("REDIS_KEY_PREFIX", self.prefix.as_str()),
            ("JWT_SECRET", self.secret.as_str()),
            ("DB_POOL_SIZE", "8"),
            ("STARTUP_TIMEOUT_SECONDS", "10"),
            ("SHUTDOWN_GRACE_SECONDS", "5"),
            ("BIND_ADDRESS", "127.0.0.1"),
            // Debug builds on a shared 2-core machine are slow: admission control would
            // refuse sends the functional tests expect to go through. tests::admission
            // sets tight limits of its own.
            ("SEND_QUEUE_TARGET_MS", "30000"),
            ("SEND_DEADLINE_MS", "60000"),
            ("SEND_LAG_LIMIT_MS", "30000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        env
    }

    /// A token for `user` (admin when asked) signed with this test's secret.
    pub fn token(&self, user: Uuid, admin: bool) -> String {
        crate::auth::Tokens::new(&self.secret, Default::default()).issue(
            user.into(),
            admin,
            Duration::from_secs(3600),
        )
    }

    /// A client of this test's database.
    pub async fn db(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.database_url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        client
    }

    /// Starts a node with this test's environment plus `extra`.
    pub async fn node(&self, extra: &[(&str, &str)]) -> TestNode {
        TestNode::start(self.env(extra)).await
    }
}

/// A node running in this process, on its own runtime and threads, so it can be stopped
/// gracefully or crash (every task dropped at once, sockets closed, nothing cleaned up).
pub struct TestNode {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    crash: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestNode {
    /// Binds a free port and runs a node with `env` until stopped. Waits until `/ready`.
    pub async fn start(mut env: HashMap<String, String>) -> TestNode {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        env.insert("PORT".into(), addr.port().to_string());
        env.entry("WS_PUBLIC_URL".into())
            .or_insert_with(|| format!("ws://{addr}/ws"));
        let config = Config::from_env(&env).expect("test config is valid");
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (crash_tx, crash_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("node-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("node runtime");
                let crashed = rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    let run = crate::app::run(config, listener, async move {
                        let _ = stop_rx.await;
                    });
                    tokio::select! {
                        r = run => {
                            if let Err(e) = r {
                                eprintln!("test node failed: {e}");
                            }
                            false
                        }
                        Ok(()) = crash_rx => true,
                    }
                });
                if crashed {
                    rt.shutdown_background();
                } else {
                    rt.shutdown_timeout(Duration::from_secs(2));
                }
            })
            .expect("spawn node thread");
        let node = TestNode {
            addr,
            stop: Some(stop_tx),
            crash: Some(crash_tx),
            thread: Some(thread),
        };
        node.wait_ready().await;
        node
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok((200, _)) = super::client::get(&format!("{}/ready", self.url()), None).await {
                return;
            }
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                panic!("node stopped during start-up");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node at {} never became ready", self.addr);
    }

    /// Triggers a graceful shutdown and waits for the node to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.join().await;
    }

    /// Stops the node abruptly, as a crash would: no drain, no cleanup.
    pub async fn crash(mut self) {
        if let Some(tx) = self.crash.take() {
            let _ = tx.send(());
        }
        self.join().await;
    }

    async fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
