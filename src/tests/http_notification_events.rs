//! Notification events over real nodes: `notification_update` reaching every device of
//! the user on every node whenever the unread count changes (and only then), and
//! `latest_unread_frame`, the `notification` a connecting device gets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::harness::TestEnv;
use super::http_notifications::{Api, Row, done, insert, is_read, keys};
use super::realtime::Cluster;
use crate::domain::Services;

/// The next `notification_update` of `ws`, as `(unread_count, latest_notif_time)`.
async fn update(ws: &mut super::ws_client::Ws) -> (i64, Value) {
    let u = ws.expect("notification_update").await;
    (
        u["unread_count"].as_i64().unwrap(),
        u["latest_notif_time"].clone(),
    )
}

fn created_at(list: &Value, title: &str) -> Value {
    list["data"]["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["title"] == title)
        .map(|n| n["created_at"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_changes_reach_every_device_on_every_node() {
    let c = Cluster::start(2, &[]).await;
    let db = c.env.db().await;
    let mut d0 = c.user(0).await;
    let user = d0.user;
    let mut d1 = c.connect(1, user).await;
    let mut bystander = c.user(0).await;
    let on0 = Api::of(&c, 0, user, false);
    let on1 = Api::of(&c, 1, user, false);
    let older = insert(&db, Row::unread(user, "older", 20.0)).await;
    let newer = insert(&db, Row::unread(user, "newer", 10.0)).await;
    let (_, list) = on0.get("/api/v1/notifications").await;
    let newest = created_at(&list, "newer");

    // Marking read on node 1 reaches the device on node 0 (and the one on node 1).
    done(
        &on1.post(&format!("/api/v1/notifications/{older}/read"), json!({}))
            .await,
        "notification marked as read",
    );
    assert_eq!(update(&mut d0).await, (1, newest.clone()));
    assert_eq!(update(&mut d1).await, (1, newest.clone()));
    // Nothing changed: no event.
    assert_eq!(
        on1.get(&format!("/api/v1/notifications/{older}")).await.0,
        200
    );
    done(
        &on1.post(&format!("/api/v1/notifications/{older}/delete"), json!({}))
            .await,
        "notification deleted",
    );
    d0.expect_no("notification_update", Duration::from_millis(400))
        .await;
    // Opening the unread one on node 0 reaches node 1.
    assert_eq!(
        on0.get(&format!("/api/v1/notifications/{newer}")).await.0,
        200
    );
    assert_eq!(update(&mut d1).await, (0, newest.clone()));
    assert_eq!(update(&mut d0).await, (0, newest));
    // Deleting an unread one.
    let third = insert(&db, Row::unread(user, "third", 5.0)).await;
    let fourth = insert(&db, Row::unread(user, "fourth", 1.0)).await;
    done(
        &on0.post(&format!("/api/v1/notifications/{fourth}/delete"), json!({}))
            .await,
        "notification deleted",
    );
    let (_, list) = on0.get("/api/v1/notifications").await;
    let third_at = created_at(&list, "third");
    assert_eq!(update(&mut d1).await, (1, third_at.clone()));
    // Read-all.
    done(
        &on1.post("/api/v1/notifications/read-all", json!({})).await,
        "all notifications marked as read",
    );
    assert_eq!(
        update(&mut d0).await,
        (1, third_at.clone()),
        "the delete's update came first"
    );
    assert_eq!(update(&mut d0).await, (0, third_at.clone()));
    assert_eq!(update(&mut d1).await, (0, third_at));
    done(
        &on1.post("/api/v1/notifications/read-all", json!({})).await,
        "all notifications marked as read",
    );
    d1.expect_no("notification_update", Duration::from_millis(400))
        .await;
    assert_eq!(is_read(&db, third).await, Some(true));
    bystander
        .expect_no("notification_update", Duration::from_millis(100))
        .await;
    c.stop().await;
}

/// A second set of services on `env`'s database and Redis (the schema is there already).
async fn services(env: &TestEnv) -> Services {
    let config = Arc::new(
        crate::config::Config::from_env(&env.env(&[("PORT", "1"), ("NODE_ID", "probe")])).unwrap(),
    );
    let store = crate::store::Store::new(&config.database_url, 2).unwrap();
    crate::app::build_services(config, store).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_unread_frame_is_the_newest_live_unread() {
    let c = Cluster::start(1, &[]).await;
    let s = services(&c.env).await;
    let db = c.env.db().await;
    let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(s.latest_unread_frame(user.into()).await.unwrap(), None);
    let oldest = insert(
        &db,
        Row {
            priority: 2,
            ..Row::unread(user, "oldest unread", 50.0)
        },
    )
    .await;
    insert(
        &db,
        Row {
            read: true,
            ..Row::unread(user, "read", 10.0)
        },
    )
    .await;
    insert(
        &db,
        Row {
            expires_in: Some(-5.0),
            ..Row::unread(user, "expired", 5.0)
        },
    )
    .await;
    insert(&db, Row::unread(other, "someone else's", 0.0)).await;
    let frame =
        |b: Option<bytes::Bytes>| serde_json::from_slice::<Value>(&b.expect("a frame")).unwrap();
    let f = frame(s.latest_unread_frame(user.into()).await.unwrap());
    assert_eq!(
        (&f["type"], &f["data"]["id"], &f["data"]["priority"]),
        (&json!("notification"), &json!(oldest), &json!(2))
    );
    assert_eq!(
        keys(&f["data"]),
        [
            "created_at",
            "id",
            "is_read",
            "notification_type",
            "priority",
            "title",
            "user_id"
        ]
    );
    let newest = insert(&db, Row::unread(user, "newest", 1.0)).await;
    let f = frame(s.latest_unread_frame(user.into()).await.unwrap());
    assert_eq!(
        (&f["data"]["id"], &f["data"]["title"], &f["data"]["is_read"]),
        (&json!(newest), &json!("newest"), &json!(false))
    );
    done(
        &Api::of(&c, 0, user, false)
            .post("/api/v1/notifications/read-all", json!({}))
            .await,
        "all notifications marked as read",
    );
    assert_eq!(s.latest_unread_frame(user.into()).await.unwrap(), None);
    c.stop().await;
}
