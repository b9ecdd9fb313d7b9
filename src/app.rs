//! The composition root: builds every component from the configuration, starts them in
//! order, and runs the shutdown sequence.
//!
//! Start: PostgreSQL (bounded retry) → migrations and seeds → Redis (bounded retry) →
//! settings → bus, writer, hub, background tasks → ready → serve. Stop (SIGTERM/SIGINT or
//! the test's future): not ready → leave the registry → WebSocket clients closed with 1012
//! spread over a few seconds → cursors stored → in-flight requests finish, all within
//! `SHUTDOWN_GRACE_SECONDS`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::Tokens;
use crate::cluster::bus::{Bus, LocalSink};
use crate::cluster::{self, Keys};
use crate::config::{Config, redact_url};
use crate::delivery::{self, Hub};
use crate::domain::members::MemberCache;
use crate::domain::settings::{self, SettingsCache, Snapshot};
use crate::domain::writer::{self, Writer};
use crate::domain::{Parts, Services};
use crate::shutdown::Shutdown;
use crate::store::{self, Store};
use crate::{http, ws};

mod background;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// PostgreSQL unreachable, or migrations failed.
    #[error("PostgreSQL: {0}")]
    Database(String),
    /// Redis unreachable.
    #[error("Redis: {0}")]
    Redis(String),
    /// The metrics port could not be bound.
    #[error("METRICS_PORT: {0}")]
    MetricsPort(String),
}

/// Runs a node on `listener` until `stop` completes, then drains and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let config = Arc::new(config);
    let metrics = crate::metrics::install();
    let shutdown = Shutdown::new();
    shutdown.set_ready(false);

    let store = Store::with_statement_timeout(
        &config.database_url,
        config.db_pool_size,
        config.db_statement_timeout,
    )
    .map_err(|e| StartError::Database(e.to_string()))?;
    wait_for_postgres(&store, config.startup_timeout).await?;
    prepare_schema(&store, &config).await?;

    let Built { services, bus } = build(config.clone(), store.clone()).await?;
    let hub = Hub::new(delivery::Deps {
        services: services.clone(),
        store: store.clone(),
        bus: bus.clone(),
    });
    bus.start_subscriber(
        &config.redis,
        hub.clone() as Arc<dyn LocalSink>,
        shutdown.wait(),
    );
    background::start(&hub, &shutdown);

    let ctx = http::Ctx {
        services: services.clone(),
        metrics,
        shutdown: shutdown.clone(),
        hub: hub.clone(),
        ws_limits: ws::Limits {
            max_connections: config.max_connections,
            allowed_origins: config.allowed_origins.clone(),
            session: ws::session::Options {
                queue: config.ws_queue_size,
                ping_every: config.ws_ping,
                idle_timeout: config.ws_idle_timeout,
                frame_rate: config.ws_frame_rate,
                frame_burst: config.ws_frame_burst,
                typing_interval: config.ws_typing_interval,
            },
        },
        http_rate: Arc::new(http::rate::HttpRate::new(
            config.http_rate_per_second,
            config.http_rate_burst,
        )),
    };

    let local = listener.local_addr().ok();
    let snap = services.settings();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        node_id = %config.node_id,
        addr = ?local,
        ws_url = %config.ws_public_url,
        database = %redact_url(&config.database_url),
        redis = %redact_url(&config.redis.url),
        redis_cluster_seeds = config.redis.cluster_urls.len(),
        redis_prefix = %config.redis.key_prefix,
        admins = config.admin_user_ids.len(),
        origins = ?config.allowed_origins,
        first_message_limit = snap.first_message_limit,
        block = snap.block,
        recall_window_seconds = snap.recall_window_seconds,
        "dinq-message started"
    );
    if config.allowed_origins.is_empty() {
        tracing::warn!(
            "ALLOWED_ORIGINS is empty: WebSocket connections from any origin are accepted"
        );
    }

    if let Some(port) = config.metrics_port {
        let addr = std::net::SocketAddr::new(config.bind_address, port);
        let metrics_listener = TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::MetricsPort(format!("cannot bind {addr}: {e}")))?;
        tracing::info!(%addr, "metrics served on their own port");
        tokio::spawn(http::metrics_port::serve(metrics_listener, ctx.clone()));
    }
    shutdown.set_ready(true);
    let grace = config.shutdown_grace;
    let server = tokio::spawn(http::serve(listener, ctx, grace));
    stop.await;
    drain(&hub, &shutdown, grace).await;
    let _ = server.await;
    store.close();
    tracing::info!(node_id = %config.node_id, "dinq-message stopped");
    Ok(())
}

/// The domain services of a node and the bus they publish on (the hub subscribes with it).
struct Built {
    services: Services,
    bus: Bus,
}

