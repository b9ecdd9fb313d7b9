//! Editing a message (issue 19 §5) over real nodes: by WebSocket and by HTTP, every member's
//! devices on every node get `message_edited`; history, export and search show the latest
//! text and `edited_at`; search finds the new words and not the old ones both in the
//! indexed part and in the tail the indexer has not reached; and the refusals (bad id,
//! missing, empty, too long or NUL content, someone else's message, a non-text or recalled
//! one, an unknown one, outside the `edit_window_seconds` window, an outsider, a former
//! member, wrong method, no token), each leaving the message as it was.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::client;
use super::http_api::{Api, assert_error};
use super::http_search::search_caught_up;
use super::realtime::{Cluster, send_text, uuid_of};
use super::search_index::pause_indexer;
use super::ws_errors::{Checker, message_where, pair};

/// A WebSocket `edit` frame.
fn edit_frame(message: &Value, content: &str) -> String {
    json!({"type": "edit", "data": {"message_id": message, "content": content}}).to_string()
}

/// The messages a search for `q` finds for `api`'s user, newest first.
async fn found(api: &Api, q: &str) -> Vec<Value> {
    let (status, body) = api.get(&format!("/messages/search?q={q}&limit=100")).await;
    assert_eq!(status, 200, "{body}");
    body["data"]["messages"].as_array().unwrap().clone()
}

fn ids(items: &[Value]) -> Vec<Uuid> {
    items.iter().map(|i| uuid_of(&i["id"])).collect()
}

