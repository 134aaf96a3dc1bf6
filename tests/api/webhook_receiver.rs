//! A bot's webhook for the tests: checks every request's signature (HMAC-SHA256 over
//! `v1:{timestamp}:{body}` with the bot's secret) and headers, records it, and answers from a
//! script (200 with no body by default).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One request the hook received (and verified).
#[derive(Debug, Clone)]
pub struct Call {
    pub body: Value,
    pub event_id: i64,
    /// The status it was answered.
    pub status: u16,
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// Wait this long before answering (past the server's timeout, to test it).
    pub delay: Duration,
}

pub fn status(status: u16) -> Answer {
    Answer { status, body: String::new(), delay: Duration::ZERO }
}

pub fn reply(text: &str) -> Answer {
    Answer { status: 200, body: serde_json::json!({"reply": text}).to_string(), delay: Duration::ZERO }
}

#[derive(Default)]
struct Shared {
    secrets: HashMap<String, String>,
    scripts: HashMap<String, VecDeque<Answer>>,
    calls: HashMap<String, Vec<Call>>,
    rejected: Vec<String>,
}

pub struct Receiver {
    pub port: u16,
    shared: Arc<Mutex<Shared>>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
                let port = listener.local_addr().expect("address").port();
                let context = web::Data::new(state);
                let server = HttpServer::new(move || {
                    App::new().app_data(context.clone()).route("/hook/{name}", web::post().to(receive))
                })
                .workers(2)
                .listen(listener)
                .expect("listens")
                .run();
                let _ = tx.send((port, server.handle()));
                let _ = server.await;
            });
        });
        let (port, handle) = rx.await.expect("receiver started");
        Receiver { port, shared, handle }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hook/{name}", self.port)
    }

    /// The secret `name`'s requests must be signed with.
    pub fn trust(&self, name: &str, secret: &str) {
        self.shared.lock().expect("lock").secrets.insert(name.to_owned(), secret.to_owned());
    }

    pub fn script(&self, name: &str, answers: Vec<Answer>) {
        self.shared.lock().expect("lock").scripts.entry(name.to_owned()).or_default().extend(answers);
    }

    pub fn calls(&self, name: &str) -> Vec<Call> {
        self.shared.lock().expect("lock").calls.get(name).cloned().unwrap_or_default()
    }

    pub fn assert_all_verified(&self) {
        let rejected = self.shared.lock().expect("lock").rejected.clone();
        assert!(rejected.is_empty(), "requests that failed verification: {rejected:?}");
    }

    /// Waits until `name` has `count` calls (or `within` passes) and returns them.
    pub async fn wait_for(&self, name: &str, count: usize, within: Duration) -> Vec<Call> {
        let deadline = Instant::now() + within;
        loop {
            let calls = self.calls(name);
            if calls.len() >= count || Instant::now() >= deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    request: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
    shared: web::Data<Arc<Mutex<Shared>>>,
) -> HttpResponse {
    let name = name.into_inner();
    let answer = {
        let mut shared = shared.lock().expect("lock");
        let checked = shared
            .secrets
            .get(&name)
            .ok_or_else(|| "no secret for this hook".to_owned())
            .and_then(|secret| verify(&request, secret, &body));
        let (event_id, parsed) = match checked {
            Ok(checked) => checked,
            Err(why) => {
                shared.rejected.push(format!("{name}: {why}"));
                return HttpResponse::Unauthorized().finish();
            }
        };
        let answer = shared.scripts.get_mut(&name).and_then(VecDeque::pop_front).unwrap_or(status(200));
        shared.calls.entry(name).or_default().push(Call { body: parsed, event_id, status: answer.status });
        answer
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(answer.status).expect("a status"))
        .content_type("application/json")
        .body(answer.body)
}

/// The signature, the timestamp (within five minutes) and the event id header against the body.
fn verify(request: &HttpRequest, secret: &str, body: &[u8]) -> Result<(i64, Value), String> {
    let header =
        |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).ok_or(format!("no {name}"));
    let timestamp: i64 = header("x-switchboard-timestamp")?.parse().map_err(|_| "bad timestamp")?;
    let now = chrono::Utc::now().timestamp();
    if (now - timestamp).abs() > 300 {
        return Err(format!("timestamp {timestamp} is {} s off", now - timestamp));
    }
    let signature = header("x-switchboard-signature")?.strip_prefix("v1=").ok_or("no v1=")?.to_owned();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    if signature != expected {
        return Err("signature mismatch".into());
    }
    let event_id: i64 = header("x-switchboard-event-id")?.parse().map_err(|_| "bad event id")?;
    let parsed: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if parsed["event_id"] != event_id {
        return Err("event id header and body differ".into());
    }
    Ok((event_id, parsed))
}
