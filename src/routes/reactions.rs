//! Reactions and pins on one message, and a conversation's pins.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::domain::messaging::pins;
use crate::domain::messaging::reactions::{self, Reactions};
use crate::error::{AppError, AppResult, ErrorBody};
use crate::extract::Id;
use crate::startup::AppState;
use crate::wire::views::MessageView;
use crate::wire::{ConversationId, MessageId};

/// # PUT /api/messages/{id}/reactions/{emoji}
/// Adds the caller's reaction; adding it again changes nothing.
#[utoipa::path(
    put,
    path = "/api/messages/{id}/reactions/{emoji}",
    params(
        ("id" = i64, Path, description = "a positive id", minimum = 1),
        // The limit is 32 bytes, which no schema counts: at most 32 characters here.
        ("emoji" = String, Path, description = "1-32 bytes of UTF-8 (URL-encoded), no whitespace or control characters",
            min_length = 1, max_length = 32, pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]+$"),
    ),
    responses(
        (status = 200, body = Reactions),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
        (status = 409, description = "message_deleted", body = ErrorBody),
        (status = 422, description = "a bad emoji, or a 21st different one", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn react(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    path: web::Path<(Id, String)>,
) -> AppResult<HttpResponse> {
    set(&state, &caller, &req, path.into_inner().0, true).await
}

/// # DELETE /api/messages/{id}/reactions/{emoji}
/// Removes the caller's reaction; removing an absent one changes nothing.
#[utoipa::path(
    delete,
    path = "/api/messages/{id}/reactions/{emoji}",
    params(
        ("id" = i64, Path, description = "a positive id", minimum = 1),
        // The limit is 32 bytes, which no schema counts: at most 32 characters here.
        ("emoji" = String, Path, description = "1-32 bytes of UTF-8 (URL-encoded), no whitespace or control characters",
            min_length = 1, max_length = 32, pattern = r"^[^\s\u0000-\u001f\u007f-\u009f]+$"),
    ),
    responses(
        (status = 200, body = Reactions),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
        (status = 409, description = "message_deleted", body = ErrorBody),
        (status = 422, description = "a bad emoji", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn unreact(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    path: web::Path<(Id, String)>,
) -> AppResult<HttpResponse> {
    set(&state, &caller, &req, path.into_inner().0, false).await
}

async fn set(
    state: &AppState,
    caller: &AuthUser,
    req: &HttpRequest,
    Id(message): Id,
    add: bool,
) -> AppResult<HttpResponse> {
    let emoji = emoji_of(req)?;
    let reactions =
        reactions::set(&state.db, &state.writer, caller.user(), MessageId(message), emoji, add).await?;
    Ok(HttpResponse::Ok().json(reactions))
}

/// The emoji as sent: the path's last segment, percent-decoded strictly. The router decodes
/// invalid UTF-8 lossily, which would store U+FFFD for bytes that are no emoji at all.
fn emoji_of(req: &HttpRequest) -> AppResult<String> {
    let raw = req.uri().path().rsplit('/').next().unwrap_or_default();
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|emoji| emoji.into_owned())
        .map_err(|_| AppError::validation("emoji", "emoji must be UTF-8"))
}

/// # PUT /api/messages/{id}/pin
/// In a group by its owner and admins, in a direct conversation by either user.
#[utoipa::path(
    put,
    path = "/api/messages/{id}/pin",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 200, description = "pinned (also when it already was)", body = MessageView),
        (status = 403, description = "not_allowed: a plain member of a group", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
        (status = 409, description = "message_deleted", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn pin(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    let message = pins::pin(&state.db, &state.writer, caller.user(), MessageId(path.into_inner().0)).await?;
    Ok(HttpResponse::Ok().json(message))
}

/// # DELETE /api/messages/{id}/pin
#[utoipa::path(
    delete,
    path = "/api/messages/{id}/pin",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 204, description = "not pinned (also when it was not)"),
        (status = 403, description = "not_allowed: a plain member of a group", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
        (status = 409, description = "message_deleted", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn unpin(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    pins::unpin(&state.db, &state.writer, caller.user(), MessageId(path.into_inner().0)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, ToSchema)]
struct PinList {
    messages: Vec<MessageView>,
}

/// # GET /api/conversations/{id}/pins
/// Most recently pinned first.
#[utoipa::path(
    get,
    path = "/api/conversations/{id}/pins",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 200, body = PinList),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn pins(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    let messages = pins::list(&state.db, caller.user(), ConversationId(path.into_inner().0)).await?;
    Ok(HttpResponse::Ok().json(PinList { messages }))
}
