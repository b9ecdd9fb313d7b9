//! Group read status (issue 19 §2) over three nodes: `GET
//! /conversations/:id/messages/:message_id/readers` from the members' read cursors (read =
//! cursor at or past the message), the sender and later joiners left out, and the
//! refusals (bad ids, non-member, former member, a message of another conversation, read
//! receipts off, wrong method, no token).

use serde_json::{Value, json};
use uuid::Uuid;

use super::client;
use super::http_api::{Api, assert_error};
use super::realtime::{Cluster, befriend, send_text, uuid_of};
use super::ws_client::Ws;

/// The read status of `message`, asserting 200: (read, unread) user ids.
async fn readers(api: &Api, conversation: Uuid, message: &Value) -> (Vec<Uuid>, Vec<Uuid>) {
    let path = format!(
        "/conversations/{conversation}/messages/{}/readers",
        message["id"].as_str().unwrap()
    );
    let (status, body) = api.get(&path).await;
    assert_eq!(status, 200, "{body}");
    let data = &body["data"];
    let users = |key: &str| -> Vec<Uuid> {
        data[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {data}"))
            .iter()
            .map(|r| {
                assert_eq!(r.as_object().unwrap().len(), 1, "only user_id: {r}");
                uuid_of(&r["user_id"])
            })
            .collect()
    };
    let (read, unread) = (users("read"), users("unread"));
    assert_eq!(data["read_count"], read.len(), "{data}");
    assert_eq!(data["unread_count"], unread.len(), "{data}");
    (read, unread)
}

fn sorted(mut users: Vec<Uuid>) -> Vec<Uuid> {
    users.sort();
    users
}

/// `reader` reads up to `message`; returns once `witness` (another member) got the
/// receipt, which is sent after the cursor is stored.
async fn read(reader: &Ws, witness: &mut Ws, conversation: Uuid, message: &Value) {
    reader
        .send(json!({"type": "read", "data": {"conversation_id": conversation, "message_id": message["id"]}}))
        .await;
    loop {
        let r = witness.expect("read").await;
        if r["reader_id"] == reader.user.to_string() && r["message_id"] == message["id"] {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_come_from_the_cursors_without_the_sender_or_later_joiners() {
    let c = Cluster::start(3, &[]).await;
    let mut owner = c.user(0).await;
    let m1 = c.user(1).await;
    let mut m2 = c.user(2).await;
    let api = |i: usize, user: Uuid| Api::new(&c, i, user);
    let group = api(0, owner.user)
        .group("read status", &[m1.user, m2.user])
        .await;

    let first = send_text(&mut owner, Some(group), None, "first").await;
    // Nobody has read it: both members unread, the sender in neither list.
    let (r, u) = readers(&api(1, m1.user), group, &first).await;
    assert_eq!(r, Vec::<Uuid>::new());
    assert_eq!(sorted(u), sorted(vec![m1.user, m2.user]));

    // m1 reads it (on node 1): read for everyone who asks, on any node.
    read(&m1, &mut owner, group, &first).await;
    for (i, who) in [(0, owner.user), (1, m1.user), (2, m2.user)] {
        let (r, u) = readers(&api(i, who), group, &first).await;
        assert_eq!((r, u), (vec![m1.user], vec![m2.user]), "asked by {who}");
    }

    // A member added now joined after `first`: left out of it, counted for what follows.
    let late = Uuid::new_v4();
    let (status, body) = api(0, owner.user)
        .post(
            &format!("/conversations/{group}/members"),
            json!({"member_ids": [late]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (r, u) = readers(&api(2, late), group, &first).await;
    assert_eq!(
        (r, u),
        (vec![m1.user], vec![m2.user]),
        "the late member may ask"
    );
    let second = send_text(&mut m2, Some(group), None, "second").await;
    let (r, u) = readers(&api(0, owner.user), group, &second).await;
    assert_eq!(
        r,
        Vec::<Uuid>::new(),
        "the sender's own cursor does not count"
    );
    assert_eq!(sorted(u), sorted(vec![owner.user, m1.user, late]));

    // Sending reads what came before: m2's cursor moved to `second`, so m2 read `first`.
    let (r, u) = readers(&api(1, m1.user), group, &first).await;
    assert_eq!((sorted(r), u), (sorted(vec![m1.user, m2.user]), vec![]));

    // The owner reads `second` (on node 0), seen by m2 (on node 2).
    read(&owner, &mut m2, group, &second).await;
    let (r, u) = readers(&api(1, m1.user), group, &second).await;
    assert_eq!(
        (r, sorted(u)),
        (vec![owner.user], sorted(vec![m1.user, late]))
    );

    // A member who leaves drops out of both lists.
    let (status, body) = api(1, m1.user)
        .post(&format!("/conversations/{group}/leave"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (r, u) = readers(&api(2, m2.user), group, &second).await;
    assert_eq!((r, u), (vec![owner.user], vec![late]));
    let (r, u) = readers(&api(2, m2.user), group, &first).await;
    assert_eq!((r, u), (vec![m2.user], vec![]));

    // A private conversation: the other member only.
    let mut x = c.user(0).await;
    let mut y = c.user(1).await;
    let conv = befriend(&mut x, &mut y).await;
    let hello = send_text(&mut x, Some(conv), None, "hello again").await;
    let (r, u) = readers(&api(1, y.user), conv, &hello).await;
    assert_eq!((r, u), (vec![], vec![y.user]));
    read(&y, &mut x, conv, &hello).await;
    let (r, u) = readers(&api(2, x.user), conv, &hello).await;
    assert_eq!((r, u), (vec![y.user], vec![]));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_refusals() {
    let c = Cluster::start(2, &[]).await;
    let mut owner = c.user(0).await;
    let member = Api::new(&c, 1, Uuid::new_v4());
    let leaver = Api::new(&c, 1, Uuid::new_v4());
    let stranger = Api::new(&c, 0, Uuid::new_v4());
    let owner_api = Api::new(&c, 0, owner.user);
    let group = owner_api
        .group("refused", &[member.user, leaver.user])
        .await;
    let other = owner_api.group("other", &[member.user]).await;
    let m = send_text(&mut owner, Some(group), None, "in the group").await;
    let elsewhere = send_text(&mut owner, Some(other), None, "in the other group").await;
    let mid = m["id"].as_str().unwrap();
    let path = |conv: &dyn std::fmt::Display, msg: &dyn std::fmt::Display| {
        format!("/conversations/{conv}/messages/{msg}/readers")
    };
    assert_eq!(member.get(&path(&group, &mid)).await.0, 200);

    // Bad ids.
    let r = member.get(&path(&"abc", &mid)).await;
    assert_error(&r, 400, "invalid conversation id");
    assert_eq!(r.1["error"], "invalid_id");
    for bad in ["abc", "1", "not-a-uuid-at-all"] {
        let r = member.get(&path(&group, &bad)).await;
        assert_error(&r, 400, "invalid message id");
        assert_eq!(r.1["error"], "invalid_id");
    }
    // A message of another conversation, one that does not exist: 404.
    for msg in [
        elsewhere["id"].as_str().unwrap().to_string(),
        Uuid::new_v4().to_string(),
    ] {
        let r = member.get(&path(&group, &msg)).await;
        assert_eq!(r.0, 404, "{}", r.1);
        assert_eq!(r.1["error"], "message_not_found");
    }
    // A non-member, for a real message and a made-up one; a made-up conversation.
    for (conv, msg) in [
        (group, mid.to_string()),
        (group, Uuid::new_v4().to_string()),
        (Uuid::new_v4(), mid.to_string()),
    ] {
        let r = stranger.get(&path(&conv, &msg)).await;
        assert_eq!(r.0, 403, "{}", r.1);
        assert_eq!(r.1["error"], "not_member");
    }
    // A former member.
    let (status, body) = leaver
        .post(&format!("/conversations/{group}/leave"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let r = leaver.get(&path(&group, &mid)).await;
    assert_eq!(r.0, 403, "{}", r.1);
    assert_eq!(r.1["error"], "not_member");
    // Wrong method, no token.
    let (status, body) = member.post(&path(&group, &mid), json!({})).await;
    assert_eq!(status, 405, "{body}");
    let (status, _) = client::get(&format!("{}{}", member.base, path(&group, &mid)), None)
        .await
        .unwrap();
    assert_eq!(status, 401);

    // Read receipts off: no read status either, on every node; back on, it answers again.
    c.set("enable_read_receipt", "false").await;
    for i in 0..2 {
        let r = Api::new(&c, i, member.user).get(&path(&group, &mid)).await;
        assert_eq!(r.0, 403, "node {i}: {}", r.1);
        assert_eq!(r.1["error"], "read_receipts_disabled");
    }
    // Membership is still checked first.
    let r = stranger.get(&path(&group, &mid)).await;
    assert_eq!(r.1["error"], "not_member");
    c.set("enable_read_receipt", "true").await;
    assert_eq!(member.get(&path(&group, &mid)).await.0, 200);
    c.stop().await;
}
