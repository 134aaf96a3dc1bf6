//! Logging: `tracing` to stdout, text or JSON by config, filtered by `log.level` or `RUST_LOG`.

use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, filter::FilterExt};

use crate::config::{LogFormat, LogSettings};

pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let output = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_target(true).boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_target(true).boxed(),
    };
    // A second init (tests build several apps in one process) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(output.with_filter(filter.and(ClientFaults))).try_init();
}

/// What actix-http logs at ERROR when a client sends a malformed or oversized request head,
/// stalls before finishing it, or drops its connection: anyone can cause these, so they are
/// counted in `/metrics` (`switchboard_refused_connections_total{reason}`) and summed up at
/// `info` every `SUMMARY_PERIOD` instead (see `summarize_refused_connections`).
struct ClientFaults;

impl<S> Filter<S> for ClientFaults {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR || !meta.target().starts_with("actix_http::h1") {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let Some(reason) = client_fault(&message.0) else { return true };
        crate::metrics::record(|m| m.refused_connections.with_label_values(&[reason]).inc());
        false
    }
}

/// The kind of client fault an actix-http error line reports, if it is one.
fn client_fault(message: &str) -> Option<&'static str> {
    if message.starts_with("MAX_BUFFER_SIZE") {
        return Some("oversized_head");
    }
    let cause = message.strip_prefix("stream error: ")?;
    Some(if cause.starts_with("request parse error") {
        "malformed_head"
    } else if cause.starts_with("request did not complete") {
        "head_timeout"
    } else if cause.starts_with("I/O error") {
        "connection_reset"
    } else {
        return None;
    })
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

const SUMMARY_PERIOD: Duration = Duration::from_secs(10);

/// One `info` line per `SUMMARY_PERIOD` in which connections were refused for client faults,
/// however many there were.
pub fn summarize_refused_connections() {
    actix::spawn(async {
        let mut tick = tokio::time::interval(SUMMARY_PERIOD);
        let mut seen = 0;
        loop {
            tick.tick().await;
            let total = crate::metrics::refused_connections();
            if total > seen {
                tracing::info!(
                    refused = total - seen,
                    seconds = SUMMARY_PERIOD.as_secs(),
                    "connections refused for malformed, oversized or stalled request heads (see /metrics)"
                );
                seen = total;
            }
        }
    });
}

/// Per-request tracing and metrics: a span with a request id (the client's `X-Request-Id`
/// when it is short and plain, else a new one), the method and the path, never the query
/// string, where tokens and tickets travel. The id is echoed in the response. Errors are
/// logged at `info` (4xx) or `error` (5xx); successes at `debug`, to keep hot paths quiet.
pub mod requests {
    use std::time::Instant;

    use actix_web::body::MessageBody;
    use actix_web::dev::{ServiceRequest, ServiceResponse};
    use actix_web::http::header::{HeaderName, HeaderValue};
    use actix_web::middleware::Next;
    use tracing::Instrument;

    const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

    fn request_id(req: &ServiceRequest) -> String {
        req.headers()
            .get(&REQUEST_ID)
            .and_then(|value| value.to_str().ok())
            .filter(|id| (1..=64).contains(&id.len()))
            .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .map_or_else(|| format!("{:016x}", rand::random::<u64>()), str::to_owned)
    }

    pub async fn trace(
        req: ServiceRequest,
        next: Next<impl MessageBody>,
    ) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
        let id = request_id(&req);
        let span =
            tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
        let started = Instant::now();
        let mut response = next.call(req).instrument(span.clone()).await?;
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
        crate::metrics::record(|m| {
            let class = format!("{}xx", status / 100);
            m.http_requests.with_label_values(&[route.as_str(), class.as_str()]).inc();
            m.http_duration.with_label_values(&[route.as_str()]).observe(elapsed.as_secs_f64());
        });
        let ms = elapsed.as_secs_f64() * 1000.0;
        span.in_scope(|| match status {
            500.. => tracing::error!(status, ms, "request failed"),
            400.. => tracing::info!(status, ms, "request refused"),
            _ => tracing::debug!(status, ms, "request"),
        });
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        Ok(response)
    }
}
