use std::sync::atomic::Ordering;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::error::{AppError, AppResult, ErrorCode};
use crate::realtime::server::GetStats;
use crate::startup::AppState;

/// # GET /health/live
#[utoipa::path(
    get,
    path = "/health/live",
    responses(
        (status = 200, description = "the process runs"),
    )
)]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "live"}))
}

/// # GET /health/ready
/// 200 while the database answers and the instance is not draining; 503 otherwise.
#[utoipa::path(
    get,
    path = "/health/ready",
    responses(
        (status = 200, description = "database (and Redis) answer"),
    )
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
    responses(
        (status = 200, description = "Prometheus text"),
        (status = 401, description = "server.metrics_token is set and the request does not carry it", body = crate::error::ErrorBody),
    )
)]
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let required = state.settings.server.metrics_token.expose_secret();
    if !required.is_empty() {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
        let token = given.and_then(crate::auth::bearer).unwrap_or_default();
        // Compared in constant time, so response timing does not reveal the token.
        if !bool::from(token.as_bytes().ct_eq(required.as_bytes())) {
            return Err(AppError::unauthorized(ErrorCode::InvalidToken, "/metrics needs the metrics token"));
        }
    }
    let stats = state.live.chat.send(GetStats).await.map_err(AppError::internal)?;
    let instance = &state.metrics;
    instance.rooms.set(i64::try_from(stats.rooms).unwrap_or(i64::MAX));
    instance.sessions.set(i64::try_from(stats.sessions).unwrap_or(i64::MAX));
    if let Some(redis) = state.live.relay.redis() {
        redis.counters.up.set(i64::from(redis.is_healthy()));
    }
    let body = instance.render();
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body))
}
