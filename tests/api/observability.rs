//! Metrics, request ids, CORS, and logs that never carry secrets or message text.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app, spawn_app_with};

/// The value of an unlabelled metric, or the sum of a labelled one's series.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(&format!("{name} ")) || line.starts_with(&format!("{name}{{")))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_traffic_messages_events_and_sockets() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut socket = app.ws(&bob).await;
    for n in 0..3 {
        app.dm(&alice, &bob, &format!("message {n}")).await;
    }
    for _ in 0..3 {
        socket.next_of("new_message").await;
    }
    let text = app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    for name in [
        "switchboard_http_requests_total",
        "switchboard_http_request_duration_seconds_bucket",
        "switchboard_messages_total",
        "switchboard_events_total",
        "switchboard_ws_connections_total",
        "switchboard_slow_clients_dropped_total",
        "switchboard_db_write_batch_seconds_bucket",
        "switchboard_db_write_batch_jobs_bucket",
        "switchboard_delivery_handoff_seconds_bucket",
        "switchboard_delivery_seconds_bucket",
        "switchboard_sqlite_checkpoint_seconds_bucket",
        "switchboard_sqlite_wal_pages",
        "switchboard_sessions",
        "switchboard_rooms",
    ] {
        assert!(text.contains(&format!("\n{name}")) || text.starts_with(name), "{name} is exported:\n{text}");
    }
    // The registry is process-wide and other tests' apps share it: at least ours were counted.
    assert!(metric(&text, "switchboard_messages_total") >= 3.0);
    assert!(metric(&text, "switchboard_events_total") >= 4.0, "conversation_created and three messages");
    assert!(metric(&text, "switchboard_ws_connections_total") >= 1.0);
    assert!(metric(&text, "switchboard_sessions") >= 1.0);
    assert!(metric(&text, "switchboard_delivery_seconds_count") >= 3.0, "Bob's socket got three live frames");
    assert!(metric(&text, "switchboard_sqlite_checkpoint_seconds_count") >= 1.0, "the checkpointer ran");
    // Requests are labelled by route pattern, never by raw path (ids would explode the series).
    assert!(text.contains(r#"route="/api/messages",status="2xx""#), "{text}");
    assert!(!text.contains(&format!("/api/users/{}", alice.id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app.client.get(app.url("/health/live")).send().await.expect("live");
    let generated =
        response.headers().get("x-request-id").expect("an id").to_str().expect("ascii").to_owned();
    assert_eq!(generated.len(), 16);
    let response = app
        .client
        .get(app.url("/api/users/me"))
        .header("x-request-id", "trace-123_abc")
        .send()
        .await
        .expect("me");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-request-id"], "trace-123_abc", "a plain client id is kept");
    let response = app
        .client
        .get(app.url("/health/live"))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .expect("live");
    assert_ne!(response.headers()["x-request-id"], "bad id\twith spaces", "anything else is replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_calls_are_allowed_for_configured_origins_only() {
    let app =
        spawn_app_with(Backend::Sqlite, |s| s.server.cors_origins = vec!["https://app.example.com".into()])
            .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/messages"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight("https://app.example.com").await.expect("preflight");
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example.com");
    let refused = preflight("https://evil.example.net").await.expect("preflight");
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    // Without configured origins no CORS header is ever sent.
    let plain = spawn_app(Backend::Sqlite).await;
    let response = plain
        .client
        .get(plain.url("/health/live"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .expect("live");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("access-control-allow-origin").is_none());
}

/// The real binary with its logs going to files in `dir` (files, not pipes: nobody reads a
/// pipe until the end, and a full one would block the server).
struct LoggedServer {
    child: std::process::Child,
    app: TestApp,
    out_path: std::path::PathBuf,
    err_path: std::path::PathBuf,
}

impl LoggedServer {
    async fn start(dir: &std::path::Path, format: &str, level: &str) -> LoggedServer {
        let out_path = dir.join("server.out");
        let err_path = dir.join("server.err");
        let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .current_dir(dir)
            .env("SWITCHBOARD__AUTH__JWT_SECRET", crate::helpers::TEST_SECRET)
            .env("SWITCHBOARD__SERVER__PORT", port.to_string())
            .env("SWITCHBOARD__LOG__FORMAT", format)
            .env("SWITCHBOARD__LOG__LEVEL", level)
            .env("SWITCHBOARD__LIMITS__ENABLED", "false")
            .env_remove("RUST_LOG")
            .stdout(Stdio::from(std::fs::File::create(&out_path).expect("log file")))
            .stderr(Stdio::from(std::fs::File::create(&err_path).expect("log file")))
            .spawn()
            .expect("start switchboard");
        let app = TestApp::at(port);
        let mut ready = false;
        for _ in 0..200 {
            if app.client.get(app.url("/health/ready")).send().await.is_ok_and(|r| r.status() == 200) {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(ready, "server started");
        LoggedServer { child, app, out_path, err_path }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.out_path).expect("read logs")
            + &std::fs::read_to_string(&self.err_path).expect("read logs")
    }

    /// Stops the server (SIGTERM) and returns everything it logged.
    async fn stop(mut self) -> String {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let mut child = self.child;
        self.child = tokio::task::spawn_blocking(move || {
            let _ = child.wait();
            child
        })
        .await
        .expect("join");
        self.logs()
    }
}

/// Runs the real binary with trace-level JSON logs, drives it with secrets in every place a
/// careless server would log them, and reads everything it wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_request_ids_but_no_tokens_tickets_passwords_or_message_text() {
    let dir = tempfile::tempdir().expect("dir");
    let server = LoggedServer::start(dir.path(), "json", "trace").await;
    let app = &server.app;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let secret_text = "the-launch-code-is-7781-quietly";
    app.dm(&alice, &bob, secret_text).await;
    let _ = app
        .post(None, "/api/auth/login", &json!({"username": "alice", "password": "wrong-password-xyz"}))
        .await;
    let ticket = app.post(Some(&bob.token), "/api/ws-ticket", &json!({})).await.body["ticket"]
        .as_str()
        .expect("ticket")
        .to_owned();
    // Both sockets got their hello (`ws_at` checks it).
    let socket = app.ws_at(&format!("/ws?ticket={ticket}")).await;
    let by_token = app.ws_at(&format!("/ws?token={}", bob.token)).await;
    let _ = app.get(None, "/ws?token=forged.token.value").await;
    drop((socket, by_token));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = server.stop().await;
    assert!(logs.contains("request_id"), "requests are logged with their id ({} bytes):\n{logs}", logs.len());
    let secrets = [
        alice.token.as_str(),
        bob.token.as_str(),
        ticket.as_str(),
        PASSWORD,
        "wrong-password-xyz",
        secret_text,
        "forged.token.value",
    ];
    for secret in secrets {
        assert!(!logs.contains(secret), "the logs contain a secret ({secret}):\n{logs}");
    }
}

/// Malformed, oversized and stalled request heads are anyone's to send: they are counted in
/// `/metrics` and summed up at `info` at most every 10 s, never logged at ERROR one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_heads_are_counted_and_summed_up_not_logged_as_errors() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("dir");
    let server = LoggedServer::start(dir.path(), "text", "info").await;
    let port = server.app.port;
    let oversized = format!("GET / HTTP/1.1\r\nhost: x\r\nx-padding: {}\r\n\r\n", "a".repeat(256 * 1024));
    let heads = std::iter::repeat_n("NOT HTTP AT ALL\r\n\r\n".to_owned(), 30)
        .chain(std::iter::repeat_n(oversized, 5));
    for head in heads {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        let _ = stream.write_all(head.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        let status = String::from_utf8_lossy(&answer).split(' ').nth(1).unwrap_or_default().to_owned();
        assert!(matches!(status.as_str(), "400" | "431"), "refused with 400 or 431, got {status:?}");
    }
    let text = server
        .app
        .client
        .get(server.app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(metric(&text, "switchboard_refused_connections_total") >= 35.0, "counted: {text}");
    // The summary line comes within one period.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !server.logs().contains("connections refused") {
        assert!(std::time::Instant::now() < deadline, "no summary line:\n{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let logs = server.stop().await;
    let errors: Vec<&str> = logs.lines().filter(|line| line.contains("ERROR")).collect();
    assert!(errors.is_empty(), "no ERROR lines for client faults: {errors:#?}");
    assert!(logs.matches("connections refused").count() <= 2, "summed up, not one line each:\n{logs}");
}

/// With `server.metrics_token` set, `/metrics` answers only a scraper that carries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_metrics_token_when_one_is_set() {
    let token = "scrape-token-0123456789abcdef";
    let app = spawn_app_with(Backend::Sqlite, |settings| settings.server.metrics_token = token.into()).await;
    let anonymous = app.get(None, "/metrics").await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.error_code(), "invalid_token");
    for wrong in ["Bearer scrape-token-0123456789abcdeX", "Bearer ", "Basic c2NyYXBl", token] {
        assert_eq!(app.get_with_authorization(wrong, "/metrics").await.status, 401, "{wrong}");
    }
    let scraped = app.client.get(app.url("/metrics")).bearer_auth(token).send().await.expect("metrics");
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.expect("text").contains("switchboard_sessions"));
    // The health endpoints stay open for load balancers.
    assert_eq!(app.get(None, "/health/ready").await.status, 200);
}
