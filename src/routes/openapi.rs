//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` attributes and the
//! types they read and return, served at `/api/openapi.json`.

use std::sync::LazyLock;

use actix_web::HttpResponse;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    attachments, auth, bots, conversations, groups, health, messages, push, reactions, safety, users, ws,
};
use crate::domain;

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
        users::away,
        users::set_away,
        users::search,
        users::get,
        users::presence,
        bots::create,
        bots::list,
        bots::update,
        bots::rotate,
        bots::delete,
        messages::send,
        messages::search,
        messages::edit,
        messages::delete,
        messages::read_up_to,
        messages::send_to_group,
        reactions::react,
        reactions::unreact,
        reactions::pin,
        reactions::unpin,
        reactions::pins,
        attachments::send,
        attachments::download,
        attachments::content,
        conversations::list,
        conversations::direct,
        conversations::get,
        conversations::history,
        conversations::read,
        conversations::sync,
        conversations::settings,
        push::vapid_public_key,
        push::subscribe,
        push::list,
        push::unsubscribe,
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
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth, &StandardErrors, &OneTarget, &QueryText)
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

/// The error statuses every operation of a kind can answer, added to each operation that
/// does not describe them itself, so the handlers' attributes list only their own: a token
/// (401), path ids (400, 404), query parameters (400), a body (400, 408, 413, 415, 422), the
/// database (503).
struct StandardErrors;

impl Modify for StandardErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations =
                [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put];
            for operation in operations.into_iter().flatten() {
                let parameters = operation.parameters.as_deref().unwrap_or_default();
                let in_path = parameters.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path));
                let in_query = parameters.iter().any(|p| matches!(p.parameter_in, ParameterIn::Query));
                let mut statuses = Vec::new();
                if operation.security.is_some() {
                    statuses.push(("401", "missing, malformed or expired token, or one naming no user"));
                }
                if in_path {
                    statuses.push(("400", "an id in the path is not a positive 64-bit integer"));
                    statuses.push(("404", "absent or not visible to the caller"));
                }
                if in_query {
                    statuses.push(("400", "a query parameter fails its rules (bad_query)"));
                }
                if operation.request_body.is_some() {
                    statuses.push(("400", "malformed JSON or multipart body"));
                    statuses.push(("408", "the body did not arrive in time (request_timeout)"));
                    statuses.push(("413", "the body is too large"));
                    statuses.push(("415", "the body is not of the documented media type"));
                    statuses.push(("422", "a field fails validation (validation_failed, naming it)"));
                }
                if path.starts_with("/api/") || path == "/ws" || path == "/health/ready" {
                    statuses.push((
                        "503",
                        "the database (or Redis) is unavailable, or the instance drains; see Retry-After",
                    ));
                }
                for (status, description) in statuses {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error_response(description));
                }
            }
        }
    }
}

/// A send names exactly one of `recipient_id` and `conversation_id` (422 otherwise), which
/// field attributes cannot say: the body's schema becomes all of itself and one of "has a
/// recipient" or "has a conversation".
struct OneTarget;

impl Modify for OneTarget {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AllOfBuilder, OneOfBuilder, Schema};
        let Some(components) = openapi.components.as_mut() else { return };
        let has = |field: &str| {
            ObjectBuilder::new()
                .required(field)
                .property(field, ObjectBuilder::new().schema_type(Type::Integer))
        };
        for name in ["SendBody", "UploadForm"] {
            let Some(mut schema) = components.schemas.remove(name) else { continue };
            if let (RefOr::T(Schema::Object(form)), "UploadForm") = (&mut schema, name) {
                // Part names travel in a header: printable, without quote or backslash.
                let names = ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[!#-\\[\\]-~]+$"));
                form.property_names = Some(Box::new(Schema::Object(names.build())));
            }
            let one = OneOfBuilder::new().item(has("recipient_id")).item(has("conversation_id"));
            let both = AllOfBuilder::new().item(schema).item(one).build();
            components.schemas.insert(name.to_owned(), RefOr::T(Schema::AllOf(both)));
        }
    }
}

/// The schema of a text field checked by `rule`: its pattern says exactly what trimming
/// and the character rules accept, which `minLength`/`maxLength` on the raw string cannot.
fn trimmed(pattern: String, nullable: bool, description: &str) -> Object {
    let kind = if nullable { SchemaType::from_iter([Type::String, Type::Null]) } else { Type::String.into() };
    ObjectBuilder::new().schema_type(kind).pattern(Some(pattern)).description(Some(description)).build()
}

pub fn message_text() -> Object {
    trimmed(
        domain::messaging::messages::BODY.pattern(),
        false,
        "1–2000 characters after trimming, some of them visible; no NUL.",
    )
}

pub fn message_text_or_blank() -> Object {
    let description = "With a file, may be blank; otherwise as `POST /api/messages`.";
    trimmed(domain::messaging::messages::BODY.pattern_or_blank(), false, description)
}

pub fn group_name() -> Object {
    trimmed(domain::conversations::groups::NAME.pattern(), false, "1–100 characters after trimming; no NUL.")
}

pub fn display_name() -> Object {
    let description =
        "At most 64 characters after trimming, no control characters; blank or absent: the username.";
    trimmed(domain::users::DISPLAY_NAME.pattern(), true, description)
}

/// Query parameters checked by trimming rules. Set here because a parameter's `schema_with`
/// would drop its `required`.
struct QueryText;

impl Modify for QueryText {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, name, schema) in
            [("/api/messages/search", "q", message_query()), ("/api/users/search", "q", user_query())]
        {
            let Some(get) = openapi.paths.paths.get_mut(path).and_then(|item| item.get.as_mut()) else {
                continue;
            };
            for parameter in get.parameters.iter_mut().flatten().filter(|p| p.name == name) {
                parameter.schema = Some(schema.clone().into());
                parameter.description = None;
            }
        }
    }
}

fn message_query() -> Object {
    trimmed(
        domain::messaging::search::QUERY.pattern(),
        false,
        "Words to find: 2–200 characters after trimming.",
    )
}

fn user_query() -> Object {
    trimmed(
        domain::users::QUERY.pattern(),
        false,
        "Part of a username or display name: at least 2 characters after trimming.",
    )
}

fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    ResponseBuilder::new().description(description).content("application/json", content).build().into()
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| ApiDoc::openapi().to_json().unwrap_or_default());

/// # GET /api/openapi.json
pub async fn document() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(DOCUMENT.as_str())
}
