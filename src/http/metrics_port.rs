//! `METRICS_PORT`: `/metrics` on a listener of its own, so the public port (API and
//! WebSocket, exposed through the load balancer) does not serve it. Only `GET /metrics`
//! is answered there; anything else is a 404 envelope. It stops with the node.

use std::convert::Infallible;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::response::{self, Resp};
use super::{Ctx, probes};
use crate::error::Error;

/// Serves `GET /metrics` on `listener` until shutdown.
pub async fn serve(listener: TcpListener, ctx: Ctx) {
    let stop = ctx.shutdown.wait();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(answer(&ctx, &req)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer<B>(ctx: &Ctx, req: &Request<B>) -> Resp {
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        probes::metrics(ctx)
    } else {
        response::error(&Error::route_not_found(), "metrics")
    }
}
