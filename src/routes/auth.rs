use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::users::{self, Registration};
use crate::error::AppResult;
use crate::error::ErrorBody;
use crate::extract::JsonBody;
use crate::startup::AppState;
use crate::wire::views::UserView;

#[derive(Deserialize, ToSchema)]
pub struct RegisterBody {
    /// Upper case is folded: names are unique case-insensitively.
    #[schema(pattern = "^[A-Za-z0-9_.-]{3,32}$")]
    username: String,
    #[schema(min_length = 8, max_length = 128)]
    password: String,
    #[schema(schema_with = super::openapi::display_name)]
    display_name: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
struct Session {
    token: String,
    user: UserView,
}

/// # POST /api/auth/register
#[utoipa::path(
    post,
    path = "/api/auth/register",
    request_body = RegisterBody,
    responses(
        (status = 201, description = "registered", body = Session),
        (status = 409, description = "username taken", body = ErrorBody),
        (status = 429, description = "rate limited (see Retry-After)", body = ErrorBody),
    )
)]
pub async fn register(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<RegisterBody>,
) -> AppResult<HttpResponse> {
    state.limits.register(&req)?;
    let JsonBody(body) = body;
    let registration =
        Registration { username: body.username, password: body.password, display_name: body.display_name };
    let user = users::register(&state.db, registration).await?;
    let token = state.tokens.issue(user.id)?;
    Ok(HttpResponse::Created().json(Session { token, user }))
}

/// # POST /api/auth/login
#[utoipa::path(
    post,
    path = "/api/auth/login",
    request_body = LoginBody,
    responses(
        (status = 200, description = "logged in", body = Session),
        (status = 401, description = "invalid_credentials", body = ErrorBody),
        (status = 429, description = "rate limited (see Retry-After)", body = ErrorBody),
    )
)]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<LoginBody>,
) -> AppResult<HttpResponse> {
    let JsonBody(body) = body;
    state.limits.login(&req, &body.username)?;
    let user = users::login(&state.db, &body.username, body.password).await?;
    let token = state.tokens.issue(user.id)?;
    Ok(HttpResponse::Ok().json(Session { token, user }))
}
