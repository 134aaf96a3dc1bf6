//! A Switchboard bot to copy: it checks each webhook request's signature and answers with a
//! reply, which Switchboard posts into the conversation as the bot.
//!
//! ```sh
//! SWITCHBOARD_WEBHOOK_SECRET=whsec_… cargo run --example echo_bot   # listens on 127.0.0.1:9000
//! ```
//!
//! Create the bot with `POST /api/bots {"username": "echo_bot", "webhook_url":
//! "http://127.0.0.1:9000/hook"}` (a hook on loopback needs `bots.allow_private_urls = true`;
//! in production it runs on its own host) and start this with the `webhook_secret` it answers.

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Requests older than this are refused: a captured request cannot be replayed later.
const MAX_AGE_SECONDS: i64 = 300;

struct Secret(String);

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let secret = std::env::var("SWITCHBOARD_WEBHOOK_SECRET").unwrap_or_default();
    if secret.is_empty() {
        eprintln!("set SWITCHBOARD_WEBHOOK_SECRET to the bot's webhook_secret");
        std::process::exit(2);
    }
    let address = std::env::var("ECHO_BOT_ADDRESS").unwrap_or_else(|_| "127.0.0.1:9000".into());
    eprintln!("echo bot listening on http://{address}/hook");
    let secret = web::Data::new(Secret(secret));
    HttpServer::new(move || App::new().app_data(secret.clone()).route("/hook", web::post().to(hook)))
        .bind(address)?
        .run()
        .await
}

async fn hook(request: HttpRequest, body: web::Bytes, secret: web::Data<Secret>) -> HttpResponse {
    if !signed(&request, &body, &secret.0) {
        return HttpResponse::Unauthorized().finish();
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    match event["type"].as_str() {
        Some("new_message") => {
            let text = event["message"]["message"].as_str().unwrap_or_default();
            HttpResponse::Ok().json(json!({"reply": format!("You said: {text}")}))
        }
        // Answer 2xx to what you do not handle: anything else is retried.
        _ => HttpResponse::NoContent().finish(),
    }
}

/// `X-Switchboard-Signature: v1=hex(HMAC-SHA256(secret, "v1:{timestamp}:{body}"))`, with a
/// recent `X-Switchboard-Timestamp`, compared in constant time.
fn signed(request: &HttpRequest, body: &[u8], secret: &str) -> bool {
    let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok());
    let Some(timestamp) = header("x-switchboard-timestamp").and_then(|t| t.parse::<i64>().ok()) else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX));
    if (now - timestamp).abs() > MAX_AGE_SECONDS {
        return false;
    }
    let Some(signature) = header("x-switchboard-signature").and_then(|s| s.strip_prefix("v1=")) else {
        return false;
    };
    let Ok(signature) = hex::decode(signature) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}
