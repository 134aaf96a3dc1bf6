//! HTTP routes: parse, authorize, call the domain, shape the response.

mod auth;
mod conversations;
mod health;
mod messages;
mod users;
mod ws;

use actix_web::web;

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
            .route("/messages/{id}/read", web::patch().to(messages::read_up_to))
            .route("/conversations", web::get().to(conversations::list))
            .route("/conversations/direct/{other_user_id}", web::get().to(conversations::direct))
            .route("/conversations/{id}", web::get().to(conversations::get))
            .route("/conversations/{id}/messages", web::get().to(conversations::history))
            .route("/conversations/{id}/read", web::post().to(conversations::read))
            .route("/sync", web::get().to(conversations::sync))
            .route("/ws-ticket", web::post().to(ws::ticket)),
    )
    .route("/ws", web::get().to(ws::connect))
    .route("/health/live", web::get().to(health::live))
    .route("/health/ready", web::get().to(health::ready))
    .route("/metrics", web::get().to(health::metrics));
}
