use actix_web::{HttpResponse, web};
use chrono::SubsecRound;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::limit_in;
use crate::auth::AuthUser;
use crate::domain::conversations::settings::{self, Settings};
use crate::domain::conversations::{self, Window};
use crate::domain::messaging::messages::ReadState;
use crate::domain::{events, messaging::messages};
use crate::error::ErrorBody;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::extract::{Id, JsonBody, OptionalJsonBody, Query};
use crate::startup::AppState;
use crate::wire::views::{ConversationView, MessageView, Notify};
use crate::wire::{ConversationId, UserId};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
struct ConversationList {
    conversations: Vec<ConversationView>,
}

/// # GET /api/conversations?limit=
#[utoipa::path(
    get,
    path = "/api/conversations",
    params(ListQuery),
    responses(
        (status = 200, body = ConversationList),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let limit = limit_in(query.0.limit, 100, 200, "limit")?;
    let conversations = conversations::list(&state.db, caller.id, limit).await?;
    Ok(HttpResponse::Ok().json(ConversationList { conversations }))
}

/// # GET /api/conversations/{id}
#[utoipa::path(
    get,
    path = "/api/conversations/{id}",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 200, body = ConversationView),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(conversations::get(&state.db, caller.user(), ConversationId(path.into_inner().0)).await?))
}

/// # GET /api/conversations/direct/{other_user_id}
#[utoipa::path(
    get,
    path = "/api/conversations/direct/{other_user_id}",
    params(("other_user_id" = i64, Path, description = "the other user", minimum = 1)),
    responses(
        (status = 200, body = ConversationView),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn direct(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok()
        .json(conversations::get_direct(&state.db, caller.user(), UserId(path.into_inner().0)).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The newest page older than this message (with `after_id`: the oldest page between).
    before_id: Option<Id>,
    /// The oldest page newer than this message.
    after_id: Option<Id>,
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
struct HistoryPage {
    messages: Vec<MessageView>,
    has_more: bool,
}

/// # GET /api/conversations/{id}/messages?before_id=&after_id=&limit=
#[utoipa::path(
    get,
    path = "/api/conversations/{id}/messages",
    params(("id" = i64, Path, description = "a positive id", minimum = 1), HistoryQuery),
    responses(
        (status = 200, body = HistoryPage),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn history(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
    query: Query<HistoryQuery>,
) -> AppResult<HttpResponse> {
    let Query(query) = query;
    let limit = limit_in(query.limit, 50, 100, "limit")?;
    let window = match (query.before_id, query.after_id) {
        (None, None) => Window::Latest,
        (Some(Id(before)), None) => Window::Before(before),
        (None, Some(Id(after))) => Window::After(after),
        (Some(Id(before)), Some(Id(after))) => Window::Between(after, before),
    };
    let (messages, has_more) =
        conversations::history(&state.db, caller.user(), ConversationId(path.into_inner().0), window, limit)
            .await?;
    Ok(HttpResponse::Ok().json(HistoryPage { messages, has_more }))
}

#[derive(Deserialize, ToSchema)]
pub struct ReadBody {
    message_id: Option<Id>,
}

/// # POST /api/conversations/{id}/read
/// The body is optional; without `message_id` the conversation is read up to its latest message.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/read",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    request_body = Option<ReadBody>,
    responses(
        (status = 200, body = ReadState),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn read(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
    body: OptionalJsonBody<ReadBody>,
) -> AppResult<HttpResponse> {
    let message_id = body.0.and_then(|body| body.message_id).map(|Id(id)| id);
    let read = messages::mark_read(
        &state.db,
        &state.writer,
        caller.user(),
        ConversationId(path.into_inner().0),
        message_id,
    )
    .await?;
    Ok(HttpResponse::Ok().json(read))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    #[param(minimum = 0)]
    since: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
struct SyncPage {
    #[schema(value_type = Vec<Object>)]
    events: Vec<Box<RawValue>>,
    last_event_id: i64,
    has_more: bool,
}

/// # GET /api/sync?since=&limit=
/// The caller's events after `since`, each in exactly its WebSocket frame's shape.
#[utoipa::path(
    get,
    path = "/api/sync",
    params(SyncQuery),
    responses(
        (status = 200, description = "events in exactly their WebSocket frames' shapes", body = SyncPage),
    ),
    security(("bearer" = []))
)]
pub async fn sync(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: Query<SyncQuery>,
) -> AppResult<HttpResponse> {
    let Query(query) = query;
    let since = query.since.unwrap_or(0);
    if since < 0 {
        return Err(AppError::bad_request(
            ErrorCode::BadQuery,
            "since must be 0 or an event id",
            Some("since"),
        ));
    }
    let limit = limit_in(query.limit, 100, 1000, "limit")?;
    let page = events::frames_for_user(&state.db, caller.id, since, None, limit).await?;
    let events = page
        .frames
        .into_iter()
        .map(|frame| RawValue::from_string(frame.text.to_string()).map_err(AppError::internal))
        .collect::<AppResult<Vec<_>>>()?;
    Ok(HttpResponse::Ok().json(SyncPage {
        events,
        last_event_id: page.last_event_id,
        has_more: page.has_more,
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct SettingsBody {
    notify: Option<Notify>,
    /// RFC 3339; `null` unmutes, leaving it out keeps the current value.
    #[serde(default, deserialize_with = "crate::extract::present")]
    // The pattern is the shape of an RFC 3339 time (the format alone lets tools send any
    // string); the calendar (month 13) is the server's to check.
    #[schema(value_type = Option<String>, format = DateTime, pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:?[0-9]{2})$")]
    muted_until: Option<Option<chrono::DateTime<chrono::Utc>>>,
}

/// # PUT /api/conversations/{id}/settings
/// The caller's notification settings; they govern push notifications only.
#[utoipa::path(
    put,
    path = "/api/conversations/{id}/settings",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    request_body = SettingsBody,
    responses(
        (status = 200, body = Settings),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn settings(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
    body: JsonBody<SettingsBody>,
) -> AppResult<HttpResponse> {
    let JsonBody(body) = body;
    // Stored as served: to the millisecond.
    let muted_until = body.muted_until.map(|at| at.map(|at| at.trunc_subsecs(3)));
    let change = settings::Change { notify: body.notify, muted_until };
    let settings =
        settings::change(&state.writer, caller.user(), ConversationId(path.into_inner().0), change).await?;
    Ok(HttpResponse::Ok().json(settings))
}
