//! HTTP routes: parse, authorize, call the domain, shape the response.

mod attachments;
mod auth;
mod client;
mod conversations;
mod groups;
mod health;
mod messages;
mod openapi;
mod safety;
mod users;
mod ws;

use actix_web::web;

use crate::error::{AppError, AppResult};

/// A page size from the query string: `default` when absent, else 1..=`max`.
fn limit_in(limit: Option<u64>, default: u64, max: u64, name: &'static str) -> AppResult<u64> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(AppError::bad_request("bad_query", format!("{name} must be 1-{max}"), Some(name)))
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .route("/auth/register", web::post().to(auth::register))
            .route("/auth/login", web::post().to(auth::login))
            .route("/users/me", web::get().to(users::me))
            .route("/users/search", web::get().to(users::search))
            .route("/users/{id}", web::get().to(users::get))
            .route("/users/{id}/presence", web::get().to(users::presence))
            .route("/messages", web::post().to(messages::send))
            .route("/messages/search", web::get().to(messages::search))
            .route("/messages/with-attachment", web::post().to(attachments::send))
            .route("/messages/{id}", web::patch().to(messages::edit))
            .route("/messages/{id}", web::delete().to(messages::delete))
            .route("/messages/{id}/read", web::patch().to(messages::read_up_to))
            .route("/attachments/{id}/download", web::get().to(attachments::download))
            .route("/attachments/{id}/content", web::get().to(attachments::content))
            .route("/groups", web::post().to(groups::create))
            .route("/groups/{id}/messages", web::post().to(messages::send_to_group))
            .route("/groups/{id}/members", web::get().to(groups::members))
            .route("/groups/{id}/members", web::post().to(groups::add_member))
            .route("/groups/{id}/members/{user_id}", web::patch().to(groups::set_role))
            .route("/groups/{id}/members/{user_id}", web::delete().to(groups::remove_member))
            .route("/blocks", web::get().to(safety::blocks))
            .route("/blocks", web::post().to(safety::block))
            .route("/blocks/{user_id}", web::delete().to(safety::unblock))
            .route("/contacts", web::get().to(safety::contacts))
            .route("/contacts/requests", web::get().to(safety::requests))
            .route("/contacts/requests", web::post().to(safety::request))
            .route("/contacts/requests/{id}/accept", web::post().to(safety::accept))
            .route("/conversations", web::get().to(conversations::list))
            .route("/conversations/direct/{other_user_id}", web::get().to(conversations::direct))
            .route("/conversations/{id}", web::get().to(conversations::get))
            .route("/conversations/{id}/messages", web::get().to(conversations::history))
            .route("/conversations/{id}/read", web::post().to(conversations::read))
            .route("/sync", web::get().to(conversations::sync))
            .route("/ws-ticket", web::post().to(ws::ticket))
            .route("/openapi.json", web::get().to(openapi::document)),
    )
    .route("/ws", web::get().to(ws::connect))
    .route("/", web::get().to(client::index))
    .route("/app.js", web::get().to(client::script))
    .route("/app.css", web::get().to(client::style))
    .route("/health/live", web::get().to(health::live))
    .route("/health/ready", web::get().to(health::ready))
    // Load balancers often probe with HEAD; the server sends the status without the body.
    .route("/health/live", web::head().to(health::live))
    .route("/health/ready", web::head().to(health::ready))
    .route("/metrics", web::get().to(health::metrics));
}
