//! A publish that fails is never dropped silently (issue 16): the publisher remembers whose
//! events did not get through and, once publishing works again, asks the nodes holding
//! those users to repair them from PostgreSQL. Runs on a Redis of its own, so refusing
//! `PUBLISH` to its clients disturbs no other test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::harness::{TestEnv, free_port};
use super::realtime::{Cluster, befriend, send_text};

struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        PrivateRedis { child, port }
    }

    fn cli(&self, args: &[&str]) {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_whose_publish_failed_are_repaired_once_publishing_works() {
    let redis = PrivateRedis::start();
    let mut env = TestEnv::new().await;
    env.redis = format!("127.0.0.1:{}", redis.port);
    let mut nodes = Vec::new();
    for i in 0..2 {
        nodes.push(env.node(&[("NODE_ID", &format!("node-{i}"))]).await);
    }
    let c = Cluster { env, nodes };
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    // PUBLISH is refused (subscriptions stay): the message is stored and echoed on A's node,
    // but B's node hears nothing.
    redis.cli(&["ACL", "SETUSER", "default", "-publish"]);
    let m = send_text(&mut a, Some(conv), None, "through the outage").await;
    b.expect_no("message", Duration::from_millis(1500)).await;
    // Publishing works again; nothing else is sent, yet B gets the message, once.
    redis.cli(&["ACL", "SETUSER", "default", "+publish"]);
    let got = b.expect_within("message", Duration::from_secs(10)).await;
    assert_eq!(got["id"], m["id"]);
    b.expect_no("message", Duration::from_millis(500)).await;
    c.stop().await;
}
