#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchboard::config::Settings;
use switchboard::startup::Application;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

pub const TEST_SECRET: &str = "integration-test-secret-at-least-32-bytes";
pub const PASSWORD: &str = "correct horse battery";

/// Runs each listed test function once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
fn postgres_admin_url() -> String {
    std::env::var("SWITCHBOARD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

static DATABASES: AtomicU32 = AtomicU32::new(0);
static CLEANED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// A fresh, empty PostgreSQL database for one test.
pub async fn fresh_postgres_database() -> String {
    use sea_orm::{ConnectionTrait, Database};
    let admin_url = postgres_admin_url();
    let admin =
        Database::connect(&admin_url).await.expect("PostgreSQL must run for the test suite (see README)");
    CLEANED
        .get_or_init(|| async {
            // Databases left by earlier runs whose process is gone.
            let rows = admin
                .query_all_raw(sea_orm::Statement::from_string(
                    admin.get_database_backend(),
                    "SELECT datname FROM pg_database WHERE datname LIKE 'sb_test_%'",
                ))
                .await
                .expect("list test databases");
            for row in rows {
                let name: String = row.try_get("", "datname").expect("datname");
                let pid = name.split('_').nth(2).and_then(|pid| pid.parse::<u32>().ok());
                if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            }
        })
        .await;
    let name = format!("sb_test_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    let base = admin_url.rsplit_once('/').map(|(base, _)| base.to_owned()).unwrap_or(admin_url);
    format!("{base}/{name}")
}

/// The shipped `config.toml` with a test port, database and secret.
pub fn test_settings(database_url: String) -> Settings {
    let mut settings = Settings::load(Some(Path::new("config.toml"))).expect("shipped config.toml loads");
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.server.shutdown_timeout_seconds = 1;
    settings.server.dev_mode = false;
    settings.server.instance_id = "test-instance".into();
    settings.database.url = database_url;
    settings.database.max_connections = 4;
    settings.auth.jwt_secret = TEST_SECRET.into();
    // Tests register and send in bursts from one address; the limits have their own tests.
    settings.limits.enabled = false;
    settings
}

pub struct TestApp {
    pub address: String,
    pub ws_address: String,
    pub port: u16,
    pub client: reqwest::Client,
    /// Set for an app running in this process; `None` for a server reached over the network.
    handle: Option<ServerHandle>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // The stop command is sent at once; the server's own thread carries it out.
        if let Some(handle) = &self.handle {
            drop(handle.stop(false));
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts the application on its own thread and actix system, as a separate process would.
pub async fn spawn_app_with(backend: Backend, customize: impl FnOnce(&mut Settings)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        switchboard::telemetry::init(&Default::default());
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display()),
        Backend::Postgres => fresh_postgres_database().await,
    };
    let mut settings = test_settings(database_url);
    settings.attachments.dir = dir.path().join("attachments").display().to_string();
    customize(&mut settings);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let app = Application::build(settings).await.expect("application builds");
            let _ = tx.send((app.port(), app.handle()));
            let _ = app.run_until_stopped().await;
        });
    });
    let (port, handle) = rx.await.expect("application started");
    let mut app = TestApp::at(port);
    app.handle = Some(handle);
    app._dir = Some(dir);
    app
}

impl TestApp {
    /// A client for a server listening on `port` (another process, or nginx).
    pub fn at(port: u16) -> TestApp {
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            ws_address: format!("ws://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::new(),
            handle: None,
            _dir: None,
        }
    }
}

/// A registered user with a token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub username: String,
    pub token: String,
}

static USERS: AtomicU32 = AtomicU32::new(0);

