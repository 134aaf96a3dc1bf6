use actix_web::{HttpRequest, HttpResponse, web};
use actix_web_actors::ws;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{AuthUser, TICKET_TTL_SECONDS, authenticate};
use crate::error::ErrorBody;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::extract::Query;
use crate::realtime::server::OpenSessions;
use crate::realtime::session::WsSession;
use crate::startup::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    token: Option<String>,
    ticket: Option<String>,
    #[param(minimum = 0)]
    since: Option<i64>,
}

/// # GET /ws?token=<jwt>[&since=<event_id>]
/// Authenticates before upgrading, so a bad token gets a plain 401.
#[utoipa::path(
    get,
    path = "/ws",
    params(WsQuery),
    responses(
        (status = 101, description = "WebSocket upgrade; frames as in the contract"),
        (status = 429, description = "rate limited (see Retry-After)", body = ErrorBody),
    )
)]
pub async fn connect(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    query: Query<WsQuery>,
) -> AppResult<HttpResponse> {
    let Query(query) = query;
    let caller = match &query.ticket {
        Some(ticket) => AuthUser { id: state.tickets.redeem(ticket).await? },
        None => authenticate(&req, query.token.as_deref()).await?,
    };
    if query.since.is_some_and(|since| since < 0) {
        return Err(AppError::bad_request(
            ErrorCode::BadQuery,
            "since must be 0 or an event id",
            Some("since"),
        ));
    }
    let open = state.live.chat.send(OpenSessions { user_id: caller.user() }).await.unwrap_or(0);
    state.limits.sockets(open)?;
    crate::metrics::record(|m| m.connections.inc());
    let session = WsSession::new(caller.id, query.since, state.live.clone());
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(state.settings.websocket.max_frame_bytes)
        .start()
        .map_err(|err| {
            AppError::bad_request(
                ErrorCode::NotWebsocket,
                format!("expected a WebSocket upgrade: {err}"),
                None,
            )
        })
}

#[derive(Serialize, ToSchema)]
struct TicketView {
    ticket: String,
    expires_in_seconds: u64,
}

/// # POST /api/ws-ticket
/// A single-use ticket for `/ws?ticket=`, valid 30 s.
#[utoipa::path(
    post,
    path = "/api/ws-ticket",
    responses(
        (status = 200, body = TicketView),
    ),
    security(("bearer" = []))
)]
pub async fn ticket(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    let ticket = state.tickets.issue(caller.id).await?;
    Ok(HttpResponse::Ok().json(TicketView { ticket, expires_in_seconds: TICKET_TTL_SECONDS }))
}
