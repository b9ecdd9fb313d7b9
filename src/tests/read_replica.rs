//! `DATABASE_READ_URL`: message history and search read from the replica, while
//! membership, sends and everything else stay on the primary. The "replica" here is a
//! second database holding different rows for the same conversation, so the answer shows
//! which one was read. (A malformed replica URL: src/config/tests.rs.)

use uuid::Uuid;

use super::harness::{create_database, stack};
use super::http_api::Api;
use super::http_search::search_caught_up;
use super::realtime::{Cluster, send_text, uuid_of};
use crate::store::migrate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_search_read_the_replica() {
    let replica_url = format!("{}/{}", stack().pg_base, create_database(stack()).await);
    let c = Cluster::start(1, &[("DATABASE_READ_URL", replica_url.as_str())]).await;
    let mut a = c.user(0).await;
    let b = Uuid::new_v4();
    let sent = send_text(&mut a, None, Some(b), "written on the primary").await;
    let conv = uuid_of(&sent["conversation_id"]);
    search_caught_up(&c).await;

    // The replica: same schema, the same conversation, another text.
    let (mut replica, conn) = tokio_postgres::connect(&replica_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    migrate::run(&mut replica).await.unwrap();
    let mid = crate::store::messages::new_id(conv.into());
    replica
        .batch_execute(&format!(
            "INSERT INTO conversations (id, conversation_type, last_seq, last_message_at) VALUES ('{conv}', 'private', 1, now());
             INSERT INTO conversation_members (conversation_id, user_id) VALUES ('{conv}', '{a}'), ('{conv}', '{b}');
             INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, bucket)
                 VALUES ('{mid}', '{conv}', 1, '{a}', 'text', 'as the replica has it', msg_bucket('{conv}'));
             INSERT INTO message_search (message_id, conversation_id, created_at, content)
                 VALUES ('{mid}', '{conv}', now(), 'as the replica has it');",
            a = a.user
        ))
        .await
        .unwrap();

    let api = Api::new(&c, 0, a.user);
    let (status, body) = api.get(&format!("/conversations/{conv}/messages")).await;
    assert_eq!(status, 200, "{body}");
    let texts: Vec<&str> = body["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["as the replica has it"]);

    let (status, body) = api.get("/messages/search?q=replica").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["messages"][0]["id"], mid.to_string());
    let (_, body) = api.get("/messages/search?q=primary").await;
    assert_eq!(body["data"]["messages"], serde_json::json!([]));

    // Membership is the primary's: a stranger is refused although nothing on the replica
    // says so either way.
    let stranger = Api::new(&c, 0, Uuid::new_v4());
    let (status, _) = stranger
        .get(&format!("/conversations/{conv}/messages"))
        .await;
    assert_eq!(status, 403);
    c.stop().await;
}
