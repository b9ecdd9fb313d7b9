//! Session-level rules: logout closes the token's own user everywhere, the WebSocket
//! `Origin` check, and the newest unread notification pushed on connect.

use std::time::Duration;

use uuid::Uuid;

use super::realtime::{Cluster, befriend};
use super::ws_client::{ConnectOptions, Seen, Ws};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_the_callers_own_devices_on_every_node() {
    let c = Cluster::start(2, &[]).await;
    let me = Uuid::new_v4();
    let mut d1 = c.connect(0, me).await;
    let mut d2 = c.connect(1, me).await;
    let mut someone = c.user(1).await;
    // The original trusted an X-User-ID header: naming another user changes nothing now.
    let token = c.env.token(me, false);
    let auth = format!("Bearer {token}");
    let other = someone.user.to_string();
    let a = super::client::send(
        "POST",
        &format!("{}/api/v1/logout", c.nodes[0].url()),
        &[("authorization", &auth), ("x-user-id", &other)],
        Some(b"{}".to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["message"], "Logged out");
    assert_eq!(d1.expect_closed(Duration::from_secs(5)).await, 1000);
    assert_eq!(d2.expect_closed(Duration::from_secs(5)).await, 1000);
    // The user named in the header is untouched.
    assert!(
        !matches!(
            someone.next(Duration::from_millis(500)).await,
            Some(Seen::Closed(..)) | Some(Seen::Gone)
        ),
        "another user's connection must stay open"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_origin_is_checked_when_configured() {
    let c = Cluster::start(1, &[("ALLOWED_ORIGINS", "https://chat.example.com")]).await;
    let user = Uuid::new_v4();
    let token = c.env.token(user, false);
    let with = |origin: Option<&str>| ConnectOptions {
        origin: origin.map(str::to_string),
        ..Default::default()
    };
    let evil = Ws::connect_with(
        c.nodes[0].addr,
        &token,
        user,
        with(Some("https://evil.example")),
    )
    .await;
    assert!(
        matches!(
            evil,
            Err(fastwebsockets::WebSocketError::InvalidStatusCode(403))
        ),
        "a foreign origin is refused"
    );
    let good = Ws::connect_with(
        c.nodes[0].addr,
        &token,
        user,
        with(Some("https://chat.example.com/")),
    )
    .await;
    assert!(good.is_ok(), "the allowed origin connects");
    // Clients that are not browsers send no Origin.
    let none = Ws::connect_with(c.nodes[0].addr, &token, user, with(None)).await;
    assert!(none.is_ok());
    // The refusal is an envelope with a code.
    let key = fastwebsockets::handshake::generate_key();
    let a = super::client::send(
        "GET",
        &format!("{}/ws?token={token}", c.nodes[0].url()),
        &[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-key", &key),
            ("sec-websocket-version", "13"),
            ("origin", "https://evil.example"),
        ],
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 403);
    assert_eq!(a.json()["error"], "origin_not_allowed");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_unread_notification_arrives_on_connect() {
    let c = Cluster::start(1, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(0).await;
    befriend(&mut a, &mut b).await;
    let user = b.user;
    b.close().await;
    let db = c.env.db().await;
    db.execute(
        "INSERT INTO notifications (user_id, notification_type, title, is_read, created_at)
         VALUES ($1, 'system', 'older', FALSE, now() - interval '1 hour'),
                ($1, 'system', 'newest', FALSE, now()),
                ($1, 'system', 'read one', TRUE, now() + interval '1 minute')",
        &[&user],
    )
    .await
    .unwrap();
    // Pushed whether or not anything else was pending (the original needed an offline queue).
    let mut back = c.connect(0, user).await;
    let n = back.expect("notification").await;
    assert_eq!(n["title"], "newest");
    assert_eq!(n["is_read"], false);
    c.stop().await;
}
