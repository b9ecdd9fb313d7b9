//! Tokens over a real node: a ws token opens `/ws` and nothing else (it cannot renew itself),
//! Gateway tokens keep working everywhere, and `JWT_SECRET_PREVIOUS` verifies during a key
//! rotation while only `JWT_SECRET` signs.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{self, get, post};
use super::harness::TestEnv;
use super::ws_client::Ws;
use crate::auth::Tokens;

const OLD_SECRET: &str = "previous-gateway-key-0123456789abcdef";

/// The `ws_token` a node issues for a caller holding `token`.
async fn ws_token(url: &str, token: &str) -> String {
    let (status, body) = post(&format!("{url}/api/v1/ws-token"), Some(token), &json!({}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["data"]["ws_token"].as_str().unwrap().to_string()
}

/// The status and body of an authenticated request.
async fn call(method: &str, url: &str, token: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let a = client::send(method, url, &[("authorization", &auth)], None)
        .await
        .unwrap();
    (a.status, a.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ws_token_opens_a_websocket_and_nothing_else() {
    let env = TestEnv::new().await;
    let node = env.node(&[("JWT_SECRET_PREVIOUS", OLD_SECRET)]).await;
    let url = node.url();
    let user = Uuid::new_v4();
    let gateway = env.token(user, false);
    let ws = ws_token(&url, &gateway).await;

    // The ws token opens a WebSocket.
    let conn = Ws::connect(node.addr, &ws, user)
        .await
        .expect("ws token opens /ws");
    conn.close().await;
    // It is refused by every HTTP route, ws-token itself included (no self-renewal).
    let refused = json!({"code": 401, "message": "invalid token", "error": "invalid_token"});
    for (method, path) in [
        ("POST", "/api/v1/ws-token"),
        ("GET", "/api/v1/conversations"),
        ("GET", "/api/v1/notifications"),
        ("POST", "/api/v1/logout"),
    ] {
        let (status, body) = call(method, &format!("{url}{path}"), &ws).await;
        assert_eq!((status, &body), (401, &refused), "{method} {path}");
    }
    // An admin's ws token is not an admin credential either (and never carries the role).
    let admin = env.token(Uuid::new_v4(), true);
    let admin_ws = ws_token(&url, &admin).await;
    let (status, _) = call("GET", &format!("{url}/api/admin/settings"), &admin_ws).await;
    assert_eq!(status, 401);

    // Gateway tokens (no scope claim, or a scope of the Gateway's own) work everywhere.
    let tokens = Tokens::new(&env.secret, HashSet::new());
    let exp = tokens_exp();
    for scope in [json!("read write"), json!(["ws"])] {
        let t = sign(
            &env.secret,
            json!({"user_id": user, "exp": exp, "scope": scope}),
        );
        let (status, body) = call("GET", &format!("{url}/api/v1/conversations"), &t).await;
        assert_eq!(status, 200, "{scope}: {body}");
    }
    assert_eq!(
        get(&format!("{url}/api/v1/conversations"), Some(&gateway))
            .await
            .unwrap()
            .0,
        200
    );
    let conn = Ws::connect(
        node.addr,
        &tokens.issue(user.into(), false, Duration::from_secs(60)),
        user,
    )
    .await
    .expect("a Gateway token opens /ws");
    conn.close().await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_secret_verifies_during_a_rotation_and_never_signs() {
    let env = TestEnv::new().await;
    let node = env.node(&[("JWT_SECRET_PREVIOUS", OLD_SECRET)]).await;
    let url = node.url();
    let user = Uuid::new_v4();
    let old = Tokens::new(OLD_SECRET, HashSet::new());
    let old_token = old.issue(user.into(), false, Duration::from_secs(600));
    // A token signed with the previous key works on HTTP and on /ws.
    let (status, body) = call("GET", &format!("{url}/api/v1/conversations"), &old_token).await;
    assert_eq!(status, 200, "{body}");
    let conn = Ws::connect(node.addr, &old_token, user)
        .await
        .expect("the previous key opens /ws");
    conn.close().await;
    // What the node signs uses the current key: the old key alone does not verify it.
    let ws = ws_token(&url, &old_token).await;
    assert!(old.verify(&ws).is_err());
    assert!(Tokens::new(&env.secret, HashSet::new()).verify(&ws).is_ok());
    // A third key is refused.
    let stranger = Tokens::new("some-other-key-0123456789abcdef0123456", HashSet::new()).issue(
        user.into(),
        false,
        Duration::from_secs(600),
    );
    let (status, _) = call("GET", &format!("{url}/api/v1/conversations"), &stranger).await;
    assert_eq!(status, 401);
    node.stop().await;

    // Without JWT_SECRET_PREVIOUS the old key is refused.
    let node = env.node(&[]).await;
    let (status, _) = call(
        "GET",
        &format!("{}/api/v1/conversations", node.url()),
        &old_token,
    )
    .await;
    assert_eq!(status, 401);
    assert!(Ws::connect(node.addr, &old_token, user).await.is_err());
    node.stop().await;
}

fn tokens_exp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600
}

fn sign(secret: &str, claims: Value) -> String {
    crate::auth::jwt_hmac::install();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}
