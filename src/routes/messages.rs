use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::limit_in;
use crate::auth::AuthUser;
use crate::domain::messaging::messages::{self, NewMessage, ReadState, Sent, Target};
use crate::domain::messaging::search;
use crate::error::ErrorBody;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::extract::{Id, JsonBody, Query};
use crate::startup::AppState;
use crate::wire::MessageId;
use crate::wire::views::MessageView;

#[derive(Deserialize, ToSchema)]
pub struct SendBody {
    recipient_id: Option<Id>,
    conversation_id: Option<Id>,
    #[schema(schema_with = super::openapi::message_text)]
    message: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    client_id: Option<String>,
    /// A message of the same conversation to quote.
    reply_to_id: Option<Id>,
}

/// # POST /api/messages
/// 201 with the new message; 200 with the original when `client_id` was already used.
#[utoipa::path(
    post,
    path = "/api/messages",
    request_body = SendBody,
    responses(
        (status = 201, description = "stored and delivered", body = MessageView),
        (status = 200, description = "this client_id was already used: the original message", body = MessageView),
        (status = 403, description = "known but not allowed", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
        (status = 429, description = "rate limited (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn send(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    body: JsonBody<SendBody>,
) -> AppResult<HttpResponse> {
    state.limits.send(&req, caller.id)?;
    let JsonBody(body) = body;
    let target = Target::either(body.recipient_id.map(|Id(id)| id), body.conversation_id.map(|Id(id)| id))?;
    let input = NewMessage::new(target, &body.message, body.client_id, None)?
        .replying_to(body.reply_to_id.map(|Id(id)| id));
    sent(messages::send(&state.writer, caller.id, input).await?)
}

/// 201 for a new message, 200 for the one a repeated `client_id` already stored.
pub fn sent(sent: Sent) -> AppResult<HttpResponse> {
    Ok(match sent {
        Sent::Created(message) => HttpResponse::Created().json(message),
        Sent::Existing(message) => HttpResponse::Ok().json(message),
    })
}

#[derive(Deserialize, ToSchema)]
pub struct GroupSendBody {
    #[schema(schema_with = super::openapi::message_text)]
    message: String,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    client_id: Option<String>,
    /// A message of the same conversation to quote.
    reply_to_id: Option<Id>,
}

/// # POST /api/groups/{id}/messages
#[utoipa::path(
    post,
    path = "/api/groups/{id}/messages",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    request_body = GroupSendBody,
    responses(
        (status = 201, body = MessageView),
        (status = 200, description = "client_id already used", body = MessageView),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
        (status = 429, description = "rate limited (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn send_to_group(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    path: web::Path<Id>,
    body: JsonBody<GroupSendBody>,
) -> AppResult<HttpResponse> {
    state.limits.send(&req, caller.id)?;
    let JsonBody(body) = body;
    let target = Target::Group(path.into_inner().0);
    let input = NewMessage::new(target, &body.message, body.client_id, None)?
        .replying_to(body.reply_to_id.map(|Id(id)| id));
    sent(messages::send(&state.writer, caller.id, input).await?)
}

#[derive(Deserialize, ToSchema)]
pub struct EditBody {
    #[schema(schema_with = super::openapi::message_text)]
    message: String,
}

/// # PATCH /api/messages/{id}
#[utoipa::path(
    patch,
    path = "/api/messages/{id}",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    request_body = EditBody,
    responses(
        (status = 200, body = MessageView),
        (status = 403, description = "not_owner or edit_window_passed", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
        (status = 409, description = "message_deleted", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn edit(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
    body: JsonBody<EditBody>,
) -> AppResult<HttpResponse> {
    let text = messages::validate_body(&body.0.message)?;
    let rules = &state.settings.messaging;
    let message =
        messages::edit(&state.db, &state.writer, rules, caller.user(), MessageId(path.into_inner().0), text)
            .await?;
    Ok(HttpResponse::Ok().json(message))
}

/// # DELETE /api/messages/{id}
#[utoipa::path(
    delete,
    path = "/api/messages/{id}",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 204, description = "deleted (soft)"),
        (status = 403, description = "not_owner", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    messages::delete(&state.db, &state.writer, caller.user(), MessageId(path.into_inner().0)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Its pattern is set by `openapi::QueryText`.
    #[param(required = true)]
    q: Option<String>,
    conversation_id: Option<Id>,
    #[param(minimum = 1, maximum = 10000)]
    page: Option<u64>,
    #[param(minimum = 1, maximum = 100)]
    page_size: Option<u64>,
}

#[derive(Serialize, ToSchema)]
struct SearchPage {
    messages: Vec<MessageView>,
    total: i64,
    page: u64,
    page_size: u64,
}

/// # GET /api/messages/search?q=&conversation_id=&page=&page_size=
#[utoipa::path(
    get,
    path = "/api/messages/search",
    params(SearchQuery),
    responses(
        (status = 200, body = SearchPage),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn search(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: Query<SearchQuery>,
) -> AppResult<HttpResponse> {
    let Query(query) = query;
    let Ok(q) = search::QUERY.check(query.q.as_deref().unwrap_or_default()) else {
        return Err(AppError::bad_request(
            ErrorCode::BadQuery,
            "q must be 2-200 characters after trimming",
            Some("q"),
        ));
    };
    let page = query.page.unwrap_or(1);
    if !(1..=10_000).contains(&page) {
        return Err(AppError::bad_request(ErrorCode::BadQuery, "page must be 1-10000", Some("page")));
    }
    let page_size = limit_in(query.page_size, 20, 100, "page_size")?;
    let conversation_id = query.conversation_id.map(|Id(id)| id);
    let hits = search::messages(&state.db, caller.id, q, conversation_id, page, page_size).await?;
    Ok(HttpResponse::Ok().json(SearchPage { messages: hits.messages, total: hits.total, page, page_size }))
}

/// # PATCH /api/messages/{id}/read
#[utoipa::path(
    patch,
    path = "/api/messages/{id}/read",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 200, body = ReadState),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn read_up_to(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    let read =
        messages::mark_read_up_to(&state.db, &state.writer, caller.user(), MessageId(path.into_inner().0))
            .await?;
    Ok(HttpResponse::Ok().json(read))
}
