//! PostgreSQL access: the pool, migrations and every query, returning model types.
//!
//! Nothing here knows about WebSocket frames, HTTP or Redis. Submodules group the SQL by
//! table or concern; each function takes a client (pooled connection or transaction) so
//! callers decide the transaction boundaries.

pub mod conversations;
pub mod groups;
pub mod listing;
pub mod members;
pub mod messages;
pub mod migrate;
pub mod notifications;
pub mod relationships;
pub mod search;
pub mod seed;
pub mod sends;
pub mod settings;
pub mod templates;
pub mod tls;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::error::{Error, Result};

/// The shared pool of PostgreSQL connections.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Builds the pool (connections open lazily), with TLS as the URL's `sslmode` and
    /// `sslrootcert` say ([`tls`]). Fails on a malformed URL or an unreadable CA file.
    pub fn new(database_url: &str, max_size: usize) -> Result<Self> {
        let (mut pg, tls) =
            tls::parse(database_url).map_err(|e| Error::internal(format!("DATABASE_URL: {e}")))?;
        let tls = tls
            .connector()
            .map_err(|e| Error::internal(format!("DATABASE_URL: {e}")))?;
        if pg.get_application_name().is_none() {
            pg.application_name("dinq-message");
        }
        pg.connect_timeout(Duration::from_secs(5));
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_size)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::internal(format!("build PostgreSQL pool: {e}")))?;
        Ok(Store { pool })
    }

    /// A pooled connection.
    pub async fn conn(&self) -> Result<deadpool_postgres::Object> {
        Ok(self.pool.get().await?)
    }

    /// Answers when PostgreSQL is reachable (used by `/ready`).
    pub async fn ping(&self) -> Result<()> {
        let conn = self.conn().await?;
        conn.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// Closes the pool: idle connections end, later requests fail.
    pub fn close(&self) {
        self.pool.close();
    }

    /// Pool size and idle connections, for the metrics.
    pub fn pool_status(&self) -> (usize, usize) {
        let s = self.pool.status();
        (s.size, s.available)
    }
}
