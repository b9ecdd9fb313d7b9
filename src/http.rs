//! The HTTP server: hyper 1 accept loop, one route table, auth, envelopes, metrics, and a
//! graceful stop that lets in-flight requests finish within the grace period.

pub mod body;
pub mod params;
pub mod rate;
pub mod response;
pub mod router;

mod api;
pub mod metrics_port;
mod probes;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::auth::Caller;
use crate::domain::Services;
use crate::error::{Code, Error};
use crate::shutdown::Shutdown;
use response::Resp;
use router::{Access, Match, Route};

/// What every handler can reach.
#[derive(Clone)]
pub struct Ctx {
    /// Domain services.
    pub services: Services,
    /// The metrics recorder, rendered by `/metrics`.
    pub metrics: PrometheusHandle,
    /// Shutdown and readiness.
    pub shutdown: Shutdown,
    /// This node's connected users.
    pub hub: std::sync::Arc<crate::delivery::Hub>,
    /// WebSocket handshake limits.
    pub ws_limits: crate::ws::Limits,
    /// Per-user HTTP request rate.
    pub http_rate: Arc<rate::HttpRate>,
}

/// A request after routing and authentication.
pub struct Call {
    /// The matched route.
    pub route: &'static Route,
    /// Path parameters.
    pub params: router::Params,
    /// The authenticated caller (absent on public routes).
    pub caller: Option<Caller>,
    /// The request itself (headers, query, body).
    pub req: Request<Incoming>,
    /// Id for correlating logs.
    pub request_id: String,
}

impl Call {
    /// The caller of a route that requires a token.
    pub fn caller(&self) -> Result<Caller, Error> {
        self.caller
            .ok_or_else(|| Error::internal("route without auth asked for a caller"))
    }
}

/// Counts open connections so shutdown can wait for them.
#[derive(Default)]
struct Tracker {
    open: AtomicUsize,
    idle: Notify,
}

/// Serves HTTP on `listener` until shutdown, then drains open connections within `grace`.
pub async fn serve(listener: TcpListener, ctx: Ctx, grace: Duration) {
    let send_buffer = ctx.services.config().socket_send_buffer;
    let tracker = Arc::new(Tracker::default());
    let stop = ctx.shutdown.wait();
    tokio::pin!(stop);
    loop {
        let (stream, remote) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        if let Some(bytes) = send_buffer {
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(bytes);
        }
        tracker.open.fetch_add(1, Ordering::SeqCst);
        let ctx = ctx.clone();
        let tracker = tracker.clone();
        tokio::spawn(async move {
            serve_connection(stream, remote, ctx).await;
            if tracker.open.fetch_sub(1, Ordering::SeqCst) == 1 {
                tracker.idle.notify_waiters();
            }
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(grace, async {
        loop {
            let idle = tracker.idle.notified();
            if tracker.open.load(Ordering::SeqCst) == 0 {
                break;
            }
            idle.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = tracker.open.load(Ordering::SeqCst),
            "grace period over with HTTP connections still open"
        );
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, remote: SocketAddr, ctx: Ctx) {
    let shutdown = ctx.shutdown.clone();
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        async move { Ok::<_, Infallible>(handle(ctx, req, remote).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(error = %e, %remote, "HTTP connection ended with an error");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn request_id() -> String {
    format!(
        "{:x}-{:x}",
        std::process::id(),
        REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn handle(ctx: Ctx, req: Request<Incoming>, remote: SocketAddr) -> Resp {
    let started = Instant::now();
    let method = req.method().clone();
    let request_id = request_id();
    let (template, mut resp) = match router::resolve_with(
        &method,
        req.uri().path(),
        ctx.services.config().dev_ui,
    ) {
        Match::NotFound => (
            OTHER,
            response::error(&Error::route_not_found(), &request_id),
        ),
        Match::MethodNotAllowed => (
            OTHER,
            response::error(
                &Error::client(
                    StatusCode::METHOD_NOT_ALLOWED,
                    Code::MethodNotAllowed,
                    "method not allowed",
                ),
                &request_id,
            ),
        ),
        Match::Found(route, params) => {
            let template = route_label(route);
            let resp = match authenticate(&ctx, route, &req).and_then(|caller| {
                limit_rate(&ctx, caller)?;
                Ok(caller)
            }) {
                Err(e) => response::error(&e, &request_id),
                Ok(caller) => {
                    let call = Call {
                        route,
                        params,
                        caller,
                        req,
                        request_id: request_id.clone(),
                    };
                    match api::dispatch(&ctx, call).await {
                        Ok(resp) => resp,
                        Err(e) => {
                            if e.is_client() {
                                tracing::debug!(%request_id, route = template, error = %e, "request refused");
                            } else {
                                tracing::error!(%request_id, route = template, error = %e, "request failed");
                            }
                            response::error(&e, &request_id)
                        }
                    }
                }
            };
            (template, resp)
        }
    };
    if let Ok(v) = hyper::header::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16().to_string();
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => template, "method" => method_label(&method), "status" => status)
        .increment(1);
    metrics::histogram!(crate::metrics::HTTP_DURATION, "route" => template)
        .record(started.elapsed().as_secs_f64());
    tracing::trace!(%remote, %method, route = template, status = resp.status().as_u16(), "request");
    resp
}

/// The label of unmatched routes and unknown methods: the metrics' label sets stay bounded
/// whatever clients send.
const OTHER: &str = "other";

/// A bounded label for the request method: the standard ones, else [`OTHER`].
fn method_label(method: &hyper::Method) -> &'static str {
    use hyper::Method as M;
    match *method {
        M::GET => "GET",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::HEAD => "HEAD",
        M::OPTIONS => "OPTIONS",
        _ => OTHER,
    }
}

/// A `'static` label for the metrics: the route's canonical template.
fn route_label(route: &'static Route) -> &'static str {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    static LABELS: OnceLock<HashMap<usize, &'static str>> = OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        router::ROUTES
            .iter()
            .map(|r| {
                (
                    r as *const Route as usize,
                    &*Box::leak(r.template().into_boxed_str()),
                )
            })
            .collect()
    });
    labels
        .get(&(route as *const Route as usize))
        .copied()
        .unwrap_or("unknown")
}

/// 429 `rate_limited` (with `Retry-After`) for a caller over the per-user request rate.
fn limit_rate(ctx: &Ctx, caller: Option<Caller>) -> Result<(), Error> {
    let Some(caller) = caller else {
        return Ok(());
    };
    ctx.http_rate
        .take(caller.user_id, Instant::now())
        .map_err(|wait| {
            Error::requests_rate_limited(
                ctx.http_rate.per_second(),
                (wait.as_millis() as u64).max(1),
            )
        })
}

fn authenticate(
    ctx: &Ctx,
    route: &Route,
    req: &Request<Incoming>,
) -> Result<Option<Caller>, Error> {
    if route.access == Access::Public {
        return Ok(None);
    }
    let header = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let caller = ctx.services.tokens().from_authorization(header)?;
    if route.access == Access::Admin && !caller.is_admin {
        return Err(Error::forbidden(
            Code::AdminRequired,
            "admin access required",
        ));
    }
    Ok(Some(caller))
}
