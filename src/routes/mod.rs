//! HTTP routes: parse, authorize, call the domain, shape the response.

mod attachments;
mod auth;
mod bots;
mod client;
mod conversations;
mod groups;
mod health;
mod messages;
mod openapi;
mod push;
mod reactions;
mod safety;
mod users;
mod ws;

use actix_web::http::{Method, header};
use actix_web::{Resource, ResponseError, Route, guard, web};

use crate::error::{AppError, AppResult, ErrorCode};

/// A page size from the query string: `default` when absent, else 1..=`max`.
fn limit_in(limit: Option<u64>, default: u64, max: u64, name: &'static str) -> AppResult<u64> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(AppError::bad_request(ErrorCode::BadQuery, format!("{name} must be 1-{max}"), Some(name)))
    }
}

/// One path and the methods it serves. Any other method is 405 with `Allow`, not the 404 of
/// a path that does not exist; a GET route answers HEAD too (without the body).
fn resource(path: &str, routes: Vec<(Method, Route)>) -> Resource {
    let allow = routes
        .iter()
        .map(|(method, _)| if *method == Method::GET { "GET, HEAD" } else { method.as_str() })
        .collect::<Vec<_>>()
        .join(", ");
    let resource = routes.into_iter().fold(web::resource(path), |resource, (method, route)| {
        let route = if method == Method::GET {
            route.guard(guard::Any(guard::Get()).or(guard::Head()))
        } else {
            route.method(method)
        };
        resource.route(route)
    });
    resource.default_service(web::to(move || {
        let allow = allow.clone();
        async move {
            let mut response = AppError::MethodNotAllowed.error_response();
            if let Ok(value) = header::HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
    }))
}

/// `handler` for `method`, as `resource` takes it.
fn on<F, Args>(method: Method, handler: F) -> (Method, Route)
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    (method, web::route().to(handler))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .service(resource("/auth/register", vec![on(Method::POST, auth::register)]))
            .service(resource("/auth/login", vec![on(Method::POST, auth::login)]))
            .service(resource("/users/me", vec![on(Method::GET, users::me)]))
            .service(resource(
                "/users/me/away",
                vec![on(Method::GET, users::away), on(Method::PUT, users::set_away)],
            ))
            .service(resource("/bots", vec![on(Method::GET, bots::list), on(Method::POST, bots::create)]))
            .service(resource(
                "/bots/{id}",
                vec![on(Method::PATCH, bots::update), on(Method::DELETE, bots::delete)],
            ))
            .service(resource("/bots/{id}/token", vec![on(Method::POST, bots::rotate)]))
            .service(resource("/users/search", vec![on(Method::GET, users::search)]))
            .service(resource("/users/{id}", vec![on(Method::GET, users::get)]))
            .service(resource("/users/{id}/presence", vec![on(Method::GET, users::presence)]))
            .service(resource("/messages", vec![on(Method::POST, messages::send)]))
            .service(resource("/messages/search", vec![on(Method::GET, messages::search)]))
            .service(resource("/messages/with-attachment", vec![on(Method::POST, attachments::send)]))
            .service(resource(
                "/messages/{id}",
                vec![on(Method::PATCH, messages::edit), on(Method::DELETE, messages::delete)],
            ))
            .service(resource("/messages/{id}/read", vec![on(Method::PATCH, messages::read_up_to)]))
            .service(resource(
                "/messages/{id}/reactions/{emoji}",
                vec![on(Method::PUT, reactions::react), on(Method::DELETE, reactions::unreact)],
            ))
            .service(resource(
                "/messages/{id}/pin",
                vec![on(Method::PUT, reactions::pin), on(Method::DELETE, reactions::unpin)],
            ))
            .service(resource("/attachments/{id}/download", vec![on(Method::GET, attachments::download)]))
            .service(resource("/attachments/{id}/content", vec![on(Method::GET, attachments::content)]))
            .service(resource("/groups", vec![on(Method::POST, groups::create)]))
            .service(resource("/groups/{id}/messages", vec![on(Method::POST, messages::send_to_group)]))
            .service(resource(
                "/groups/{id}/members",
                vec![on(Method::GET, groups::members), on(Method::POST, groups::add_member)],
            ))
            .service(resource(
                "/groups/{id}/members/{user_id}",
                vec![on(Method::PATCH, groups::set_role), on(Method::DELETE, groups::remove_member)],
            ))
            .service(resource(
                "/blocks",
                vec![on(Method::GET, safety::blocks), on(Method::POST, safety::block)],
            ))
            .service(resource("/blocks/{user_id}", vec![on(Method::DELETE, safety::unblock)]))
            .service(resource("/contacts", vec![on(Method::GET, safety::contacts)]))
            .service(resource(
                "/contacts/requests",
                vec![on(Method::GET, safety::requests), on(Method::POST, safety::request)],
            ))
            .service(resource("/contacts/requests/{id}/accept", vec![on(Method::POST, safety::accept)]))
            .service(resource("/conversations", vec![on(Method::GET, conversations::list)]))
            .service(resource(
                "/conversations/direct/{other_user_id}",
                vec![on(Method::GET, conversations::direct)],
            ))
            .service(resource("/conversations/{id}", vec![on(Method::GET, conversations::get)]))
            .service(resource("/conversations/{id}/messages", vec![on(Method::GET, conversations::history)]))
            .service(resource("/conversations/{id}/read", vec![on(Method::POST, conversations::read)]))
            .service(resource("/conversations/{id}/pins", vec![on(Method::GET, reactions::pins)]))
            .service(resource("/conversations/{id}/settings", vec![on(Method::PUT, conversations::settings)]))
            .service(resource("/sync", vec![on(Method::GET, conversations::sync)]))
            .service(resource("/push/vapid-public-key", vec![on(Method::GET, push::vapid_public_key)]))
            .service(resource(
                "/push/subscriptions",
                vec![on(Method::GET, push::list), on(Method::POST, push::subscribe)],
            ))
            .service(resource("/push/subscriptions/{id}", vec![on(Method::DELETE, push::unsubscribe)]))
            .service(resource("/ws-ticket", vec![on(Method::POST, ws::ticket)]))
            .service(resource("/openapi.json", vec![on(Method::GET, openapi::document)])),
    )
    .service(resource("/ws", vec![on(Method::GET, ws::connect)]))
    .service(resource("/", vec![on(Method::GET, client::index)]))
    .service(resource("/app.js", vec![on(Method::GET, client::script)]))
    .service(resource("/app.css", vec![on(Method::GET, client::style)]))
    .service(resource("/sw.js", vec![on(Method::GET, client::service_worker)]))
    // Load balancers often probe with HEAD.
    .service(resource("/health/live", vec![on(Method::GET, health::live)]))
    .service(resource("/health/ready", vec![on(Method::GET, health::ready)]))
    .service(resource("/metrics", vec![on(Method::GET, health::metrics)]));
}
