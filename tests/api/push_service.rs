//! A push service for the tests, speaking RFC 8030 as a browser vendor's would: each request
//! must carry a VAPID token (RFC 8292) that verifies against the deployment's public key with
//! this service's origin as audience, and a body that the subscribing browser's private key
//! decrypts (RFC 8291, `aes128gcm`). Each endpoint answers from a script (201 by default).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// One push the service accepted, decrypted.
#[derive(Debug, Clone)]
pub struct Received {
    pub browser: String,
    pub payload: Value,
    pub topic: Option<String>,
    pub at: SystemTime,
}

/// A scripted answer: a status and an optional `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u32>,
}

pub const fn answer(status: u16) -> Answer {
    Answer { status, retry_after: None }
}

struct Browser {
    components: ece::crypto::EcKeyComponents,
    auth: Vec<u8>,
    script: VecDeque<Answer>,
}

#[derive(Default)]
struct Shared {
    browsers: HashMap<String, Browser>,
    received: Vec<Received>,
    /// Requests per browser, answered or not.
    requests: HashMap<String, usize>,
    /// Requests that failed verification: none is the only right number.
    rejected: Vec<String>,
}

pub struct PushService {
    pub port: u16,
    vapid_public_key: String,
    shared: Arc<Mutex<Shared>>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for PushService {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// A browser's subscription, as its JavaScript would hand it to the server.
pub struct BrowserSubscription {
    pub body: Value,
}

impl PushService {
    /// Starts the service on a free port, trusting pushes signed by `vapid_public_key`.
    pub async fn start(vapid_public_key: &str) -> PushService {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = shared.clone();
        let key = vapid_public_key.to_owned();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
                let port = listener.local_addr().expect("address").port();
                let context = web::Data::new((state, key, port));
                let server = HttpServer::new(move || {
                    App::new().app_data(context.clone()).route("/push/{browser}", web::post().to(receive))
                })
                .workers(1)
                .listen(listener)
                .expect("listens")
                .run();
                let _ = tx.send((port, server.handle()));
                let _ = server.await;
            });
        });
        let (port, handle) = rx.await.expect("push service started");
        PushService { port, vapid_public_key: vapid_public_key.to_owned(), shared, handle }
    }

    /// A new browser: its key pair and auth secret, and its endpoint on this service.
    pub fn browser(&self, name: &str) -> BrowserSubscription {
        let (keys, auth) = ece::generate_keypair_and_auth_secret().expect("browser keys");
        let p256dh = URL_SAFE_NO_PAD.encode(keys.pub_as_raw().expect("public key"));
        let endpoint = format!("http://127.0.0.1:{}/push/{name}", self.port);
        let browser = Browser {
            components: keys.raw_components().expect("components"),
            auth: auth.to_vec(),
            script: VecDeque::new(),
        };
        self.shared.lock().expect("lock").browsers.insert(name.to_owned(), browser);
        let body =
            json!({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": URL_SAFE_NO_PAD.encode(auth)}});
        BrowserSubscription { body }
    }

    /// What `browser`'s next requests are answered, in order; 201 after the script runs out.
    pub fn script(&self, browser: &str, answers: &[Answer]) {
        let mut shared = self.shared.lock().expect("lock");
        let entry = shared.browsers.get_mut(browser).expect("a known browser");
        entry.script.extend(answers.iter().copied());
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().expect("lock").received.clone()
    }

    pub fn received_by(&self, browser: &str) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.browser == browser).collect()
    }

    pub fn requests(&self, browser: &str) -> usize {
        self.shared.lock().expect("lock").requests.get(browser).copied().unwrap_or(0)
    }

    /// Panics if any request failed verification.
    pub fn assert_all_verified(&self) {
        let rejected = self.shared.lock().expect("lock").rejected.clone();
        assert!(rejected.is_empty(), "requests that failed verification: {rejected:?}");
        assert!(!self.vapid_public_key.is_empty());
    }

    /// Waits until `browser` has `count` pushes (or `within` passes) and returns them.
    pub async fn wait_for(&self, browser: &str, count: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received_by(browser);
            if got.len() >= count || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

type Context = web::Data<(Arc<Mutex<Shared>>, String, u16)>;

async fn receive(
    request: HttpRequest,
    browser: web::Path<String>,
    body: web::Bytes,
    context: Context,
) -> HttpResponse {
    let (shared, key, port) = context.get_ref();
    let browser = browser.into_inner();
    let mut shared = shared.lock().expect("lock");
    *shared.requests.entry(browser.clone()).or_default() += 1;
    let Some(entry) = shared.browsers.get_mut(&browser) else {
        return HttpResponse::NotFound().finish();
    };
    let verified = verify(&request, key, *port).and_then(|()| {
        ece::decrypt(&entry.components, &entry.auth, &body).map_err(|err| format!("cannot decrypt: {err}"))
    });
    let plaintext = match verified {
        Ok(plaintext) => plaintext,
        Err(why) => {
            shared.rejected.push(format!("{browser}: {why}"));
            return HttpResponse::BadRequest().body(why);
        }
    };
    let answer = entry.script.pop_front().unwrap_or(answer(201));
    let mut response =
        HttpResponse::build(actix_web::http::StatusCode::from_u16(answer.status).expect("a status"));
    if let Some(seconds) = answer.retry_after {
        response.insert_header(("Retry-After", seconds.to_string()));
    }
    if answer.status == 201 {
        let payload = serde_json::from_slice(&plaintext).unwrap_or(Value::Null);
        let topic = header(&request, "topic").map(str::to_owned);
        shared.received.push(Received { browser, payload, topic, at: SystemTime::now() });
    }
    response.finish()
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|value| value.to_str().ok())
}

/// RFC 8292: `Authorization: vapid t=<JWT>, k=<public key>`, the key the deployment's, the
/// token ES256 over it, for this origin, unexpired and at most a day long; RFC 8030's `TTL`;
/// RFC 8291's content coding.
fn verify(request: &HttpRequest, key: &str, port: u16) -> Result<(), String> {
    let authorization = header(request, "authorization").ok_or("no Authorization")?;
    let (token, k) = authorization
        .strip_prefix("vapid t=")
        .and_then(|rest| rest.split_once(", k="))
        .ok_or_else(|| format!("not a VAPID Authorization: {authorization}"))?;
    if k != key {
        return Err(format!("signed with another key: {k}"));
    }
    let point = URL_SAFE_NO_PAD.decode(k).map_err(|err| err.to_string())?;
    if point.len() != 65 {
        return Err("the key is no uncompressed point".into());
    }
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(
        &URL_SAFE_NO_PAD.encode(&point[1..33]),
        &URL_SAFE_NO_PAD.encode(&point[33..65]),
    )
    .map_err(|err| err.to_string())?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[format!("http://127.0.0.1:{port}")]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .map_err(|err| format!("token: {err}"))?
        .claims;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    if claims["exp"].as_u64().is_none_or(|exp| exp > now + 24 * 3600) {
        return Err("exp more than 24 hours ahead".into());
    }
    if header(request, "content-encoding") != Some("aes128gcm") {
        return Err("not aes128gcm".into());
    }
    if header(request, "ttl").and_then(|ttl| ttl.parse::<u64>().ok()).is_none() {
        return Err("no TTL".into());
    }
    Ok(())
}
