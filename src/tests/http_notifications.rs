//! The caller's notifications over HTTP, against real nodes: every route's answer and
//! errors, paging bounds and other users' rows refused; and the HTTP helpers the other
//! `http_*` test modules share.

use serde_json::{Value, json};
use uuid::Uuid;

use super::harness::TestNode;
use super::realtime::Cluster;

/// HTTP calls as one user against one node.
pub struct Api {
    base: String,
    auth: String,
}

impl Api {
    pub fn new(node: &TestNode, token: &str) -> Api {
        Api {
            base: node.url(),
            auth: format!("Bearer {token}"),
        }
    }

    /// As `user` (admin when asked) on node `i` of `c`.
    pub fn of(c: &Cluster, i: usize, user: Uuid, admin: bool) -> Api {
        Api::new(&c.nodes[i], &c.env.token(user, admin))
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Value) {
        let a = super::client::send(
            method,
            &format!("{}{path}", self.base),
            &[("authorization", &self.auth)],
            body.map(<[u8]>::to_vec),
        )
        .await
        .expect("HTTP call");
        (a.status, a.json())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("POST", path, Some(body.to_string().as_bytes()))
            .await
    }
}

/// Asserts an error envelope with exactly this status, code and text.
pub fn refused(answer: &(u16, Value), status: u16, code: &str, message: &str) {
    assert_eq!(
        answer,
        &(
            status,
            json!({"code": status, "message": message, "error": code})
        )
    );
}

/// Asserts an error envelope with this status and code (and some text).
pub fn refused_with(answer: &(u16, Value), status: u16, code: &str) {
    let (s, v) = answer;
    assert_eq!(
        (*s, &v["code"], &v["error"]),
        (status, &json!(status), &json!(code)),
        "{v}"
    );
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(v.get("data").is_none(), "{v}");
}

/// Asserts a 200 with only a message.
pub fn done(answer: &(u16, Value), message: &str) {
    assert_eq!(answer, &(200, json!({"code": 0, "message": message})));
}

/// Asserts the paging parameters of `path` are checked.
pub async fn paging_is_checked(api: &Api, path: &str) {
    for q in ["limit=0", "limit=101", "limit=-1", "limit=abc"] {
        refused_with(&api.get(&format!("{path}?{q}")).await, 400, "invalid_limit");
    }
    for q in ["offset=-1", "offset=x"] {
        refused_with(
            &api.get(&format!("{path}?{q}")).await,
            400,
            "invalid_offset",
        );
    }
    assert_eq!(api.get(&format!("{path}?limit=100&offset=0")).await.0, 200);
}

/// A notification row as the tests need it.
pub struct Row<'a> {
    pub user: Uuid,
    pub title: &'a str,
    pub priority: i32,
    pub read: bool,
    /// Created this many seconds ago.
    pub age: f64,
    /// Expires in this many seconds (negative: expired).
    pub expires_in: Option<f64>,
}

impl Row<'_> {
    pub fn unread(user: Uuid, title: &str, age: f64) -> Row<'_> {
        Row {
            user,
            title,
            priority: 0,
            read: false,
            age,
            expires_in: None,
        }
    }
}

/// Inserts `r` directly; returns its id.
pub async fn insert(db: &tokio_postgres::Client, r: Row<'_>) -> Uuid {
    db.query_one(
        "INSERT INTO notifications
             (user_id, notification_type, title, priority, is_read, read_at, created_at, expires_at)
         VALUES ($1, 'system', $2, $3, $4, CASE WHEN $4 THEN now() END,
                 now() - make_interval(secs => $5),
                 now() + make_interval(secs => $6))
         RETURNING id",
        &[
            &r.user,
            &r.title,
            &r.priority,
            &r.read,
            &r.age,
            &r.expires_in,
        ],
    )
    .await
    .unwrap()
    .get(0)
}

pub async fn is_read(db: &tokio_postgres::Client, id: Uuid) -> Option<bool> {
    db.query_opt("SELECT is_read FROM notifications WHERE id = $1", &[&id])
        .await
        .unwrap()
        .map(|r| r.get(0))
}

fn titles(body: &Value) -> Vec<&str> {
    body["data"]["notifications"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| n["title"].as_str().unwrap())
        .collect()
}

pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_order_summary_shapes_and_paging() {
    let c = Cluster::start(1, &[]).await;
    let db = c.env.db().await;
    let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
    let api = Api::of(&c, 0, user, false);
    let empty = api.get("/api/v1/notifications").await;
    assert_eq!(
        empty,
        (
            200,
            json!({"code": 0, "message": "success", "data":
                {"notifications": [], "unread_count": 0, "latest_notif_time": null}})
        )
    );
    insert(&db, Row::unread(user, "old", 300.0)).await;
    let urgent = insert(
        &db,
        Row {
            priority: 2,
            read: true,
            ..Row::unread(user, "urgent", 200.0)
        },
    )
    .await;
    db.execute(
        "UPDATE notifications SET content = 'body', metadata = '{\"k\": [1]}' WHERE id = $1",
        &[&urgent],
    )
    .await
    .unwrap();
    let expiring = Row {
        expires_in: Some(3600.0),
        ..Row::unread(user, "expiring", 100.0)
    };
    insert(&db, expiring).await;
    insert(
        &db,
        Row {
            expires_in: Some(-1.0),
            ..Row::unread(user, "expired", 0.0)
        },
    )
    .await;
    insert(&db, Row::unread(other, "not yours", 0.0)).await;

    let (status, body) = api.get("/api/v1/notifications").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(titles(&body), ["urgent", "expiring", "old"]);
    let data = &body["data"];
    assert_eq!(data["unread_count"], 2);
    assert_eq!(
        data["latest_notif_time"],
        data["notifications"][1]["created_at"]
    );
    let [u, e, o] = [0, 1, 2].map(|i| &data["notifications"][i]);
    assert_eq!(
        keys(u),
        [
            "content",
            "created_at",
            "id",
            "is_read",
            "metadata",
            "notification_type",
            "priority",
            "read_at",
            "title",
            "user_id"
        ]
    );
    assert_eq!(
        (&u["content"], &u["metadata"], &u["is_read"], &u["priority"]),
        (&json!("body"), &json!({"k": [1]}), &json!(true), &json!(2))
    );
    assert_eq!(
        keys(o),
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
    assert_eq!(
        (&o["user_id"], &o["notification_type"]),
        (&json!(user), &json!("system"))
    );
    assert!(
        e["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{e}"
    );

    let (_, unread) = api.get("/api/notifications?unread_only=true").await;
    assert_eq!(titles(&unread), ["expiring", "old"]);
    assert_eq!(unread["data"]["unread_count"], 2);
    let (_, all) = api.get("/api/v1/notifications?unread_only=1").await;
    assert_eq!(titles(&all).len(), 3, "only \"true\" filters");
    let (_, page) = api.get("/api/v1/notifications?limit=1&offset=1").await;
    assert_eq!(titles(&page), ["expiring"]);
    assert_eq!(
        page["data"]["unread_count"], 2,
        "the summary covers every page"
    );
    let (_, past) = api.get("/api/v1/notifications?offset=3").await;
    assert_eq!(titles(&past), Vec::<&str>::new());
    paging_is_checked(&api, "/api/v1/notifications").await;
    let (_, theirs) = Api::of(&c, 0, other, false)
        .get("/api/v1/notifications")
        .await;
    assert_eq!(titles(&theirs), ["not yours"]);
    let anonymous = super::client::get(&format!("{}/api/v1/notifications", c.nodes[0].url()), None)
        .await
        .unwrap();
    assert_eq!(anonymous.0, 401);
    // The default page is 50.
    db.execute(
        "INSERT INTO notifications (user_id, notification_type, title)
         SELECT $1, 'system', 'bulk ' || i FROM generate_series(1, 60) AS i",
        &[&other],
    )
    .await
    .unwrap();
    let them = Api::of(&c, 0, other, false);
    let (_, page) = them.get("/api/v1/notifications").await;
    assert_eq!(
        (titles(&page).len(), &page["data"]["unread_count"]),
        (50, &json!(61))
    );
    let (_, rest) = them.get("/api/v1/notifications?offset=50&limit=100").await;
    assert_eq!(titles(&rest).len(), 11);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mark_read_delete_and_read_all() {
    let c = Cluster::start(1, &[]).await;
    let db = c.env.db().await;
    let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
    let api = Api::of(&c, 0, user, false);
    let a = insert(&db, Row::unread(user, "a", 30.0)).await;
    let b = insert(&db, Row::unread(user, "b", 20.0)).await;
    let kept = insert(&db, Row::unread(user, "kept", 10.0)).await;
    let theirs = insert(&db, Row::unread(other, "theirs", 10.0)).await;
    let nowhere = Uuid::new_v4();
    let not_found = ("notification_not_found", "notification not found");
    let bad_id = ("invalid_id", "invalid notification id");

    let (status, opened) = api.get(&format!("/api/v1/notifications/{a}")).await;
    assert_eq!(status, 200, "{opened}");
    let n = &opened["data"]["notification"];
    assert_eq!(
        (&n["id"], &n["title"], &n["is_read"]),
        (&json!(a), &json!("a"), &json!(true))
    );
    let read_at = n["read_at"].clone();
    assert!(read_at.is_string(), "{n}");
    assert_eq!(is_read(&db, a).await, Some(true));
    let (_, again) = api.get(&format!("/api/v1/notifications/{a}")).await;
    assert_eq!(
        again["data"]["notification"]["read_at"], read_at,
        "read once"
    );
    for id in [theirs, nowhere] {
        let (s, v) = api.get(&format!("/api/v1/notifications/{id}")).await;
        refused(&(s, v), 404, not_found.0, not_found.1);
    }
    for bad in ["nope", "read-all", "12345678-1234-1234-1234-12345678901z"] {
        refused(
            &api.get(&format!("/api/v1/notifications/{bad}")).await,
            400,
            bad_id.0,
            bad_id.1,
        );
    }

    done(
        &api.post(&format!("/api/v1/notifications/{b}/read"), json!({}))
            .await,
        "notification marked as read",
    );
    assert_eq!(is_read(&db, b).await, Some(true));
    done(
        &api.call("POST", &format!("/api/notifications/{b}/read"), None)
            .await,
        "notification marked as read",
    );
    for id in [theirs, nowhere] {
        refused(
            &api.post(&format!("/api/v1/notifications/{id}/read"), json!({}))
                .await,
            404,
            not_found.0,
            not_found.1,
        );
        refused(
            &api.post(&format!("/api/v1/notifications/{id}/delete"), json!({}))
                .await,
            404,
            not_found.0,
            not_found.1,
        );
    }
    refused(
        &api.post("/api/v1/notifications/x/read", json!({})).await,
        400,
        bad_id.0,
        bad_id.1,
    );
    refused(
        &api.post("/api/v1/notifications/x/delete", json!({})).await,
        400,
        bad_id.0,
        bad_id.1,
    );
    assert_eq!(
        is_read(&db, theirs).await,
        Some(false),
        "another user's row untouched"
    );

    done(
        &api.post(&format!("/api/v1/notifications/{a}/delete"), json!({}))
            .await,
        "notification deleted",
    );
    assert_eq!(is_read(&db, a).await, None, "hard delete");
    refused(
        &api.post(&format!("/api/v1/notifications/{a}/delete"), json!({}))
            .await,
        404,
        not_found.0,
        not_found.1,
    );
    refused(
        &api.get(&format!("/api/v1/notifications/{a}")).await,
        404,
        not_found.0,
        not_found.1,
    );

    let them = Api::of(&c, 0, other, false);
    done(
        &them.post("/api/v1/notifications/read-all", json!({})).await,
        "all notifications marked as read",
    );
    assert_eq!(is_read(&db, theirs).await, Some(true));
    assert_eq!(is_read(&db, kept).await, Some(false), "only the caller's");
    done(
        &them.post("/api/v1/notifications/read-all", json!({})).await,
        "all notifications marked as read",
    );
    done(
        &api.post("/api/v1/notifications/read-all", json!({})).await,
        "all notifications marked as read",
    );
    assert_eq!(is_read(&db, kept).await, Some(true));
    let (_, list) = api.get("/api/v1/notifications").await;
    assert_eq!(
        (titles(&list), &list["data"]["unread_count"]),
        (vec!["kept", "b"], &json!(0))
    );
    c.stop().await;
}