/// A JSON response: status and body (`Value::Null` when the body is empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// Asserts the contract's error body and returns its code.
    pub fn error_code(&self) -> &str {
        let error = &self.body["error"];
        assert!(error.is_object(), "expected an error body, got {} {}", self.status, self.body);
        assert!(error["message"].is_string(), "error without message: {}", self.body);
        assert!(error.get("field").is_some(), "error without field key: {}", self.body);
        error["code"].as_str().expect("error code is a string")
    }

    pub fn error_field(&self) -> Option<&str> {
        self.body["error"]["field"].as_str()
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("response body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert!(status < 500, "server error {status}: {}", String::from_utf8_lossy(&bytes));
    Reply { status, body, headers }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, token: Option<&str>, path: &str) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        reply(request.send().await.expect("request")).await
    }

    pub async fn send_json(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        body: &Value,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        reply(request.send().await.expect("request")).await
    }

    pub async fn post(&self, token: Option<&str>, path: &str, body: &Value) -> Reply {
        self.send_json(reqwest::Method::POST, token, path, body).await
    }

    /// POST with a raw body and content type, for malformed input.
    pub async fn post_raw(
        &self,
        token: Option<&str>,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let mut request = self.client.post(self.url(path)).header("content-type", content_type).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        reply(request.send().await.expect("request")).await
    }

    /// A request with no body at all (no content type either).
    pub async fn send_empty(&self, method: reqwest::Method, token: Option<&str>, path: &str) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        reply(request.send().await.expect("request")).await
    }

    /// Sends a request built on `self.client` and reads the reply, for anything unusual.
    pub async fn send_request(&self, request: reqwest::RequestBuilder) -> Reply {
        reply(request.send().await.expect("request")).await
    }

    /// GET with a raw `Authorization` header value, for malformed credentials.
    pub async fn get_with_authorization(&self, authorization: &str, path: &str) -> Reply {
        let request = self.client.get(self.url(path)).header("authorization", authorization);
        reply(request.send().await.expect("request")).await
    }

    /// `POST /api/messages` as `from`; returns the reply whatever its status.
    pub async fn send_message(&self, from: &TestUser, body: &Value) -> Reply {
        self.post(Some(&from.token), "/api/messages", body).await
    }

    /// One page of `GET /api/conversations/{id}/messages?{query}`; asserts 200.
    pub async fn history(&self, user: &TestUser, conversation_id: i64, query: &str) -> Value {
        let reply = self
            .get(Some(&user.token), &format!("/api/conversations/{conversation_id}/messages?{query}"))
            .await;
        assert_eq!(reply.status, 200, "history: {}", reply.body);
        reply.body
    }

    /// The texts of one page of history, in order.
    pub async fn history_texts(&self, user: &TestUser, conversation_id: i64, query: &str) -> Vec<String> {
        let page = self.history(user, conversation_id, query).await;
        let messages = page["messages"].as_array().expect("messages").iter();
        messages.filter_map(|m| m["message"].as_str()).map(str::to_owned).collect()
    }

    pub async fn register(&self, username: &str) -> TestUser {
        let reply =
            self.post(None, "/api/auth/register", &json!({"username": username, "password": PASSWORD})).await;
        assert_eq!(reply.status, 201, "register {username}: {}", reply.body);
        TestUser {
            id: reply.body["user"]["id"].as_i64().expect("user id"),
            username: reply.body["user"]["username"].as_str().expect("username").to_owned(),
            token: reply.body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// A user with a unique name.
    pub async fn user(&self, prefix: &str) -> TestUser {
        let n = USERS.fetch_add(1, Ordering::Relaxed);
        self.register(&format!("{prefix}{n}")).await
    }

    /// Sends a direct message and asserts 201; returns the message.
    pub async fn dm(&self, from: &TestUser, to: &TestUser, text: &str) -> Value {
        let reply = self
            .post(Some(&from.token), "/api/messages", &json!({"recipient_id": to.id, "message": text}))
            .await;
        assert_eq!(reply.status, 201, "send: {}", reply.body);
        reply.body
    }

    pub async fn ws(&self, user: &TestUser) -> WsClient {
        self.ws_at(&format!("/ws?token={}", user.token)).await
    }

    pub async fn ws_since(&self, user: &TestUser, since: i64) -> WsClient {
        self.ws_at(&format!("/ws?token={}&since={since}", user.token)).await
    }

    /// Opens a socket and reads its `hello`.
    pub async fn ws_at(&self, path_and_query: &str) -> WsClient {
        let (stream, _) = tokio_tungstenite::connect_async(format!("{}{}", self.ws_address, path_and_query))
            .await
            .expect("websocket connects");
        let mut client = WsClient { stream, hello: Value::Null };
        let hello = client.next().await;
        assert_eq!(hello["type"], "hello", "first frame must be hello: {hello}");
        client.hello = hello;
        client
    }

    /// The `switchboard_rooms` and `switchboard_sessions` gauges.
    pub async fn live_counts(&self) -> (u64, u64) {
        let text =
            self.client.get(self.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
        let gauge = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse::<u64>().ok()))
                .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        };
        (gauge("switchboard_rooms "), gauge("switchboard_sessions "))
    }
}

/// One method per endpoint the tests share. A `_reply` method returns the reply whatever its
/// status; its plain twin asserts success and returns what the tests use.
impl TestApp {
    // ---- messages ----

