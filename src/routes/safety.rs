use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::auth::AuthUser;
use crate::domain::safety::{self, BlockView, RequestView};
use crate::domain::views::UserView;
use crate::error::AppResult;
use crate::extract::{Id, JsonBody};
use crate::startup::AppState;

#[derive(Deserialize)]
pub struct UserBody {
    user_id: Id,
}

/// # POST /api/blocks
/// 201 when the block is new, 200 when it already stood.
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
pub async fn unblock(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    safety::unblock(&state.db, caller.id, path.into_inner().0).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize)]
struct BlockList {
    blocks: Vec<BlockView>,
}

/// # GET /api/blocks
pub async fn blocks(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(BlockList { blocks: safety::blocks(&state.db, caller.id).await? }))
}

/// # POST /api/contacts/requests
/// 201 when made; 200 with the existing request when one already links the two users
/// (asking someone who asked you accepts their request).
pub async fn request(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<UserBody>,
) -> AppResult<HttpResponse> {
    let (request, created) = safety::request_contact(&state.db, caller.id, body.0.user_id.0).await?;
    Ok(if created { HttpResponse::Created().json(request) } else { HttpResponse::Ok().json(request) })
}

/// # POST /api/contacts/requests/{id}/accept
pub async fn accept(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(safety::accept(&state.db, caller.id, path.into_inner().0).await?))
}

#[derive(Serialize)]
struct ContactList {
    contacts: Vec<UserView>,
}

/// # GET /api/contacts
pub async fn contacts(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    Ok(HttpResponse::Ok().json(ContactList { contacts: safety::contacts(&state.db, caller.id).await? }))
}

#[derive(Serialize)]
struct RequestLists {
    incoming: Vec<RequestView>,
    outgoing: Vec<RequestView>,
}

/// # GET /api/contacts/requests
pub async fn requests(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    let (incoming, outgoing) = safety::requests(&state.db, caller.id).await?;
    Ok(HttpResponse::Ok().json(RequestLists { incoming, outgoing }))
}
