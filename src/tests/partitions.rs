//! Partitioned `messages` (migration 0006): every message query of the store reads only the
//! partition of the conversation it names, counted from PostgreSQL's own per-partition scan
//! statistics; a message id made before the partitioning is still found by id.

use std::collections::HashMap;

use uuid::Uuid;

use super::harness::TestEnv;
use crate::model::{ConversationId, MessageId, Page, Timestamp, UserId};
use crate::store::listing;
use crate::store::messages::{self, Edit, Recall};
use crate::store::{Store, members, migrate, search};

/// Scans (sequential + index) of each `messages_pNN` partition so far. The observer's own
/// pending statistics (its setup inserts check keys against the partitions) are flushed
/// first: left pending, they land whenever it next goes idle a second after its last
/// flush, which on a loaded machine is in the middle of a measured step.
async fn scans(observer: &tokio_postgres::Client) -> HashMap<String, i64> {
    observer
        .simple_query("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    observer
        .query(
            "SELECT relname::text, COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0)
             FROM pg_stat_user_tables WHERE relname LIKE 'messages_p%'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The partitions scanned since `before`, once `worker`'s statistics are flushed.
async fn touched(
    observer: &tokio_postgres::Client,
    worker: &deadpool_postgres::Object,
    before: &HashMap<String, i64>,
) -> Vec<String> {
    worker
        .simple_query("SELECT pg_stat_force_next_flush()")
        .await
        .unwrap();
    worker.simple_query("SELECT 1").await.unwrap();
    let mut out: Vec<String> = scans(observer)
        .await
        .into_iter()
        .filter(|(name, n)| before.get(name) != Some(n))
        .map(|(name, _)| name)
        .collect();
    out.sort();
    out
}

/// A conversation id whose last byte (its bucket) is `bucket`.
fn conversation_in(bucket: u8) -> ConversationId {
    let mut bytes = *Uuid::now_v7().as_bytes();
    bytes[15] = bucket;
    ConversationId::from_bytes(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_message_query_reads_one_partition() {
    let env = TestEnv::new().await;
    let observer = env.db().await;
    {
        let (mut client, conn) = tokio_postgres::connect(&env.database_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        migrate::run(&mut client).await.unwrap();
    }
    let user = UserId::new_v4();
    // Sixteen conversations spread over every partition, five messages each (with client
    // ids), all readable by `user`.
    let convs: Vec<ConversationId> = (0..16u8).map(|i| conversation_in(i * 16 + 7)).collect();
    let mut ids: HashMap<(ConversationId, i64), MessageId> = HashMap::new();
    for (i, conv) in convs.iter().enumerate() {
        observer
            .execute(
                "INSERT INTO conversations (id, conversation_type, last_seq) VALUES ($1, 'group', 5)",
                &[conv],
            )
            .await
            .unwrap();
        observer
            .execute(
                "INSERT INTO conversation_members (conversation_id, user_id, role) VALUES ($1, $2, 'owner')",
                &[conv, &user],
            )
            .await
            .unwrap();
        for seq in 1..=5i64 {
            let id = messages::new_id(*conv);
            assert_eq!(id.as_uuid().get_version_num(), 7);
            let cmid = format!("c{i}-{seq}");
            observer
                .execute(
                    "INSERT INTO messages (id, conversation_id, seq, sender_id, message_type,
                                           content, client_msg_id, bucket)
                     VALUES ($1, $2, $3, $4, 'text', 'hello', $5, msg_bucket($2))",
                    &[&id, conv, &seq, &user, &cmid],
                )
                .await
                .unwrap();
            observer
                .execute(
                    "INSERT INTO message_keys (sender_id, client_msg_id, message_id, conversation_id)
                     VALUES ($1, $2, $3, $4)",
                    &[&user, &cmid, &id, conv],
                )
                .await
                .unwrap();
            ids.insert((*conv, seq), id);
        }
        observer
            .execute(
                "UPDATE conversations SET last_message_id = $2 WHERE id = $1",
                &[conv, &ids[&(*conv, 5)]],
            )
            .await
            .unwrap();
    }
    for (i, conv) in convs.iter().enumerate() {
        let bucket: i16 = observer
            .query_one(
                "SELECT DISTINCT bucket FROM messages WHERE conversation_id = $1",
                &[conv],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            bucket,
            i as i16 * 16 + 7,
            "rows carry their conversation's bucket"
        );
    }

    let store = Store::new(&env.database_url, 1).unwrap();
    let worker = store.conn().await.unwrap();
    // Bucket 151: the third partition (128-191).
    let conv = convs[9];
    let expected = vec!["messages_p02".to_string()];
    let mid = |seq: i64| ids[&(conv, seq)];

    let before = scans(&observer).await;
    let got = messages::range(&worker, conv, 0, 5, 10).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(
        touched(&observer, &worker, &before).await,
        expected,
        "range"
    );

    let before = scans(&observer).await;
    let got = messages::pending(&worker, &[conv], &[2], 10).await.unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(
        touched(&observer, &worker, &before).await,
        expected,
        "pending"
    );

    for page in [Page::Newest { offset: 0 }, Page::Before(3), Page::After(3)] {
        let before = scans(&observer).await;
        let got = listing::history(&worker, conv, page, 10).await.unwrap();
        assert!(!got.is_empty());
        assert_eq!(
            touched(&observer, &worker, &before).await,
            expected,
            "history {page:?}"
        );
    }

    let before = scans(&observer).await;
    let got = messages::conversations_of(&worker, &[(mid(2), conv)])
        .await
        .unwrap();
    assert_eq!(got, vec![(mid(2), conv)]);
    assert_eq!(
        touched(&observer, &worker, &before).await,
        expected,
        "reply check"
    );

    let before = scans(&observer).await;
    let got = messages::by_client_ids(&worker, &[user], &["c9-2"])
        .await
        .unwrap();
    assert_eq!(got.iter().map(|m| m.id).collect::<Vec<_>>(), vec![mid(2)]);
    assert_eq!(
        touched(&observer, &worker, &before).await,
        expected,
        "client ids"
    );

    let before = scans(&observer).await;
    let read = members::mark_read(&worker, conv, user, mid(4))
        .await
        .unwrap();
    assert_eq!(
        read,
        members::Read::Moved {
            read_seq: 4,
            last_seq: 5
        }
    );
    assert_eq!(
        touched(&observer, &worker, &before).await,
        expected,
        "mark read"
    );

    let before = scans(&observer).await;
    let rows = listing::by_ids(&worker, user, &[conv]).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        touched(&observer, &worker, &before).await,
        expected,
        "last message join"
    );

    // Search in one conversation: first from the tail the indexer has not reached (the
    // conversation's newest messages), then, once indexed, from the search table.
    observer
        .execute(
            "UPDATE conversations SET last_message_at = now() WHERE id = $1",
            &[&conv],
        )
        .await
        .unwrap();
    for part in ["tail", "indexed"] {
        if part == "indexed" {
            let mark: Timestamp = observer
                .query_one("SELECT indexed_until FROM search_progress", &[])
                .await
                .unwrap()
                .get(0);
            let added = search::index(&worker, mark, Timestamp::now())
                .await
                .unwrap();
            assert_eq!(added, 80, "every message of the sixteen conversations");
            // Its scans (of every partition, by time) counted before the search's.
            touched(&observer, &worker, &HashMap::new()).await;
        }
        let before = scans(&observer).await;
        let got = search::messages(&worker, user, "%hello%", Some(conv), 10, 0, false)
            .await
            .unwrap();
        assert_eq!(got.len(), 5, "{part}");
        assert_eq!(
            touched(&observer, &worker, &before).await,
            expected,
            "search ({part})"
        );
    }

    let before = scans(&observer).await;
    let outcome = messages::recall(&worker, mid(5), user, 3600).await.unwrap();
    assert!(matches!(outcome, Recall::Done(ref m) if m.id == mid(5) && m.is_recalled));
    assert_eq!(
        touched(&observer, &worker, &before).await,
        expected,
        "recall"
    );
    let before = scans(&observer).await;
    let outcome = messages::edit(&worker, mid(4), user, "edited", 3600)
        .await
        .unwrap();
    assert!(
        matches!(outcome, Edit::Done(ref m) if m.id == mid(4)
            && m.content.as_deref() == Some("edited") && m.edited_at.is_some()),
        "{outcome:?}"
    );
    assert_eq!(touched(&observer, &worker, &before).await, expected, "edit");

    // A message id from before the partitioning (its last byte is not its bucket) is
    // found by the fall-back over every partition.
    let legacy = {
        let mut bytes = *Uuid::new_v4().as_bytes();
        bytes[15] = 0x00;
        MessageId::from_bytes(bytes)
    };
    observer
        .execute(
            "INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, content, bucket)
             VALUES ($1, $2, 6, $3, 'text', 'old', msg_bucket($2))",
            &[&legacy, &conv, &user],
        )
        .await
        .unwrap();
    let outcome = messages::edit(&worker, legacy, user, "new", 3600)
        .await
        .unwrap();
    assert!(matches!(outcome, Edit::Done(ref m) if m.id == legacy && m.edited_at.is_some()));
    let outcome = messages::recall(&worker, legacy, user, 3600).await.unwrap();
    assert!(matches!(outcome, Recall::Done(ref m) if m.id == legacy));
    let missing = messages::recall(&worker, MessageId::new_v4(), user, 3600)
        .await
        .unwrap();
    assert_eq!(missing, Recall::NotFound);
    let missing = messages::edit(&worker, MessageId::new_v4(), user, "x", 3600)
        .await
        .unwrap();
    assert_eq!(missing, Edit::NotFound);

    // A row whose bucket does not follow its conversation is refused.
    let err = observer
        .execute(
            "INSERT INTO messages (id, conversation_id, seq, sender_id, message_type, bucket)
             VALUES ($1, $2, 7, $3, 'text', 0)",
            &[&Uuid::new_v4(), &conv, &user],
        )
        .await
        .unwrap_err();
    let constraint = err.as_db_error().and_then(|e| e.constraint());
    assert_eq!(constraint, Some("messages_bucket_check"), "{err:?}");
}
