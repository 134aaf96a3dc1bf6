use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::error::{AppError, AppResult};
use crate::realtime::server::GetStats;
use crate::startup::AppState;

/// # GET /health/live
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "live"}))
}

/// # GET /health/ready
/// 200 while the database answers and the instance is not draining; 503 otherwise.
pub async fn ready(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(AppError::Unavailable {
            message: "draining".into(),
        });
    }
    if let Err(err) = state.db.read.ping().await {
        tracing::warn!(error = %err, "readiness: database did not answer");
        return Err(AppError::Unavailable {
            message: "database unavailable".into(),
        });
    }
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

/// # GET /metrics
/// Prometheus text: the live-side gauges.
pub async fn metrics(state: web::Data<AppState>) -> AppResult<HttpResponse> {
    let stats = state
        .chat
        .send(GetStats)
        .await
        .map_err(AppError::internal)?;
    let mut body = String::new();
    for (name, help, value) in [
        (
            "switchboard_rooms",
            "User rooms (users with at least one socket) on this instance.",
            stats.rooms,
        ),
        (
            "switchboard_sessions",
            "Open WebSocket sessions on this instance.",
            stats.sessions,
        ),
    ] {
        let _ = writeln!(
            body,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body))
}
