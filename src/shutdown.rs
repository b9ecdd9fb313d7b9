//! Shutdown and readiness: one signal that every task can wait on, and the readiness
//! latch behind `GET /ready`.
//!
//! The sequence on SIGTERM (driven by `app`): readiness drops first, so the load balancer
//! stops sending new work; then the accept loop stops, in-flight work finishes, and the
//! process exits within the grace period.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// A cheap handle to the node's shutdown state.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    ready: AtomicBool,
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// Not ready, not shutting down.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(false);
        Shutdown {
            inner: Arc::new(Inner {
                ready: AtomicBool::new(false),
                tx,
            }),
        }
    }

    /// Marks the node ready (start-up finished) or not.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
        metrics::gauge!(crate::metrics::READY).set(if ready { 1.0 } else { 0.0 });
    }

    /// True once start-up finished and until shutdown began.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst) && !self.is_shutting_down()
    }

    /// Starts the shutdown: readiness drops and every waiter wakes.
    pub fn trigger(&self) {
        self.set_ready(false);
        self.inner.tx.send_replace(true);
    }

    /// True after [`Shutdown::trigger`].
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.tx.borrow()
    }

    /// Completes when shutdown begins.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.inner.tx.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }
}

/// Completes on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
}
