//! Gap repairs under load are bounded and batched across users (issue 16): when many users
//! of a node miss a message at once, PostgreSQL sees one repair read at a time, not one per
//! user, and every user still gets everything once, in order. (That one read serves many
//! users is checked against PostgreSQL's own counters in `delivery::missing`'s tests.)

use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

use super::http_api::Api;
use super::realtime::{Cluster, send_text};
use super::realtime_faults::OwnRedis;
use super::ws_client::Ws;

/// Members of the group, all on the node that repairs.
const USERS: usize = 30;

/// Statements of this database waiting for a lock on `conversations` (a repair reads the
/// memberships of its users first, and nothing else in this test reads that table then).
async fn waiting_repairs(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(DISTINCT l.pid) FROM pg_locks l
         WHERE NOT l.granted AND l.relation = 'conversations'::regclass
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// What this database's backends are doing (for failure messages).
async fn activity(db: &tokio_postgres::Client) -> Vec<String> {
    db.query(
        "SELECT format('%s %s %s %s', a.state, a.wait_event_type, left(a.query, 50),
                       (SELECT string_agg(format('%s/%s/%s', l.locktype, l.relation::regclass, l.mode), ',')
                        FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted))
         FROM pg_stat_activity a WHERE a.datname = current_database()",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The seqs of the `message` frames `ws` gets for `conv` until it has `last`, and for a
/// moment after (duplicates would show).
async fn seqs_until(ws: &mut Ws, conv: Uuid, last: i64) -> Vec<i64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let m: Value = ws.expect("message").await;
        if m["conversation_id"] == conv.to_string() {
            seqs.push(m["seq"].as_i64().unwrap());
        }
    }
    for e in ws.drain(Duration::from_millis(200)).await {
        if e["type"] == "message" {
            seqs.push(e["data"]["seq"].as_i64().unwrap());
        }
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_missing_a_message_are_repaired_by_one_read_at_a_time() {
    // A Redis of our own: this test pauses its writes.
    let redis_server = OwnRedis::start();
    let env = super::harness::TestEnv::new().await;
    let url = redis_server.url();
    let mut nodes = Vec::new();
    for i in 0..2 {
        let id = format!("g{i}");
        nodes.push(env.node(&[("REDIS_URL", &url), ("NODE_ID", &id)]).await);
    }
    let c = Cluster { env, nodes };
    let mut sender = c.user(0).await;
    let mut members = Vec::new();
    for _ in 0..USERS {
        members.push(c.user(1).await);
    }
    let ids: Vec<Uuid> = members.iter().map(|m| m.user).collect();
    let conv = Api::new(&c, 0, sender.user).group("gaps", &ids).await;
    send_text(&mut sender, Some(conv), None, "everyone is here").await;
    for m in &mut members {
        assert_eq!(seqs_until(m, conv, 1).await, [1]);
    }

    // Seq 2 is stored but never published: the members' node will see 3 after 1.
    let db = c.env.db().await;
    let hidden = Uuid::new_v4();
    db.execute(
        "INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, bucket)
         VALUES ($1, $2, 2, $3, 'text', 'never published', msg_bucket($2))",
        &[&hidden, &conv, &sender.user],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE conversations SET last_seq = 2, last_message_id = $2 WHERE id = $1",
        &[&conv, &hidden],
    )
    .await
    .unwrap();
    // Seq 3 is committed while Redis holds its publishes back; then the repairs' first read
    // is locked out, and Redis lets them go: every member has a gap at once.
    let client = redis::Client::open(format!("redis://{url}")).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(10000)
        .arg("WRITE")
        .query_async(&mut redis)
        .await
        .unwrap();
    let echo = send_text(&mut sender, Some(conv), None, "after the gap").await;
    assert_eq!(echo["seq"], 3);
    db.batch_execute("BEGIN; LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut redis)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiting_repairs(&db).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no repair started: {:?}",
            activity(&db).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every member's gap has been seen by now; the reads that wait are all there are.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        waiting_repairs(&db).await,
        1,
        "{USERS} users repairing at once: one batched read at a time, not one per user ({:?})",
        activity(&db).await
    );
    db.batch_execute("COMMIT").await.unwrap();
    for (i, m) in members.iter_mut().enumerate() {
        assert_eq!(seqs_until(m, conv, 3).await, [2, 3], "member {i}");
    }
    c.stop().await;
}
