//! Logging: `tracing` to stdout, text or JSON by config, filtered by `log.level` or `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    // A second init (tests build several apps in one process) keeps the first subscriber.
    let _ = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
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
