//! Forwarding (issue 19 §3) over several real nodes: `POST /messages/forward` copies each
//! source, in order, to each target with `forwarded_from`, seen in the answer, the
//! `message` events on every node, `offline_message`, history, search and export; the
//! largest forward (50 × 20) in one request; and the refusals, each of which stores nothing
//! (not a member of a source or target, a former member, a recalled or unknown source,
//! blocked, the first-message limit, the send rate, bad lists and ids).

use serde_json::{Value, json};
use uuid::Uuid;

use super::client;
use super::http_api::Api;
use super::realtime::{Cluster, befriend, send_text, uuid_of};
use super::ws_client::Ws;

/// Every history item of `conversation` (up to 100), oldest first, asserting 200.
async fn history(api: &Api, conversation: Uuid) -> Vec<Value> {
    let (status, body) = api
        .get(&format!("/conversations/{conversation}/messages?limit=100"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["messages"].as_array().unwrap().clone()
}

/// Forwards, asserting 200; returns the new messages.
async fn forward(api: &Api, sources: &[&Value], targets: &[Uuid]) -> Vec<Value> {
    let ids: Vec<&Value> = sources.iter().map(|m| &m["id"]).collect();
    let (status, body) = api
        .post(
            "/messages/forward",
            json!({"message_ids": ids, "conversation_ids": targets}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["messages"].as_array().unwrap().clone()
}

/// What a copy of `source` says of it.
fn forwarded_from(source: &Value) -> Value {
    json!({
        "message_id": source["id"],
        "sender_id": source["sender_id"],
        "created_at": source["created_at"],
    })
}

/// Messages stored in the whole database.
async fn stored(c: &Cluster) -> i64 {
    c.env
        .db()
        .await
        .query_one("SELECT count(*) FROM messages", &[])
        .await
        .unwrap()
        .get(0)
}

/// The next `n` `message` events of `ws`.
async fn messages(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < n {
        out.push(ws.expect("message").await);
    }
    out
}

fn ids(items: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = items
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_reach_every_target_in_order_on_every_node() {
    let c = Cluster::start(3, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let mut m = c.user(2).await;
    let offline = Uuid::new_v4();
    let a_api = Api::new(&c, 0, a.user);
    let private = befriend(&mut a, &mut b).await;
    // Sources: b's text in the private conversation, a's image in a group with m.
    let hello = history(&a_api, private).await[1].clone();
    assert_eq!(hello["content"], "hello");
    let source_group = a_api.group("source", &[m.user]).await;
    a.send(json!({"type": "message", "data": {
        "conversation_id": source_group, "message_type": "image",
        "metadata": {"url": "https://x/cat.png", "width": 640},
    }}))
    .await;
    let image = a.expect("message").await;
    m.expect("message").await;
    let target = a_api.group("target", &[b.user, m.user, offline]).await;

    // Image first, then the text, to the group and back to the private conversation.
    let made = forward(&a_api, &[&image, &hello], &[target, private]).await;
    let expected = [
        (target, &image),
        (target, &hello),
        (private, &image),
        (private, &hello),
    ];
    assert_eq!(made.len(), expected.len(), "{made:?}");
    for (got, (conv, source)) in made.iter().zip(expected) {
        assert_eq!(got["conversation_id"], conv.to_string(), "{got}");
        assert_eq!(got["sender_id"], a.user.to_string(), "the caller sends");
        assert_ne!(got["id"], source["id"]);
        for key in ["message_type", "content", "metadata"] {
            assert_eq!(got[key], source[key], "{key}: {got}");
        }
        assert_eq!(got["forwarded_from"], forwarded_from(source), "{got}");
        assert_eq!(got["is_recalled"], false);
    }
    assert_eq!(made[0]["seq"], 1, "the target group's first messages");
    assert_eq!(made[1]["seq"], 2);
    assert_eq!(made[2]["seq"], 3, "after hi and hello");
    assert_eq!(made[3]["seq"], 4);

    // Ordinary message events on every node: m (node 2) the group's two, b (node 1) all
    // four, a's devices (node 0) the echoes; each carries forwarded_from.
    let seen_by_m = messages(&mut m, 2).await;
    assert_eq!(ids(&seen_by_m), ids(&made[..2]));
    let seen_by_b = messages(&mut b, 4).await;
    assert_eq!(ids(&seen_by_b), ids(&made));
    let echoes = messages(&mut a, 4).await;
    assert_eq!(ids(&echoes), ids(&made));
    for event in seen_by_m.iter().chain(&seen_by_b).chain(&echoes) {
        let copy = made.iter().find(|x| x["id"] == event["id"]).unwrap();
        assert_eq!(event["forwarded_from"], copy["forwarded_from"], "{event}");
        assert_eq!(event["seq"], copy["seq"]);
        assert_eq!(event["can_send"], true);
    }

    // History (on another node) shows exactly the answered messages.
    let m_api = Api::new(&c, 2, m.user);
    assert_eq!(history(&m_api, target).await, made[..2].to_vec());
    assert_eq!(history(&a_api, private).await[2..], made[2..]);

    // A member who was offline gets them as offline_message.
    let mut late = c.connect(1, offline).await;
    let mut drained = Vec::new();
    while drained.len() < 2 {
        drained.push(late.expect("offline_message").await);
    }
    assert_eq!(drained, made[..2].to_vec());

    // Search (m is not in the private conversation: only the copy in the group).
    let (status, body) = m_api.get("/messages/search?q=hello").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["messages"], json!([made[1]]));

    // Export: the same items, one a line.
    let auth = format!("Bearer {}", m_api.token);
    let answer = client::send(
        "GET",
        &format!("{}/conversations/{target}/export", m_api.base),
        &[("authorization", auth.as_str())],
        None,
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    let lines: Vec<Value> = std::str::from_utf8(&answer.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, made[..2].to_vec());

    // A message that is not forwarded has no forwarded_from anywhere.
    let plain = send_text(&mut b, Some(target), None, "plain").await;
    assert!(plain.get("forwarded_from").is_none(), "{plain}");
    let items = history(&m_api, target).await;
    assert!(items[2].get("forwarded_from").is_none(), "{}", items[2]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_forward_is_one_request() {
    let c = Cluster::start(2, &[]).await;
    c.set("max_messages_per_second", "0").await;
    let mut a = c.user(0).await;
    let b = Api::new(&c, 1, Uuid::new_v4());
    let a_api = Api::new(&c, 0, a.user);
    let source = a_api.group("source", &[b.user]).await;
    let mut sources = Vec::new();
    for i in 0..50 {
        sources.push(send_text(&mut a, Some(source), None, &format!("n{i}")).await);
    }
    // a is in every target too; its socket would only fill up with the copies.
    a.close().await;
    let mut targets = Vec::new();
    for i in 0..20 {
        targets.push(a_api.group(&format!("t{i}"), &[b.user]).await);
    }
    let refs: Vec<&Value> = sources.iter().collect();
    let made = forward(&b, &refs, &targets).await;
    assert_eq!(made.len(), 1000);
    for (t, target) in targets.iter().enumerate() {
        let copies = &made[t * 50..(t + 1) * 50];
        assert_eq!(history(&a_api, *target).await, copies.to_vec());
        for (i, (copy, source)) in copies.iter().zip(&sources).enumerate() {
            assert_eq!(copy["conversation_id"], target.to_string());
            assert_eq!(copy["seq"], i + 1);
            assert_eq!(copy["content"], format!("n{i}"));
            assert_eq!(copy["forwarded_from"], forwarded_from(source));
        }
    }
    c.stop().await;
}

/// Asserts that forwarding `body` as `api` is refused with `status` and `code` and that
/// nothing was stored.
async fn refused(c: &Cluster, api: &Api, body: Value, status: u16, code: &str) {
    let before = stored(c).await;
    let (got, answer) = api.post("/messages/forward", body.clone()).await;
    assert_eq!(got, status, "{body}: {answer}");
    assert_eq!(answer["error"], code, "{body}: {answer}");
    assert_eq!(answer["code"], status);
    assert_eq!(stored(c).await, before, "{body}: nothing stored");
}

fn request(sources: &[&Value], targets: &[Uuid]) -> Value {
    let ids: Vec<&Value> = sources.iter().map(|m| &m["id"]).collect();
    json!({"message_ids": ids, "conversation_ids": targets})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_store_nothing() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let mut b = c.user(1).await;
    let a_api = Api::new(&c, 0, a.user);
    let b_api = Api::new(&c, 1, b.user);
    let private = befriend(&mut a, &mut b).await;
    let leaver = Api::new(&c, 1, Uuid::new_v4());
    let group = a_api.group("group", &[b.user, leaver.user]).await;
    let kept = send_text(&mut a, Some(group), None, "kept").await;
    let other = send_text(&mut a, Some(group), None, "other").await;

    // A target the caller is not in, after a good one: nothing at all.
    let stranger = Api::new(&c, 0, Uuid::new_v4());
    let strangers = stranger.group("theirs", &[]).await;
    refused(
        &c,
        &a_api,
        request(&[&kept], &[group, strangers]),
        403,
        "not_member",
    )
    .await;
    // A source the caller cannot read (a stranger forwarding into its own group).
    refused(
        &c,
        &stranger,
        request(&[&kept], &[strangers]),
        403,
        "not_member",
    )
    .await;
    // An unknown source after a good one.
    let unknown = json!({"id": Uuid::new_v4()});
    refused(
        &c,
        &a_api,
        request(&[&kept, &unknown], &[group]),
        404,
        "message_not_found",
    )
    .await;
    // A recalled source.
    let recalled = send_text(&mut a, Some(group), None, "oops").await;
    let (status, body) = a_api
        .post(
            &format!("/messages/{}/recall", recalled["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    refused(
        &c,
        &a_api,
        request(&[&kept, &recalled], &[group]),
        400,
        "message_recalled",
    )
    .await;

    // A former member: neither its sources nor the group as a target.
    let (status, body) = leaver
        .post(&format!("/conversations/{group}/leave"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let own = leaver.group("own", &[]).await;
    refused(&c, &leaver, request(&[&kept], &[own]), 403, "not_member").await;

    // Blocked by the other member of a private target, decided under the row locks
    // after the group's copy was planned: the group gets nothing either.
    let (status, body) = b_api
        .post("/relationships/block", json!({"target_user_id": a.user}))
        .await;
    assert_eq!(status, 200, "{body}");
    refused(
        &c,
        &a_api,
        request(&[&kept], &[group, private]),
        403,
        "blocked",
    )
    .await;
    let (status, body) = b_api
        .post("/relationships/unblock", json!({"target_user_id": a.user}))
        .await;
    assert_eq!(status, 200, "{body}");
    let copies = forward(&a_api, &[&kept], &[group, private]).await;
    assert_eq!(copies.len(), 2);

    // The first-message limit: in a new private conversation the first copy may go, the
    // second may not, so neither does (nor the group's).
    let newcomer = Uuid::new_v4();
    let (status, body) = a_api
        .post("/conversations/private", json!({"receiver_id": newcomer}))
        .await;
    assert_eq!(status, 200, "{body}");
    let fresh = uuid_of(&body["data"]["conversation"]["id"]);
    refused(
        &c,
        &a_api,
        request(&[&kept, &other], &[group, fresh]),
        403,
        "first_message_limit",
    )
    .await;
    let first = forward(&a_api, &[&kept], &[fresh]).await;
    assert_eq!(first[0]["seq"], 1);
    refused(
        &c,
        &a_api,
        request(&[&other], &[fresh]),
        403,
        "first_message_limit",
    )
    .await;

    // The send rate: one message a second (burst 2). A caller with no device here has a
    // full budget: a forward of 3 goes (a full bucket lets a bigger send through and is in
    // debt after it); the next is refused until the debt is paid.
    c.set("max_messages_per_second", "1").await;
    let member = Api::new(&c, 1, Uuid::new_v4());
    let (status, body) = a_api
        .post(
            &format!("/conversations/{group}/members"),
            json!({"member_ids": [member.user]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let again = forward(&member, &[&kept, &other, &copies[0]], &[group]).await;
    assert_eq!(again.len(), 3, "a full budget lets a forward of 3 through");
    assert_eq!(
        again[2]["forwarded_from"],
        forwarded_from(&kept),
        "a copy of a copy names the original"
    );
    let before = stored(&c).await;
    let (status, body) = member
        .post("/messages/forward", request(&[&kept], &[group]))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(stored(&c).await, before);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lists_and_ids() {
    let c = Cluster::start(2, &[]).await;
    let mut a = c.user(0).await;
    let b = c.user(1).await;
    let a_api = Api::new(&c, 1, a.user);
    let group = a_api.group("group", &[b.user]).await;
    let m = send_text(&mut a, Some(group), None, "source").await;
    let id = &m["id"];
    let many = |n: usize| -> Vec<Uuid> { (0..n).map(|_| Uuid::new_v4()).collect() };
    for (body, status, code) in [
        (json!({}), 400, "message_ids_required"),
        (
            json!({"message_ids": [], "conversation_ids": [group]}),
            400,
            "message_ids_required",
        ),
        (
            json!({"message_ids": null, "conversation_ids": [group]}),
            400,
            "message_ids_required",
        ),
        (
            json!({"message_ids": [id]}),
            400,
            "conversation_ids_required",
        ),
        (
            json!({"message_ids": [id], "conversation_ids": []}),
            400,
            "conversation_ids_required",
        ),
        (
            json!({"message_ids": many(51), "conversation_ids": [group]}),
            400,
            "too_many_messages",
        ),
        (
            json!({"message_ids": [id], "conversation_ids": many(21)}),
            400,
            "too_many_conversations",
        ),
        (
            json!({"message_ids": [id, id], "conversation_ids": [group]}),
            400,
            "duplicate_message_id",
        ),
        (
            json!({"message_ids": [id], "conversation_ids": [group, group]}),
            400,
            "duplicate_conversation_id",
        ),
        (
            json!({"message_ids": [id, "abc"], "conversation_ids": [group]}),
            400,
            "invalid_message_id",
        ),
        (
            json!({"message_ids": [5], "conversation_ids": [group]}),
            400,
            "invalid_message_id",
        ),
        (
            json!({"message_ids": [null], "conversation_ids": [group]}),
            400,
            "invalid_message_id",
        ),
        (
            json!({"message_ids": [id], "conversation_ids": ["not-a-uuid"]}),
            400,
            "invalid_conversation_id",
        ),
        (
            json!({"message_ids": id, "conversation_ids": [group]}),
            400,
            "invalid_body",
        ),
        (json!([id]), 400, "invalid_body"),
        (
            json!({"message_ids": [Uuid::new_v4()], "conversation_ids": [group]}),
            404,
            "message_not_found",
        ),
        (
            json!({"message_ids": [id], "conversation_ids": [Uuid::new_v4()]}),
            403,
            "not_member",
        ),
    ] {
        refused(&c, &a_api, body, status, code).await;
    }
    // The error names what is wrong.
    let (_, body) = a_api
        .post(
            "/messages/forward",
            json!({"message_ids": [id, "abc"], "conversation_ids": [group]}),
        )
        .await;
    assert_eq!(body["message"], "message_ids[1] is not a valid id");
    let (_, body) = a_api
        .post(
            "/messages/forward",
            json!({"message_ids": [id, id], "conversation_ids": [group]}),
        )
        .await;
    assert_eq!(
        body["message"],
        format!("message_ids names {} twice", id.as_str().unwrap())
    );
    // Not JSON, no token, wrong method.
    let (status, body) = a_api.post_raw("/messages/forward", b"{nope").await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_body")));
    let (status, _) = client::post(
        &format!("{}/messages/forward", a_api.base),
        None,
        &request(&[&m], &[group]),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    let (status, _) = a_api.get("/messages/forward").await;
    assert_eq!(status, 405);
    // Still fine afterwards, on the other node too.
    let made = forward(&Api::new(&c, 0, a.user), &[&m], &[group]).await;
    assert_eq!(made[0]["forwarded_from"], forwarded_from(&m));
    c.stop().await;
}
