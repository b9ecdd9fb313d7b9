//! Migrations: a fresh database, a database of the original service with rows in it, and
//! three nodes starting together all end in the same schema, each migration applied once.

use uuid::Uuid;

use super::harness::{TestEnv, create_database, stack};
use crate::store::migrate::{self, MIGRATIONS};

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Columns, indexes and constraints of the public schema, as comparable text.
async fn schema_of(client: &tokio_postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for row in client
        .query(
            "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')
             FROM information_schema.columns WHERE table_schema = 'public'
             ORDER BY table_name, ordinal_position",
            &[],
        )
        .await
        .unwrap()
    {
        let cols: Vec<String> = (0..5).map(|i| row.get::<_, String>(i)).collect();
        out.push(format!("column {}", cols.join(" ")));
    }
    for row in client
        .query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!("index {}", row.get::<_, String>(0)));
    }
    for row in client
        .query(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
             WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(format!(
            "constraint {} {} {}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_database_applies_everything_once() {
    let env = TestEnv::new().await;
    let mut client = connect(&env.database_url).await;
    let applied = migrate::run(&mut client).await.unwrap();
    assert_eq!(
        applied,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    assert!(
        migrate::run(&mut client).await.unwrap().is_empty(),
        "second run applies nothing"
    );
    let schema = schema_of(&client).await.join("\n");
    for needle in [
        "column conversations last_seq bigint NO",
        "column messages seq bigint NO",
        "column messages created_at timestamp with time zone",
        "column conversation_members read_seq bigint NO",
        "column conversation_members delivered_seq bigint NO",
        "column conversation_members hidden_seq bigint YES",
        "constraint messages messages_conversation_seq_key UNIQUE (conversation_id, seq, bucket)",
        "constraint messages messages_pkey PRIMARY KEY (id, bucket)",
        "constraint message_keys message_keys_pkey PRIMARY KEY (sender_id, client_msg_id)",
        "column messages_p03 bucket smallint NO",
        "constraint conversations conversations_private_key_key UNIQUE (private_key)",
        "gin_trgm_ops",
    ] {
        assert!(schema.contains(needle), "schema lacks {needle}:\n{schema}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn original_database_is_upgraded_in_place() {
    let stack = stack();
    let old_name = create_database(stack).await;
    let old_url = format!("{}/{old_name}", stack.pg_base);
    let mut old = connect(&old_url).await;
    // The original service's database: its schema (timestamp without time zone) and rows.
    old.batch_execute(MIGRATIONS[0].sql).await.unwrap();
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let (pc, dup, group) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    old.batch_execute(&format!(
        "INSERT INTO conversations (id, conversation_type, created_at, updated_at) VALUES
            ('{pc}', 'private', '2025-01-01 10:00:00', '2025-01-01 10:00:00'),
            ('{dup}', 'private', '2025-01-02 10:00:00', '2025-01-02 10:00:00'),
            ('{group}', 'group', '2025-01-03 10:00:00', '2025-01-03 10:00:00');
         UPDATE conversations SET group_name = 'old group' WHERE id = '{group}';
         INSERT INTO conversation_members (conversation_id, user_id, role, unread_count, is_hidden) VALUES
            ('{pc}', '{a}', 'member', 0, FALSE), ('{pc}', '{b}', 'member', 2, TRUE),
            ('{dup}', '{a}', 'member', 0, FALSE), ('{dup}', '{b}', 'member', 0, FALSE),
            ('{group}', '{a}', 'owner', 0, FALSE), ('{group}', '{c}', 'member', 1, FALSE);
         INSERT INTO messages (conversation_id, sender_id, message_type, content, created_at) VALUES
            ('{pc}', '{a}', 'text', 'third', '2025-01-01 10:03:00'),
            ('{pc}', '{a}', 'text', 'first', '2025-01-01 10:01:00'),
            ('{pc}', '{a}', 'text', 'second', '2025-01-01 10:02:00'),
            ('{group}', '{a}', 'text', 'hello group', '2025-01-03 10:05:00');
         INSERT INTO system_settings (setting_key, setting_value) VALUES
            ('enable_block_feature', 'false'), ('enable_typing_indicator', 'true'), ('max_video_size_mb', '100');"
    ))
    .await
    .unwrap();

    migrate::run(&mut old).await.unwrap();

    let seqs: Vec<(String, i64)> = old
        .query(
            "SELECT content, seq FROM messages WHERE conversation_id = $1 ORDER BY seq",
            &[&pc],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        seqs,
        [
            ("first".into(), 1),
            ("second".into(), 2),
            ("third".into(), 3)
        ]
    );
    let row = old
        .query_one("SELECT last_seq, private_key, first_sender_id, replied FROM conversations WHERE id = $1", &[&pc])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 3);
    let (lo, hi) = if a.to_string() < b.to_string() {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(row.get::<_, Option<String>>(1), Some(format!("{lo}:{hi}")));
    assert_eq!(row.get::<_, Option<Uuid>>(2), Some(a));
    assert!(!row.get::<_, bool>(3));
    let dup_key: Option<String> = old
        .query_one(
            "SELECT private_key FROM conversations WHERE id = $1",
            &[&dup],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dup_key, None, "the younger duplicate pair keeps no key");
    // unread 2 of 3 → read_seq 1; hidden → hidden_seq = last_seq; everything old counts as delivered.
    let row = old
        .query_one("SELECT read_seq, hidden_seq, delivered_seq FROM conversation_members WHERE conversation_id = $1 AND user_id = $2", &[&pc, &b])
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, Option<i64>>(1),
            row.get::<_, i64>(2)
        ),
        (1, Some(3), 3)
    );
    let created: String = old
        .query_one("SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') FROM conversations WHERE id = $1", &[&pc])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        created, "2025-01-01 10:00",
        "old timestamps are read as UTC"
    );
    let block: String = old
        .query_one(
            "SELECT setting_value FROM system_settings WHERE setting_key = 'enable_block_feature'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(block, "true");
    let count: i64 = old
        .query_one("SELECT count(*) FROM messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 4);

    // A fresh database ends in exactly the same schema.
    let fresh_name = create_database(stack).await;
    let mut fresh = connect(&format!("{}/{fresh_name}", stack.pg_base)).await;
    migrate::run(&mut fresh).await.unwrap();
    assert_eq!(schema_of(&fresh).await, schema_of(&old).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_starting_together_migrate_once() {
    let env = TestEnv::new().await;
    let (n1, n2, n3) = tokio::join!(
        env.node(&[("NODE_ID", "a")]),
        env.node(&[("NODE_ID", "b")]),
        env.node(&[("NODE_ID", "c")]),
    );
    let db = env.db().await;
    let rows = db
        .query(
            "SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let want: Vec<(i32, i64)> = MIGRATIONS.iter().map(|m| (m.version, 1)).collect();
    assert_eq!(got, want);
    let templates: i64 = db
        .query_one("SELECT count(*) FROM notification_templates", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(templates, 4);
    for n in [n1, n2, n3] {
        n.stop().await;
    }
}
