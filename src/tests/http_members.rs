//! Group membership over HTTP against real nodes: adding (and reactivating), removing,
//! leaving and roles, every refusal with its text, and what each change means on the
//! WebSocket of another node (joined members get the next message live with the right
//! unread count, removed ones get nothing, every node's member cache follows).

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::http_api::{Api, assert_error};
use super::realtime::{Cluster, befriend, send_text};

fn role_in(item: &Value, user: Uuid) -> Option<String> {
    item["members"]
        .as_array()?
        .iter()
        .find(|m| m["user_id"] == user.to_string())
        .map(|m| m["role"].as_str().unwrap().to_string())
}

async fn group_item(api: &Api, group: Uuid) -> Option<Value> {
    api.list("")
        .await
        .into_iter()
        .find(|i| i["id"] == group.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_members_get_the_next_message_live_and_can_come_back() {
    let c = Cluster::start(2, &[]).await;
    let mut owner_ws = c.user(0).await;
    let mut joiner_ws = c.user(1).await;
    let owner = Api::new(&c, 0, owner_ws.user);
    let plain = Uuid::new_v4();
    let group = owner.group("g", &[plain]).await;
    let add = format!("/conversations/{group}/members");
    send_text(&mut owner_ws, Some(group), None, "before you came").await;

    // Refusals, each with the original's text.
    let by_plain = Api::new(&c, 1, plain)
        .post(&add, json!({"member_ids": [joiner_ws.user]}))
        .await;
    assert_error(&by_plain, 403, "only owner or admin can add members");
    let outsider = Api::new(&c, 1, Uuid::new_v4());
    assert_error(
        &outsider
            .post(&add, json!({"member_ids": [joiner_ws.user]}))
            .await,
        403,
        "you are not a member of this conversation",
    );
    let unknown = format!("/conversations/{}/members", Uuid::new_v4());
    assert_error(
        &owner.post(&unknown, json!({"member_ids": []})).await,
        403,
        "conversation not found",
    );
    let (_, private) = owner
        .post(
            "/conversations/private",
            json!({"receiver_id": Uuid::new_v4()}),
        )
        .await;
    let private = private["data"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(
        &owner
            .post(
                &format!("/conversations/{private}/members"),
                json!({"member_ids": [joiner_ws.user]}),
            )
            .await,
        403,
        "can only add members to group conversations",
    );
    assert_error(
        &owner
            .post("/conversations/x/members", json!({"member_ids": []}))
            .await,
        400,
        "invalid conversation id",
    );
    for bad in [
        json!({}),
        json!({"member_ids": ["x"]}),
        json!({"member_ids": [Uuid::nil()]}),
        json!({"member_ids": null}),
    ] {
        assert_eq!(owner.post(&add, bad.clone()).await.0, 400, "{bad}");
    }
    assert_eq!(
        group_item(&owner, group).await.unwrap()["members"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Added (duplicates ignored) on node 0; the next message arrives live on node 1 with
    // only itself unread.
    let (status, body) = owner
        .post(
            &add,
            json!({"member_ids": [joiner_ws.user, joiner_ws.user, plain, owner.user]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "members added successfully");
    let echo = send_text(&mut owner_ws, Some(group), None, "welcome").await;
    let update = joiner_ws.expect("conversation_update").await;
    assert_eq!(
        (&update["conversation_id"], &update["unread_count"]),
        (&json!(group.to_string()), &json!(1))
    );
    assert_eq!(
        joiner_ws.expect("unread_count_update").await["unread_count"],
        1
    );
    assert_eq!(joiner_ws.expect("message").await["id"], echo["id"]);
    let joiner = Api::new(&c, 1, joiner_ws.user);
    let item = group_item(&joiner, group).await.expect("listed");
    assert_eq!(item["unread_count"], 1);
    assert_eq!(role_in(&item, joiner.user).as_deref(), Some("member"));
    assert_eq!(item["members"].as_array().unwrap().len(), 3);
    // History is open to the new member, and they can speak.
    assert_eq!(
        joiner
            .get(&format!("/conversations/{group}/messages"))
            .await
            .0,
        200
    );
    send_text(&mut joiner_ws, Some(group), None, "thanks").await;
    owner_ws.expect("message").await;

    // Leaves, misses a message, is added back: nothing from the absence is unread or replayed.
    let (status, body) = joiner
        .post(&format!("/conversations/{group}/leave"), json!({}))
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (200, Some("left group successfully"))
    );
    send_text(&mut owner_ws, Some(group), None, "while away").await;
    joiner_ws
        .expect_no("message", Duration::from_millis(500))
        .await;
    assert!(group_item(&joiner, group).await.is_none());
    assert_eq!(
        owner
            .post(&add, json!({"member_ids": [joiner.user]}))
            .await
            .0,
        200
    );
    let back = send_text(&mut owner_ws, Some(group), None, "welcome back").await;
    assert_eq!(
        joiner_ws.expect("conversation_update").await["unread_count"],
        1
    );
    assert_eq!(joiner_ws.expect("message").await["id"], back["id"]);
    let item = group_item(&joiner, group).await.expect("listed again");
    assert_eq!(item["unread_count"], 1);
    assert_eq!(role_in(&item, joiner.user).as_deref(), Some("member"));
    // A reconnect replays nothing from the absence.
    let user = joiner_ws.user;
    joiner_ws.close().await;
    let mut again = c.connect(1, user).await;
    let seen = again.drain(Duration::from_millis(600)).await;
    assert!(
        seen.iter().all(|e| e["type"] != "offline_message"),
        "{seen:?}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_rules_and_a_removed_member_hears_nothing() {
    let c = Cluster::start(2, &[]).await;
    let mut owner_ws = c.user(0).await;
    let mut gone_ws = c.user(1).await;
    let owner = Api::new(&c, 0, owner_ws.user);
    let (admin, admin2, member) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let group = owner
        .group("g", &[admin, admin2, member, gone_ws.user])
        .await;
    for a in [admin, admin2] {
        let r = owner
            .post(
                &format!("/conversations/{group}/members/{a}/role"),
                json!({"role": "admin"}),
            )
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    let remove = format!("/conversations/{group}/members/remove");
    let (as_admin, as_member) = (Api::new(&c, 1, admin), Api::new(&c, 1, member));
    let cases = [
        (&as_member, admin2, "only owner or admin can remove members"),
        (&as_admin, admin2, "only owner can remove admins"),
        (&as_admin, owner.user, "cannot remove owner"),
        (&owner, owner.user, "cannot remove owner"),
        (&as_admin, Uuid::new_v4(), "target user is not a member"),
    ];
    for (api, target, text) in cases {
        assert_error(
            &api.post(&remove, json!({"user_id": target})).await,
            403,
            text,
        );
    }
    let outsider = Api::new(&c, 0, Uuid::new_v4());
    assert_error(
        &outsider.post(&remove, json!({"user_id": member})).await,
        403,
        "you are not a member of this conversation",
    );
    let mut x = c.user(0).await;
    let mut y = c.user(1).await;
    let private = befriend(&mut x, &mut y).await;
    assert_error(
        &Api::new(&c, 0, x.user)
            .post(
                &format!("/conversations/{private}/members/remove"),
                json!({"user_id": y.user}),
            )
            .await,
        403,
        "can only remove members from group conversations",
    );
    let unknown = format!("/conversations/{}/members/remove", Uuid::new_v4());
    assert_error(
        &owner.post(&unknown, json!({"user_id": member})).await,
        403,
        "conversation not found",
    );
    assert_error(
        &owner
            .post(
                "/conversations/1/members/remove",
                json!({"user_id": member}),
            )
            .await,
        400,
        "invalid conversation id",
    );
    for bad in [
        json!({}),
        json!({"user_id": "x"}),
        json!({"user_id": Uuid::nil()}),
    ] {
        assert_eq!(owner.post(&remove, bad.clone()).await.0, 400, "{bad}");
    }

    // An admin removes a member who is online on another node: nothing reaches them any more.
    send_text(&mut owner_ws, Some(group), None, "all here").await;
    gone_ws.expect("message").await;
    let (status, body) = as_admin
        .post(&remove, json!({"user_id": gone_ws.user}))
        .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (200, Some("member removed successfully"))
    );
    send_text(&mut owner_ws, Some(group), None, "after removal").await;
    gone_ws
        .expect_no("message", Duration::from_millis(600))
        .await;
    let gone = Api::new(&c, 1, gone_ws.user);
    assert!(group_item(&gone, group).await.is_none());
    assert_error(
        &gone.get(&format!("/conversations/{group}/messages")).await,
        403,
        "user is not a member of this conversation",
    );
    let (_, found) = gone.get("/messages/search?q=all%20here").await;
    assert_eq!(
        found["data"]["messages"],
        json!([]),
        "a former member's search skips the group"
    );
    gone_ws.text_to(Some(group), None, "let me in").await;
    assert_eq!(gone_ws.expect("error").await["code"], "not_member");
    // Removing again: no longer a member. An admin may remove themselves.
    assert_error(
        &owner.post(&remove, json!({"user_id": gone_ws.user})).await,
        403,
        "target user is not a member",
    );
    assert_eq!(
        as_admin.post(&remove, json!({"user_id": admin})).await.0,
        200
    );
    let item = group_item(&owner, group).await.unwrap();
    assert_eq!(item["members"].as_array().unwrap().len(), 3, "{item}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_roles() {
    let c = Cluster::start(2, &[]).await;
    let owner = Api::new(&c, 0, Uuid::new_v4());
    let (b, m) = (
        Api::new(&c, 1, Uuid::new_v4()),
        Api::new(&c, 1, Uuid::new_v4()),
    );
    let group = owner.group("g", &[b.user, m.user]).await;
    let leave = format!("/conversations/{group}/leave");
    let role = |user: Uuid| format!("/conversations/{group}/members/{user}/role");

    assert_error(
        &owner.post(&leave, json!({})).await,
        403,
        "owner cannot leave group, please transfer ownership first",
    );
    assert_error(
        &Api::new(&c, 0, Uuid::new_v4())
            .post(&leave, json!({}))
            .await,
        403,
        "you are not a member of this conversation",
    );
    assert_error(
        &owner.post("/conversations/zz/leave", json!({})).await,
        400,
        "invalid conversation id",
    );
    let unknown = format!("/conversations/{}/leave", Uuid::new_v4());
    assert_error(
        &owner.post(&unknown, json!({})).await,
        403,
        "conversation not found",
    );
    let (_, private) = owner
        .post("/conversations/private", json!({"receiver_id": b.user}))
        .await;
    let private = private["data"]["conversation"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(
        &b.post(&format!("/conversations/{private}/leave"), json!({}))
            .await,
        403,
        "can only leave group conversations",
    );

    // Roles: only the owner, only active members, valid roles and ids.
    assert_error(
        &Api::new(&c, 0, Uuid::new_v4())
            .post(&role(b.user), json!({"role": "admin"}))
            .await,
        403,
        "you are not a member of this conversation",
    );
    assert_error(
        &b.post(&role(m.user), json!({"role": "admin"})).await,
        403,
        "only owner can change roles",
    );
    assert_error(
        &owner
            .post(&role(Uuid::new_v4()), json!({"role": "admin"}))
            .await,
        403,
        "member not found",
    );
    assert_error(
        &owner
            .post(
                &format!("/conversations/{group}/members/x/role"),
                json!({"role": "admin"}),
            )
            .await,
        400,
        "invalid user id",
    );
    assert_error(
        &owner
            .post(
                &format!("/conversations/x/members/{}/role", b.user),
                json!({"role": "admin"}),
            )
            .await,
        400,
        "invalid conversation id",
    );
    for bad in [json!({"role": "king"}), json!({}), json!({"role": 1})] {
        assert_eq!(owner.post(&role(b.user), bad.clone()).await.0, 400, "{bad}");
    }
    assert_error(
        &owner
            .post(&role(owner.user), json!({"role": "member"}))
            .await,
        403,
        "owner cannot change their own role, please transfer ownership first",
    );
    assert_error(
        &owner
            .post(
                &format!("/conversations/{private}/members/{}/role", b.user),
                json!({"role": "admin"}),
            )
            .await,
        403,
        "can only change roles in group conversations",
    );
    let (status, body) = owner.post(&role(b.user), json!({"role": "admin"})).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (200, Some("role updated successfully"))
    );
    assert_eq!(
        role_in(&group_item(&owner, group).await.unwrap(), b.user).as_deref(),
        Some("admin")
    );

    // Handing over ownership demotes the old owner to admin, who may then leave.
    assert_eq!(
        owner.post(&role(m.user), json!({"role": "owner"})).await.0,
        200
    );
    let item = group_item(&m, group).await.unwrap();
    assert_eq!(role_in(&item, m.user).as_deref(), Some("owner"));
    assert_eq!(role_in(&item, owner.user).as_deref(), Some("admin"));
    assert_error(
        &owner.post(&role(b.user), json!({"role": "member"})).await,
        403,
        "only owner can change roles",
    );
    assert_eq!(owner.post(&leave, json!({})).await.0, 200);
    assert!(group_item(&owner, group).await.is_none());
    assert_error(
        &owner.post(&leave, json!({})).await,
        403,
        "you are not a member of this conversation",
    );
    assert_error(
        &m.post(&role(owner.user), json!({"role": "admin"})).await,
        403,
        "member not found",
    );
    assert_eq!(b.post(&leave, json!({})).await.0, 200);
    let item = group_item(&m, group).await.unwrap();
    assert_eq!(item["members"].as_array().unwrap().len(), 1, "{item}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_sees_a_membership_change() {
    let c = Cluster::start(2, &[]).await;
    c.set("enable_typing_indicator", "true").await;
    let mut owner_ws = c.user(1).await;
    let mut joiner_ws = c.user(1).await;
    let owner = Api::new(&c, 0, owner_ws.user);
    let group = owner.group("g", &[Uuid::new_v4()]).await;
    // Node 1 caches the member list (typing reads it), before the change made on node 0.
    let typing = json!({"type": "typing", "data": {"conversation_id": group}});
    owner_ws.send(typing.clone()).await;
    joiner_ws.send(typing.clone()).await;
    assert_eq!(joiner_ws.expect("error").await["code"], "not_member");
    let r = owner
        .post(
            &format!("/conversations/{group}/members"),
            json!({"member_ids": [joiner_ws.user]}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    joiner_ws.send(typing).await;
    let t = owner_ws.expect("typing").await;
    assert_eq!(t["user_id"], joiner_ws.user.to_string());
    // The sender's node (1) has the new list for sends too.
    let echo = send_text(&mut owner_ws, Some(group), None, "hi all").await;
    assert_eq!(joiner_ws.expect("message").await["id"], echo["id"]);
    // And a removal on node 0 stops node 1 from delivering.
    let r = owner
        .post(
            &format!("/conversations/{group}/members/remove"),
            json!({"user_id": joiner_ws.user}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    send_text(&mut owner_ws, Some(group), None, "bye").await;
    joiner_ws
        .expect_no("message", Duration::from_millis(500))
        .await;
    c.stop().await;
}
