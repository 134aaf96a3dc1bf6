//! The web client: three static files compiled into the binary, so one binary serves the
//! API and the page. A strict Content-Security-Policy allows scripts and styles from this
//! origin only, no inline code, and connections back to this origin (HTTP and WebSocket).

use actix_web::HttpResponse;
use actix_web::http::header;

const INDEX: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/app.js");
const STYLE: &str = include_str!("../../web/app.css");
const WORKER: &str = include_str!("../../web/sw.js");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}

/// # GET /
pub async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX)
}

/// # GET /app.js
pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// # GET /app.css
pub async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// # GET /sw.js
/// The service worker that shows Web Push notifications; served from the root so that its
/// scope is the whole client.
pub async fn service_worker() -> HttpResponse {
    asset("text/javascript; charset=utf-8", WORKER)
}