/// Connects Redis and builds every domain service of a node on `store` (whose schema is
/// ready): the bus, the writer, caches and the settings read from PostgreSQL.
pub async fn build_services(config: Arc<Config>, store: Store) -> Result<Services, StartError> {
    Ok(build(config, store).await?.services)
}

async fn build(config: Arc<Config>, store: Store) -> Result<Built, StartError> {
    let connect_redis = || async {
        cluster::connect(&config.redis, config.startup_timeout)
            .await
            .map_err(|e| {
                StartError::Redis(format!(
                    "cannot reach {} ({})",
                    redact_url(&config.redis.url),
                    with_causes(&e)
                ))
            })
    };
    let redis = connect_redis().await?;
    let publisher = connect_redis().await?;
    let keys = if config.redis.is_cluster() {
        Keys::for_cluster(&config.redis.key_prefix)
    } else {
        Keys::new(&config.redis.key_prefix)
    };
    let settings = SettingsCache::new(
        Snapshot::from_rows(Default::default(), &config),
        config.clone(),
    );
    let conn = store
        .conn()
        .await
        .map_err(|e| StartError::Database(e.to_string()))?;
    settings
        .reload(&conn)
        .await
        .map_err(|e| StartError::Database(format!("load settings: {e}")))?;
    drop(conn);
    let reader = match &config.database_read_url {
        Some(url) => {
            Store::with_statement_timeout(url, config.db_pool_size, config.db_statement_timeout)
                .map_err(|e| StartError::Database(format!("DATABASE_READ_URL: {e}")))?
        }
        None => store.clone(),
    };
    let bus = Bus::new(
        &config.node_id,
        keys.clone(),
        publisher,
        config.group_fanout_min_members,
    );
    let members = Arc::new(MemberCache::default());
    let writer = Writer::start(
        config.writer_shards,
        writer::Deps {
            store: store.clone(),
            bus: bus.clone(),
            settings: settings.clone(),
            members: members.clone(),
        },
        writer::Limits {
            queue_target: config.send_queue_target,
            burst: config.send_burst,
            deadline: config.send_deadline,
            lag_limit: config.send_lag_limit,
        },
    );
    let services = Services::new(Parts {
        tokens: Tokens::with_previous(
            &config.jwt_secret,
            config.jwt_secret_previous.as_deref(),
            config.admin_user_ids.clone(),
        ),
        config,
        store,
        reader,
        redis,
        keys,
        settings,
        bus: bus.clone(),
        members,
        writer,
    });
    Ok(Built { services, bus })
}

/// The shutdown sequence: not ready, out of the registry, clients told to reconnect
/// elsewhere (1012, spread over a few seconds), cursors stored, within `grace`.
async fn drain(hub: &Arc<Hub>, shutdown: &Shutdown, grace: Duration) {
    let started = tokio::time::Instant::now();
    shutdown.trigger();
    if let Err(e) = hub.services().leave_registry().await {
        tracing::warn!(error = %e, "could not leave the registry");
    }
    let spread = (grace / 3).min(Duration::from_secs(5));
    hub.close_all(
        crate::ws::protocol::close::RESTART,
        "server restart",
        spread,
    )
    .await;
    // Every session writes its close frame after storing its user's cursors.
    if !hub
        .wait_sessions(grace.mul_f32(0.8).saturating_sub(started.elapsed()))
        .await
    {
        tracing::warn!(
            open = hub.connections(),
            "grace period running out with connections still open"
        );
    }
    hub.flush_all_cursors().await;
}

async fn wait_for_postgres(store: &Store, timeout: Duration) -> Result<(), StartError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(100);
    loop {
        match tokio::time::timeout(Duration::from_secs(5), store.ping()).await {
            Ok(Ok(())) => return Ok(()),
            result => {
                let why = match result {
                    Ok(Err(e)) => with_causes(&e),
                    _ => "timed out".to_string(),
                };
                if tokio::time::Instant::now() + delay >= deadline {
                    return Err(StartError::Database(format!(
                        "not reachable after {}s: {why}",
                        timeout.as_secs()
                    )));
                }
                tracing::warn!(error = %why, "PostgreSQL not reachable yet, retrying");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// `e`'s message followed by those of its sources that it does not already include (a TLS
/// handshake or a server's refusal is often only in a source).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

async fn prepare_schema(store: &Store, config: &Config) -> Result<(), StartError> {
    let db = |what: &str, e: crate::error::Error| StartError::Database(format!("{what}: {e}"));
    let mut conn = store.conn().await.map_err(|e| db("connect", e))?;
    let applied = store::migrate::run(&mut conn)
        .await
        .map_err(|e| db("migrations", e))?;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    store::seed::settings(&conn, &settings::seeds(config))
        .await
        .map_err(|e| db("seed settings", e))?;
    store::seed::templates(&conn)
        .await
        .map_err(|e| db("seed templates", e))?;
    Ok(())
}
