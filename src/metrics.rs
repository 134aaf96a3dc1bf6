//! Prometheus metrics, rendered at `/metrics` from registries only: one per process for what
//! every part records, and one per running instance (`Instance`) for the live side's gauges
//! and the relay's counters, so tests that run several instances in one process read each
//! its own.

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
    pub push_sent: IntCounter,
    pub push_failed: IntCounter,
    pub push_removed: IntCounter,
}

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let latency = vec![0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.125, 0.25, 0.5, 1.0, 2.5];
    let counter = |name: &str, help: &str| register(&registry, IntCounter::new(name, help)?);
    let histogram = |name: &str, help: &str, buckets: &[f64]| {
        register(&registry, Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?)
    };
    Ok(Metrics {
        http_requests: register(&registry, http_requests()?)?,
        http_duration: register(&registry, http_duration(&latency)?)?,
        messages: counter("switchboard_messages_total", "Messages stored (rate: messages per second).")?,
        events: counter("switchboard_events_total", "Events appended to the log (rate: events per second).")?,
        connections: counter("switchboard_ws_connections_total", "WebSocket connections accepted.")?,
        slow_clients_dropped: counter(
            "switchboard_slow_clients_dropped_total",
            "Sockets closed with 4008 because their outbound queue overflowed.",
        )?,
        body_timeouts: counter(
            "switchboard_request_body_timeouts_total",
            "Requests whose body did not arrive within server.client_body_timeout_seconds (408, closed).",
        )?,
        refused_connections: register(&registry, refused_connections_counter()?)?,
        write_batch_seconds: histogram(
            "switchboard_db_write_batch_seconds",
            "Database time of one group-commit batch, from BEGIN to COMMIT.",
            &latency,
        )?,
        write_batch_jobs: histogram(
            "switchboard_db_write_batch_jobs",
            "Writes committed together in one batch.",
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
        )?,
        publish_seconds: histogram(
            "switchboard_delivery_handoff_seconds",
            "From a batch's commit until its frames are handed to the live side (local actors or Redis).",
            &latency,
        )?,
        delivery_seconds: histogram(
            "switchboard_delivery_seconds",
            "From an event's commit until its frame is written to a live socket (through Redis too).",
            &latency,
        )?,
        checkpoint_seconds: histogram(
            "switchboard_sqlite_checkpoint_seconds",
            "SQLite: one background WAL checkpoint, copy back and fsyncs; a slow disk shows here first.",
            &latency,
        )?,
        wal_pages: register(
            &registry,
            IntGauge::new(
                "switchboard_sqlite_wal_pages",
                "SQLite: pages in the WAL at the last checkpoint; it keeps growing if checkpoints never finish.",
            )?,
        )?,
        push_sent: counter("switchboard_push_sent_total", "Web Push messages a push service accepted.")?,
        push_failed: counter(
            "switchboard_push_failed_total",
            "Web Push messages given up: refused (413, other 4xx) or still failing after every retry.",
        )?,
        push_removed: counter(
            "switchboard_push_subscriptions_removed_total",
            "Push subscriptions deleted because their push service answered 404 or 410.",
        )?,
        registry,
    })
}

fn http_requests() -> Result<IntCounterVec, prometheus::Error> {
    let opts =
        Opts::new("switchboard_http_requests_total", "HTTP requests answered, by route and status class.");
    IntCounterVec::new(opts, &["route", "status"])
}

fn http_duration(latency: &[f64]) -> Result<HistogramVec, prometheus::Error> {
    let opts =
        HistogramOpts::new("switchboard_http_request_duration_seconds", "Time to answer an HTTP request.");
    HistogramVec::new(opts.buckets(latency.to_vec()), &["route"])
}

fn refused_connections_counter() -> Result<IntCounterVec, prometheus::Error> {
    let opts = Opts::new(
        "switchboard_refused_connections_total",
        "Connections the HTTP layer ended for a client fault: malformed_head (400), oversized_head (431), \
         head_timeout, connection_reset.",
    );
    IntCounterVec::new(opts, &["reason"])
}

fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> Result<M, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
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

/// What one running instance reports of its own.
pub struct Instance {
    registry: Registry,
    pub rooms: IntGauge,
    pub sessions: IntGauge,
}

impl Instance {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let rooms = IntGauge::new(
            "switchboard_rooms",
            "User rooms (users with at least one socket) on this instance.",
        )?;
        let sessions = IntGauge::new("switchboard_sessions", "Open WebSocket sessions on this instance.")?;
        registry.register(Box::new(rooms.clone()))?;
        registry.register(Box::new(sessions.clone()))?;
        Ok(Self { registry, rooms, sessions })
    }

    pub fn register(&self, metric: Box<dyn prometheus::core::Collector>) -> Result<(), prometheus::Error> {
        self.registry.register(metric)
    }

    /// The process's metrics and this instance's, in Prometheus text format.
    pub fn render(&self) -> String {
        let mut families = METRICS.as_ref().map(|metrics| metrics.registry.gather()).unwrap_or_default();
        families.extend(self.registry.gather());
        let mut buffer = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&families, &mut buffer) {
            tracing::warn!(error = %err, "could not encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
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
