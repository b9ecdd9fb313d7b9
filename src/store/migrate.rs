//! Schema migrations: the numbered files of `sql/`, embedded in the binary and applied at
//! start-up in one transaction under a PostgreSQL advisory lock, so nodes that start
//! together apply each migration exactly once. Applied versions are recorded in
//! `schema_migrations`.

use crate::error::Result;

/// One embedded migration.
pub struct Migration {
    /// Its number, from the file name.
    pub version: i32,
    /// The file name.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_original_schema.sql",
        sql: include_str!("../../sql/0001_original_schema.sql"),
    },
    Migration {
        version: 2,
        name: "0002_timestamptz.sql",
        sql: include_str!("../../sql/0002_timestamptz.sql"),
    },
    Migration {
        version: 3,
        name: "0003_seq_and_cursors.sql",
        sql: include_str!("../../sql/0003_seq_and_cursors.sql"),
    },
    Migration {
        version: 4,
        name: "0004_hot_path_indexes.sql",
        sql: include_str!("../../sql/0004_hot_path_indexes.sql"),
    },
    Migration {
        version: 5,
        name: "0005_search_table.sql",
        sql: include_str!("../../sql/0005_search_table.sql"),
    },
    Migration {
        version: 6,
        name: "0006_partition_messages.sql",
        sql: include_str!("../../sql/0006_partition_messages.sql"),
    },
    Migration {
        version: 7,
        name: "0007_one_statement_send.sql",
        sql: include_str!("../../sql/0007_one_statement_send.sql"),
    },
    Migration {
        version: 8,
        name: "0008_search_progress.sql",
        sql: include_str!("../../sql/0008_search_progress.sql"),
    },
    Migration {
        version: 9,
        name: "0009_member_settings.sql",
        sql: include_str!("../../sql/0009_member_settings.sql"),
    },
    Migration {
        version: 10,
        name: "0010_message_edits.sql",
        sql: include_str!("../../sql/0010_message_edits.sql"),
    },
    Migration {
        version: 11,
        name: "0011_forwarded_from.sql",
        sql: include_str!("../../sql/0011_forwarded_from.sql"),
    },
];

/// Key of the advisory lock that serializes migrations across nodes ("dinqmigr").
const LOCK_KEY: i64 = 0x6469_6e71_6d69_6772;

/// Applies every migration not yet recorded. Returns the versions applied by this call.
pub async fn run(client: &mut tokio_postgres::Client) -> Result<Vec<i32>> {
    let tx = client.transaction().await?;
    // Migrations may build indexes on big tables: no statement_timeout for them (nor for
    // the lock wait behind another node's migrations).
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tracing::info!(version = m.version, name = m.name, "applying migration");
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
        done.push(m.version);
    }
    tx.commit().await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_match_file_names() {
        let mut previous = 0;
        for m in MIGRATIONS {
            assert!(m.version > previous, "{} after {previous}", m.version);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
            previous = m.version;
        }
    }

    #[test]
    fn every_sql_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let embedded: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
        assert_eq!(files, embedded);
    }
}
