use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::domain::safety::{self, BlockView, RequestView};
use crate::error::AppResult;
use crate::error::ErrorBody;
use crate::extract::{Id, JsonBody};
use crate::startup::AppState;
use crate::wire::views::UserView;

#[derive(Deserialize, ToSchema)]
pub struct UserBody {
    user_id: Id,
}

/// # POST /api/blocks
/// 201 when the block is new, 200 when it already stood.
#[utoipa::path(
    post,
    path = "/api/blocks",
    request_body = UserBody,
    responses(
        (status = 201, body = BlockView),
        (status = 200, description = "already blocked", body = BlockView),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn block(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<UserBody>,
) -> AppResult<HttpResponse> {
    let (block, created) = safety::block(&state.db, caller.id, body.0.user_id.0).await?;
    Ok(if created { HttpResponse::Created().json(block) } else { HttpResponse::Ok().json(block) })
}

/// # DELETE /api/blocks/{user_id}
/// 204, also when there was no block.
#[utoipa::path(
    delete,
    path = "/api/blocks/{user_id}",
    params(("user_id" = i64, Path, description = "the blocked user", minimum = 1)),
    responses(
        (status = 204, description = "not blocked (any more)"),
    ),
    security(("bearer" = []))
)]
pub async fn unblock(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    safety::unblock(&state.db, caller.id, path.into_inner().0).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, ToSchema)]
struct BlockList {
    blocks: Vec<BlockView>,
}

/// # GET /api/blocks
#[utoipa::path(
    get,
    path = "/api/blocks",
    responses(
        (status = 200, body = BlockList),
    ),
    security(("bearer" = []))
)]
pub async fn blocks(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(BlockList { blocks: safety::blocks(&state.db, caller.id).await? }))
}

/// # POST /api/contacts/requests
/// 201 when made; 200 with the existing request when one already links the two users
/// (asking someone who asked you accepts their request).
#[utoipa::path(
    post,
    path = "/api/contacts/requests",
    request_body = UserBody,
    responses(
        (status = 201, body = RequestView),
        (status = 200, description = "an existing request (accepted when the other user had asked)", body = RequestView),
        (status = 403, description = "blocked", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn request(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<UserBody>,
) -> AppResult<HttpResponse> {
    let (request, created) = safety::request_contact(&state.db, caller.id, body.0.user_id.0).await?;
    Ok(if created { HttpResponse::Created().json(request) } else { HttpResponse::Ok().json(request) })
}

/// # POST /api/contacts/requests/{id}/accept
#[utoipa::path(
    post,
    path = "/api/contacts/requests/{id}/accept",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 200, body = RequestView),
        (status = 403, description = "known but not allowed", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn accept(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(safety::accept(&state.db, caller.user(), path.into_inner().0).await?))
}

#[derive(Serialize, ToSchema)]
struct ContactList {
    contacts: Vec<UserView>,
}

/// # GET /api/contacts
#[utoipa::path(
    get,
    path = "/api/contacts",
    responses(
        (status = 200, body = ContactList),
    ),
    security(("bearer" = []))
)]
pub async fn contacts(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(ContactList { contacts: safety::contacts(&state.db, caller.id).await? }))
}

#[derive(Serialize, ToSchema)]
struct RequestLists {
    incoming: Vec<RequestView>,
    outgoing: Vec<RequestView>,
}

/// # GET /api/contacts/requests
#[utoipa::path(
    get,
    path = "/api/contacts/requests",
    responses(
        (status = 200, body = RequestLists),
    ),
    security(("bearer" = []))
)]
pub async fn requests(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    let (incoming, outgoing) = safety::requests(&state.db, caller.id).await?;
    Ok(HttpResponse::Ok().json(RequestLists { incoming, outgoing }))
}
