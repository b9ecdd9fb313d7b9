//! Blocking over HTTP, against real nodes: block, unblock and the list with every error,
//! and a block made through the route stopping the blocked user's WebSocket sends to a
//! user on another node until it is lifted.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::http_notifications::{Api, done, paging_is_checked, refused, refused_with};
use super::realtime::{Cluster, befriend, send_text};

fn targets(body: &Value) -> Vec<Uuid> {
    body["data"]["blocked_users"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| Uuid::parse_str(r["target_user_id"].as_str().unwrap()).unwrap())
        .collect()
}

async fn body_errors(api: &Api, path: &str) {
    let bad: [&[u8]; 7] = [
        b"",
        b"{not json",
        b"[]",
        b"{}",
        br#"{"target_user_id": 5}"#,
        br#"{"target_user_id": null}"#,
        br#"{"target_user_id": ["x"]}"#,
    ];
    for body in bad {
        let a = api.call("POST", path, Some(body)).await;
        refused_with(&a, 400, "invalid_body");
    }
    for id in ["nope", "00000000-0000-0000-0000-000000000000", ""] {
        let a = api.post(path, json!({ "target_user_id": id })).await;
        refused(&a, 400, "invalid_user_id", "invalid target_user_id");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_unblock_and_list() {
    let c = Cluster::start(1, &[]).await;
    let me = Uuid::new_v4();
    let api = Api::of(&c, 0, me, false);
    let [v, w, x] = [0; 3].map(|_| Uuid::new_v4());
    let block = |t: Uuid| {
        api.post(
            "/api/v1/relationships/block",
            json!({ "target_user_id": t }),
        )
    };
    let unblock = |t: Uuid| {
        api.post(
            "/api/v1/relationships/unblock",
            json!({ "target_user_id": t }),
        )
    };

    let (_, empty) = api.get("/api/v1/relationships/blocked").await;
    assert_eq!(
        empty,
        json!({"code": 0, "message": "success", "data": {"blocked_users": []}})
    );
    for t in [v, w, x] {
        done(&block(t).await, "user blocked successfully");
    }
    refused(
        &block(v).await,
        409,
        "already_blocked",
        "user already blocked",
    );
    refused(
        &block(me).await,
        400,
        "cannot_block_self",
        "cannot block yourself",
    );
    body_errors(&api, "/api/v1/relationships/block").await;
    body_errors(&api, "/api/v1/relationships/unblock").await;

    let (status, list) = api.get("/api/v1/relationships/blocked").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(targets(&list), [x, w, v], "newest first");
    let r = &list["data"]["blocked_users"][0];
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "created_at",
            "id",
            "relationship_type",
            "target_user_id",
            "user_id"
        ]
    );
    assert_eq!(
        (&r["user_id"], &r["relationship_type"]),
        (&json!(me), &json!("blocked"))
    );
    let (_, page) = api.get("/api/relationships/blocked?limit=1&offset=1").await;
    assert_eq!(targets(&page), [w]);
    let (_, page) = api.get("/api/v1/relationships/blocked?limit=2").await;
    assert_eq!(targets(&page), [x, w]);
    paging_is_checked(&api, "/api/v1/relationships/blocked").await;
    // Blocks are one-way.
    let (_, theirs) = Api::of(&c, 0, v, false)
        .get("/api/v1/relationships/blocked")
        .await;
    assert_eq!(targets(&theirs), Vec::<Uuid>::new());
    refused(
        &Api::of(&c, 0, v, false)
            .post(
                "/api/v1/relationships/unblock",
                json!({ "target_user_id": me }),
            )
            .await,
        404,
        "not_blocked",
        "user not blocked",
    );

    done(&unblock(w).await, "user unblocked successfully");
    refused(&unblock(w).await, 404, "not_blocked", "user not blocked");
    refused(
        &unblock(Uuid::new_v4()).await,
        404,
        "not_blocked",
        "user not blocked",
    );
    let (_, list) = api.get("/api/v1/relationships/blocked").await;
    assert_eq!(targets(&list), [x, v]);
    // Blocking again after an unblock works.
    done(&block(w).await, "user blocked successfully");
    let stored: i64 = c
        .env
        .db()
        .await
        .query_one(
            "SELECT count(*) FROM user_relationships WHERE user_id = $1 AND relationship_type = 'blocked'",
            &[&me],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 3);
    // The default page is 50.
    c.env
        .db()
        .await
        .execute(
            "INSERT INTO user_relationships (user_id, target_user_id, relationship_type)
             SELECT $1, gen_random_uuid(), 'blocked' FROM generate_series(1, 60)",
            &[&me],
        )
        .await
        .unwrap();
    let (_, page) = api.get("/api/v1/relationships/blocked").await;
    assert_eq!(targets(&page).len(), 50);
    let (_, rest) = api.get("/api/v1/relationships/blocked?offset=50").await;
    assert_eq!(targets(&rest).len(), 13);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_block_stops_websocket_sends_across_nodes() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let b_api = Api::of(&c, 1, b.user, false);
    done(
        &b_api
            .post(
                "/api/v1/relationships/block",
                json!({ "target_user_id": a.user }),
            )
            .await,
        "user blocked successfully",
    );
    a.text_to(Some(conv), None, "by conversation").await;
    let e = a.expect("error").await;
    assert_eq!(
        e,
        json!({"code": "blocked", "message": "you are blocked by this user"})
    );
    a.text_to(None, Some(b.user), "by receiver").await;
    assert_eq!(a.expect("error").await["code"], "blocked");
    b.expect_no("message", Duration::from_millis(400)).await;
    // The blocker can still write.
    send_text(&mut b, Some(conv), None, "from b").await;
    assert_eq!(a.expect("message").await["content"], "from b");

    let b_on_0 = Api::of(&c, 0, b.user, false);
    done(
        &b_on_0
            .post(
                "/api/v1/relationships/unblock",
                json!({ "target_user_id": a.user }),
            )
            .await,
        "user unblocked successfully",
    );
    let echo = send_text(&mut a, Some(conv), None, "free again").await;
    let got = b.expect("message").await;
    assert_eq!(
        (&got["id"], &got["content"]),
        (&echo["id"], &json!("free again"))
    );
    c.stop().await;
}
