//! The admin batch send against real nodes: rendering, one row per distinct user in one
//! call, `notification` then `notification_update` on devices connected to other nodes,
//! templates without `enable_websocket`, the 10 000-user bound and every error.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::http_notifications::{Api, refused, refused_with};
use super::realtime::Cluster;
use super::ws_client::Ws;

const BATCH: &str = "/api/admin/notifications/batch-send";

/// The `notification` and `notification_update` events `ws` gets within a short window.
async fn notification_events(ws: &mut Ws) -> Vec<Value> {
    ws.drain(Duration::from_millis(800))
        .await
        .into_iter()
        .filter(|e| e["type"] == "notification" || e["type"] == "notification_update")
        .collect()
}

fn sent(success: usize, total: usize) -> (u16, Value) {
    (
        200,
        json!({"code": 0, "message": "success", "data":
            {"success_count": success, "total_count": total, "message": "notifications sent"}}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_send_reaches_devices_on_other_nodes() {
    let c = Cluster::start(2, &[]).await;
    let admin = Api::of(&c, 0, Uuid::new_v4(), true);
    let db = c.env.db().await;
    let mut d1 = c.user(1).await;
    let mut d1_on_0 = c.connect(0, d1.user).await;
    let mut d2 = c.user(0).await;
    let offline = Uuid::new_v4();
    let answer = admin
        .post(
            BATCH,
            json!({"user_ids": [d1.user, d2.user, d1.user, offline],
                "template_type": "card_completed",
                "template_vars": {"card_name": "Alpha <1>", "unused": "x"},
                "metadata": {"card_id": 7}}),
        )
        .await;
    assert_eq!(answer, sent(3, 3));

    let events = notification_events(&mut d1).await;
    let types: Vec<&Value> = events.iter().map(|e| &e["type"]).collect();
    assert_eq!(types, ["notification", "notification_update"], "{events:?}");
    let n = &events[0]["data"];
    let mut keys: Vec<&str> = n.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "content",
            "created_at",
            "id",
            "is_read",
            "metadata",
            "notification_type",
            "priority",
            "title",
            "user_id"
        ]
    );
    assert_eq!(
        (
            &n["user_id"],
            &n["notification_type"],
            &n["title"],
            &n["content"]
        ),
        (
            &json!(d1.user),
            &json!("card_completed"),
            &json!("Card Completed"),
            &json!("Your card Alpha <1> is ready!")
        )
    );
    assert_eq!(
        (&n["metadata"], &n["is_read"], &n["priority"]),
        (&json!({"card_id": 7}), &json!(false), &json!(0))
    );
    assert_eq!(
        events[1]["data"],
        json!({"unread_count": 1, "latest_notif_time": n["created_at"]})
    );
    let on_0: Vec<Value> = notification_events(&mut d1_on_0).await;
    assert_eq!(on_0, events, "every device of the user");
    let theirs = notification_events(&mut d2).await;
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert_eq!(theirs[0]["data"]["user_id"], json!(d2.user));
    let (_, list) = Api::of(&c, 1, d1.user, false)
        .get("/api/v1/notifications")
        .await;
    assert_eq!(list["data"]["notifications"], json!([n]));
    let rows: i64 = db
        .query_one(
            "SELECT count(*) FROM notifications WHERE user_id = ANY($1)",
            &[&vec![d1.user, d2.user, offline]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 3, "one per distinct user");

    // Without enable_websocket only the count moves; values are not rendered again and
    // unknown placeholders stay.
    let (status, t) = admin
        .post(
            "/api/admin/notification-templates",
            json!({"type": "hello", "title": "Hi {{name}} {{missing}}",
                "content_template": "{{greeting}}, {{name}}!", "priority": 1,
                "enable_websocket": false}),
        )
        .await;
    assert_eq!(status, 200, "{t}");
    let answer = admin
        .post(
            "/api/v1/admin/notifications/batch-send",
            json!({"user_ids": [d1.user], "template_type": "hello",
                "template_vars": {"name": "Ann", "greeting": "{{name}}"}}),
        )
        .await;
    assert_eq!(answer, sent(1, 1));
    let events = notification_events(&mut d1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "notification_update");
    assert_eq!(events[0]["data"]["unread_count"], 2);
    let row = db
        .query_one(
            "SELECT title, content, priority, metadata IS NULL FROM notifications
             WHERE user_id = $1 AND notification_type = 'hello'",
            &[&d1.user],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, i32>(2),
            row.get::<_, bool>(3)
        ),
        (
            "Hi Ann {{missing}}".into(),
            "{{name}}, Ann!".into(),
            1,
            true
        )
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_send_errors_and_bounds() {
    let c = Cluster::start(1, &[]).await;
    let admin = Api::of(&c, 0, Uuid::new_v4(), true);
    let db = c.env.db().await;
    let u = Uuid::new_v4();
    let (status, _) = admin
        .post(
            "/api/admin/notification-templates",
            json!({"type": "off", "title": "Off", "is_active": false}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = admin
        .post(
            "/api/admin/notification-templates",
            json!({"type": "echo", "title": "{{x}}"}),
        )
        .await;
    assert_eq!(status, 200);
    let vars = json!({});
    let refusals = [
        (
            json!({"user_ids": [u], "template_vars": vars}),
            400,
            "invalid_body",
            "invalid request body: template_type is required",
        ),
        (
            json!({"user_ids": [u], "template_type": " ", "template_vars": vars}),
            400,
            "invalid_body",
            "invalid request body: template_type is required",
        ),
        (
            json!({"user_ids": [u], "template_type": "system"}),
            400,
            "invalid_body",
            "invalid request body: template_vars is required",
        ),
        (
            json!({"template_type": "system", "template_vars": vars}),
            400,
            "user_list_required",
            "sending to all users requires user list",
        ),
        (
            json!({"user_ids": [], "template_type": "system", "template_vars": vars}),
            400,
            "user_list_required",
            "sending to all users requires user list",
        ),
        (
            json!({"user_ids": [u, "nope"], "template_type": "system", "template_vars": vars}),
            400,
            "invalid_user_id",
            "invalid user id: nope",
        ),
        (
            json!({"user_ids": [u], "template_type": "nope", "template_vars": vars}),
            404,
            "template_not_found",
            "template not found",
        ),
        (
            json!({"user_ids": [u], "template_type": "off", "template_vars": vars}),
            404,
            "template_not_found",
            "template not found",
        ),
        (
            json!({"user_ids": [u], "template_type": "echo", "template_vars": {"x": "x".repeat(201)}}),
            400,
            "title_too_long",
            "rendered title is longer than 200 characters",
        ),
    ];
    for (body, status, code, text) in refusals {
        refused(&admin.post(BATCH, body).await, status, code, text);
    }
    let malformed = [
        json!({"user_ids": [u], "template_type": "system", "template_vars": {"a": 1}}),
        json!({"user_ids": [u], "template_type": "system", "template_vars": "x"}),
        json!({"user_ids": [5], "template_type": "system", "template_vars": vars}),
        json!({"user_ids": u, "template_type": "system", "template_vars": vars}),
        json!({"user_ids": [u], "template_type": "system", "template_vars": vars, "metadata": "m"}),
        json!({"user_ids": [u], "template_type": "system", "template_vars": vars, "metadata": [1]}),
        json!([u]),
    ];
    for body in malformed {
        refused_with(&admin.post(BATCH, body).await, 400, "invalid_body");
    }
    for raw in [&b""[..], b"{"] {
        refused_with(
            &admin.call("POST", BATCH, Some(raw)).await,
            400,
            "invalid_body",
        );
    }
    let too_many: Vec<Uuid> = (0..10_001).map(|_| Uuid::new_v4()).collect();
    refused(
        &admin
            .post(
                BATCH,
                json!({"user_ids": too_many, "template_type": "system", "template_vars": vars}),
            )
            .await,
        400,
        "too_many_users",
        "at most 10000 user ids per call",
    );
    let stored: i64 = db
        .query_one("SELECT count(*) FROM notifications", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "nothing stored by a refused send");

    // Exactly the limit goes through, in one call.
    let limit = &too_many[..10_000];
    let answer = admin
        .post(
            BATCH,
            json!({"user_ids": limit, "template_type": "system",
                "template_vars": {"content": "maintenance"}, "metadata": null}),
        )
        .await;
    assert_eq!(answer, sent(10_000, 10_000));
    let row = db
        .query_one(
            "SELECT count(*), count(DISTINCT user_id), min(content), max(content),
                    count(DISTINCT created_at)
             FROM notifications",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3),
            row.get::<_, i64>(4)
        ),
        (
            10_000,
            10_000,
            "maintenance".into(),
            "maintenance".into(),
            1
        ),
        "one statement for every user"
    );
    let (_, list) = Api::of(&c, 0, limit[1234], false)
        .get("/api/v1/notifications")
        .await;
    assert_eq!(list["data"]["unread_count"], 1);
    assert_eq!(
        list["data"]["notifications"][0]["title"],
        "System Notification"
    );
    assert_eq!(list["data"]["notifications"][0]["priority"], 1);
    c.stop().await;
}
