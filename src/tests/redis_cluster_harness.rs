//! A throwaway Redis Cluster for tests: Debian's `redis-server` in cluster mode, N masters
//! (and optionally one replica each) on free local ports, created with
//! `redis-cli --cluster create`, with a short node timeout so a killed master is replaced
//! by its replica within a few seconds. Every process is killed when the value is dropped.
//! [`RedisCluster::start_tls`] makes one that speaks TLS only (clients, cluster bus and
//! replication), with the certificates of [`super::tls_stack`].

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::free_port;

/// One redis-server of the cluster.
struct Server {
    port: u16,
    child: Option<Child>,
}

/// A running Redis Cluster.
/// A free port that redis-server accepts in cluster mode: its cluster bus listens 10,000
/// higher, so the port must be at most 55535.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55535 {
            return port;
        }
    }
}

pub struct RedisCluster {
    dir: PathBuf,
    servers: Vec<Server>,
    /// The certificates directory when the cluster speaks TLS only.
    tls: Option<PathBuf>,
}

impl RedisCluster {
    /// `masters` masters with `replicas` replicas each, slots spread evenly, every node
    /// agreeing that the cluster is up (and every replica in sync).
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        Self::start_with(masters, replicas, None)
    }

    /// As [`RedisCluster::start`], TLS only, with `certs`' `server.crt`, `server.key` and
    /// `ca.crt`.
    pub fn start_tls(masters: usize, replicas: usize, certs: &Path) -> RedisCluster {
        Self::start_with(masters, replicas, Some(certs.to_path_buf()))
    }

    fn start_with(masters: usize, replicas: usize, tls: Option<PathBuf>) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!("dinq-rc-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = RedisCluster {
            dir,
            servers: Vec::new(),
            tls,
        };
        for _ in 0..masters * (1 + replicas) {
            let port = cluster_port();
            let child = cluster.spawn(port);
            cluster.servers.push(Server {
                port,
                child: Some(child),
            });
        }
        for s in &cluster.servers {
            wait_for(|| {
                cluster
                    .cli(s.port, &["PING"])
                    .is_some_and(|o| o.trim() == "PONG")
            })
            .expect("redis-server in cluster mode did not start");
        }
        let mut create = vec!["--cluster".to_string(), "create".to_string()];
        create.extend(
            cluster
                .servers
                .iter()
                .map(|s| format!("127.0.0.1:{}", s.port)),
        );
        create.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        let out = Command::new("redis-cli")
            .args(cluster.tls_args())
            .args(&create)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_healthy();
        cluster
    }

    fn spawn(&self, port: u16) -> Child {
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let listen: Vec<String> = match &self.tls {
            None => vec!["--port".into(), port.to_string()],
            Some(certs) => {
                let file = |name: &str| certs.join(name).display().to_string();
                vec![
                    "--port".into(),
                    "0".into(),
                    "--tls-port".into(),
                    port.to_string(),
                    "--tls-cluster".into(),
                    "yes".into(),
                    "--tls-replication".into(),
                    "yes".into(),
                    "--tls-cert-file".into(),
                    file("server.crt"),
                    "--tls-key-file".into(),
                    file("server.key"),
                    "--tls-ca-cert-file".into(),
                    file("ca.crt"),
                    "--tls-auth-clients".into(),
                    "no".into(),
                ]
            }
        };
        Command::new("redis-server")
            .args(&listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "1000"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)")
    }

    /// `host:port,…` of every master created at start, for `REDIS_CLUSTER_URLS`.
    pub fn seeds(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn alive(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|s| s.child.is_some())
    }

    /// Waits until every live node reports `cluster_state:ok`, every slot is served, and
    /// every replica's link to its master is up.
    pub fn wait_healthy(&self) {
        let ok = wait_for(|| {
            self.alive().all(|s| {
                let info = self.cli(s.port, &["CLUSTER", "INFO"]).unwrap_or_default();
                let repl = self
                    .cli(s.port, &["INFO", "replication"])
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && (repl.contains("role:master") || repl.contains("master_link_status:up"))
            })
        });
        assert!(ok.is_some(), "the Redis Cluster did not become healthy");
    }

    /// Ports of the live masters, in start order.
    pub fn masters(&self) -> Vec<u16> {
        self.alive()
            .filter(|s| {
                self.cli(s.port, &["INFO", "replication"])
                    .is_some_and(|r| r.contains("role:master"))
            })
            .map(|s| s.port)
            .collect()
    }

    /// The node id of the server on `port`.
    pub fn node_id(&self, port: u16) -> String {
        self.cli(port, &["CLUSTER", "MYID"])
            .expect("CLUSTER MYID")
            .trim()
            .to_string()
    }

    /// Moves `slots` slots (with their keys) from the master on `from` to the one on `to`,
    /// as an operator would with `redis-cli --cluster reshard`.
    pub fn reshard(&self, from: u16, to: u16, slots: usize) {
        let out = Command::new("redis-cli")
            .args(self.tls_args())
            .args(["--cluster", "reshard", &format!("127.0.0.1:{from}")])
            .args(["--cluster-from", &self.node_id(from)])
            .args(["--cluster-to", &self.node_id(to)])
            .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "reshard failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Kills the master on `port` with SIGKILL; its replica takes over (see
    /// [`RedisCluster::wait_healthy`]).
    pub fn kill(&mut self, port: u16) {
        let s = self
            .servers
            .iter_mut()
            .find(|s| s.port == port)
            .expect("a server of this cluster");
        if let Some(mut child) = s.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// How many subscribers the shard owning `channel` has for it (`PUBSUB SHARDNUMSUB`),
    /// and how many classic subscribers it has on any node (`PUBSUB NUMSUB`).
    pub fn subscribers(&self, channel: &str) -> (u64, u64) {
        let mut sharded = 0;
        let mut classic = 0;
        for s in self.alive() {
            let count = |cmd: &str| {
                self.cli(s.port, &["PUBSUB", cmd, channel])
                    .and_then(|o| o.lines().nth(1).and_then(|n| n.trim().parse::<u64>().ok()))
                    .unwrap_or(0)
            };
            sharded += count("SHARDNUMSUB");
            classic += count("NUMSUB");
        }
        (sharded, classic)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for s in &mut self.servers {
            if let Some(mut child) = s.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisCluster {
    /// `redis-cli`'s options to reach this cluster (over TLS when it speaks TLS).
    fn tls_args(&self) -> Vec<String> {
        match &self.tls {
            None => Vec::new(),
            Some(certs) => vec![
                "--tls".into(),
                "--cacert".into(),
                certs.join("ca.crt").display().to_string(),
            ],
        }
    }

    /// `redis-cli -p port args…` (raw output), `None` when it fails.
    pub fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(self.tls_args())
            .args(["-p", &port.to_string(), "--raw"])
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Polls `f` for up to 30 s.
fn wait_for(mut f: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if f() {
            return Some(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
