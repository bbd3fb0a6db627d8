//! The Prometheus scrape endpoint: `GET /metrics` in the text exposition format
//! (version 0.0.4), over HTTP/1.1 on its own listener. OpenTelemetry names
//! become Prometheus names (`tessera.cache.lookups` → `tessera_cache_lookups_total`,
//! `rpc.server.call.duration` in seconds → `rpc_server_call_duration_seconds`).

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

/// Serves `registry` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(answer(&request, &registry)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(
    request: &hyper::Request<hyper::body::Incoming>,
    registry: &Registry,
) -> hyper::Response<Full<Bytes>> {
    let response = |status: u16, content_type: &str, body: Vec<u8>| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if request.uri().path() != "/metrics" {
        return response(404, "text/plain", b"not found: try /metrics\n".to_vec());
    }
    if request.method() != hyper::Method::GET {
        return response(405, "text/plain", b"GET only\n".to_vec());
    }
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => response(200, encoder.format_type(), body),
        Err(_) => response(500, "text/plain", b"cannot encode the metrics\n".to_vec()),
    }
}
