//! Telemetry ([`tessera_telemetry`]) as the gateway sets it up: its config
//! sections become the crate's settings, and the resolver's review queue
//! becomes a gauge.

use std::time::Duration;

pub use tessera_telemetry::*;

use crate::config::{LoggingConfig, TelemetryConfig};

impl From<&TelemetryConfig> for Settings {
    fn from(config: &TelemetryConfig) -> Self {
        Self {
            service_name: config.service_name.clone(),
            otlp_endpoint: config.otlp_endpoint.clone(),
            otlp_timeout: config.otlp_timeout.0,
            metrics_interval: config.metrics_interval.0,
            sampling_ratio: config.sampling_ratio,
            keep_slower_than: config.keep_slower_than.0,
            prometheus: config.prometheus_listen.is_some(),
        }
    }
}

impl From<&LoggingConfig> for LogSettings {
    fn from(config: &LoggingConfig) -> Self {
        Self {
            format: match config.format {
                crate::config::LogFormat::Text => LogFormat::Text,
                crate::config::LogFormat::Json => LogFormat::Json,
            },
            level: config.level.0.clone(),
        }
    }
}

/// Reports the review queue's size as `tessera.resolver.review.open`, counted
/// every `every` in the background while the resolver lives.
pub fn observe_review_queue(
    resolver: &std::sync::Arc<tessera_resolver::Resolver>,
    every: Duration,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let open = std::sync::Arc::new(AtomicU64::new(0));
    let seen = std::sync::Arc::clone(&open);
    let weak = std::sync::Arc::downgrade(resolver);
    tokio::spawn(async move {
        while let Some(resolver) = weak.upgrade() {
            if let Ok(count) = resolver.open_review_count().await {
                seen.store(count, Ordering::Relaxed);
            }
            drop(resolver);
            tokio::time::sleep(every).await;
        }
    });
    opentelemetry::global::meter("tessera")
        .u64_observable_gauge("tessera.resolver.review.open")
        .with_description("Review items waiting for a person's decision")
        .with_callback(move |observer| observer.observe(open.load(Ordering::Relaxed), &[]))
        .build();
}
