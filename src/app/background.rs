//! The node's periodic tasks, all ending at shutdown: storing delivery cursors, refreshing
//! presence, the registry heartbeat and the dead-node reaper, search indexing (one pass at
//! a time in the cluster, deferred while this node's writer is backlogged), and a settings
//! reload that catches up if a control message was lost.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::registry;
use crate::delivery::Hub;
use crate::domain::search_index;
use crate::shutdown::Shutdown;

/// How often changed delivery and read cursors are stored.
const CURSOR_FLUSH: Duration = Duration::from_secs(1);
/// How often `online:{user}` is refreshed for local users.
const PRESENCE_REFRESH: Duration = Duration::from_secs(10);
/// How often settings are re-read whatever the control channel said.
const SETTINGS_RELOAD: Duration = Duration::from_secs(30);

fn every<F, Fut>(shutdown: &Shutdown, period: Duration, mut f: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let stop = shutdown.wait();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => f().await,
            }
        }
    });
}

/// Starts every periodic task of `hub`'s node.
pub fn start(hub: &Arc<Hub>, shutdown: &Shutdown) {
    let h = hub.clone();
    every(shutdown, CURSOR_FLUSH, move || {
        let h = h.clone();
        async move { h.flush_cursors().await }
    });

    let h = hub.clone();
    every(shutdown, PRESENCE_REFRESH, move || {
        let h = h.clone();
        async move { h.services().refresh_presence(&h.local_users()).await }
    });

    // The indexer's pacing state belongs to its own task (no lock across the pass).
    let h = hub.clone();
    let stop = shutdown.wait();
    tokio::spawn(async move {
        let mut pacer = search_index::Pacer::default();
        let mut tick = tokio::time::interval(search_index::PASS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => h.services().index_search(&mut pacer).await,
            }
        }
    });

    let h = hub.clone();
    every(shutdown, SETTINGS_RELOAD, move || {
        let h = h.clone();
        async move {
            if let Err(e) = h.services().reload_local_settings().await {
                tracing::warn!(error = %e, "periodic settings reload failed");
            }
        }
    });

    let h = hub.clone();
    let started_ms = registry::now_ms();
    let sd = shutdown.clone();
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    every(shutdown, registry::HEARTBEAT, move || {
        let h = h.clone();
        let sd = sd.clone();
        let first = first.clone();
        async move {
            if sd.is_shutting_down() {
                return;
            }
            let heartbeat =
                h.services()
                    .registry_heartbeat(h.connections() as u64, started_ms, sd.is_ready());
            match heartbeat.await {
                Ok(created) => {
                    let was_first = first.swap(false, std::sync::atomic::Ordering::SeqCst);
                    if created && !was_first {
                        // Another node took this one for dead (it was frozen or cut off):
                        // put its devices back into presence.
                        tracing::warn!(
                            "this node was reaped while alive; registering its devices again"
                        );
                        h.reregister_presence().await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "registry heartbeat failed"),
            }
            h.services().reap_dead_nodes().await;
        }
    });
}
