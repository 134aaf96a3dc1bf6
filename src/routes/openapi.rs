//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the
//! types they read and return, served at `/api/openapi.json`.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{attachments, auth, conversations, groups, health, messages, safety, users, ws};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard",
        description = "Realtime chat: HTTP API. The WebSocket protocol at /ws is described in the project's contract."
    ),
    paths(
        auth::register,
        auth::login,
        users::me,
        users::search,
        users::get,
        users::presence,
        messages::send,
        messages::search,
        messages::edit,
        messages::delete,
        messages::read_up_to,
        messages::send_to_group,
        attachments::send,
        attachments::download,
        attachments::content,
        conversations::list,
        conversations::direct,
        conversations::get,
        conversations::history,
        conversations::read,
        conversations::sync,
        groups::create,
        groups::members,
        groups::add_member,
        groups::remove_member,
        groups::set_role,
        safety::block,
        safety::unblock,
        safety::blocks,
        safety::request,
        safety::accept,
        safety::contacts,
        safety::requests,
        ws::ticket,
        ws::connect,
        health::live,
        health::ready,
        health::metrics,
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| ApiDoc::openapi().to_json().unwrap_or_default());

/// # GET /api/openapi.json
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(DOCUMENT.as_str())
}
