//! The foundation's request handling: every authentication failure, admin rights by claim
//! and by `ADMIN_USER_IDS`, and request bodies (settings) good and bad, with nothing bad
//! stored.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{self, get, post};
use super::harness::TestEnv;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(alg: Algorithm, secret: &str, claims: Value) -> String {
    crate::auth::jwt_hmac::install();
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_auth_failure() {
    let env = TestEnv::new().await;
    let node = env.node(&[]).await;
    let user = Uuid::new_v4().to_string();
    let exp = now() + 600;
    let good = sign(
        Algorithm::HS256,
        &env.secret,
        json!({"user_id": user, "exp": exp}),
    );
    let none_alg = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        good.split('.').nth(1).unwrap()
    );
    let header = |h: &str| Some(h.to_string());
    let cases: Vec<(&str, Option<String>, &str, &str)> = vec![
        (
            "no header",
            None,
            "missing authorization header",
            "missing_authorization",
        ),
        (
            "empty header",
            header(""),
            "missing authorization header",
            "missing_authorization",
        ),
        (
            "not bearer",
            header(&format!("Token {good}")),
            "invalid authorization header",
            "invalid_authorization",
        ),
        (
            "lowercase bearer",
            header(&format!("bearer {good}")),
            "invalid authorization header",
            "invalid_authorization",
        ),
        (
            "no space",
            header("Bearer"),
            "invalid authorization header",
            "invalid_authorization",
        ),
        (
            "bad signature",
            header(&format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    "other",
                    json!({"user_id": user, "exp": exp})
                )
            )),
            "invalid token",
            "invalid_token",
        ),
        (
            "another algorithm",
            header(&format!(
                "Bearer {}",
                sign(
                    Algorithm::HS384,
                    &env.secret,
                    json!({"user_id": user, "exp": exp})
                )
            )),
            "invalid token",
            "invalid_token",
        ),
        (
            "alg none",
            header(&format!("Bearer {none_alg}")),
            "invalid token",
            "invalid_token",
        ),
        (
            "expired",
            header(&format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &env.secret,
                    json!({"user_id": user, "exp": now() - 3600})
                )
            )),
            "invalid token",
            "invalid_token",
        ),
        (
            "no exp",
            header(&format!(
                "Bearer {}",
                sign(Algorithm::HS256, &env.secret, json!({"user_id": user}))
            )),
            "invalid token",
            "invalid_token",
        ),
        (
            "nil user",
            header(&format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &env.secret,
                    json!({"user_id": Uuid::nil(), "exp": exp})
                )
            )),
            "invalid token",
            "invalid_token",
        ),
        (
            "malformed user",
            header(&format!(
                "Bearer {}",
                sign(
                    Algorithm::HS256,
                    &env.secret,
                    json!({"user_id": "12345", "exp": exp})
                )
            )),
            "invalid token",
            "invalid_token",
        ),
        (
            "garbage",
            header("Bearer abc.def.ghi"),
            "invalid token",
            "invalid_token",
        ),
    ];
    for route in ["/api/v1/ws-token", "/api/admin/settings/reload"] {
        for (what, auth, message, code) in &cases {
            let headers: Vec<(&str, &str)> =
                auth.iter().map(|a| ("authorization", a.as_str())).collect();
            let a = client::send("POST", &format!("{}{route}", node.url()), &headers, None)
                .await
                .unwrap();
            assert_eq!(a.status, 401, "{what} on {route}");
            assert_eq!(
                a.json(),
                json!({"code": 401, "message": message, "error": code}),
                "{what} on {route}"
            );
        }
    }
    // A valid user token works on user routes but not on admin routes.
    let (status, body) = post(
        &format!("{}/api/v1/ws-token", node.url()),
        Some(&good),
        &json!({}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["expires_in"], "300");
    assert!(
        body["data"]["ws_url"]
            .as_str()
            .unwrap()
            .starts_with("ws://")
    );
    for (method, path) in [
        ("GET", "/api/admin/settings"),
        ("GET", "/api/v1/admin/settings"),
        ("POST", "/api/admin/settings/reload"),
    ] {
        let auth = format!("Bearer {good}");
        let a = client::send(
            method,
            &format!("{}{path}", node.url()),
            &[("authorization", &auth)],
            None,
        )
        .await
        .unwrap();
        assert_eq!(a.status, 403, "{path}");
        assert_eq!(
            a.json(),
            json!({"code": 403, "message": "admin access required", "error": "admin_required"})
        );
    }
    // The admin claim and ADMIN_USER_IDS both grant admin.
    let admin = env.token(Uuid::new_v4(), true);
    assert_eq!(
        get(&format!("{}/api/admin/settings", node.url()), Some(&admin))
            .await
            .unwrap()
            .0,
        200
    );
    node.stop().await;
    let listed = Uuid::new_v4();
    let node = env.node(&[("ADMIN_USER_IDS", &listed.to_string())]).await;
    let token = env.token(listed, false);
    assert_eq!(
        get(
            &format!("{}/api/v1/admin/settings", node.url()),
            Some(&token)
        )
        .await
        .unwrap()
        .0,
        200
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_bodies_good_and_bad() {
    let env = TestEnv::new().await;
    let node = env.node(&[]).await;
    let admin = env.token(Uuid::new_v4(), true);
    let auth = format!("Bearer {admin}");
    let url = |key: &str| format!("{}/api/admin/settings/{key}", node.url());
    let send = |key: &str, body: Vec<u8>| {
        let url = url(key);
        let auth = auth.clone();
        async move {
            client::send("POST", &url, &[("authorization", &auth)], Some(body))
                .await
                .unwrap()
        }
    };

    let (status, body) = get(&format!("{}/api/admin/settings", node.url()), Some(&admin))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let settings = &body["data"]["settings"];
    assert_eq!(settings["enable_block_feature"], "true");
    assert_eq!(settings["enable_typing_indicator"], "false");
    assert_eq!(settings["recall_window_seconds"], "120");
    assert_eq!(settings["offline_max_per_connect"], "1000");
    assert_eq!(settings["max_messages_per_second"], "20");
    assert_eq!(settings["max_video_size_mb"], "50");

    let a = send("enable_typing_indicator", br#"{"value":"true"}"#.to_vec()).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.json(),
        json!({"code": 0, "message": "success", "data": {"message": "setting updated successfully", "key": "enable_typing_indicator", "value": "true"}})
    );
    assert!(env.settings_value("enable_typing_indicator").await == "true");
    let a = send("recall_window_seconds", br#"{"value":"300"}"#.to_vec()).await;
    assert_eq!(a.status, 200);

    let bad: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "enable_typing_indicator",
            b"{not json".to_vec(),
            400,
            "invalid_body",
        ),
        ("enable_typing_indicator", b"".to_vec(), 400, "invalid_body"),
        (
            "enable_typing_indicator",
            b"[1,2]".to_vec(),
            400,
            "invalid_body",
        ),
        (
            "enable_typing_indicator",
            br#"{"value":true}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "enable_typing_indicator",
            br#"{"value":""}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "enable_typing_indicator",
            br#"{}"#.to_vec(),
            400,
            "invalid_body",
        ),
        (
            "enable_typing_indicator",
            br#"{"value":"yes"}"#.to_vec(),
            400,
            "invalid_setting_value",
        ),
        (
            "recall_window_seconds",
            br#"{"value":"-5"}"#.to_vec(),
            400,
            "invalid_setting_value",
        ),
        (
            "recall_window_seconds",
            br#"{"value":"soon"}"#.to_vec(),
            400,
            "invalid_setting_value",
        ),
        (
            "no_such_key",
            br#"{"value":"true"}"#.to_vec(),
            400,
            "setting_not_found",
        ),
        (
            "enable_typing_indicator",
            vec![b' '; 2 * 1024 * 1024],
            413,
            "body_too_large",
        ),
    ];
    for (key, body, status, code) in bad {
        let preview = String::from_utf8_lossy(&body[..body.len().min(20)]).to_string();
        let a = send(key, body).await;
        assert_eq!(a.status, status, "{key} {preview}");
        let j = a.json();
        assert_eq!(j["code"], status, "{j}");
        assert_eq!(j["error"], code, "{j}");
        assert!(j["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(j.get("data").is_none());
    }
    // Nothing bad was stored.
    assert_eq!(env.settings_value("enable_typing_indicator").await, "true");
    assert_eq!(env.settings_value("recall_window_seconds").await, "300");
    assert!(
        env.db()
            .await
            .query(
                "SELECT 1 FROM system_settings WHERE setting_key = 'no_such_key'",
                &[]
            )
            .await
            .unwrap()
            .is_empty()
    );

    // reload picks up a change made directly in the database.
    env.db().await.execute("UPDATE system_settings SET setting_value = 'false' WHERE setting_key = 'enable_read_receipt'", &[]).await.unwrap();
    let (status, body) = post(
        &format!("{}/api/admin/settings/reload", node.url()),
        Some(&admin),
        &json!({}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["data"]["message"], "settings reloaded successfully");
    let (_, body) = get(&format!("{}/api/admin/settings", node.url()), Some(&admin))
        .await
        .unwrap();
    assert_eq!(body["data"]["settings"]["enable_read_receipt"], "false");
    node.stop().await;
}

impl TestEnv {
    async fn settings_value(&self, key: &str) -> String {
        self.db()
            .await
            .query_one(
                "SELECT setting_value FROM system_settings WHERE setting_key = $1",
                &[&key],
            )
            .await
            .unwrap()
            .get(0)
    }
}
