//! HTTP conversation routes against real nodes: the list (shape, order, paging, presence,
//! `can_send`), private get-or-create, group creation, history pages by seq, hiding, and
//! the WebSocket events those actions imply on another node.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::client;
use super::http_api::{Api, assert_error, assert_paging_bounds};
use super::realtime::{Cluster, befriend, send_text, uuid_of};

fn ids(items: &[Value]) -> Vec<Uuid> {
    items.iter().map(|i| uuid_of(&i["id"])).collect()
}

fn member(item: &Value, user: Uuid) -> &Value {
    item["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == user.to_string())
        .unwrap_or_else(|| panic!("{user} not among the members of {item}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_get_or_create_and_the_list_item_shape() {
    let c = Cluster::start(2, &[]).await;
    let mut b_ws = c.user(1).await;
    let a = Api::new(&c, 0, Uuid::new_v4());
    let (status, body) = a
        .post("/conversations/private", json!({"receiver_id": b_ws.user}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["is_newly_created"], true);
    let item = &body["data"]["conversation"];
    let conv = uuid_of(&item["id"]);
    assert_eq!(item["conversation_type"], "private");
    for absent in ["group_name", "last_message_at", "last_message_id"] {
        assert!(item.get(absent).is_none(), "{absent}: {item}");
    }
    assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(item["unread_count"], 0);
    assert_eq!(item["last_message_time"], Value::Null);
    assert_eq!(item["last_message_text"], Value::Null);
    assert_eq!(item["can_send"], true);
    assert_eq!(
        item["online_status"],
        json!({ b_ws.user.to_string(): true })
    );
    assert_eq!(item["members"].as_array().unwrap().len(), 2);
    let me = member(item, a.user);
    assert_eq!(me["role"], "member");
    assert_eq!(
        (&me["is_muted"], &me["is_hidden"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(me["conversation_id"], conv.to_string());
    assert!(
        me.get("left_at").is_none() && me.get("name").is_none(),
        "{me}"
    );
    // Again, from either side and on another node: the same conversation, not new.
    let (_, again) = a
        .post("/conversations/private", json!({"receiver_id": b_ws.user}))
        .await;
    assert_eq!(again["data"]["is_newly_created"], false);
    let b = Api::new(&c, 1, b_ws.user);
    let (_, from_b) = b
        .post("/conversations/private", json!({"receiver_id": a.user}))
        .await;
    assert_eq!(from_b["data"]["conversation"]["id"], conv.to_string());
    assert_eq!(from_b["data"]["is_newly_created"], false);
    assert_eq!(
        from_b["data"]["conversation"]["online_status"],
        json!({ a.user.to_string(): false })
    );

    // Refusals.
    let self_ = a
        .post("/conversations/private", json!({"receiver_id": a.user}))
        .await;
    assert_error(&self_, 400, "cannot create conversation with yourself");
    let nil = a
        .post(
            "/conversations/private",
            json!({"receiver_id": Uuid::nil()}),
        )
        .await;
    assert_eq!(nil.0, 400, "{}", nil.1);
    for bad in [
        &b"{}"[..],
        b"",
        b"{\"receiver_id\":\"abc\"}",
        b"[1]",
        b"{oops",
    ] {
        let r = a.post_raw("/conversations/private", bad).await;
        assert_eq!(r.0, 400, "{}: {}", String::from_utf8_lossy(bad), r.1);
        assert_eq!(r.1["error"], "invalid_body");
    }
    let (status, _) = client::post(
        &format!("{}/conversations/private", a.base),
        None,
        &json!({"receiver_id": b.user}),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);

    // A first message: B's list counts it, A may not send again until B replies.
    let mut a_ws = c.connect(0, a.user).await;
    let echo = send_text(&mut a_ws, Some(conv), None, &"x".repeat(60)).await;
    b_ws.expect("message").await;
    let b_item = &b.list("").await[0];
    assert_eq!(b_item["unread_count"], 1);
    assert_eq!(b_item["last_message_id"], echo["id"]);
    assert_eq!(b_item["last_message_time"], b_item["last_message_at"]);
    assert_eq!(
        b_item["last_message_text"],
        format!("{}...", "x".repeat(50))
    );
    assert_eq!(b_item["can_send"], true);
    assert_eq!(b_item["online_status"], json!({ a.user.to_string(): true }));
    assert_eq!(member(b_item, b.user)["unread_count"], 1);
    assert_eq!(member(b_item, a.user)["unread_count"], 0);
    assert_eq!(member(b_item, a.user)["last_read_message_id"], echo["id"]);
    assert!(member(b_item, a.user)["last_read_at"].is_string());
    assert_eq!(a.list("").await[0]["can_send"], false);
    send_text(&mut b_ws, Some(conv), None, "reply").await;
    a_ws.expect("message").await;
    assert_eq!(a.list("").await[0]["can_send"], true);
    // With presence off, no online status at all.
    c.set("enable_online_status", "false").await;
    assert_eq!(b.list("").await[0]["online_status"], json!({}));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_order_paging_and_bounds() {
    let c = Cluster::start(1, &[]).await;
    let a = Api::new(&c, 0, Uuid::new_v4());
    let mut convs = Vec::new();
    for _ in 0..3 {
        let (_, body) = a
            .post(
                "/conversations/private",
                json!({"receiver_id": Uuid::new_v4()}),
            )
            .await;
        convs.push(uuid_of(&body["data"]["conversation"]["id"]));
    }
    // No messages: newest created first.
    assert_eq!(ids(&a.list("").await), [convs[2], convs[1], convs[0]]);
    // A message moves the oldest to the top.
    let mut ws = c.connect(0, a.user).await;
    send_text(&mut ws, Some(convs[0]), None, "bump").await;
    assert_eq!(ids(&a.list("").await), [convs[0], convs[2], convs[1]]);
    assert_eq!(ids(&a.list("limit=1&offset=1").await), [convs[2]]);
    assert_eq!(ids(&a.list("limit=2&offset=2").await), [convs[1]]);
    assert!(a.list("offset=3").await.is_empty());
    assert_paging_bounds(&a, "/conversations").await;
    // Someone else sees none of them.
    assert!(Api::new(&c, 0, Uuid::new_v4()).list("").await.is_empty());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_creation_shape_validation_and_live_delivery() {
    let c = Cluster::start(2, &[]).await;
    let mut owner_ws = c.user(0).await;
    let mut b_ws = c.user(1).await;
    let owner = Api::new(&c, 0, owner_ws.user);
    let x = Uuid::new_v4();
    let name = "团队".repeat(50);
    let (status, body) = owner
        .post(
            "/conversations/group",
            json!({"group_name": name, "member_ids": [b_ws.user, x, b_ws.user, owner.user]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let g = &body["data"];
    assert_eq!(g["conversation_type"], "group");
    assert_eq!(g["group_name"], name);
    assert_eq!(g["created_at"], g["updated_at"]);
    assert!(
        g.get("last_message_at").is_none() && g.get("members").is_none(),
        "{g}"
    );
    let group = uuid_of(&g["id"]);
    let item = owner.list("").await.remove(0);
    assert_eq!(uuid_of(&item["id"]), group);
    assert_eq!(item["members"].as_array().unwrap().len(), 3);
    assert_eq!(member(&item, owner.user)["role"], "owner");
    assert_eq!(member(&item, b_ws.user)["role"], "member");
    assert_eq!(item["online_status"], json!({}), "no presence in groups");
    assert_eq!(item["can_send"], true);
    // An empty member list is a group of one.
    let solo = owner.group("solo", &[]).await;
    assert_eq!(ids(&owner.list("").await)[0], solo);

    for bad in [
        json!({"group_name": "", "member_ids": []}),
        json!({"group_name": "   ", "member_ids": []}),
        json!({"group_name": "x".repeat(101), "member_ids": []}),
        json!({"group_name": "g"}),
        json!({"member_ids": []}),
        json!({"group_name": "g", "member_ids": ["nope"]}),
        json!({"group_name": "g", "member_ids": [Uuid::nil()]}),
        json!({"group_name": "g", "member_ids": "abc"}),
    ] {
        let (status, body) = owner.post("/conversations/group", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    assert_eq!(owner.post_raw("/conversations/group", b"nope").await.0, 400);

    // A member on the other node gets the group's messages live, counted from zero.
    let echo = send_text(&mut owner_ws, Some(group), None, "welcome").await;
    assert_eq!(echo["seq"], 1);
    let update = b_ws.expect("conversation_update").await;
    assert_eq!(update["conversation_id"], group.to_string());
    assert_eq!(update["unread_count"], 1);
    assert_eq!(b_ws.expect("message").await["id"], echo["id"]);
    let b_item = Api::new(&c, 1, b_ws.user).list("").await.remove(0);
    assert_eq!(
        (&b_item["unread_count"], &b_item["last_message_text"]),
        (&json!(1), &json!("welcome"))
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_by_seq_with_recall_and_access() {
    let c = Cluster::start(2, &[]).await;
    let mut a_ws = c.user(0).await;
    let mut b_ws = c.user(1).await;
    let conv = befriend(&mut a_ws, &mut b_ws).await;
    for i in 3..=12 {
        send_text(&mut a_ws, Some(conv), None, &format!("m{i}")).await;
    }
    let a = Api::new(&c, 0, a_ws.user);
    let path = format!("/conversations/{conv}/messages");
    let seqs = |body: &Value| -> Vec<i64> {
        body["data"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    };
    let (status, body) = a.get(&path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(seqs(&body), (1..=12).collect::<Vec<_>>());
    assert_eq!(body["data"]["can_send"], true);
    assert_eq!(
        body["data"]["online_status"],
        json!({ b_ws.user.to_string(): true })
    );
    let first = &body["data"]["messages"][0];
    assert_eq!(
        (&first["content"], &first["status"], &first["is_recalled"]),
        (&json!("hi"), &json!("sent"), &json!(false))
    );
    assert!(first.get("recalled_at").is_none() && first.get("metadata").is_none());
    for (query, want) in [
        ("?limit=3", vec![10, 11, 12]),
        ("?limit=3&offset=3", vec![7, 8, 9]),
        ("?before_seq=5&limit=2", vec![3, 4]),
        ("?before_seq=2", vec![1]),
        ("?before_seq=1", vec![]),
        ("?after_seq=5&limit=2", vec![6, 7]),
        ("?after_seq=10", vec![11, 12]),
        ("?after_seq=12", vec![]),
        ("?offset=50", vec![]),
    ] {
        let (status, body) = a.get(&format!("{path}{query}")).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(seqs(&body), want, "{query}");
    }
    for bad in [
        "?before_seq=3&after_seq=1",
        "?before_seq=-1",
        "?after_seq=x",
    ] {
        assert_eq!(a.get(&format!("{path}{bad}")).await.0, 400, "{bad}");
    }
    assert_paging_bounds(&a, &path).await;
    assert_error(
        &a.get("/conversations/nope/messages").await,
        400,
        "invalid conversation id",
    );
    let outsider = Api::new(&c, 1, Uuid::new_v4());
    assert_error(
        &outsider.get(&path).await,
        403,
        "user is not a member of this conversation",
    );
    let unknown = format!("/conversations/{}/messages", Uuid::new_v4());
    assert_error(
        &a.get(&unknown).await,
        403,
        "user is not a member of this conversation",
    );

    // A recalled message keeps its place but not its content.
    let (_, body) = a.get(&format!("{path}?limit=1")).await;
    let last = body["data"]["messages"][0]["id"].clone();
    a_ws.send(json!({"type": "recall", "data": {"message_id": last}}))
        .await;
    b_ws.expect("recalled").await;
    let (_, body) = a.get(&format!("{path}?limit=1")).await;
    let m = &body["data"]["messages"][0];
    assert_eq!((&m["id"], &m["is_recalled"]), (&last, &json!(true)));
    assert!(
        m.get("content").is_none() && m["recalled_at"].is_string(),
        "{m}"
    );
    assert_eq!(
        Api::new(&c, 1, b_ws.user).list("").await[0]["last_message_text"],
        Value::Null
    );

    // can_send comes from the conversation, not the page: A spoke first and alone.
    let mut d_ws = c.user(1).await;
    let first = send_text(&mut a_ws, None, Some(d_ws.user), "one").await;
    d_ws.expect("message").await;
    let lonely = format!(
        "/conversations/{}/messages",
        first["conversation_id"].as_str().unwrap()
    );
    assert_eq!(a.get(&lonely).await.1["data"]["can_send"], false);
    assert_eq!(
        a.get(&format!("{lonely}?after_seq=1")).await.1["data"]["can_send"],
        false
    );
    let d = Api::new(&c, 1, d_ws.user);
    assert_eq!(d.get(&lonely).await.1["data"]["can_send"], true);
    c.set("enable_first_message_limit", "false").await;
    assert_eq!(a.get(&lonely).await.1["data"]["can_send"], true);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hide_until_the_next_message() {
    let c = Cluster::start(2, &[]).await;
    let mut a_ws = c.user(0).await;
    let mut b_ws = c.user(1).await;
    let conv = befriend(&mut a_ws, &mut b_ws).await;
    let (a, b) = (Api::new(&c, 0, a_ws.user), Api::new(&c, 1, b_ws.user));
    let hide = format!("/conversations/{conv}/hide");
    let (status, body) = b.post(&hide, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "conversation hidden successfully");
    assert!(b.list("").await.is_empty());
    assert_eq!(b.post(&hide, json!({})).await.0, 200, "idempotent");
    // A still lists it and sees B's member entry hidden; B still reads history.
    let a_item = a.list("").await.remove(0);
    assert_eq!(member(&a_item, b.user)["is_hidden"], true);
    assert_eq!(member(&a_item, a.user)["is_hidden"], false);
    assert_eq!(
        b.get(&format!("/conversations/{conv}/messages")).await.0,
        200
    );
    // Refusals.
    assert_error(
        &b.post("/conversations/nope/hide", json!({})).await,
        400,
        "invalid conversation id",
    );
    let unknown = format!("/conversations/{}/hide", Uuid::new_v4());
    assert_error(
        &b.post(&unknown, json!({})).await,
        403,
        "conversation not found or already left",
    );
    let outsider = Api::new(&c, 0, Uuid::new_v4());
    assert_error(
        &outsider.post(&hide, json!({})).await,
        403,
        "conversation not found or already left",
    );
    // The next message brings it back, live and in the list.
    let echo = send_text(&mut a_ws, Some(conv), None, "are you there?").await;
    assert_eq!(b_ws.expect("conversation_update").await["unread_count"], 1);
    assert_eq!(b_ws.expect("message").await["id"], echo["id"]);
    let item = b.list("").await.remove(0);
    assert_eq!(uuid_of(&item["id"]), conv);
    assert_eq!(member(&item, b.user)["is_hidden"], false);
    assert_eq!(item["unread_count"], 1);
    // The sender hiding and then sending also brings it back for the sender.
    a.post(&hide, json!({})).await;
    assert!(a.list("").await.is_empty());
    send_text(&mut a_ws, Some(conv), None, "me again").await;
    assert_eq!(ids(&a.list("").await), [conv]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.stop().await;
}
