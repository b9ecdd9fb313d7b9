//! Metrics: the Prometheus recorder, metric names and help texts, process metrics.
//!
//! Every metric the node exports is described here once ([`describe`]), under the `dinq_`
//! namespace; hot paths call the `metrics` macros with these names. `/metrics` renders the
//! recorder after refreshing the process gauges from `/proc/self`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests by route template, method and status.
pub const HTTP_REQUESTS: &str = "dinq_http_requests_total";
/// HTTP request duration by route template.
pub const HTTP_DURATION: &str = "dinq_http_request_duration_seconds";
/// Open WebSocket connections on this node.
pub const WS_CONNECTIONS: &str = "dinq_ws_connections";
/// WebSocket connections accepted since start.
pub const WS_CONNECTIONS_OPENED: &str = "dinq_ws_connections_opened_total";
/// WebSocket connections closed, by reason.
pub const WS_CONNECTIONS_CLOSED: &str = "dinq_ws_connections_closed_total";
/// Frames read from clients, by frame type.
pub const WS_FRAMES_IN: &str = "dinq_ws_frames_in_total";
/// Frames written to clients.
pub const WS_FRAMES_OUT: &str = "dinq_ws_frames_out_total";
/// Messages stored, by message type.
pub const MESSAGES_SENT: &str = "dinq_messages_sent_total";
/// Sends refused, by error code.
pub const MESSAGES_REJECTED: &str = "dinq_messages_rejected_total";
/// Frame in to echo queued, seconds.
pub const SEND_LATENCY: &str = "dinq_send_latency_seconds";
/// Commit to socket write of a delivered message, seconds.
pub const DELIVERY_LATENCY: &str = "dinq_delivery_latency_seconds";
/// Messages per batched write transaction.
pub const WRITER_BATCH_SIZE: &str = "dinq_writer_batch_size";
/// Counter: writer batches by path (`fast`: one statement; `careful`: row locks first).
pub const WRITER_BATCHES: &str = "dinq_writer_batches_total";
/// Gauge: sends waiting in a writer shard's queue when its last batch started.
pub const WRITER_QUEUE: &str = "dinq_writer_queue_depth";
/// Counter: sends refused with `overloaded`, by reason (queue, lag, deadline, full).
pub const SENDS_REFUSED: &str = "dinq_sends_refused_total";
/// Gauge: how late the runtime's timers fire (smoothed), seconds.
pub const RUNTIME_LAG: &str = "dinq_runtime_lag_seconds";
/// Counter: one-statement writes refused because the writer's view was stale.
pub const WRITER_STALE: &str = "dinq_writer_stale_total";
/// Messages delivered from the offline cursor on connect.
pub const OFFLINE_DELIVERED: &str = "dinq_offline_messages_delivered_total";
/// Connections closed because their outbound queue was full.
pub const QUEUE_FULL_CLOSES: &str = "dinq_ws_queue_full_closes_total";
/// Redis publishes that failed.
pub const REDIS_PUBLISH_ERRORS: &str = "dinq_redis_publish_errors_total";
/// Redis subscribe or unsubscribe commands that failed.
pub const REDIS_SUBSCRIBE_ERRORS: &str = "dinq_redis_subscribe_errors_total";
/// Times the node resubscribed every local user after losing Redis.
pub const REDIS_RESUBSCRIPTIONS: &str = "dinq_redis_resubscriptions_total";
/// Redis Cluster pushes dropped because the subscriber's queue was full.
pub const REDIS_PUSHES_DROPPED: &str = "dinq_redis_pushes_dropped_total";
/// Repair requests broadcast after failed publishes.
pub const REDIS_REPAIRS_REQUESTED: &str = "dinq_redis_repairs_requested_total";
/// Envelopes published to Redis.
pub const REDIS_PUBLISHED: &str = "dinq_redis_published_total";
/// Envelopes received from Redis for local users.
pub const REDIS_RECEIVED: &str = "dinq_redis_received_total";
/// Envelopes published on a fan-out channel (one event for many users).
pub const FANOUT_PUBLISHED: &str = "dinq_redis_fanout_published_total";
/// Recipients named in one fan-out envelope.
pub const FANOUT_RECIPIENTS: &str = "dinq_fanout_recipients";
/// Messages fetched from PostgreSQL to fill a gap in live delivery.
pub const GAP_REPAIRS: &str = "dinq_delivery_gap_repairs_total";
/// Users per gap-repair round (one batched read per round).
pub const REPAIR_ROUND_USERS: &str = "dinq_delivery_repair_round_users";
/// Viewing reads (read cursor moves of a viewing device) stored before they were shown.
pub const VIEWING_READS_STORED: &str = "dinq_viewing_reads_stored_total";
/// Viewing reads per store statement.
pub const VIEWING_READ_BATCH: &str = "dinq_viewing_read_batch_size";
/// How long a user's frames were held for a viewing read to be stored, seconds.
pub const HOLD_SECONDS: &str = "dinq_delivery_hold_seconds";
/// Holds released before their viewing read was stored, by reason.
pub const HOLDS_FORCED: &str = "dinq_delivery_holds_forced_total";
/// Presence updates not pushed because the conversation had not reached the user yet.
pub const PRESENCE_DROPPED: &str = "dinq_presence_updates_dropped_total";
/// Messages added to the search table by this node's indexing passes.
pub const SEARCH_INDEXED: &str = "dinq_search_indexed_total";
/// Indexing passes this node skipped because its writer was backlogged.
pub const SEARCH_INDEX_DEFERRED: &str = "dinq_search_index_deferred_total";
/// Stragglers added to search by the sweep (committed after the indexer had passed them).
pub const SEARCH_SWEPT: &str = "dinq_search_swept_total";
/// Messages read from PostgreSQL for conversation exports.
pub const EXPORTED_MESSAGES: &str = "dinq_exported_messages_total";
/// CPU time of the process in seconds at 10 ms resolution (`process_cpu_seconds_total` is
/// whole seconds: the exporter's counters are integers, so this one is a gauge).
pub const CPU_SECONDS: &str = "dinq_process_cpu_seconds";
/// PostgreSQL errors by operation.
pub const DB_ERRORS: &str = "dinq_db_errors_total";
/// Connections in the PostgreSQL pool.
pub const DB_POOL_SIZE: &str = "dinq_db_pool_connections";
/// Idle connections in the PostgreSQL pool.
pub const DB_POOL_IDLE: &str = "dinq_db_pool_idle_connections";
/// 1 while the node is ready to serve.
pub const READY: &str = "dinq_ready";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder (once per process) and returns the handle to render it.
/// Nodes started in one process (tests) share it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(WRITER_BATCH_SIZE.into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(REPAIR_ROUND_USERS.into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(FANOUT_RECIPIENTS.into()),
                        &[
                            10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0,
                        ],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(VIEWING_READ_BATCH.into()),
                        &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                    )
                })
                .expect("bucket lists are non-empty")
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawn metrics upkeep thread");
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests by route template, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request duration by route template."
    );
    describe_gauge!(WS_CONNECTIONS, "Open WebSocket connections on this node.");
    describe_counter!(
        WS_CONNECTIONS_OPENED,
        "WebSocket connections accepted since start."
    );
    describe_counter!(
        WS_CONNECTIONS_CLOSED,
        "WebSocket connections closed, by reason."
    );
    describe_counter!(WS_FRAMES_IN, "WebSocket frames read from clients, by type.");
    describe_counter!(WS_FRAMES_OUT, "WebSocket frames written to clients.");
    describe_counter!(MESSAGES_SENT, "Messages stored, by message type.");
    describe_counter!(MESSAGES_REJECTED, "Message sends refused, by error code.");
    describe_histogram!(
        SEND_LATENCY,
        Unit::Seconds,
        "Send frame read to echo queued for the sender."
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        Unit::Seconds,
        "Message commit to socket write on the delivering node."
    );
    describe_histogram!(WRITER_BATCH_SIZE, "Messages per batched write transaction.");
    describe_counter!(
        WRITER_BATCHES,
        "Writer transactions by path: fast (one statement) or careful (row locks first)."
    );
    describe_gauge!(
        WRITER_QUEUE,
        "Sends waiting in a writer shard's queue when its last batch started."
    );
    describe_counter!(
        SENDS_REFUSED,
        "Sends refused with overloaded, by reason: queue (too long in time), lag (node saturated), deadline (waited too long), full."
    );
    describe_gauge!(
        RUNTIME_LAG,
        "How late the node's runtime timers fire (smoothed), in seconds."
    );
    describe_counter!(
        WRITER_STALE,
        "One-statement writes that found a conversation changed and were written carefully."
    );
    describe_counter!(
        OFFLINE_DELIVERED,
        "Messages delivered from the offline cursor on connect."
    );
    describe_counter!(
        QUEUE_FULL_CLOSES,
        "Connections closed (1013) because their outbound queue was full."
    );
    describe_counter!(REDIS_PUBLISH_ERRORS, "Redis publishes that failed.");
    describe_counter!(
        REDIS_SUBSCRIBE_ERRORS,
        "Redis subscribe or unsubscribe commands that failed."
    );
    describe_counter!(
        REDIS_RESUBSCRIPTIONS,
        "Times every local user was resubscribed after Redis came back."
    );
    describe_counter!(
        REDIS_PUSHES_DROPPED,
        "Redis Cluster pushes dropped because the subscriber's queue was full (every subscription is then restored and repaired)."
    );
    describe_counter!(REDIS_PUBLISHED, "Envelopes published to Redis.");
    describe_counter!(
        REDIS_REPAIRS_REQUESTED,
        "Repair requests broadcast once publishing worked again after failed publishes."
    );
    describe_counter!(
        REDIS_RECEIVED,
        "Envelopes received from Redis for local users (a fan-out envelope counts once)."
    );
    describe_counter!(
        FANOUT_PUBLISHED,
        "Envelopes published on a fan-out channel: one event for a group's members, every node subscribed."
    );
    describe_histogram!(
        FANOUT_RECIPIENTS,
        "Recipients named in one fan-out envelope."
    );
    describe_counter!(
        GAP_REPAIRS,
        "Messages fetched from PostgreSQL to fill a gap in live delivery."
    );
    describe_counter!(
        VIEWING_READS_STORED,
        "Read cursor moves of viewing devices stored before the frames showing them were released."
    );
    describe_histogram!(
        VIEWING_READ_BATCH,
        "Viewing reads stored per statement (group commit)."
    );
    describe_histogram!(
        HOLD_SECONDS,
        Unit::Seconds,
        "How long a user's outbound frames were held for a viewing read to be stored."
    );
    describe_counter!(
        HOLDS_FORCED,
        "Holds released before their viewing read was stored, by reason (timeout, overflow)."
    );
    describe_counter!(
        PRESENCE_DROPPED,
        "Presence updates not pushed to a partner whose devices here had not yet received a message of the conversation."
    );
    describe_histogram!(
        REPAIR_ROUND_USERS,
        "Users repaired per gap-repair round (one batched read of what they missed per round)."
    );
    describe_counter!(DB_ERRORS, "PostgreSQL errors by operation.");
    describe_counter!(
        SEARCH_INDEXED,
        "Messages added to the search table by this node's indexing passes."
    );
    describe_counter!(
        SEARCH_INDEX_DEFERRED,
        "Search indexing passes skipped because this node's writer was backlogged."
    );
    describe_counter!(
        SEARCH_SWEPT,
        "Stragglers added to search by the sweep (committed after the indexer had passed them)."
    );
    describe_counter!(
        EXPORTED_MESSAGES,
        "Messages read from PostgreSQL for conversation exports."
    );
    describe_gauge!(
        CPU_SECONDS,
        Unit::Seconds,
        "User and system CPU time in seconds at 10 ms resolution (for per-message costs)."
    );
    describe_gauge!(DB_POOL_SIZE, "Connections in the PostgreSQL pool.");
    describe_gauge!(DB_POOL_IDLE, "Idle connections in the PostgreSQL pool.");
    describe_gauge!(READY, "1 while this node is ready to serve, 0 otherwise.");
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory size in bytes."
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        Unit::Bytes,
        "Virtual memory size in bytes."
    );
    describe_gauge!("process_open_fds", "Number of open file descriptors.");
    describe_gauge!("process_threads", "Number of OS threads in the process.");
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "Start time of the process since the Unix epoch."
    );
    describe_counter!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "Total user and system CPU time spent."
    );
}

/// Resident memory of this process in bytes, from `/proc/self/statm` (0 where unavailable).
pub fn resident_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page_size())
        .unwrap_or(0)
}

fn page_size() -> u64 {
    4096
}

/// Refreshes the `process_*` metrics from `/proc/self` (Linux only; silently skipped elsewhere).
pub fn update_process_metrics() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Indices are field numbers from proc(5) minus 3.
    let ticks = 100.0;
    let cpu = (num(11) + num(12)) as f64 / ticks;
    metrics::counter!("process_cpu_seconds_total").absolute(cpu as u64);
    metrics::gauge!(CPU_SECONDS).set(cpu);
    metrics::gauge!("process_threads").set(num(17) as f64);
    metrics::gauge!("process_virtual_memory_bytes").set(num(20) as f64);
    metrics::gauge!("process_resident_memory_bytes").set(resident_memory_bytes() as f64);
    if let Some(boot) = boot_time() {
        metrics::gauge!("process_start_time_seconds").set(boot + num(19) as f64 / ticks);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(dir.count() as f64);
    }
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}
