use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::domain::conversations::groups::{self, MemberView, Role};
use crate::error::AppResult;
use crate::error::ErrorBody;
use crate::extract::{Id, JsonBody};
use crate::realtime::presence::PresenceView;
use crate::startup::AppState;
use crate::wire::views::ConversationView;
use crate::wire::{ConversationId, UserId};

#[derive(Deserialize, ToSchema)]
pub struct CreateBody {
    /// 1–100 characters after trimming.
    #[schema(schema_with = super::openapi::group_name)]
    name: String,
    #[serde(default)]
    member_ids: Vec<Id>,
}

/// # POST /api/groups
/// 201 with the group as its owner sees it.
#[utoipa::path(
    post,
    path = "/api/groups",
    request_body = CreateBody,
    responses(
        (status = 201, body = ConversationView),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<CreateBody>,
) -> AppResult<HttpResponse> {
    let JsonBody(body) = body;
    let name = groups::validate_name(&body.name)?;
    let max = state.settings.messaging.max_group_members;
    let members = body.member_ids.into_iter().map(|Id(id)| id).collect();
    let group = groups::create(&state.db, &state.writer, max, caller.id, name, members).await?;
    Ok(HttpResponse::Created().json(group))
}

#[derive(Serialize, ToSchema)]
struct MemberList {
    members: Vec<ListedMember>,
}

/// A member with their presence: in groups larger than `presence.max_group_members` no
/// `presence` frames flow, so this is where members read each other's.
#[derive(Serialize, ToSchema)]
struct ListedMember {
    #[serde(flatten)]
    member: MemberView,
    presence: PresenceView,
}

/// # GET /api/groups/{id}/members
#[utoipa::path(
    get,
    path = "/api/groups/{id}/members",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 200, body = MemberList),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn members(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    let members = groups::members(&state.db, caller.user(), ConversationId(path.into_inner().0)).await?;
    let ids: Vec<UserId> = members.iter().map(|member| UserId(member.user.id)).collect();
    let presence = state.presence.views(&ids).await;
    let members = members
        .into_iter()
        .zip(presence)
        .map(|(member, presence)| ListedMember { member, presence })
        .collect();
    Ok(HttpResponse::Ok().json(MemberList { members }))
}

#[derive(Deserialize, ToSchema)]
pub struct AddBody {
    user_id: Id,
}

/// # POST /api/groups/{id}/members
/// 200 with the member, also when they already were one.
#[utoipa::path(
    post,
    path = "/api/groups/{id}/members",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    request_body = AddBody,
    responses(
        (status = 200, body = MemberView),
        (status = 403, description = "known but not allowed", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn add_member(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
    body: JsonBody<AddBody>,
) -> AppResult<HttpResponse> {
    let max = state.settings.messaging.max_group_members;
    let member = groups::add_member(
        &state.db,
        &state.writer,
        max,
        caller.user(),
        ConversationId(path.into_inner().0),
        UserId(body.0.user_id.0),
    )
    .await?;
    Ok(HttpResponse::Ok().json(member))
}

/// # DELETE /api/groups/{id}/members/{user_id}
#[utoipa::path(
    delete,
    path = "/api/groups/{id}/members/{user_id}",
    params(("id" = i64, Path, description = "the group", minimum = 1), ("user_id" = i64, Path, description = "the member", minimum = 1)),
    responses(
        (status = 204, description = "removed, or left"),
        (status = 403, description = "known but not allowed", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn remove_member(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<(Id, Id)>,
) -> AppResult<HttpResponse> {
    let (Id(group), Id(user)) = path.into_inner();
    groups::remove_member(&state.db, &state.writer, caller.user(), ConversationId(group), UserId(user))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
pub struct RoleBody {
    role: AssignableRole,
}

/// The roles an owner can give; ownership is not transferable.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum AssignableRole {
    Admin,
    Member,
}

impl From<AssignableRole> for Role {
    fn from(role: AssignableRole) -> Self {
        match role {
            AssignableRole::Admin => Role::Admin,
            AssignableRole::Member => Role::Member,
        }
    }
}

/// # PATCH /api/groups/{id}/members/{user_id}
/// `{"role": "admin" | "member"}`, by the owner.
#[utoipa::path(
    patch,
    path = "/api/groups/{id}/members/{user_id}",
    params(("id" = i64, Path, description = "the group", minimum = 1), ("user_id" = i64, Path, description = "the member", minimum = 1)),
    request_body = RoleBody,
    responses(
        (status = 200, body = MemberView),
        (status = 403, description = "known but not allowed", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn set_role(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<(Id, Id)>,
    body: JsonBody<RoleBody>,
) -> AppResult<HttpResponse> {
    let (Id(group), Id(user)) = path.into_inner();
    Ok(HttpResponse::Ok().json(
        groups::set_role(
            &state.db,
            &state.writer,
            caller.user(),
            ConversationId(group),
            UserId(user),
            body.0.role.into(),
        )
        .await?,
    ))
}
