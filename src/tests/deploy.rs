//! Deployment artifacts, checked with the real tools (installed by
//! `deploy/local/tools.sh`): the Dockerfile with hadolint, the Kubernetes manifests rendered
//! by kustomize and validated by kubernetes-validate, metrics and rules with promtool, the
//! Grafana dashboard against our metric names, and the local cluster behind nginx with
//! Prometheus scraping it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::harness::{TestEnv, free_port};
use super::ws_client::Ws;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool from PATH or `target/tools`; a clear failure when missing.
fn tool(name: &str) -> PathBuf {
    let tools = repo().join("target/tools");
    for candidate in [
        tools.join("venv/bin").join(name),
        tools.join("node_modules/.bin").join(name),
    ] {
        if candidate.exists() {
            return candidate;
        }
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed: run deploy/local/tools.sh (deploy/local/test.sh does)");
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn dockerfile_passes_hadolint() {
    run(Command::new(tool("hadolint")).arg(repo().join("deploy/Dockerfile")));
}

#[test]
fn kubernetes_manifests_render_and_validate() {
    for dir in ["k8s/base", "k8s/overlays/example"] {
        let rendered = run(Command::new(tool("kustomize"))
            .arg("build")
            .arg(repo().join(dir)));
        let file = std::env::temp_dir().join(format!(
            "dinq-k8s-{}-{}.yaml",
            std::process::id(),
            dir.replace('/', "-")
        ));
        std::fs::write(&file, &rendered).unwrap();
        run(Command::new(tool("kubernetes-validate"))
            // The newest version the validator knows. A CRD (the ServiceMonitor) has no
            // built-in schema: it is reported as a warning, not a failure.
            .args(["--kubernetes-version", "1.37", "--strict", "--quiet"])
            .arg(&file));
        for kind in [
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "NetworkPolicy",
            "ServiceMonitor",
            "ConfigMap",
        ] {
            assert!(
                rendered.contains(&format!("kind: {kind}")),
                "{dir} renders no {kind}"
            );
        }
        let _ = std::fs::remove_file(file);
    }
    let overlay = run(Command::new(tool("kustomize"))
        .arg("build")
        .arg(repo().join("k8s/overlays/example")));
    for needle in [
        "kind: Namespace",
        "kind: Secret",
        "kind: Ingress",
        "fieldPath: metadata.name",
        "terminationGracePeriodSeconds: 40",
        "path: /ready",
        "path: /health",
        "preStop",
        "METRICS_PORT: \"9464\"",
        "containerPort: 9464",
        "targetPort: metrics",
        "kubernetes.io/metadata.name: monitoring",
    ] {
        assert!(
            overlay.contains(needle),
            "the example overlay lacks {needle}"
        );
    }
    // Prometheus scrapes the metrics port; the load-balanced Service does not expose it.
    let docs: Vec<&str> = overlay.split("\n---\n").collect();
    let monitor = docs
        .iter()
        .find(|d| d.contains("kind: ServiceMonitor"))
        .unwrap();
    assert!(monitor.contains("port: metrics"), "{monitor}");
    let public = docs
        .iter()
        .find(|d| d.contains("kind: Service\n") && !d.contains("clusterIP: None"))
        .unwrap();
    assert!(!public.contains("9464"), "{public}");
}

#[test]
fn prometheus_rules_pass_promtool() {
    run(Command::new(tool("promtool"))
        .args(["check", "rules"])
        .arg(repo().join("deploy/prometheus/rules.yml")));
    run(Command::new(tool("promtool"))
        .args(["check", "config", "--syntax-only"])
        .arg(repo().join("deploy/prometheus/prometheus.yml")));
}

/// Every `dinq_*` or `process_*` metric the dashboard and the rules use is one we export.
#[test]
fn dashboard_and_rules_use_metrics_we_export() {
    let source = std::fs::read_to_string(repo().join("src/metrics.rs")).unwrap();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/dashboards/dinq-message.json"))
            .unwrap(),
    )
    .unwrap();
    let rules = std::fs::read_to_string(repo().join("deploy/prometheus/rules.yml")).unwrap();
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string())
        })
        .collect();
    exprs.push(rules);
    for expr in exprs {
        for word in expr.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !(word.starts_with("dinq_") || word.starts_with("process_")) {
                continue;
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .fold(word, |w, s| w.strip_suffix(s).unwrap_or(w));
            assert!(
                source.contains(&format!("\"{base}\"")),
                "{word} is used but not exported"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool() {
    let env = TestEnv::new().await;
    let node = env.node(&[]).await;
    // Some traffic so histograms and labelled counters exist.
    let user = Uuid::new_v4();
    let mut ws = Ws::connect(node.addr, &env.token(user, false), user)
        .await
        .unwrap();
    super::realtime::send_text(&mut ws, None, Some(Uuid::new_v4()), "for the metrics").await;
    let text = super::client::send("GET", &format!("{}/metrics", node.url()), &[], None)
        .await
        .unwrap()
        .body;
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_behind_nginx_is_scraped_by_prometheus() {
    let port = free_port();
    let dir = repo().join(format!("target/cluster-test-{}", std::process::id()));
    let bin = repo().join("target/debug/dinq-message");
    assert!(
        bin.exists(),
        "build the binary first: cargo build --bin dinq-message (deploy/local/test.sh does)"
    );
    let script = repo().join("deploy/local/cluster.sh");
    let up = Command::new(&script)
        .args(["up", "--port", &port.to_string(), "--dir"])
        .arg(&dir)
        .arg("--bin")
        .arg(&bin)
        .env("LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let down = || {
        let _ = Command::new(&script)
            .arg("down")
            .arg("--dir")
            .arg(&dir)
            .output();
        let _ = std::fs::remove_dir_all(&dir);
    };
    if !up.status.success() {
        down();
        panic!(
            "cluster.sh up failed:\n{}{}",
            String::from_utf8_lossy(&up.stdout),
            String::from_utf8_lossy(&up.stderr)
        );
    }
    // In a task, so a failed assertion still takes the cluster down.
    let outcome = tokio::spawn(check_cluster(dir.clone(), port)).await;
    down();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn check_cluster(dir: PathBuf, port: u16) {
    let env_text = std::fs::read_to_string(dir.join("cluster.env")).unwrap();
    let get = |k: &str| {
        env_text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let secret = get("JWT_SECRET");
    let prometheus = get("PROMETHEUS_URL");
    let tokens = crate::auth::Tokens::new(&secret, Default::default());
    let lb: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // nginx balances by least connections: three clients land on three nodes.
    let mut users = Vec::new();
    for _ in 0..3 {
        let id = Uuid::new_v4();
        users.push(
            Ws::connect(
                lb,
                &tokens.issue(id.into(), false, Duration::from_secs(600)),
                id,
            )
            .await
            .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut per_node = Vec::new();
    for url in get("NODE_URLS").split(',') {
        let text = super::client::send("GET", &format!("{url}/metrics"), &[], None)
            .await
            .unwrap()
            .body;
        let text = String::from_utf8_lossy(&text).to_string();
        let open = text
            .lines()
            .find_map(|l| l.strip_prefix("dinq_ws_connections "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        per_node.push(open);
    }
    assert_eq!(per_node, [1.0, 1.0, 1.0], "one client per node");
    let (mut a, mut b) = {
        let mut it = users.into_iter();
        (it.next().unwrap(), it.next().unwrap())
    };
    let first = super::realtime::send_text(&mut a, None, Some(b.user), "through nginx").await;
    assert_eq!(b.expect("message").await["id"], first["id"]);
    // Prometheus scrapes every node and sees the traffic.
    let mut seen = 0.0;
    for _ in 0..60 {
        let (_, body) = super::client::get(
            &format!("{prometheus}/api/v1/query?query=sum(dinq_messages_sent_total)"),
            None,
        )
        .await
        .unwrap_or((0, Value::Null));
        let (_, up) = super::client::get(
            &format!(
                "{prometheus}/api/v1/query?query=count(up%7Bjob%3D%22dinq-message%22%7D%3D%3D1)"
            ),
            None,
        )
        .await
        .unwrap_or((0, Value::Null));
        let value = |v: &Value| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        seen = value(&body);
        if seen >= 1.0 && value(&up) == 3.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("Prometheus did not see three nodes and the message (sum = {seen})");
}
