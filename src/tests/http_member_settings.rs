//! Pin and mute per member (issue 19 §4) over three nodes: the four routes, the list's
//! order (pinned first, newest activity within each part), `is_pinned`/`is_muted` on the
//! item and the caller's own member entry, `total_unread` without the muted, the
//! `conversation_settings_update` push to every device of the caller and to nobody else,
//! and the refusals (bad id, non-member, former member, wrong method, no token).

use serde_json::{Value, json};
use uuid::Uuid;

use super::client;
use super::http_api::{Api, assert_error};
use super::realtime::{Cluster, befriend, send_text, uuid_of};
use super::ws_client::Ws;

fn ids(items: &[Value]) -> Vec<Uuid> {
    items.iter().map(|i| uuid_of(&i["id"])).collect()
}

fn item(items: &[Value], id: Uuid) -> &Value {
    items
        .iter()
        .find(|i| i["id"] == id.to_string())
        .unwrap_or_else(|| panic!("{id} not listed"))
}

fn member_entry(item: &Value, user: Uuid) -> &Value {
    item["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == user.to_string())
        .unwrap_or_else(|| panic!("{user} not a member in {item}"))
}

/// The list's `data` (conversations and total_unread), asserting 200.
async fn list(api: &Api) -> Value {
    let (status, body) = api.get("/conversations?limit=100").await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

fn settings(conversation: Uuid, pinned: bool, muted: bool) -> Value {
    json!({"conversation_id": conversation, "is_pinned": pinned, "is_muted": muted})
}

/// The next `conversation_settings_update` of `ws`.
async fn next_settings(ws: &mut Ws) -> Value {
    ws.expect("conversation_settings_update").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_and_mute_order_the_list_count_unread_and_reach_every_device() {
    let c = Cluster::start(3, &[]).await;
    // A has two devices (nodes 0 and 1) and calls the routes on node 2.
    let mut a0 = c.user(0).await;
    let mut a1 = c.connect(1, a0.user).await;
    let mut b = c.user(1).await;
    let mut d = c.user(2).await;
    let a = Api::new(&c, 2, a0.user);

    // Three conversations of A's, oldest activity first: with D, the group, with B.
    let with_d = befriend(&mut a0, &mut d).await;
    let group = a.group("settings", &[b.user]).await;
    let with_b = befriend(&mut a0, &mut b).await;
    // Unread for A (besides the partners' "hello"): 2 from D, 3 in the group, 1 from B,
    // sent in that order, so the newest activity is B's, then the group's, then D's.
    for text in ["d1", "d2"] {
        send_text(&mut d, Some(with_d), None, text).await;
    }
    for text in ["g1", "g2", "g3"] {
        send_text(&mut b, Some(group), None, text).await;
    }
    // An echo comes after the commit: the list sees every message sent so far.
    send_text(&mut b, Some(with_b), None, "b1").await;

    let before = list(&a).await;
    let items = before["conversations"].as_array().unwrap();
    assert_eq!(ids(items), [with_b, group, with_d], "newest activity first");
    let unread: Vec<i64> = items
        .iter()
        .map(|i| i["unread_count"].as_i64().unwrap())
        .collect();
    assert_eq!(unread, [2, 3, 3], "{items:?}");
    assert_eq!(before["total_unread"], 8);
    for i in items {
        assert_eq!(
            (&i["is_pinned"], &i["is_muted"]),
            (&json!(false), &json!(false))
        );
    }

    // Pin the oldest: it comes first; both of A's devices hear of it, on other nodes.
    let (status, body) = a
        .post(&format!("/conversations/{with_d}/pin"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], settings(with_d, true, false));
    assert_eq!(next_settings(&mut a0).await, settings(with_d, true, false));
    assert_eq!(next_settings(&mut a1).await, settings(with_d, true, false));
    let now = list(&a).await;
    let items = now["conversations"].as_array().unwrap();
    assert_eq!(ids(items), [with_d, with_b, group], "pinned first");
    assert_eq!(item(items, with_d)["is_pinned"], true);
    assert_eq!(member_entry(item(items, with_d), a.user)["is_pinned"], true);
    // D sees A's pin nowhere: not in D's item, not in A's entry of D's list.
    let d_api = Api::new(&c, 0, d.user);
    let d_items = list(&d_api).await;
    let d_item = item(d_items["conversations"].as_array().unwrap(), with_d);
    assert_eq!(d_item["is_pinned"], false);
    assert_eq!(member_entry(d_item, a.user)["is_pinned"], false);

    // Pin the group too: both pinned ones first, newest activity first among them.
    a.post(&format!("/conversations/{group}/pin"), json!({}))
        .await;
    next_settings(&mut a0).await;
    let items = list(&a).await["conversations"].as_array().unwrap().clone();
    assert_eq!(ids(&items), [group, with_d, with_b]);

    // Mute the group: its count stays on the item, the total leaves it out.
    let (status, body) = a
        .post(&format!("/conversations/{group}/mute"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], settings(group, true, true));
    assert_eq!(next_settings(&mut a0).await, settings(group, true, true));
    let now = list(&a).await;
    let items = now["conversations"].as_array().unwrap();
    assert_eq!(item(items, group)["unread_count"], 3);
    assert_eq!(item(items, group)["is_muted"], true);
    assert_eq!(member_entry(item(items, group), a.user)["is_muted"], true);
    assert_eq!(now["total_unread"], 5);
    // A new message in the muted group still counts on its item, not in the total; one
    // in an unmuted conversation counts in both.
    send_text(&mut b, Some(group), None, "g4").await;
    send_text(&mut b, Some(with_b), None, "b2").await;
    let now = list(&a).await;
    assert_eq!(
        item(now["conversations"].as_array().unwrap(), group)["unread_count"],
        4
    );
    assert_eq!(now["total_unread"], 6);
    // The total covers every conversation, whatever the page and the search.
    let (status, body) = a.get("/conversations?limit=1&offset=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["total_unread"], 6);
    assert_eq!(body["data"]["conversations"].as_array().unwrap().len(), 1);

    // Setting what is set answers the same and pushes nothing: the next push A's device
    // gets (from the same node, in order) is the unmute after it.
    let (status, body) = a
        .post(&format!("/conversations/{group}/mute"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], settings(group, true, true));
    let (_, body) = a
        .post(&format!("/conversations/{group}/unmute"), json!({}))
        .await;
    assert_eq!(body["data"], settings(group, true, false));
    assert_eq!(next_settings(&mut a0).await, settings(group, true, false));
    assert_eq!(list(&a).await["total_unread"], 10);

    // B's settings are B's own: B mutes the conversation with A; the first settings push
    // B's device gets is B's own (none of A's came before it), and A's view does not move.
    let b_api = Api::new(&c, 2, b.user);
    let (_, body) = b_api
        .post(&format!("/conversations/{with_b}/mute"), json!({}))
        .await;
    assert_eq!(body["data"], settings(with_b, false, true));
    assert_eq!(next_settings(&mut b).await, settings(with_b, false, true));
    let now = list(&a).await;
    assert_eq!(
        item(now["conversations"].as_array().unwrap(), with_b)["is_muted"],
        false
    );
    assert_eq!(now["total_unread"], 10);

    // Unpin: back to activity order behind the pinned group. A's other device got every
    // change, in order, and nothing for the repeated mute.
    let (_, body) = a
        .post(&format!("/conversations/{with_d}/unpin"), json!({}))
        .await;
    assert_eq!(body["data"], settings(with_d, false, false));
    assert_eq!(next_settings(&mut a1).await, settings(group, true, false));
    assert_eq!(next_settings(&mut a1).await, settings(group, true, true));
    assert_eq!(next_settings(&mut a1).await, settings(group, true, false));
    assert_eq!(next_settings(&mut a1).await, settings(with_d, false, false));
    let items = list(&a).await["conversations"].as_array().unwrap().clone();
    assert_eq!(ids(&items), [group, with_b, with_d]);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pin_and_mute_refusals() {
    let c = Cluster::start(2, &[]).await;
    let owner = Api::new(&c, 0, Uuid::new_v4());
    let member = Api::new(&c, 1, Uuid::new_v4());
    let group = owner.group("refusals", &[member.user]).await;
    let stranger = Api::new(&c, 1, Uuid::new_v4());
    let db = c.env.db().await;
    let flags = |user: Uuid| {
        let db = &db;
        async move {
            let row = db
                .query_one(
                    "SELECT is_pinned, COALESCE(is_muted, FALSE) FROM conversation_members
                     WHERE conversation_id = $1 AND user_id = $2",
                    &[&group, &user],
                )
                .await
                .unwrap();
            (row.get::<_, bool>(0), row.get::<_, bool>(1))
        }
    };

    for route in ["pin", "unpin", "mute", "unmute"] {
        // Bad ids.
        for bad in ["abc", "123", "00000000-0000-0000-0000-00000000000g"] {
            let r = owner
                .post(&format!("/conversations/{bad}/{route}"), json!({}))
                .await;
            assert_error(&r, 400, "invalid conversation id");
            assert_eq!(r.1["error"], "invalid_id");
        }
        // A conversation that does not exist, and one the caller is not in.
        for conv in [Uuid::new_v4(), group] {
            let r = stranger
                .post(&format!("/conversations/{conv}/{route}"), json!({}))
                .await;
            assert_eq!(r.0, 403, "{route}: {}", r.1);
            assert_eq!(r.1["error"], "not_member");
        }
        // Wrong method.
        let (status, body) = owner.get(&format!("/conversations/{group}/{route}")).await;
        assert_eq!(status, 405, "{route}: {body}");
        // No token.
        let (status, _) = client::post(
            &format!("{}/conversations/{group}/{route}", owner.base),
            None,
            &json!({}),
        )
        .await
        .unwrap();
        assert_eq!(status, 401, "{route}");
    }
    // The body is not read: a pin is a pin whatever it carries.
    let r = member
        .post_raw(
            &format!("/conversations/{group}/pin"),
            b"{\"is_pinned\":false",
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(flags(member.user).await, (true, false));
    member
        .post(&format!("/conversations/{group}/mute"), json!({}))
        .await;
    assert_eq!(flags(member.user).await, (true, true));

    // A former member: refused, and the row keeps what it had.
    let (status, body) = member
        .post(&format!("/conversations/{group}/leave"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    for route in ["unpin", "unmute"] {
        let r = member
            .post(&format!("/conversations/{group}/{route}"), json!({}))
            .await;
        assert_eq!(r.0, 403, "{route}: {}", r.1);
        assert_eq!(r.1["error"], "not_member");
    }
    assert_eq!(flags(member.user).await, (true, true));
    // Settings end with the membership: added back, the member starts unpinned, unmuted.
    let (status, body) = owner
        .post(
            &format!("/conversations/{group}/members"),
            json!({"member_ids": [member.user]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(flags(member.user).await, (false, false));
    let (status, body) = member.get("/conversations").await;
    assert_eq!(status, 200, "{body}");
    let listed = item(body["data"]["conversations"].as_array().unwrap(), group);
    assert_eq!(
        (&listed["is_pinned"], &listed["is_muted"]),
        (&json!(false), &json!(false))
    );
    // The owner's flags were never touched by any of this.
    assert_eq!(flags(owner.user).await, (false, false));
    c.stop().await;
}
