//! The rules of PROTOCOL.md §5 as DECISIONS.md changes them, exercised with users on
//! different nodes: settings on every node, typing, receipts, viewing, recall, members who
//! left, `?ack=1`, `offline_truncated`.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::realtime::{Cluster, befriend, send_text, uuid_of};
use super::ws_client::{ConnectOptions, Ws};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_reach_every_node_within_a_second() {
    let c = Cluster::start(3, &[]).await;
    let admin = c.env.token(Uuid::new_v4(), true);
    let (status, _) = super::client::post(
        &format!(
            "{}/api/admin/settings/recall_window_seconds",
            c.nodes[0].url()
        ),
        Some(&admin),
        &json!({"value": "777"}),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for n in &c.nodes {
        let (_, body) =
            super::client::get(&format!("{}/api/admin/settings", n.url()), Some(&admin))
                .await
                .unwrap();
        assert_eq!(
            body["data"]["settings"]["recall_window_seconds"], "777",
            "node {}",
            n.addr
        );
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_follows_the_setting_and_reaches_other_devices() {
    let c = Cluster::start(3, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let mut a2 = c.connect(2, a.user).await;
    let typing = json!({"type": "typing", "data": {"conversation_id": conv}});
    // Off by default: nothing, and no error.
    a.send(typing.clone()).await;
    b.expect_no("typing", Duration::from_millis(500)).await;
    c.set("enable_typing_indicator", "true").await;
    a.send(typing.clone()).await;
    let t = b.expect("typing").await;
    assert_eq!(
        (t["conversation_id"].as_str(), t["user_id"].as_str()),
        (
            Some(conv.to_string().as_str()),
            Some(a.user.to_string().as_str())
        )
    );
    // Mirrored to the typist's other device, not echoed to the typing one.
    a2.expect("typing").await;
    a.expect_no("typing", Duration::from_millis(400)).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_follow_the_setting_and_only_when_the_cursor_moves() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let m1 = send_text(&mut a, Some(conv), None, "one").await;
    let m2 = send_text(&mut a, Some(conv), None, "two").await;
    let read = |id: &serde_json::Value| json!({"type": "read", "data": {"conversation_id": conv, "message_id": id}});
    b.drain(Duration::from_millis(300)).await;
    b.send(read(&m2["id"])).await;
    assert_eq!(b.expect("unread_count_update").await["unread_count"], 0);
    let r = a.expect("read").await;
    assert_eq!(r["message_id"], m2["id"]);
    assert_eq!(r["reader_id"], b.user.to_string());
    // An older message does not move the cursor back: no receipt, no update.
    b.send(read(&m1["id"])).await;
    a.expect_no("read", Duration::from_millis(500)).await;
    // Receipts off: the cursor still moves, the sender hears nothing.
    c.set("enable_read_receipt", "false").await;
    let m3 = send_text(&mut a, Some(conv), None, "three").await;
    b.expect("message").await;
    b.send(read(&m3["id"])).await;
    assert_eq!(b.expect("unread_count_update").await["unread_count"], 0);
    a.expect_no("read", Duration::from_millis(500)).await;
    let db = c.env.db().await;
    let read_seq: i64 = db
        .query_one(
            "SELECT read_seq FROM conversation_members WHERE conversation_id = $1 AND user_id = $2",
            &[&conv, &b.user],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(read_seq, m3["seq"].as_i64().unwrap());
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_is_exact_and_viewing_keeps_it_at_zero() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    // A, B, A, A: B's unread is 2 (B's reply read what came before).
    send_text(&mut a, Some(conv), None, "x1").await;
    assert_eq!(b.expect("unread_count_update").await["unread_count"], 1);
    send_text(&mut b, Some(conv), None, "y").await;
    send_text(&mut a, Some(conv), None, "x2").await;
    send_text(&mut a, Some(conv), None, "x3").await;
    let updates: Vec<i64> = b
        .drain(Duration::from_millis(600))
        .await
        .iter()
        .filter(|e| e["type"] == "unread_count_update")
        .map(|e| e["data"]["unread_count"].as_i64().unwrap())
        .collect();
    assert_eq!(updates, [1, 2]);
    // Viewing the conversation: new messages arrive read.
    b.send(json!({"type": "set_current_conversation", "data": {"conversation_id": conv}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_text(&mut a, Some(conv), None, "seen").await;
    let u = b.expect("unread_count_update").await;
    assert_eq!(u["unread_count"], 0);
    // The read cursor is stored by the next cursor flush (within about a second).
    let db = c.env.db().await;
    let mut unread = -1;
    for _ in 0..40 {
        unread = db
            .query_one(
                "SELECT c.last_seq - cm.read_seq FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
                 WHERE cm.conversation_id = $1 AND cm.user_id = $2",
                &[&conv, &b.user],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if unread == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unread, 0, "the read cursor is stored");
    // Stop viewing: counting resumes.
    b.send(json!({"type": "set_current_conversation", "data": {"conversation_id": null}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send_text(&mut a, Some(conv), None, "unseen").await;
    assert_eq!(b.expect("unread_count_update").await["unread_count"], 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_reaches_every_member_with_a_conversation_update() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let m = send_text(&mut a, Some(conv), None, "oops").await;
    b.expect("message").await;
    a.send(json!({"type": "recall", "data": {"message_id": m["id"]}}))
        .await;
    for ws in [&mut a, &mut b] {
        let r = ws.expect("recalled").await;
        assert_eq!(r["message_id"], m["id"]);
        let u = ws.expect("conversation_update").await;
        assert_eq!(u["conversation_id"], conv.to_string());
        assert!(
            u["last_message_text"].is_null(),
            "the recalled text is not served: {u}"
        );
    }
    let db = c.env.db().await;
    let recalled: bool = db
        .query_one(
            "SELECT is_recalled FROM messages WHERE id = $1",
            &[&uuid_of(&m["id"])],
        )
        .await
        .unwrap()
        .get(0);
    assert!(recalled);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_who_left_get_nothing() {
    let c = Cluster::start(2, &[]).await;
    let mut owner = c.user(0).await;
    let mut stays = c.user(1).await;
    let mut leaves = c.user(1).await;
    let db = c.env.db().await;
    let group = Uuid::now_v7();
    db.batch_execute(&format!(
        "INSERT INTO conversations (id, conversation_type, group_name) VALUES ('{group}', 'group', 'g');
         INSERT INTO conversation_members (conversation_id, user_id, role) VALUES
            ('{group}', '{}', 'owner'), ('{group}', '{}', 'member'), ('{group}', '{}', 'member');",
        owner.user, stays.user, leaves.user
    ))
    .await
    .unwrap();
    send_text(&mut owner, Some(group), None, "all three").await;
    stays.expect("message").await;
    leaves.expect("message").await;
    db.execute(
        "UPDATE conversation_members SET left_at = now() WHERE conversation_id = $1 AND user_id = $2",
        &[&group, &leaves.user],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE conversations SET members_version = members_version + 1 WHERE id = $1",
        &[&group],
    )
    .await
    .unwrap();
    send_text(&mut owner, Some(group), None, "two now").await;
    stays.expect("message").await;
    leaves
        .expect_no("message", Duration::from_millis(600))
        .await;
    // And a member who left cannot send.
    leaves.text_to(Some(group), None, "still here?").await;
    let e = leaves.expect("error").await;
    assert_eq!(e["code"], "not_member");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_mode_redelivers_what_was_not_acknowledged() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let b_user = b.user;
    b.close().await;
    let opts = ConnectOptions {
        ack: true,
        ..Default::default()
    };
    let mut b = Ws::connect_with(
        c.nodes[1].addr,
        &c.env.token(b_user, false),
        b_user,
        opts.clone(),
    )
    .await
    .unwrap();
    let m1 = send_text(&mut a, Some(conv), None, "acked").await;
    let m2 = send_text(&mut a, Some(conv), None, "not acked").await;
    assert_eq!(b.expect("message").await["id"], m1["id"]);
    assert_eq!(b.expect("message").await["id"], m2["id"]);
    b.send(json!({"type": "ack", "data": {"conversation_id": conv, "seq": m1["seq"]}}))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.close().await;
    let mut again = Ws::connect_with(c.nodes[0].addr, &c.env.token(b_user, false), b_user, opts)
        .await
        .unwrap();
    let offline: Vec<serde_json::Value> = again
        .drain(Duration::from_millis(800))
        .await
        .into_iter()
        .filter(|e| e["type"] == "offline_message")
        .map(|e| e["data"]["id"].clone())
        .collect();
    assert_eq!(offline, [m2["id"].clone()]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_delivery_is_capped_and_says_so() {
    let c = Cluster::start(2, &[]).await;
    c.set("offline_max_per_connect", "5").await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let conv = befriend(&mut a, &mut b).await;
    let b_user = b.user;
    b.close().await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(send_text(&mut a, Some(conv), None, &format!("n{i}")).await["id"].clone());
    }
    let mut b = c.connect(1, b_user).await;
    let events = b.drain(Duration::from_millis(800)).await;
    let offline: Vec<serde_json::Value> = events
        .iter()
        .filter(|e| e["type"] == "offline_message")
        .map(|e| e["data"]["id"].clone())
        .collect();
    assert_eq!(offline, ids[3..].to_vec(), "the newest five, oldest first");
    let t = events
        .iter()
        .find(|e| e["type"] == "offline_truncated")
        .expect("offline_truncated");
    assert_eq!(
        t["data"]["conversations"],
        json!([{"conversation_id": conv, "skipped": 3, "newest_skipped_seq": 5}])
    );
    b.close().await;
    let mut b = c.connect(0, b_user).await;
    assert!(
        b.drain(Duration::from_millis(600))
            .await
            .iter()
            .all(|e| e["type"] != "offline_message" && e["type"] != "offline_truncated")
    );
    c.stop().await;
}
