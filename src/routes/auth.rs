use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::domain::users::{self, Registration};
use crate::domain::views::UserView;
use crate::error::AppResult;
use crate::extract::JsonBody;
use crate::startup::AppState;

#[derive(Deserialize)]
pub struct RegisterBody {
    username: String,
    password: String,
    display_name: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginBody {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Session {
    token: String,
    user: UserView,
}

/// # POST /api/auth/register
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
