//! What one message costs, measured on the running cluster: node CPU (every node's
//! `dinq_process_cpu_seconds`), Redis commands (and publishes) summed over every
//! Redis server or cluster master given, and PostgreSQL commits, rows written and WAL
//! bytes; and, when PostgreSQL and Redis run on the load generator's machine (as in
//! `loadtest/run.sh`), their CPU time from `/proc` (0 otherwise). Each figure is
//! the counters' difference over a load window minus the same-length idle window before it
//! (presence refreshes, cursor flushes and sweeps go on without traffic), divided by the
//! messages the window sent.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Cumulative counters read from the servers.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    /// `total_commands_processed`, summed over the Redis servers.
    pub redis_commands: u64,
    /// Calls of PUBLISH and SPUBLISH.
    pub redis_publishes: u64,
    /// Committed transactions of the database.
    pub pg_commits: u64,
    /// Rows inserted.
    pub pg_inserted: u64,
    /// Rows updated.
    pub pg_updated: u64,
    /// WAL position, bytes.
    pub wal_bytes: u64,
    /// CPU time of every node together, ms.
    pub node_cpu_ms: u64,
    /// CPU time of local `postgres` processes, ms.
    pub pg_cpu_ms: u64,
    /// CPU time of local `redis-server` processes, ms.
    pub redis_cpu_ms: u64,
}

impl Counters {
    fn minus(self, o: Counters) -> Counters {
        Counters {
            redis_commands: self.redis_commands.saturating_sub(o.redis_commands),
            redis_publishes: self.redis_publishes.saturating_sub(o.redis_publishes),
            pg_commits: self.pg_commits.saturating_sub(o.pg_commits),
            pg_inserted: self.pg_inserted.saturating_sub(o.pg_inserted),
            pg_updated: self.pg_updated.saturating_sub(o.pg_updated),
            wal_bytes: self.wal_bytes.saturating_sub(o.wal_bytes),
            node_cpu_ms: self.node_cpu_ms.saturating_sub(o.node_cpu_ms),
            pg_cpu_ms: self.pg_cpu_ms.saturating_sub(o.pg_cpu_ms),
            redis_cpu_ms: self.redis_cpu_ms.saturating_sub(o.redis_cpu_ms),
        }
    }
}

/// The cost of one kind of traffic, per message.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Cost {
    /// What was sent, e.g. "1:1 at 1000/s".
    pub traffic: String,
    /// Messages sent in the window.
    pub messages: u64,
    /// Deliveries (recipient sockets reached) per message.
    pub deliveries_per_message: f64,
    /// Redis commands per message, all servers together.
    pub redis_commands_per_message: f64,
    /// PUBLISH/SPUBLISH per message.
    pub redis_publishes_per_message: f64,
    /// PostgreSQL commits per message.
    pub pg_commits_per_message: f64,
    /// Rows inserted per message.
    pub pg_rows_inserted_per_message: f64,
    /// Rows updated per message.
    pub pg_rows_updated_per_message: f64,
    /// WAL bytes per message.
    pub wal_bytes_per_message: f64,
    /// Redis commands per second with no traffic (subtracted above).
    pub idle_redis_commands_per_second: f64,
    /// Node CPU per message, every node together (sender's and recipients' sides), µs.
    #[serde(default)]
    pub node_cpu_us_per_message: f64,
    /// PostgreSQL CPU per message (local processes), µs.
    #[serde(default)]
    pub pg_cpu_us_per_message: f64,
    /// Redis CPU per message (local processes, every shard), µs.
    #[serde(default)]
    pub redis_cpu_us_per_message: f64,
}

impl Cost {
    /// Node CPU per delivery (recipient socket reached), µs, when there were deliveries.
    pub fn node_cpu_us_per_delivery(&self) -> Option<f64> {
        (self.deliveries_per_message > 0.0)
            .then(|| self.node_cpu_us_per_message / self.deliveries_per_message)
    }
}

/// CPU time (user + system) of this machine's processes named `comm`, ms (10 ms ticks).
fn local_cpu_ms(comm: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut ticks = 0;
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != comm {
            continue;
        }
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // utime and stime: fields 14 and 15 of proc(5), 12 and 13 after the name.
        ticks += num(11) + num(12);
    }
    ticks * 10
}

/// Where the counters are read.
pub struct Meters {
    nodes: Vec<String>,
    redis: Vec<redis::aio::MultiplexedConnection>,
    pg: tokio_postgres::Client,
}

/// A number from `INFO` output: the value of the line starting with `prefix`, or, when
/// `field` is given, its `field=` entry (`cmdstat_publish:calls=42,usec=…`). 0 if absent.
fn info_field(info: &str, prefix: &str, field: &str) -> u64 {
    let Some(rest) = info.lines().find_map(|l| l.strip_prefix(prefix)) else {
        return 0;
    };
    let value = if field.is_empty() {
        Some(rest)
    } else {
        rest.split(',')
            .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('='))
    };
    value.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

