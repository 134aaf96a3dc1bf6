use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::error::{AppError, AppResult};
use crate::realtime::server::GetStats;
use crate::startup::AppState;

/// # GET /health/live
#[utoipa::path(
    get,
    path = "/health/live",
    responses((status = 200, description = "the process runs"))
)]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "live"}))
}

/// # GET /health/ready
/// 200 while the database answers and the instance is not draining; 503 otherwise.
#[utoipa::path(
    get,
    path = "/health/ready",
    responses((status = 200, description = "database (and Redis) answer"))
)]
pub async fn ready(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(AppError::Unavailable { message: "draining".into() });
    }
    if let Err(err) = state.db.read.ping().await {
        tracing::warn!(error = %err, "readiness: database did not answer");
        return Err(AppError::Unavailable { message: "database unavailable".into() });
    }
    if let Some(redis) = state.live.relay.redis()
        && !redis.store().ping().await
    {
        return Err(AppError::Unavailable { message: "redis unavailable".into() });
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

/// # GET /metrics
/// Prometheus text: the live-side gauges. With `server.metrics_token` set, only for
/// `Authorization: Bearer <that token>`.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus text"), (status = 401, description = "server.metrics_token is set and the request does not carry it", body = crate::error::ErrorBody))
)]
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let required = state.settings.server.metrics_token.expose_secret();
    if !required.is_empty() {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
        let token = given.and_then(crate::auth::bearer).unwrap_or_default();
        // Compared in constant time, so response timing does not reveal the token.
        if !bool::from(token.as_bytes().ct_eq(required.as_bytes())) {
            return Err(AppError::unauthorized("invalid_token", "/metrics needs the metrics token"));
        }
    }
    let stats = state.live.chat.send(GetStats).await.map_err(AppError::internal)?;
    let mut body = crate::metrics::render();
    let mut gauge = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(body, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    gauge(
        "switchboard_rooms",
        "gauge",
        "User rooms (users with at least one socket) on this instance.",
        stats.rooms as u64,
    );
    gauge(
        "switchboard_sessions",
        "gauge",
        "Open WebSocket sessions on this instance.",
        stats.sessions as u64,
    );
    if let Some(redis) = state.live.relay.redis() {
        let counters = &redis.counters;
        let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        gauge(
            "switchboard_relay_published_total",
            "counter",
            "Frames published to Redis.",
            read(&counters.published),
        );
        gauge(
            "switchboard_relay_publish_errors_total",
            "counter",
            "Redis publishes that failed or timed out.",
            read(&counters.publish_errors),
        );
        gauge(
            "switchboard_relay_received_total",
            "counter",
            "Messages received from Redis.",
            read(&counters.received),
        );
        gauge(
            "switchboard_relay_subscriptions_total",
            "counter",
            "Times the Redis subscriber (re)connected.",
            read(&counters.reconnects),
        );
        gauge(
            "switchboard_relay_up",
            "gauge",
            "1 while live relay through Redis works.",
            u64::from(redis.is_healthy()),
        );
    }
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body))
}
