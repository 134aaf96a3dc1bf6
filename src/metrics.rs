//! Prometheus metrics, registered once per process and rendered at `/metrics`. Gauges that
//! live in actors (rooms, sessions) or in the relay are added at render time.

use std::sync::LazyLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub messages: IntCounter,
    pub events: IntCounter,
    pub connections: IntCounter,
    pub slow_clients_dropped: IntCounter,
    pub body_timeouts: IntCounter,
    pub refused_connections: IntCounterVec,
    pub write_batch_seconds: Histogram,
    pub write_batch_jobs: Histogram,
    pub publish_seconds: Histogram,
    pub delivery_seconds: Histogram,
    pub checkpoint_seconds: Histogram,
    pub wal_pages: IntGauge,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let latency = vec![0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.125, 0.25, 0.5, 1.0, 2.5];
    let http_requests = IntCounterVec::new(
        Opts::new("switchboard_http_requests_total", "HTTP requests answered, by route and status class."),
        &["route", "status"],
    )?;
    let http_duration = HistogramVec::new(
        HistogramOpts::new("switchboard_http_request_duration_seconds", "Time to answer an HTTP request.")
            .buckets(latency.clone()),
        &["route"],
    )?;
    let messages =
        IntCounter::new("switchboard_messages_total", "Messages stored (rate: messages per second).")?;
    let events =
        IntCounter::new("switchboard_events_total", "Events appended to the log (rate: events per second).")?;
    let connections = IntCounter::new("switchboard_ws_connections_total", "WebSocket connections accepted.")?;
    let slow_clients_dropped = IntCounter::new(
        "switchboard_slow_clients_dropped_total",
        "Sockets closed with 4008 because their outbound queue overflowed.",
    )?;
    let body_timeouts = IntCounter::new(
        "switchboard_request_body_timeouts_total",
        "Requests whose body did not arrive within server.client_body_timeout_seconds (408, closed).",
    )?;
    let refused_connections = IntCounterVec::new(
        Opts::new(
            "switchboard_refused_connections_total",
            "Connections the HTTP layer ended for a client fault: malformed_head (400), oversized_head \
             (431), head_timeout, connection_reset.",
        ),
        &["reason"],
    )?;
    let write_batch_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "switchboard_db_write_batch_seconds",
            "Database time of one group-commit batch, from BEGIN to COMMIT.",
        )
        .buckets(latency.clone()),
    )?;
    let write_batch_jobs = Histogram::with_opts(
        HistogramOpts::new("switchboard_db_write_batch_jobs", "Writes committed together in one batch.")
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
    )?;
    let publish_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "switchboard_delivery_handoff_seconds",
            "From a batch's commit until its frames are handed to the live side (local actors or Redis).",
        )
        .buckets(latency.clone()),
    )?;
    let delivery_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "switchboard_delivery_seconds",
            "From an event's commit until its frame is written to a live socket (through Redis too).",
        )
        .buckets(latency.clone()),
    )?;
    let checkpoint_seconds = Histogram::with_opts(
        HistogramOpts::new(
            "switchboard_sqlite_checkpoint_seconds",
            "SQLite: one background WAL checkpoint, copy back and fsyncs; a slow disk shows here first.",
        )
        .buckets(latency),
    )?;
    let wal_pages = IntGauge::new(
        "switchboard_sqlite_wal_pages",
        "SQLite: pages in the WAL at the last checkpoint; it keeps growing if checkpoints never finish.",
    )?;
    registry.register(Box::new(checkpoint_seconds.clone()))?;
    registry.register(Box::new(wal_pages.clone()))?;
    registry.register(Box::new(delivery_seconds.clone()))?;
    registry.register(Box::new(http_requests.clone()))?;
    registry.register(Box::new(http_duration.clone()))?;
    registry.register(Box::new(messages.clone()))?;
    registry.register(Box::new(events.clone()))?;
    registry.register(Box::new(connections.clone()))?;
    registry.register(Box::new(slow_clients_dropped.clone()))?;
    registry.register(Box::new(body_timeouts.clone()))?;
    registry.register(Box::new(refused_connections.clone()))?;
    registry.register(Box::new(write_batch_seconds.clone()))?;
    registry.register(Box::new(write_batch_jobs.clone()))?;
    registry.register(Box::new(publish_seconds.clone()))?;
    Ok(Metrics {
        registry,
        http_requests,
        http_duration,
        messages,
        events,
        connections,
        slow_clients_dropped,
        body_timeouts,
        refused_connections,
        write_batch_seconds,
        write_batch_jobs,
        publish_seconds,
        delivery_seconds,
        checkpoint_seconds,
        wal_pages,
    })
}

/// The process's metrics; `None` only if registration failed, which is logged once.
pub static METRICS: LazyLock<Option<Metrics>> =
    LazyLock::new(|| build().map_err(|err| tracing::error!(error = %err, "metrics unavailable")).ok());

/// Runs `f` on the metrics, if they exist.
pub fn record(f: impl FnOnce(&Metrics)) {
    if let Some(metrics) = METRICS.as_ref() {
        f(metrics);
    }
}

/// Every registered metric in Prometheus text format.
pub fn render() -> String {
    let Some(metrics) = METRICS.as_ref() else { return String::new() };
    let mut buffer = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&metrics.registry.gather(), &mut buffer) {
        tracing::warn!(error = %err, "could not encode metrics");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Connections refused for client faults so far, all reasons together.
pub fn refused_connections() -> u64 {
    use prometheus::core::Collector;
    METRICS.as_ref().map_or(0, |metrics| {
        let families = metrics.refused_connections.collect();
        let metrics = families.iter().flat_map(|family| family.get_metric());
        metrics.map(|metric| metric.get_counter().get_value() as u64).sum()
    })
}
