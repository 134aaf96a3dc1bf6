//! Bots: created, listed, changed, re-keyed and deleted by their owner (404 for anyone else).

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::domain::bots::{self, BotView, Change, Created, Kind, NewBot, Secrets};
use crate::error::{AppResult, ErrorBody};
use crate::extract::{Id, JsonBody};
use crate::startup::AppState;

#[derive(Deserialize, ToSchema)]
pub struct CreateBody {
    /// 3–32 of `a-z 0-9 _ . -`, unique among users and bots.
    #[schema(min_length = 3, max_length = 32, pattern = r"^[A-Za-z0-9_.-]{3,32}$")]
    username: String,
    #[schema(max_length = 64)]
    display_name: Option<String>,
    /// `http(s)://`, not on a loopback, private or link-local address (unless
    /// `bots.allow_private_urls`).
    #[schema(max_length = 2048, pattern = r"^https?://")]
    webhook_url: Option<String>,
    /// `assistant` needs `assistant.base_url`.
    #[serde(default)]
    kind: Kind,
}

/// # POST /api/bots
/// A bot owned by the caller; its token and webhook secret are shown here and at rotation only.
#[utoipa::path(
    post,
    path = "/api/bots",
    request_body = CreateBody,
    responses(
        (status = 201, body = Created),
        (status = 409, description = "username taken", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<CreateBody>,
) -> AppResult<HttpResponse> {
    let JsonBody(CreateBody { username, display_name, webhook_url, kind }) = body;
    let input = NewBot { username, display_name, webhook_url, kind };
    let created = bots::create(&state.db, &state.settings, caller.id, input).await?;
    Ok(HttpResponse::Created().json(created))
}

#[derive(Serialize, ToSchema)]
struct BotList {
    bots: Vec<BotView>,
}

/// # GET /api/bots
/// The caller's bots, oldest first.
#[utoipa::path(get, path = "/api/bots", responses((status = 200, body = BotList)), security(("bearer" = [])))]
pub async fn list(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(BotList { bots: bots::list(&state.db, caller.id).await? }))
}

#[derive(Deserialize, ToSchema)]
pub struct ChangeBody {
    #[schema(max_length = 64)]
    display_name: Option<String>,
    /// A new URL also turns a disabled hook back on; `null` removes the hook.
    #[serde(default, deserialize_with = "crate::extract::present")]
    #[schema(value_type = Option<String>, max_length = 2048, pattern = r"^https?://")]
    webhook_url: Option<Option<String>>,
}

/// # PATCH /api/bots/{id}
#[utoipa::path(
    patch,
    path = "/api/bots/{id}",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    request_body = ChangeBody,
    responses((status = 200, body = BotView), (status = 404, description = "not the caller's bot", body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
    body: JsonBody<ChangeBody>,
) -> AppResult<HttpResponse> {
    let JsonBody(ChangeBody { display_name, webhook_url }) = body;
    let change = Change { display_name, webhook_url };
    let bot = bots::update(&state.db, &state.settings, caller.id, path.into_inner().0, change).await?;
    Ok(HttpResponse::Ok().json(bot))
}

/// # POST /api/bots/{id}/token
/// A new token and webhook secret; the old ones stop working at once.
#[utoipa::path(
    post,
    path = "/api/bots/{id}/token",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses((status = 200, body = Secrets), (status = 404, description = "not the caller's bot", body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn rotate(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(bots::rotate(&state.db, caller.id, path.into_inner().0).await?))
}

/// # DELETE /api/bots/{id}
/// Its token, hook and queued deliveries go; its messages stay.
#[utoipa::path(
    delete,
    path = "/api/bots/{id}",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses((status = 204, description = "deleted"), (status = 404, description = "not the caller's bot", body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn delete(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    bots::delete(&state.db, caller.id, path.into_inner().0).await?;
    Ok(HttpResponse::NoContent().finish())
}
