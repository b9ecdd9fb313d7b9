//! Nodes as real child processes (the `dinq-message` binary), for fault tests that need a
//! process to be killed with SIGKILL or frozen with SIGSTOP; and a private PostgreSQL and
//! Redis (from `deploy/local/stack.sh`) a test may stop and restart without disturbing the
//! others.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::harness::free_port;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A node running as a child process.
pub struct ProcessNode {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl ProcessNode {
    /// Starts the binary with `env` on a free port and waits until it is ready.
    pub async fn start(mut env: HashMap<String, String>) -> ProcessNode {
        let bin = repo().join("target/debug/dinq-message");
        assert!(
            bin.exists(),
            "build the binary first: cargo build --bin dinq-message (deploy/local/test.sh does)"
        );
        let port = free_port();
        env.insert("PORT".into(), port.to_string());
        env.insert("BIND_ADDRESS".into(), "127.0.0.1".into());
        env.entry("LOG_LEVEL".into())
            .or_insert_with(|| "warn".into());
        let child = Command::new(bin)
            .env_clear()
            .envs(&env)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the node binary");
        let node = ProcessNode {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            child: Some(child),
        };
        for _ in 0..300 {
            if let Ok((200, _)) =
                super::client::get(&format!("http://{}/ready", node.addr), None).await
            {
                return node;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("process node on {port} never became ready");
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig}");
    }

    /// SIGKILL: the process dies on the spot.
    pub fn kill9(mut self) {
        self.signal("KILL");
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGSTOP: frozen, sockets open, heartbeats stopped.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`ProcessNode::freeze`].
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    /// SIGTERM and wait for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.signal("TERM");
        self.child
            .take()
            .and_then(|mut c| c.wait().ok())
            .and_then(|s| s.code())
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A PostgreSQL and Redis of one test's own.
pub struct PrivateStack {
    dir: PathBuf,
    /// Admin URL of its `dinq` database.
    pub database_url: String,
    /// Redis `host:port`.
    pub redis: String,
    pg_port: u16,
}

impl PrivateStack {
    /// Starts them (initdb included: a few seconds).
    pub fn start() -> PrivateStack {
        let dir = repo().join(format!(
            "target/private-stack-{}-{}",
            std::process::id(),
            free_port()
        ));
        let (pg_port, redis_port) = (free_port(), free_port());
        let out = Command::new(repo().join("deploy/local/stack.sh"))
            .args(["start", "--fast", "--dir"])
            .arg(&dir)
            .args([
                "--pg-port",
                &pg_port.to_string(),
                "--redis-port",
                &redis_port.to_string(),
            ])
            .args(["--watch-pid", &std::process::id().to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PrivateStack {
            dir,
            database_url: format!("postgres://postgres@127.0.0.1:{pg_port}/dinq"),
            redis: format!("127.0.0.1:{redis_port}"),
            pg_port,
        }
    }

    fn pg_ctl(&self, args: &[&str]) {
        let env = std::fs::read_to_string(self.dir.join("ports.env")).unwrap();
        let get = |key: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap()
                .to_string()
        };
        let data = get("PGDATA_DIR=");
        // The binaries stack.sh chose (the installed PostgreSQL version).
        let pg_ctl = format!("{}/pg_ctl", get("PG_BIN="));
        let runas = if is_root() {
            vec!["runuser", "-u", "postgres", "--"]
        } else {
            vec![]
        };
        let mut cmd = Command::new(runas.first().copied().unwrap_or(&pg_ctl));
        if !runas.is_empty() {
            cmd.args(&runas[1..]).arg(&pg_ctl);
        }
        let opts = format!(
            "-p {} -k {data}.sock -c listen_addresses=127.0.0.1 -c max_connections=600 -c fsync=off",
            self.pg_port
        );
        let status = cmd
            .args(["-D", &data, "-w", "-l"])
            .arg(self.dir.join("postgres.log"))
            .args(["-o", &opts])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {args:?}");
    }

    /// Stops PostgreSQL (fast shutdown: connections are cut).
    pub fn stop_postgres(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }

    /// Starts PostgreSQL again.
    pub fn start_postgres(&self) {
        self.pg_ctl(&["start"]);
    }

    /// Kills Redis, keeps it away for `down`, and starts it again, empty, on the same port.
    pub fn restart_redis(&self, down: Duration) {
        let pidfile = self.dir.join("redis.pid");
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        assert!(
            Command::new("kill")
                .args(["-9", pid.trim()])
                .status()
                .unwrap()
                .success()
        );
        let port = self.redis.rsplit(':').next().unwrap().to_string();
        while std::net::TcpStream::connect(&self.redis).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(down);
        let status = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "yes", "--dir"])
            .arg(&self.dir)
            .arg("--pidfile")
            .arg(&pidfile)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .status()
            .unwrap();
        assert!(status.success(), "redis-server did not start");
        for _ in 0..200 {
            if std::net::TcpStream::connect(&self.redis).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not come back");
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|v| v.split_whitespace().next() == Some("0"))
            })
        })
        .unwrap_or(false)
}

impl Drop for PrivateStack {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("deploy/local/stack.sh"))
            .args(["stop", "--purge", "--dir"])
            .arg(&self.dir)
            .output();
    }
}
