//! Group fan-out over several real nodes (issue 17): a group at or above
//! `GROUP_FANOUT_MIN_MEMBERS` is published once per event on its fan-out channel, and every
//! member on every node gets every message exactly once, in seq order; members who join or
//! leave during traffic get exactly the messages of their membership, and their join and
//! leave travel on the group's fan-out channel as its messages do; a Redis restart loses
//! nothing; typing and read receipts reach every member once, with one publish; a group of
//! 10,000 is created, delivered to live and on connect. Publishes are counted on a Redis of
//! the test's own (`INFO commandstats`), since every other test shares the harness's.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use super::http_api::Api;
use super::realtime::{Cluster, send_text, uuid_of};
use super::realtime_faults::OwnRedis;
use super::ws_client::{Seen, Ws};

/// The variable under test, set low so a handful of members is a "big" group.
pub(super) const FANOUT: &str = "GROUP_FANOUT_MIN_MEMBERS";
/// Longest wait for deliveries that must come (a failure bound, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(30);
/// How long a device is watched after what it must get, so a duplicate would show.
const AFTER: Duration = Duration::from_millis(500);

/// A connection to the Redis at `host:port`.
async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{url}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Zeroes the command counters of the Redis at `url`.
async fn reset_stats(url: &str) {
    let mut conn = redis(url).await;
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

/// `PUBLISH` commands the Redis at `url` ran since the counters were reset.
async fn publishes(url: &str) -> u64 {
    let mut conn = redis(url).await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_publish:calls="))
        .map(|rest| rest.split(',').next().unwrap().parse().unwrap())
        .unwrap_or(0)
}

/// The events `ws` receives about `conversation` until it has seen `n` messages (failing
/// after [`PATIENCE`]), and whatever comes within [`AFTER`] of that.
pub(super) async fn events_of(ws: &mut Ws, conversation: Uuid, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut messages = 0;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let left = if messages >= n {
            AFTER
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match ws.next(left).await {
            Some(Seen::Event(e)) if e["data"]["conversation_id"] == conversation.to_string() => {
                if e["type"] == "message" || e["type"] == "offline_message" {
                    messages += 1;
                }
                out.push(e);
            }
            Some(Seen::Event(_)) => {}
            None if messages >= n => return out,
            other => panic!(
                "user {}: {messages} of {n} messages, then {other:?}",
                ws.user
            ),
        }
    }
}

/// The seqs of the `message` (or `offline_message`) frames among `events`, in arrival order.
pub(super) fn seqs(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e["type"] == "message" || e["type"] == "offline_message")
        .map(|e| e["data"]["seq"].as_i64().unwrap())
        .collect()
}

/// The seqs of the messages of `conversation` that `ws` has received, read until nothing
/// came for two seconds. Used only once a member on the same node has everything: the same
/// envelopes reached this device's node then, so what it will get is already on its way.
async fn settled_seqs(ws: &mut Ws, conversation: Uuid) -> Vec<i64> {
    let mut out = Vec::new();
    while let Some(Seen::Event(e)) = ws.next(Duration::from_secs(2)).await {
        if e["type"] == "message" && e["data"]["conversation_id"] == conversation.to_string() {
            out.push(e["data"]["seq"].as_i64().unwrap());
        }
    }
    out
}

/// The one event of type `ty` about `conversation` that `ws` gets (waiting for it up to
/// [`PATIENCE`], then [`AFTER`] for a second one, which fails).
async fn exactly_one(ws: &mut Ws, ty: &str, conversation: Uuid) -> Value {
    let first = ws.expect_within(ty, PATIENCE).await;
    assert_eq!(
        first["conversation_id"],
        conversation.to_string(),
        "{first}"
    );
    ws.expect_no(ty, AFTER).await;
    first
}

