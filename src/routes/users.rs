use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthUser;
use crate::domain::bots::away::AwayView;
use crate::domain::{bots, conversations, users};
use crate::error::ErrorBody;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::extract::{Id, JsonBody, Query};
use crate::realtime::UserId;
use crate::startup::AppState;
use crate::wire::views::UserView;

/// # GET /api/users/me
#[utoipa::path(
    get,
    path = "/api/users/me",
    responses(
        (status = 200, body = UserView),
    ),
    security(("bearer" = []))
)]
pub async fn me(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    // A valid token for a user that no longer exists is a bad credential, not a missing page.
    let user = users::get(&state.db, caller.id)
        .await
        .map_err(|_| AppError::unauthorized(ErrorCode::InvalidToken, "the token's user does not exist"))?;
    Ok(HttpResponse::Ok().json(user))
}

/// # GET /api/users/{id}
#[utoipa::path(
    get,
    path = "/api/users/{id}",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 200, body = UserView),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    _caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(users::get(&state.db, path.into_inner().0).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Its pattern is set by `openapi::QueryText`.
    #[param(required = true)]
    q: Option<String>,
    #[param(minimum = 1, maximum = 50)]
    limit: Option<u64>,
}

#[derive(Serialize, ToSchema)]
struct UserList {
    users: Vec<UserView>,
}

/// # GET /api/users/search?q=&limit=
#[utoipa::path(
    get,
    path = "/api/users/search",
    params(SearchQuery),
    responses(
        (status = 200, body = UserList),
    ),
    security(("bearer" = []))
)]
pub async fn search(
    state: web::Data<AppState>,
    _caller: AuthUser,
    query: Query<SearchQuery>,
) -> AppResult<HttpResponse> {
    let Query(query) = query;
    let Ok(q) = users::QUERY.check(query.q.as_deref().unwrap_or_default()) else {
        return Err(AppError::bad_request(
            ErrorCode::BadQuery,
            "q must be at least 2 characters after trimming",
            Some("q"),
        ));
    };
    let limit = query.limit.unwrap_or(20);
    if !(1..=50).contains(&limit) {
        return Err(AppError::bad_request(ErrorCode::BadQuery, "limit must be 1-50", Some("limit")));
    }
    Ok(HttpResponse::Ok().json(UserList { users: users::search(&state.db, q, limit).await? }))
}

/// # GET /api/users/{id}/presence
#[utoipa::path(
    get,
    path = "/api/users/{id}/presence",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 200, body = crate::realtime::presence::PresenceView),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn presence(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    let user_id = path.into_inner().0;
    // Presence is for people one talks with, as the socket's presence frames are; ids are
    // sequential, so answering anyone would let anyone watch everyone.
    if user_id != caller.id && !conversations::share_a_conversation(&state.db, caller.id, user_id).await? {
        return Err(AppError::not_found("user not found"));
    }
    let user = users::get(&state.db, user_id).await?;
    Ok(HttpResponse::Ok().json(state.presence.view(UserId(user.id)).await))
}

#[derive(Deserialize, ToSchema)]
pub struct AwayBody {
    enabled: bool,
    /// One of the caller's bots: it writes the replies.
    assistant_bot_id: Option<i64>,
    /// The fixed reply (1–2000 characters), used without a bot or when the bot fails.
    #[schema(min_length = 1, max_length = 2000)]
    message: Option<String>,
}

/// # GET /api/users/me/away
/// The caller's away replies; off when never set.
#[utoipa::path(get, path = "/api/users/me/away", responses((status = 200, body = AwayView)), security(("bearer" = [])))]
pub async fn away(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(bots::away::get(&state.db, caller.id).await?))
}

/// # PUT /api/users/me/away
/// Replaces the caller's away replies: while on and the caller has no live socket, a direct
/// message still unread after `away.delay_seconds` gets one reply per sender and away period.
#[utoipa::path(
    put,
    path = "/api/users/me/away",
    request_body = AwayBody,
    responses((status = 200, body = AwayView)),
    security(("bearer" = []))
)]
pub async fn set_away(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<AwayBody>,
) -> AppResult<HttpResponse> {
    let JsonBody(AwayBody { enabled, assistant_bot_id, message }) = body;
    let setting = AwayView { enabled, assistant_bot_id, message };
    Ok(HttpResponse::Ok().json(bots::away::put(&state.db, caller.id, setting).await?))
}