impl Meters {
    /// Connects to every Redis URL (each server or cluster master) and to PostgreSQL;
    /// `nodes` are the nodes' base URLs (for their CPU counters).
    pub async fn connect(
        nodes: &[String],
        redis_urls: &[String],
        database_url: &str,
    ) -> Result<Meters, String> {
        let mut redis = Vec::new();
        for url in redis_urls {
            let client = redis::Client::open(url.as_str()).map_err(|e| format!("{url}: {e}"))?;
            redis.push(
                client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?,
            );
        }
        let (pg, conn) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Meters {
            nodes: nodes.to_vec(),
            redis,
            pg,
        })
    }

    /// The counters now. PostgreSQL publishes a backend's statistics within about ten
    /// seconds of its last transaction, so callers let windows settle first.
    pub async fn read(&mut self) -> Result<Counters, String> {
        let mut c = Counters::default();
        for conn in &mut self.redis {
            let stats: String = redis::cmd("INFO")
                .arg("stats")
                .query_async(conn)
                .await
                .map_err(|e| e.to_string())?;
            c.redis_commands += info_field(&stats, "total_commands_processed:", "");
            let cmds: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(conn)
                .await
                .map_err(|e| e.to_string())?;
            c.redis_publishes += info_field(&cmds, "cmdstat_publish:", "calls")
                + info_field(&cmds, "cmdstat_spublish:", "calls");
        }
        let row = self
            .pg
            .query_one(
                "SELECT xact_commit, tup_inserted, tup_updated,
                        (pg_current_wal_lsn() - '0/0')::int8
                 FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        c.pg_commits = row.get::<_, i64>(0) as u64;
        c.pg_inserted = row.get::<_, i64>(1) as u64;
        c.pg_updated = row.get::<_, i64>(2) as u64;
        c.wal_bytes = row.get::<_, i64>(3) as u64;
        for node in &self.nodes {
            c.node_cpu_ms +=
                (crate::api::metric(node, "dinq_process_cpu_seconds").await? * 1000.0) as u64;
        }
        c.pg_cpu_ms = local_cpu_ms("postgres");
        c.redis_cpu_ms = local_cpu_ms("redis-server");
        Ok(c)
    }
}

/// Time for PostgreSQL's per-backend statistics to reach the shared counters.
pub const SETTLE: Duration = Duration::from_secs(11);

/// Measures `load` (which returns messages sent and deliveries made): an idle window as
/// long as `window`, then the load, each followed by [`SETTLE`].
pub async fn measure<F, Fut>(
    meters: &mut Meters,
    traffic: &str,
    window: Duration,
    load: F,
) -> Result<Cost, String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(u64, u64), String>>,
{
    tokio::time::sleep(SETTLE).await;
    let c0 = meters.read().await?;
    tokio::time::sleep(window).await;
    let c1 = meters.read().await?;
    let idle = c1.minus(c0);
    let idle_secs = window.as_secs_f64();
    let started = std::time::Instant::now();
    let (messages, deliveries) = load().await?;
    tokio::time::sleep(SETTLE).await;
    let c2 = meters.read().await?;
    let busy = c2.minus(c1);
    let busy_secs = started.elapsed().as_secs_f64();
    let scale = busy_secs / idle_secs;
    let per = |busy: u64, idle: u64| {
        if messages == 0 {
            return 0.0;
        }
        ((busy as f64 - idle as f64 * scale).max(0.0)) / messages as f64
    };
    Ok(Cost {
        traffic: traffic.to_string(),
        messages,
        deliveries_per_message: if messages == 0 {
            0.0
        } else {
            deliveries as f64 / messages as f64
        },
        redis_commands_per_message: per(busy.redis_commands, idle.redis_commands),
        redis_publishes_per_message: per(busy.redis_publishes, idle.redis_publishes),
        pg_commits_per_message: per(busy.pg_commits, idle.pg_commits),
        pg_rows_inserted_per_message: per(busy.pg_inserted, idle.pg_inserted),
        pg_rows_updated_per_message: per(busy.pg_updated, idle.pg_updated),
        wal_bytes_per_message: per(busy.wal_bytes, idle.wal_bytes),
        idle_redis_commands_per_second: idle.redis_commands as f64 / idle_secs,
        node_cpu_us_per_message: per(busy.node_cpu_ms, idle.node_cpu_ms) * 1000.0,
        pg_cpu_us_per_message: per(busy.pg_cpu_ms, idle.pg_cpu_ms) * 1000.0,
        redis_cpu_us_per_message: per(busy.redis_cpu_ms, idle.redis_cpu_ms) * 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use super::info_field;

    #[test]
    fn info_fields() {
        let stats = "# Stats\r\ntotal_connections_received:12\r\ntotal_commands_processed:4567\r\n";
        assert_eq!(info_field(stats, "total_commands_processed:", ""), 4567);
        let cmds = "# Commandstats\r\ncmdstat_publish:calls=42,usec=9,usec_per_call=0.2\r\ncmdstat_spublish:calls=7,usec=1\r\n";
        assert_eq!(info_field(cmds, "cmdstat_publish:", "calls"), 42);
        assert_eq!(info_field(cmds, "cmdstat_spublish:", "calls"), 7);
        assert_eq!(info_field(cmds, "cmdstat_get:", "calls"), 0);
    }
}
