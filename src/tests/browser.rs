//! The web client (`DEV_UI=1`): its routes exist only when asked for and keep their HTTP
//! contract, and two users on two nodes chat in headless Chromium, driven by
//! `deploy/e2e/chat.mjs` through playwright-core (both installed by `deploy/local/tools.sh`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::client;
use super::harness::TestEnv;
use super::realtime::Cluster;
use super::ws_client::Ws;

async fn post_raw(url: &str, body: &[u8], token: Option<&str>) -> client::Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    client::send("POST", url, &headers, Some(body.to_vec()))
        .await
        .expect("POST")
}

async fn get_raw(url: &str, token: Option<&str>) -> client::Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    client::send("GET", url, &headers, None).await.expect("GET")
}

fn header<'a>(a: &'a client::Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_routes_exist_only_with_dev_ui() {
    let env = TestEnv::new().await;
    let off = env.node(&[]).await;
    let on = env.node(&[("DEV_UI", "true")]).await;

    // Off: every route of the client answers exactly like a route that does not exist.
    let unknown = get_raw(&format!("{}/no-such-page", off.url()), None).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "route_not_found");
    let body = br#"{"user_id":null,"admin":true}"#;
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/ui/app.js"),
        ("GET", "/ui/style.css"),
        ("POST", "/api/dev/token"),
        // A wrong method too: not a 405 that would give the path away.
        ("POST", "/"),
        ("GET", "/api/dev/token"),
    ] {
        let url = format!("{}{path}", off.url());
        let a = match method {
            "GET" => get_raw(&url, None).await,
            _ => post_raw(&url, body, None).await,
        };
        assert_eq!(a.status, 404, "{method} {path}");
        assert_eq!(a.json(), unknown.json(), "{method} {path}");
        assert_eq!(header(&a, "content-type"), header(&unknown, "content-type"));
    }

    // On: the page and its assets, embedded, typed and revalidated on every load.
    for (path, content_type, needle) in [
        (
            "/",
            "text/html; charset=utf-8",
            r#"data-testid="login-submit""#,
        ),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "new WebSocket(",
        ),
        ("/ui/style.css", "text/css; charset=utf-8", ".messages"),
    ] {
        let a = get_raw(&format!("{}{path}", on.url()), None).await;
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(header(&a, "content-type"), content_type, "{path}");
        assert_eq!(header(&a, "cache-control"), "no-cache", "{path}");
        assert!(
            String::from_utf8_lossy(&a.body).contains(needle),
            "{path} lacks {needle}"
        );
    }
    let page = get_raw(&format!("{}/", on.url()), None).await;
    assert!(header(&page, "content-security-policy").contains("default-src 'self'"));

    // The token route: a fresh id when none is given; admin only when asked.
    let token_url = format!("{}/api/dev/token", on.url());
    let a = post_raw(&token_url, br#"{"user_id":null,"admin":false}"#, None).await;
    assert_eq!(a.status, 200, "{}", a.json());
    assert_eq!(header(&a, "cache-control"), "no-store");
    let data = &a.json()["data"];
    let user = Uuid::parse_str(data["user_id"].as_str().unwrap()).unwrap();
    assert!(!user.is_nil());
    let token = data["token"].as_str().unwrap().to_string();
    let list = get_raw(&format!("{}/api/v1/conversations", on.url()), Some(&token)).await;
    assert_eq!(list.status, 200, "{}", list.json());
    let settings = format!("{}/api/admin/settings", on.url());
    assert_eq!(get_raw(&settings, Some(&token)).await.status, 403);
    // The same token opens a WebSocket, on any node (DEV_UI or not).
    let ws = Ws::connect(off.addr, &token, user)
        .await
        .expect("the dev token opens a WebSocket");
    ws.close().await;

    let chosen = Uuid::new_v4();
    let body = json!({"user_id": chosen, "admin": true}).to_string();
    let a = post_raw(&token_url, body.as_bytes(), None).await;
    assert_eq!(a.status, 200, "{}", a.json());
    assert_eq!(a.json()["data"]["user_id"], chosen.to_string());
    let admin = a.json()["data"]["token"].as_str().unwrap().to_string();
    assert_eq!(get_raw(&settings, Some(&admin)).await.status, 200);

    for bad in [
        &br#"{"user_id":"00000000-0000-0000-0000-000000000000"}"#[..],
        br#"{"user_id":"not-a-uuid"}"#,
        br#"{"admin":"yes"}"#,
        b"",
        b"[]",
    ] {
        let a = post_raw(&token_url, bad, None).await;
        assert_eq!(
            a.status,
            400,
            "{}: {}",
            String::from_utf8_lossy(bad),
            a.json()
        );
    }
    off.stop().await;
    on.stop().await;
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_in_headless_chromium() {
    let modules = repo().join("target/tools/node_modules");
    assert!(
        modules.join("playwright-core/package.json").exists()
            && Path::new("/usr/bin/chromium").exists(),
        "playwright-core or chromium is missing: run deploy/local/tools.sh (deploy/local/test.sh does)"
    );
    let shots = repo().join("target/e2e-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let c = Cluster::start(2, &[("DEV_UI", "1")]).await;
    c.set("enable_typing_indicator", "true").await;
    let run = tokio::process::Command::new("node")
        .arg(repo().join("deploy/e2e/chat.mjs"))
        .env("NODE_A_URL", c.nodes[0].url())
        .env("NODE_B_URL", c.nodes[1].url())
        .env("SCREENSHOT_DIR", &shots)
        .env("NODE_PATH", &modules)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(420), run)
        .await
        .expect("chat.mjs finished within 7 minutes")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "deploy/e2e/chat.mjs failed ({}); screenshots in {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status,
        shots.display()
    );
    assert!(stdout.contains("all steps passed"), "{stdout}");

    // What the admin panel changed in the browser is what the server now says.
    let admin = c.env.token(Uuid::new_v4(), true);
    let (status, body): (u16, Value) = client::get(
        &format!("{}/api/admin/settings", c.nodes[1].url()),
        Some(&admin),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["settings"]["enable_block_feature"], "false",
        "the admin panel's toggle did not reach the server: {body}"
    );
    let shots_taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(shots_taken >= 6, "only {shots_taken} screenshots");
    c.stop().await;
}