/// The group's highest seq in PostgreSQL.
async fn last_seq(db: &tokio_postgres::Client, group: Uuid) -> i64 {
    db.query_one(
        "SELECT last_seq FROM conversations WHERE id = $1",
        &[&group],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_on_every_node_gets_each_message_once_in_order_from_one_publish() {
    let own = OwnRedis::start();
    let url = own.url();
    // Members on nodes 0-2, none on node 3 until the offline member connects there.
    let c = Cluster::start(4, &[("REDIS_URL", &url), (FANOUT, "3")]).await;
    let mut owner = c.user(0).await;
    let mut devices = vec![
        c.user(0).await,
        c.user(1).await,
        c.user(1).await,
        c.user(2).await,
        c.user(2).await,
    ];
    // One member with a device on node 1 and another on node 2.
    let roamer = Uuid::new_v4();
    devices.push(c.connect(1, roamer).await);
    devices.push(c.connect(2, roamer).await);
    let offline = Uuid::new_v4();
    let mut members: Vec<Uuid> = devices.iter().map(|d| d.user).collect();
    members.dedup();
    members.push(offline);
    let group = Api::new(&c, 0, owner.user).group("big", &members).await;

    reset_stats(&url).await;
    let n = 30;
    for i in 1..=n {
        let echo = send_text(&mut owner, Some(group), None, &format!("m{i}")).await;
        assert_eq!(echo["seq"], i, "{echo}");
        assert_eq!(echo["can_send"], true);
    }
    for d in &mut devices {
        let events = events_of(d, group, n).await;
        let expected: Vec<i64> = (1..=n as i64).collect();
        assert_eq!(seqs(&events), expected, "user {}", d.user);
        // Each message: conversation_update, unread_count_update (nobody reads: the unread
        // count is the seq), then the message, whose frame is the one the sender got.
        assert_eq!(events.len(), 3 * n, "user {}: {events:?}", d.user);
        for (i, three) in events.chunks(3).enumerate() {
            let seq = i as i64 + 1;
            let types: Vec<&str> = three.iter().map(|e| e["type"].as_str().unwrap()).collect();
            assert_eq!(
                types,
                ["conversation_update", "unread_count_update", "message"]
            );
            assert_eq!(three[0]["data"]["unread_count"], seq);
            assert_eq!(three[0]["data"]["last_message_text"], format!("m{seq}"));
            assert_eq!(three[1]["data"]["unread_count"], seq);
            assert_eq!(three[2]["data"]["content"], format!("m{seq}"));
            assert_eq!(three[2]["data"]["can_send"], true);
        }
    }
    assert_eq!(
        publishes(&url).await,
        n as u64,
        "one publish per group message, the sender's echo included"
    );

    // The member who was offline gets everything on connect, on the node without members.
    let mut late = c.connect(3, offline).await;
    let events = events_of(&mut late, group, n).await;
    assert_eq!(seqs(&events), (1..=n as i64).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e["type"] == "offline_message"));
    // And the next message live there.
    send_text(&mut owner, Some(group), None, "live").await;
    assert_eq!(late.expect("message").await["seq"], n + 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_who_join_or_leave_during_traffic_get_exactly_the_messages_of_their_membership() {
    let c = Cluster::start(3, &[(FANOUT, "3")]).await;
    let mut owner = c.user(0).await;
    let mut stay = vec![c.user(0).await, c.user(1).await, c.user(2).await];
    let mut leaver = c.user(2).await;
    let mut joiner = c.user(1).await;
    let mut members: Vec<Uuid> = stay.iter().map(|d| d.user).collect();
    members.push(leaver.user);
    let api = Api::new(&c, 0, owner.user);
    let group = api.group("big", &members).await;
    let db = c.env.db().await;

    let n = 40;
    let sender = tokio::spawn(async move {
        for i in 1..=n {
            send_text(&mut owner, Some(group), None, &format!("t{i}")).await;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        owner
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before_join = last_seq(&db, group).await;
    let (status, body) = api
        .post(
            &format!("/conversations/{group}/members"),
            json!({"member_ids": [joiner.user]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after_join = last_seq(&db, group).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before_leave = last_seq(&db, group).await;
    let (status, body) = api
        .post(
            &format!("/conversations/{group}/members/remove"),
            json!({"user_id": leaver.user}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after_leave = last_seq(&db, group).await;
    let mut owner = sender.await.unwrap();
    assert!(
        before_join > 0 && after_leave < n,
        "the changes came during traffic: {before_join}..{after_leave} of {n}"
    );

    for d in &mut stay {
        let events = events_of(d, group, n as usize).await;
        assert_eq!(seqs(&events), (1..=n).collect::<Vec<_>>(), "{}", d.user);
    }
    // The joiner: every message after its join, none before, once each, in order.
    let joined = settled_seqs(&mut joiner, group).await;
    let first = *joined.first().expect("the joiner got the last messages");
    assert!(
        (before_join + 1..=after_join + 1).contains(&first),
        "joined at {before_join}..{after_join}, first message {first}"
    );
    assert_eq!(joined, (first..=n).collect::<Vec<_>>());
    // The leaver: every message up to its removal, none after.
    let left = settled_seqs(&mut leaver, group).await;
    let last = *left.last().expect("the leaver got the first messages");
    assert!(
        (before_leave..=after_leave).contains(&last),
        "removed at {before_leave}..{after_leave}, last message {last}"
    );
    assert_eq!(left, (1..=last).collect::<Vec<_>>());
    // After the traffic, still nothing for the leaver; the joiner gets the next one.
    let echo = send_text(&mut owner, Some(group), None, "after").await;
    assert_eq!(joiner.expect("message").await["id"], echo["id"]);
    leaver.expect_no("message", AFTER).await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_during_big_group_traffic_loses_nothing() {
    let mut own = OwnRedis::start();
    let url = own.url();
    let c = Cluster::start(4, &[("REDIS_URL", &url), (FANOUT, "3")]).await;
    let mut owner = c.user(0).await;
    let mut devices = Vec::new();
    for node in [0, 1, 1, 2, 2] {
        devices.push(c.user(node).await);
    }
    let members: Vec<Uuid> = devices.iter().map(|d| d.user).collect();
    let group = Api::new(&c, 0, owner.user).group("big", &members).await;
    send_text(&mut owner, Some(group), None, "first").await;

    // The owner keeps sending while Redis goes away for two seconds and comes back empty.
    let sender = tokio::spawn(async move {
        for i in 0..40 {
            owner.text_to(Some(group), None, &format!("r{i}")).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        owner
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    own.down();
    tokio::time::sleep(Duration::from_secs(2)).await;
    own.up();
    let mut owner = sender.await.unwrap();

    // Most sends went through; every stored message reaches every member once, in order.
    let mut confirmed = 0;
    while let Some(Seen::Event(e)) = owner.next(Duration::from_secs(3)).await {
        confirmed += usize::from(e["type"] == "message");
    }
    assert!(confirmed >= 30, "most sends succeed: {confirmed}");
    let newest = last_seq(&c.env.db().await, group).await;
    for d in &mut devices {
        let got = seqs(&events_of(d, group, newest as usize).await);
        assert_eq!(got, (1..=newest).collect::<Vec<_>>(), "user {}", d.user);
    }
    // Live delivery works as before afterwards, still one publish a message.
    reset_stats(&url).await;
    let echo = send_text(&mut owner, Some(group), None, "after").await;
    for d in &mut devices {
        assert_eq!(d.expect("message").await["id"], echo["id"]);
    }
    assert_eq!(publishes(&url).await, 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_read_receipts_reach_every_member_once_from_one_publish() {
    let own = OwnRedis::start();
    let url = own.url();
    let c = Cluster::start(3, &[("REDIS_URL", &url), (FANOUT, "3")]).await;
    c.set("enable_typing_indicator", "true").await;
    let mut owner = c.user(0).await;
    // The typist and the reader each have two devices, on two nodes.
    let (typist, reader) = (Uuid::new_v4(), Uuid::new_v4());
    let mut typing_device = c.connect(0, typist).await;
    let mut reading_device = c.connect(1, reader).await;
    let mut others = [
        c.connect(1, typist).await,
        c.connect(2, reader).await,
        c.user(1).await,
        c.user(2).await,
    ];
    let members = [typist, reader, others[2].user, others[3].user];
    let group = Api::new(&c, 0, owner.user).group("big", &members).await;
    let message = send_text(&mut owner, Some(group), None, "read me").await;
    for d in others
        .iter_mut()
        .chain([&mut typing_device, &mut reading_device])
    {
        assert_eq!(d.expect("message").await["id"], message["id"]);
    }

    // One keystroke: everyone else (the typist's other device too) once; one publish.
    reset_stats(&url).await;
    typing_device
        .send(json!({"type": "typing", "data": {"conversation_id": group}}))
        .await;
    for d in others.iter_mut().chain([&mut owner, &mut reading_device]) {
        let typing = exactly_one(d, "typing", group).await;
        assert_eq!(typing["user_id"], typist.to_string());
    }
    typing_device.expect_no("typing", AFTER).await;
    assert_eq!(publishes(&url).await, 1, "one typing event, one publish");

    // One read: everyone else (the reader's other device too) gets one receipt; the reading
    // device gets its count. Two publishes: the reader's cursor on its own channel, the
    // receipt on the fan-out channel.
    reset_stats(&url).await;
    reading_device
        .send(json!({"type": "read", "data": {"conversation_id": group, "message_id": message["id"]}}))
        .await;
    assert_eq!(
        reading_device.expect("unread_count_update").await["unread_count"],
        0
    );
    for d in others.iter_mut().chain([&mut owner, &mut typing_device]) {
        let read = exactly_one(d, "read", group).await;
        assert_eq!(read["reader_id"], reader.to_string());
        assert_eq!(read["message_id"], message["id"]);
    }
    reading_device.expect_no("read", AFTER).await;
    assert_eq!(publishes(&url).await, 2);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_of_ten_thousand_is_created_and_delivered_live_and_on_connect() {
    // The default threshold: a group this size goes through a fan-out channel.
    let c = Cluster::start(2, &[]).await;
    // Past the default group-size limit: an admin raises it, nothing else.
    c.set("max_group_members", "10001").await;
    let mut owner = c.user(0).await;
    let mut online = Vec::new();
    for i in 0..20 {
        online.push(c.user(i % 2).await);
    }
    let offline = Uuid::new_v4();
    let mut members: Vec<Uuid> = online.iter().map(|d| d.user).collect();
    members.push(offline);
    members.extend((members.len()..10_000).map(|_| Uuid::new_v4()));
    assert_eq!(members.len(), 10_000);
    let body = json!({"group_name": "ten thousand", "member_ids": members});
    assert!(body.to_string().len() < 1 << 20, "within the body limit");
    let api = Api::new(&c, 0, owner.user);
    let group = api.group("ten thousand", &members).await;
    let db = c.env.db().await;
    let count: i64 = db
        .query_one(
            "SELECT count(*) FROM conversation_members WHERE conversation_id = $1 AND left_at IS NULL",
            &[&group],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 10_001, "the owner and every member");

    let n = 3;
    for i in 1..=n {
        send_text(&mut owner, Some(group), None, &format!("k{i}")).await;
    }
    for d in &mut online {
        let got = seqs(&events_of(d, group, n).await);
        assert_eq!(got, (1..=n as i64).collect::<Vec<_>>(), "user {}", d.user);
    }
    let mut late = c.connect(1, offline).await;
    let events = events_of(&mut late, group, n).await;
    assert_eq!(seqs(&events), (1..=n as i64).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e["type"] == "offline_message"));
    let id = uuid_of(&events[0]["data"]["conversation_id"]);
    assert_eq!(id, group);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_of_a_big_group_travel_on_its_fanout_channel() {
    use futures_util::StreamExt;
    let c = Cluster::start(2, &[(FANOUT, "3")]).await;
    let owner = c.user(0).await;
    let members = [c.user(0).await, c.user(1).await];
    let (joiner, leaver) = (c.user(1).await, c.user(0).await);
    // Listen on the fan-out channel (one on a single Redis).
    let url = if c.env.redis.contains("://") {
        c.env.redis.clone()
    } else {
        format!("redis://{}", c.env.redis)
    };
    let mut sub = redis::Client::open(url)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    let keys = crate::cluster::Keys::new(&c.env.prefix);
    sub.subscribe(keys.fanout_channel(0)).await.unwrap();
    let mut stream = sub.on_message();
    // The recipients of the next envelope on the channel.
    let mut next = async || {
        let msg = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("an envelope on the fan-out channel")
            .unwrap();
        let payload = bytes::Bytes::copy_from_slice(msg.get_payload_bytes());
        let (_, body) = crate::cluster::envelope::split(&payload).unwrap();
        let (users, _) = crate::cluster::envelope::split_fanout(&body).unwrap();
        users.into_iter().map(Uuid::from).collect::<Vec<Uuid>>()
    };

    // The group's creation: one envelope for everyone.
    let api = Api::new(&c, 0, owner.user);
    let ids = [members[0].user, members[1].user, leaver.user];
    let group = api.group("big", &ids).await;
    let mut everyone = next().await;
    everyone.sort();
    let mut expected = vec![owner.user, ids[0], ids[1], ids[2]];
    expected.sort();
    assert_eq!(everyone, expected);
    // One member joins a group of four: its join goes on the group's channel, to it alone.
    let (status, body) = api
        .post(
            &format!("/conversations/{group}/members"),
            json!({"member_ids": [joiner.user]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(next().await, [joiner.user]);
    // One is removed: so is its leave.
    let (status, body) = api
        .post(
            &format!("/conversations/{group}/members/remove"),
            json!({"user_id": leaver.user}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(next().await, [leaver.user]);
    c.stop().await;
}