/// The history item of `message` as `api`'s user sees it.
async fn history_item(api: &Api, conversation: Uuid, message: &Value) -> Value {
    let (status, body) = api
        .get(&format!("/conversations/{conversation}/messages?limit=100"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == *message)
        .cloned()
        .unwrap_or_else(|| panic!("{message} not in the history: {body}"))
}

/// The export line of `message` as `api`'s user gets it.
async fn export_line(api: &Api, conversation: Uuid, message: &Value) -> Value {
    let auth = format!("Bearer {}", api.token);
    let a = client::send(
        "GET",
        &format!("{}/conversations/{conversation}/export", api.base),
        &[("authorization", auth.as_str())],
        None,
    )
    .await
    .expect("GET export");
    assert_eq!(a.status, 200);
    std::str::from_utf8(&a.body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|m| m["id"] == *message)
        .unwrap_or_else(|| panic!("{message} not exported"))
}

/// The `message_edited` data every member must get.
fn edited(conversation: Uuid, message: &Value, content: &str, at: &Value) -> Value {
    json!({"conversation_id": conversation, "message_id": message, "content": content, "edited_at": at})
}

/// Waits until the search indexer's mark has passed `message` (at most 15 s).
async fn indexed_past(c: &Cluster, message: Uuid) {
    let db = c.env.db().await;
    for _ in 0..300 {
        let passed: bool = db
            .query_one(
                "SELECT p.indexed_until >= m.created_at FROM search_progress p, messages m
                 WHERE m.id = $1",
                &[&message],
            )
            .await
            .unwrap()
            .get(0);
        if passed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the indexer did not pass {message} within 15 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_reaches_every_member_and_shows_everywhere() {
    let c = Cluster::start(3, &[]).await;
    // A has devices on nodes 0 and 1; B is on node 1, D on node 2.
    let mut a0 = c.user(0).await;
    let mut a1 = c.connect(1, a0.user).await;
    let mut b = c.user(1).await;
    let mut d = c.user(2).await;
    let a = Api::new(&c, 2, a0.user);
    let b_api = Api::new(&c, 1, b.user);
    let d_api = Api::new(&c, 2, d.user);
    let group = a.group("edits", &[b.user, d.user]).await;
    let db = c.env.db().await;

    // The indexed part: the message is in the search table (under the mark) before the edit.
    let first = send_text(&mut a0, Some(group), None, "alpha oldword one").await;
    let id = first["id"].clone();
    search_caught_up(&c).await;
    indexed_past(&c, uuid_of(&id)).await;
    assert_eq!(ids(&found(&b_api, "oldword").await), [uuid_of(&id)]);
    let untouched = history_item(&d_api, group, &id).await;
    assert!(untouched.get("edited_at").is_none(), "{untouched}");

    // A edits by WebSocket on node 0: every device of every member hears it, the editing
    // one included, on every node, with the same data.
    a0.send_raw(edit_frame(&id, "alpha newword one").as_bytes())
        .await;
    let event = a0.expect("message_edited").await;
    let at = event["edited_at"].clone();
    assert!(at.is_string(), "{event}");
    let want = edited(group, &id, "alpha newword one", &at);
    assert_eq!(event, want);
    for ws in [&mut a1, &mut b, &mut d] {
        assert_eq!(ws.expect("message_edited").await, want);
    }
    // History, export and search show the new text and when it was edited.
    let item = history_item(&d_api, group, &id).await;
    assert_eq!(item["content"], "alpha newword one");
    assert_eq!(item["edited_at"], at);
    assert_eq!(item["created_at"], untouched["created_at"]);
    assert_eq!(item["seq"], untouched["seq"]);
    assert_eq!(export_line(&d_api, group, &id).await, item);
    assert!(
        found(&b_api, "oldword").await.is_empty(),
        "the old words are gone from the indexed part"
    );
    let hits = found(&b_api, "newword").await;
    assert_eq!(ids(&hits), [uuid_of(&id)]);
    assert_eq!(hits[0], item);

    // Edited again, by HTTP: the latest text wins everywhere.
    let (status, body) = a
        .post(
            &format!("/messages/{}/edit", id.as_str().unwrap()),
            json!({"content": "alpha thirdword one"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let again = body["data"].clone();
    assert_eq!(again, history_item(&b_api, group, &id).await);
    let want = edited(group, &id, "alpha thirdword one", &again["edited_at"]);
    for ws in [&mut a0, &mut a1, &mut b, &mut d] {
        assert_eq!(ws.expect("message_edited").await, want);
    }
    assert!(found(&d_api, "newword").await.is_empty());
    assert_eq!(ids(&found(&d_api, "thirdword").await), [uuid_of(&id)]);

    // The tail: with the indexer held off, B's message is read from `messages` itself.
    let paused = pause_indexer(&c).await;
    let tail = send_text(&mut b, Some(group), None, "beta tailold two").await;
    let tail_id = uuid_of(&tail["id"]);
    let b0 = Api::new(&c, 0, b.user);
    let (status, body) = b0
        .post(
            &format!("/messages/{tail_id}/edit"),
            json!({"content": "beta tailnew two"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let answer = body["data"].clone();
    assert_eq!(
        (&answer["id"], &answer["content"]),
        (&tail["id"], &json!("beta tailnew two"))
    );
    let want = edited(group, &tail["id"], "beta tailnew two", &answer["edited_at"]);
    for ws in [&mut a0, &mut a1, &mut b, &mut d] {
        assert_eq!(ws.expect("message_edited").await, want);
    }
    let unindexed: bool = db
        .query_one(
            "SELECT p.indexed_until < m.created_at FROM search_progress p, messages m
             WHERE m.id = $1",
            &[&tail_id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(unindexed, "the edited message is in the tail");
    assert!(found(&a, "tailold").await.is_empty());
    let hits = found(&a, "tailnew").await;
    assert_eq!(ids(&hits), [tail_id], "once, from the tail only");
    assert_eq!(hits[0], answer);
    // Once the indexer has passed it, the indexed part answers the same.
    paused.resume().await;
    indexed_past(&c, tail_id).await;
    assert!(found(&a, "tailold").await.is_empty());
    assert_eq!(ids(&found(&a, "tailnew").await), [tail_id]);
    let stored: String = db
        .query_one(
            "SELECT content FROM message_search WHERE message_id = $1",
            &[&tail_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "beta tailnew two");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_refusals_over_websocket_and_http() {
    let c = Cluster::start(2, &[]).await;
    let (mut a, mut b, mut k) = pair(&c).await;
    let conv = k.conv;
    let a_api = Api::new(&c, 1, a.user);
    let mine = send_text(&mut a, Some(conv), None, "mine").await;
    let theirs = send_text(&mut b, Some(conv), None, "theirs").await;
    a.send(json!({"type": "message", "data": {
        "conversation_id": conv, "message_type": "image", "metadata": {"url": "https://img/x.png"},
    }}))
    .await;
    let image = message_where(&mut a, "message_type", &json!("image")).await;
    let gone = send_text(&mut a, Some(conv), None, "gone").await;
    a.send(json!({"type": "recall", "data": {"message_id": gone["id"]}}))
        .await;
    a.expect("recalled").await;
    let unknown = json!(Uuid::new_v4());
    let long = "x".repeat(10_001);

    // Over WebSocket: each refused with its code, nothing stored, the socket usable.
    let format = ("invalid_edit_format", "Invalid edit format");
    let required = ("content_required", "content is required for text messages");
    let f = |d: Value| json!({"type": "edit", "data": d}).to_string();
    let cases: Vec<(String, (&str, &str))> = vec![
        (r#"{"type":"edit"}"#.into(), format),
        (f(json!({"message_id": "nope", "content": "x"})), format),
        (f(json!({"content": "x"})), format),
        (f(json!({"message_id": mine["id"], "content": 5})), format),
        (f(json!({"message_id": mine["id"]})), required),
        (edit_frame(&mine["id"], ""), required),
        (
            edit_frame(&mine["id"], "a\0b"),
            ("invalid_content", "content must not contain NUL characters"),
        ),
        (
            edit_frame(&mine["id"], &long),
            (
                "content_too_long",
                "content size exceeds the limit of 10000 characters",
            ),
        ),
        (
            edit_frame(&theirs["id"], "x"),
            ("not_sender", "you can only edit your own messages"),
        ),
        (
            edit_frame(&unknown, "x"),
            ("message_not_found", "Message not found"),
        ),
        (
            edit_frame(&image["id"], "x"),
            ("not_text_message", "only text messages can be edited"),
        ),
        (
            edit_frame(&gone["id"], "x"),
            ("message_recalled", "a recalled message cannot be edited"),
        ),
    ];
    for (frame, (code, message)) in cases {
        k.rejects(&mut a, &frame, code, message).await;
    }

    // Over HTTP, on the other node.
    let path = |m: &Value| format!("/messages/{}/edit", m.as_str().unwrap());
    let body = |s: &str| json!({ "content": s });
    for bad in ["abc", "123", "00000000-0000-0000-0000-00000000000g"] {
        let r = a_api
            .post(&format!("/messages/{bad}/edit"), body("x"))
            .await;
        assert_error(&r, 400, "Invalid message ID");
        assert_eq!(r.1["error"], "invalid_id");
    }
    let http_cases: Vec<(Value, Option<Value>, u16, &str)> = vec![
        (mine["id"].clone(), None, 400, "invalid_body"),
        (mine["id"].clone(), Some(json!({})), 400, "content_required"),
        (mine["id"].clone(), Some(body("")), 400, "content_required"),
        (
            mine["id"].clone(),
            Some(json!({"content": 5})),
            400,
            "invalid_body",
        ),
        (
            mine["id"].clone(),
            Some(body(&long)),
            400,
            "content_too_long",
        ),
        (
            mine["id"].clone(),
            Some(body("a\0b")),
            400,
            "invalid_content",
        ),
        (theirs["id"].clone(), Some(body("x")), 403, "not_sender"),
        (unknown.clone(), Some(body("x")), 404, "message_not_found"),
        (
            image["id"].clone(),
            Some(body("x")),
            400,
            "not_text_message",
        ),
        (gone["id"].clone(), Some(body("x")), 400, "message_recalled"),
    ];
    for (message, b, status, code) in http_cases {
        let r = match b {
            Some(b) => a_api.post(&path(&message), b).await,
            None => a_api.post_raw(&path(&message), b"{not json").await,
        };
        assert_eq!(
            (r.0, r.1["code"].clone()),
            (status, json!(status)),
            "{}",
            r.1
        );
        assert_eq!(r.1["error"], code, "{}", r.1);
    }
    let (status, _) = a_api.get(&path(&mine["id"])).await;
    assert_eq!(status, 405);
    let (status, _) = client::post(
        &format!("{}{}", a_api.base, path(&mine["id"])),
        None,
        &body("x"),
    )
    .await
    .unwrap();
    assert_eq!(status, 401);

    // Outside the window (0: editing off), by both ways; the same message is editable
    // once the window is wide again, so the setting is what refused it.
    c.set("edit_window_seconds", "0").await;
    a.send_raw(edit_frame(&mine["id"], "late").as_bytes()).await;
    let e = a.expect("error").await;
    assert_eq!(e["code"], "edit_window_passed", "{e}");
    let text = e["message"].as_str().unwrap();
    assert!(
        text.starts_with("can only edit messages within 0 seconds (elapsed: "),
        "{text}"
    );
    let r = a_api.post(&path(&mine["id"]), body("late")).await;
    assert_eq!((r.0, &r.1["error"]), (400, &json!("edit_window_passed")));

    // A group: an outsider and a member are not the sender; a former member cannot edit
    // what they sent while a member.
    let mut f_ws = c.user(0).await;
    let group = a_api.group("edit refusals", &[b.user, f_ws.user]).await;
    let in_group = send_text(&mut a, Some(group), None, "in the group").await;
    let from_former = send_text(&mut f_ws, Some(group), None, "before leaving").await;
    let f_api = Api::new(&c, 1, f_ws.user);
    let (status, body_) = f_api
        .post(&format!("/conversations/{group}/leave"), json!({}))
        .await;
    assert_eq!(status, 200, "{body_}");
    c.set("edit_window_seconds", "900").await;
    let outsider = Api::new(&c, 0, Uuid::new_v4());
    let b_api = Api::new(&c, 0, b.user);
    for (api, message, status, code) in [
        (&outsider, &in_group, 403, "not_sender"),
        (&b_api, &in_group, 403, "not_sender"),
        (&f_api, &from_former, 403, "not_member"),
    ] {
        let r = api.post(&path(&message["id"]), body("x")).await;
        assert_eq!((r.0, &r.1["error"]), (status, &json!(code)), "{}", r.1);
    }
    f_ws.send_raw(edit_frame(&from_former["id"], "x").as_bytes())
        .await;
    Checker::expect_error(
        &mut f_ws,
        "not_member",
        "user is not a member of this conversation",
    )
    .await;
    // Nobody heard of any of it.
    b.expect_no("message_edited", Duration::from_millis(300))
        .await;
    let db = c.env.db().await;
    for (m, text) in [
        (&mine, Some("mine")),
        (&theirs, Some("theirs")),
        (&image, None),
        (&gone, Some("gone")),
        (&in_group, Some("in the group")),
        (&from_former, Some("before leaving")),
    ] {
        let row = db
            .query_one(
                "SELECT content, edited_at IS NULL FROM messages WHERE id = $1",
                &[&uuid_of(&m["id"])],
            )
            .await
            .unwrap();
        assert_eq!(
            (
                row.get::<_, Option<String>>(0).as_deref(),
                row.get::<_, bool>(1)
            ),
            (text, true),
            "{m}"
        );
    }

    // Within the window again, the first refused message is edited.
    let r = a_api.post(&path(&mine["id"]), body("mine, edited")).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["data"]["content"], "mine, edited");
    assert_eq!(b.expect("message_edited").await["content"], "mine, edited");
    c.stop().await;
}