    /// `PATCH /api/messages/{id}` with new text.
    pub async fn edit_message(&self, user: &TestUser, message_id: i64, text: &str) -> Reply {
        self.send_json(
            reqwest::Method::PATCH,
            Some(&user.token),
            &format!("/api/messages/{message_id}"),
            &json!({"message": text}),
        )
        .await
    }

    /// `DELETE /api/messages/{id}`.
    pub async fn delete_message(&self, user: &TestUser, message_id: i64) -> Reply {
        self.send_empty(reqwest::Method::DELETE, Some(&user.token), &format!("/api/messages/{message_id}"))
            .await
    }

    /// `GET /api/messages/search` with `params` as its query string.
    pub async fn search_messages(&self, user: &TestUser, params: &[(&str, &str)]) -> Reply {
        let query = serde_urlencoded::to_string(params).expect("query string");
        self.get(Some(&user.token), &format!("/api/messages/search?{query}")).await
    }

    // ---- conversations ----

    /// `GET /api/conversations/{id}` as `user`; asserts 200.
    pub async fn conversation(&self, user: &TestUser, id: i64) -> Value {
        let reply = self.get(Some(&user.token), &format!("/api/conversations/{id}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    /// The caller's conversation list; asserts 200.
    pub async fn conversations(&self, user: &TestUser) -> Vec<Value> {
        let reply = self.get(Some(&user.token), "/api/conversations").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["conversations"].as_array().expect("conversations").clone()
    }

    /// The entry for conversation `id` in `user`'s conversation list.
    pub async fn conversation_entry(&self, user: &TestUser, id: i64) -> Value {
        let reply = self.get(Some(&user.token), "/api/conversations").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["conversations"]
            .as_array()
            .expect("conversations")
            .iter()
            .find(|entry| entry["id"] == id)
            .unwrap_or_else(|| panic!("conversation {id} missing from the list: {}", reply.body))
            .clone()
    }

    /// Every message of a conversation, oldest first (one page of up to 100).
    pub async fn all_messages(&self, user: &TestUser, conversation_id: i64) -> Vec<Value> {
        let page = self.history(user, conversation_id, "limit=100").await;
        assert_eq!(page["has_more"], false);
        page["messages"].as_array().expect("messages").clone()
    }

    /// One message as `user`'s history shows it.
    pub async fn history_message(&self, user: &TestUser, conversation_id: i64, message_id: i64) -> Value {
        self.all_messages(user, conversation_id)
            .await
            .into_iter()
            .find(|message| id_of(message) == message_id)
            .unwrap_or_else(|| panic!("message {message_id} missing from history"))
    }

    /// `POST /api/conversations/{id}/read` with `{"message_id": id}`, or `{}` (up to the latest)
    /// for `None`.
    pub async fn mark_read_reply(
        &self,
        user: &TestUser,
        conversation_id: i64,
        message_id: Option<i64>,
    ) -> Reply {
        let path = format!("/api/conversations/{conversation_id}/read");
        match message_id {
            Some(id) => self.post(Some(&user.token), &path, &json!({"message_id": id})).await,
            None => self.post(Some(&user.token), &path, &json!({})).await,
        }
    }

    /// As `mark_read_reply`; asserts 200.
    pub async fn mark_read(&self, user: &TestUser, conversation_id: i64, message_id: Option<i64>) -> Reply {
        let reply = self.mark_read_reply(user, conversation_id, message_id).await;
        assert_eq!(reply.status, 200, "read: {}", reply.body);
        reply
    }

    /// `PATCH /api/messages/{id}/read`: marks read up to that message.
    pub async fn read_message_reply(&self, user: &TestUser, message_id: i64) -> Reply {
        self.send_empty(
            reqwest::Method::PATCH,
            Some(&user.token),
            &format!("/api/messages/{message_id}/read"),
        )
        .await
    }

    /// `POST /api/conversations/{id}/read` with no body at all (up to the latest).
    pub async fn mark_read_without_body(&self, user: &TestUser, conversation_id: i64) -> Reply {
        self.send_empty(
            reqwest::Method::POST,
            Some(&user.token),
            &format!("/api/conversations/{conversation_id}/read"),
        )
        .await
    }

    /// Every event of `GET /api/sync?since=` (asserts 200 and a single page), and `last_event_id`.
    pub async fn sync(&self, user: &TestUser, since: i64) -> (Vec<Value>, i64) {
        let reply = self.get(Some(&user.token), &format!("/api/sync?since={since}&limit=1000")).await;
        assert_eq!(reply.status, 200, "sync: {}", reply.body);
        assert_eq!(reply.body["has_more"], false);
        let events = reply.body["events"].as_array().expect("events").clone();
        (events, reply.body["last_event_id"].as_i64().expect("last_event_id"))
    }

    // ---- groups ----

    /// `POST /api/groups`.
    pub async fn create_group_reply(&self, owner: &TestUser, name: &str, member_ids: &[i64]) -> Reply {
        self.post(Some(&owner.token), "/api/groups", &json!({"name": name, "member_ids": member_ids})).await
    }

    /// Creates a group owned by `owner` with `members` and asserts 201; returns its id.
    pub async fn create_group(&self, owner: &TestUser, name: &str, members: &[&TestUser]) -> i64 {
        let ids: Vec<i64> = members.iter().map(|user| user.id).collect();
        let reply = self.create_group_reply(owner, name, &ids).await;
        assert_eq!(reply.status, 201, "create group: {}", reply.body);
        id_of(&reply.body)
    }

    /// `POST /api/groups/{id}/messages` with `body`.
    pub async fn group_send_reply(&self, from: &TestUser, group_id: i64, body: &Value) -> Reply {
        self.post(Some(&from.token), &format!("/api/groups/{group_id}/messages"), body).await
    }

    /// Sends `text` to a group and asserts 201; returns the message.
    pub async fn group_send(&self, from: &TestUser, group_id: i64, text: &str) -> Value {
        let reply = self.group_send_reply(from, group_id, &json!({"message": text})).await;
        assert_eq!(reply.status, 201, "group send: {}", reply.body);
        reply.body
    }

    /// `POST /api/groups/{id}/members`: `actor` adds `user_id`.
    pub async fn add_member(&self, actor: &TestUser, group_id: i64, user_id: i64) -> Reply {
        self.post(
            Some(&actor.token),
            &format!("/api/groups/{group_id}/members"),
            &json!({"user_id": user_id}),
        )
        .await
    }

    /// `DELETE /api/groups/{id}/members/{user_id}`: `actor` removes `user_id`, or leaves when
    /// it is their own id.
    pub async fn remove_member_reply(&self, actor: &TestUser, group_id: i64, user_id: i64) -> Reply {
        self.send_empty(
            reqwest::Method::DELETE,
            Some(&actor.token),
            &format!("/api/groups/{group_id}/members/{user_id}"),
        )
        .await
    }

    /// As `remove_member_reply`; asserts 204.
    pub async fn remove_member(&self, actor: &TestUser, group_id: i64, user_id: i64) {
        let reply = self.remove_member_reply(actor, group_id, user_id).await;
        assert_eq!(reply.status, 204, "remove member: {}", reply.body);
    }

    /// `PATCH /api/groups/{id}/members/{user_id}` `{role}`: `actor` sets `user_id`'s role.
    pub async fn set_role_reply(&self, actor: &TestUser, group_id: i64, user_id: i64, role: &str) -> Reply {
        self.send_json(
            reqwest::Method::PATCH,
            Some(&actor.token),
            &format!("/api/groups/{group_id}/members/{user_id}"),
            &json!({"role": role}),
        )
        .await
    }

    // ---- reactions, pins and notification settings (v1.1) ----

    /// `PUT /api/messages/{id}/reactions/{emoji}`; the emoji is percent-encoded here.
    pub async fn react_reply(&self, user: &TestUser, message_id: i64, emoji: &str) -> Reply {
        let path = format!("/api/messages/{message_id}/reactions/{}", path_segment(emoji));
        self.send_empty(reqwest::Method::PUT, Some(&user.token), &path).await
    }

    /// As `react_reply`; asserts 200 and returns the body, `{message_id, reactions}`.
    pub async fn react(&self, user: &TestUser, message_id: i64, emoji: &str) -> Value {
        let reply = self.react_reply(user, message_id, emoji).await;
        assert_eq!(reply.status, 200, "react {emoji:?} to {message_id}: {}", reply.body);
        reply.body
    }

    /// `DELETE /api/messages/{id}/reactions/{emoji}`; the emoji is percent-encoded here.
    pub async fn unreact_reply(&self, user: &TestUser, message_id: i64, emoji: &str) -> Reply {
        let path = format!("/api/messages/{message_id}/reactions/{}", path_segment(emoji));
        self.send_empty(reqwest::Method::DELETE, Some(&user.token), &path).await
    }

    /// As `unreact_reply`; asserts 200 and returns the body, `{message_id, reactions}`.
    pub async fn unreact(&self, user: &TestUser, message_id: i64, emoji: &str) -> Value {
        let reply = self.unreact_reply(user, message_id, emoji).await;
        assert_eq!(reply.status, 200, "unreact {emoji:?} from {message_id}: {}", reply.body);
        reply.body
    }

    /// `PUT /api/messages/{id}/pin`.
    pub async fn pin_reply(&self, user: &TestUser, message_id: i64) -> Reply {
        self.send_empty(reqwest::Method::PUT, Some(&user.token), &format!("/api/messages/{message_id}/pin"))
            .await
    }

    /// As `pin_reply`; asserts 200 and returns the message.
    pub async fn pin(&self, user: &TestUser, message_id: i64) -> Value {
        let reply = self.pin_reply(user, message_id).await;
        assert_eq!(reply.status, 200, "pin {message_id}: {}", reply.body);
        reply.body
    }

    /// `DELETE /api/messages/{id}/pin`.
    pub async fn unpin_reply(&self, user: &TestUser, message_id: i64) -> Reply {
        self.send_empty(
            reqwest::Method::DELETE,
            Some(&user.token),
            &format!("/api/messages/{message_id}/pin"),
        )
        .await
    }

    /// As `unpin_reply`; asserts 204.
    pub async fn unpin(&self, user: &TestUser, message_id: i64) {
        let reply = self.unpin_reply(user, message_id).await;
        assert_eq!(reply.status, 204, "unpin {message_id}: {}", reply.body);
    }

    /// `GET /api/conversations/{id}/pins`.
    pub async fn pins_reply(&self, user: &TestUser, conversation_id: i64) -> Reply {
        self.get(Some(&user.token), &format!("/api/conversations/{conversation_id}/pins")).await
    }

    /// As `pins_reply`; asserts 200 and returns `messages`, most recently pinned first.
    pub async fn pins(&self, user: &TestUser, conversation_id: i64) -> Vec<Value> {
        let reply = self.pins_reply(user, conversation_id).await;
        assert_eq!(reply.status, 200, "pins of {conversation_id}: {}", reply.body);
        reply.body["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("pins without messages: {}", reply.body))
            .clone()
    }

    /// `PUT /api/conversations/{id}/settings` with `body`.
    pub async fn settings_reply(&self, user: &TestUser, conversation_id: i64, body: &Value) -> Reply {
        self.send_json(
            reqwest::Method::PUT,
            Some(&user.token),
            &format!("/api/conversations/{conversation_id}/settings"),
            body,
        )
        .await
    }

    /// As `settings_reply`; asserts 200 and returns the body, `{conversation_id, notify, muted_until}`.
    pub async fn settings(&self, user: &TestUser, conversation_id: i64, body: &Value) -> Value {
        let reply = self.settings_reply(user, conversation_id, body).await;
        assert_eq!(reply.status, 200, "settings {body}: {}", reply.body);
        reply.body
    }

    // ---- users, blocks and contacts ----

    /// `GET /api/users/{id}/presence`: `user`'s presence as `viewer` sees it.
    pub async fn presence_reply(&self, viewer: &TestUser, user: &TestUser) -> Reply {
        self.get(Some(&viewer.token), &format!("/api/users/{}/presence", user.id)).await
    }

    /// As `presence_reply`; asserts 200 and returns the body.
    pub async fn presence(&self, viewer: &TestUser, user: &TestUser) -> Value {
        let reply = self.presence_reply(viewer, user).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    /// `POST /api/blocks`: `by` blocks `user_id`.
    pub async fn block(&self, by: &TestUser, user_id: i64) -> Reply {
        self.post(Some(&by.token), "/api/blocks", &json!({"user_id": user_id})).await
    }

    /// `DELETE /api/blocks/{user_id}`.
    pub async fn unblock(&self, by: &TestUser, user_id: i64) -> Reply {
        self.send_empty(reqwest::Method::DELETE, Some(&by.token), &format!("/api/blocks/{user_id}")).await
    }

    /// `POST /api/contacts/requests`: `from` asks `to`.
    pub async fn request_contact(&self, from: &TestUser, to: &TestUser) -> Reply {
        self.post(Some(&from.token), "/api/contacts/requests", &json!({"user_id": to.id})).await
    }

    /// `POST /api/contacts/requests/{id}/accept` as `user`.
    pub async fn accept_contact(&self, user: &TestUser, request_id: i64) -> Reply {
        self.send_empty(
            reqwest::Method::POST,
            Some(&user.token),
            &format!("/api/contacts/requests/{request_id}/accept"),
        )
        .await
    }
}

/// Asserts the contract's time format: RFC 3339 UTC with milliseconds, `2026-11-22T10:30:00.123Z`.
pub fn assert_contract_time(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("a time is a string: {value}"));
    assert!(chrono::DateTime::parse_from_rfc3339(text).is_ok(), "not RFC 3339: {text}");
    let bytes = text.as_bytes();
    assert!(
        text.len() == 24
            && bytes[19] == b'.'
            && bytes[20..23].iter().all(u8::is_ascii_digit)
            && text.ends_with('Z'),
        "not UTC with milliseconds: {text}"
    );
}

type Stream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct WsClient {
    pub stream: Stream,
    /// The `hello` frame the server opened with.
    pub hello: Value,
}

const FRAME_WAIT: Duration = Duration::from_secs(5);

impl WsClient {
    /// The next JSON text frame (pings are answered by the client library).
    pub async fn next(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(FRAME_WAIT, self.stream.next())
                .await
                .expect("a frame within 5 s")
                .expect("socket open")
                .expect("frame");
            match message {
                WsMessage::Text(text) => return serde_json::from_str(&text).expect("JSON frame"),
                WsMessage::Ping(_) | WsMessage::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame of `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Asserts nothing but pings arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        if let Ok(Some(Ok(message))) = tokio::time::timeout(wait, self.stream.next()).await {
            match message {
                WsMessage::Ping(_) | WsMessage::Pong(_) => {}
                other => panic!("expected no frame, got {other:?}"),
            }
        }
    }

    /// Asserts no frame of `kind` arrives within `wait` (other frames are skipped).
    pub async fn expect_none_of(&mut self, kind: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, self.stream.next()).await {
            if let WsMessage::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                assert_ne!(frame["type"], kind, "unexpected {kind} frame: {frame}");
            }
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream.send(WsMessage::Text(frame.to_string().into())).await.expect("send frame");
    }

    pub async fn send_raw(&mut self, message: WsMessage) {
        self.stream.send(message).await.expect("send frame");
    }

    /// Waits for the server's close frame and returns its code.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            let message =
                tokio::time::timeout(FRAME_WAIT, self.stream.next()).await.expect("close within 5 s");
            match message {
                Some(Ok(WsMessage::Close(Some(CloseFrame { code, .. })))) => {
                    return u16::from(code);
                }
                Some(Ok(WsMessage::Close(None))) | None => panic!("closed without a code"),
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("socket error before close: {err}"),
            }
        }
    }
}

/// How long a test waits to be sure a frame does not come.
pub const QUIET: Duration = Duration::from_millis(400);

/// `text` percent-encoded as one URL path segment: every byte but ASCII letters, digits and
/// `-._~` becomes `%XX`, so emoji, spaces and control characters reach the server as written.
pub fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

pub fn id_of(value: &Value) -> i64 {
    value["id"].as_i64().unwrap_or_else(|| panic!("id in {value}"))
}

pub fn event_id_of(frame: &Value) -> i64 {
    frame["event_id"].as_i64().unwrap_or_else(|| panic!("an event_id: {frame}"))
}

/// The conversation a message belongs to.
pub fn conversation_of(message: &Value) -> i64 {
    message["conversation_id"].as_i64().unwrap_or_else(|| panic!("conversation_id in {message}"))
}

/// Asserts no frame of `kind` reaches any of `sockets`.
pub async fn none_get(sockets: &mut [(&str, WsClient)], kind: &str) {
    let mut wait = QUIET;
    for (_, socket) in sockets.iter_mut() {
        socket.expect_none_of(kind, wait).await;
        // The first wait covered the others too.
        wait = Duration::from_millis(100);
    }
}

/// Asserts a 422 `validation_failed` naming `field`.
pub fn assert_invalid(reply: &Reply, field: &str, what: &str) {
    assert_error(reply, 422, "validation_failed", what);
    assert_eq!(reply.error_field(), Some(field), "{what}: {}", reply.body);
}

/// Asserts a status and the contract's error code.
pub fn assert_error(reply: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    assert_eq!(reply.error_code(), code, "{what}: {}", reply.body);
}
