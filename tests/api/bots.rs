//! Bots (`/api/bots`) and their webhooks: a bot is a user owned by another, with a token that
//! rotation revokes; every direct message to it (and every group message that mentions it)
//! reaches its webhook, signed, at least once and in order; its `{"reply"}` is posted once.

use std::time::Duration;

use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;
use crate::webhook_receiver::{Receiver, reply, status};

on_both_databases!(
    a_bot_is_a_user_its_owner_manages_and_its_token_rotation_revokes,
    bad_bot_input_is_422_naming_the_field,
    a_direct_message_reaches_the_webhook_signed_and_its_reply_is_posted_once,
    in_groups_only_mentions_reach_a_bot_and_bots_never_trigger_bots,
    a_hook_that_keeps_failing_is_disabled_and_its_owner_told,
    an_assistant_bot_answers_through_the_chat_completions_api,
);

/// Creates a bot owned by `owner`; asserts 201 and returns (bot as a user, webhook secret).
pub async fn create_bot(
    app: &TestApp,
    owner: &TestUser,
    name: &str,
    webhook_url: Option<&str>,
) -> (TestUser, String) {
    let reply = app
        .post(Some(&owner.token), "/api/bots", &json!({"username": name, "webhook_url": webhook_url}))
        .await;
    assert_eq!(reply.status, 201, "create bot {name}: {}", reply.body);
    let bot = TestUser {
        id: reply.body["bot"]["id"].as_i64().expect("bot id"),
        username: reply.body["bot"]["username"].as_str().expect("username").to_owned(),
        token: reply.body["token"].as_str().expect("token").to_owned(),
    };
    (bot, reply.body["webhook_secret"].as_str().expect("webhook_secret").to_owned())
}

async fn bots_of(app: &TestApp, owner: &TestUser) -> Vec<Value> {
    let reply = app.get(Some(&owner.token), "/api/bots").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["bots"].as_array().expect("bots").clone()
}

async fn a_bot_is_a_user_its_owner_manages_and_its_token_rotation_revokes(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let mallory = app.user("mallory").await;
    let reply = app
        .post(Some(&alice.token), "/api/bots", &json!({"username": "Helper_Bot", "display_name": "Helper"}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let bot_view = reply.body["bot"].clone();
    assert_eq!(bot_view["username"], "helper_bot");
    assert_eq!(bot_view["display_name"], "Helper");
    assert_eq!(bot_view["is_bot"], true);
    let id = bot_view["id"].as_i64().unwrap();
    let token = reply.body["token"].as_str().unwrap().to_owned();
    assert!(reply.body["webhook_secret"].as_str().is_some_and(|s| s.len() >= 32));

    // The bot reads and writes with its token, as anyone; it cannot log in with a password.
    let me = app.get(Some(&token), "/api/users/me").await;
    assert_eq!((me.status, me.body["id"].clone(), me.body["is_bot"].clone()), (200, json!(id), json!(true)));
    assert_eq!(app.get(Some(&alice.token), "/api/users/me").await.body["is_bot"], false);
    let login =
        app.post(None, "/api/auth/login", &json!({"username": "helper_bot", "password": "!bot"})).await;
    assert_eq!(login.status, 401, "{}", login.body);
    let bot = TestUser { id, username: "helper_bot".into(), token: token.clone() };
    let sent = app.dm(&bot, &alice, "hello from a bot").await;
    assert_eq!(sent["sender_id"], id);

    // The owner's list; nobody else's.
    let listed = bots_of(&app, &alice).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["user"]["id"], id);
    assert_eq!(
        (listed[0]["webhook_url"].clone(), listed[0]["webhook_enabled"].clone()),
        (Value::Null, json!(true))
    );
    assert!(bots_of(&app, &mallory).await.is_empty());
    for (what, reply) in [
        (
            "patch",
            app.send_json(
                reqwest::Method::PATCH,
                Some(&mallory.token),
                &format!("/api/bots/{id}"),
                &json!({"display_name": "Mine"}),
            )
            .await,
        ),
        ("rotate", app.post(Some(&mallory.token), &format!("/api/bots/{id}/token"), &json!({})).await),
        (
            "delete",
            app.send_empty(reqwest::Method::DELETE, Some(&mallory.token), &format!("/api/bots/{id}")).await,
        ),
        (
            "a user who is no bot",
            app.send_empty(reqwest::Method::DELETE, Some(&alice.token), &format!("/api/bots/{}", mallory.id))
                .await,
        ),
    ] {
        assert_error(&reply, 404, "not_found", what);
    }

    let patched = app
        .send_json(
            reqwest::Method::PATCH,
            Some(&alice.token),
            &format!("/api/bots/{id}"),
            &json!({"display_name": "Helpful"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["user"]["display_name"], "Helpful");

    // Rotation: the old token stops at once, the new one works.
    let rotated = app.post(Some(&alice.token), &format!("/api/bots/{id}/token"), &json!({})).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let new_token = rotated.body["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    assert_error(&app.get(Some(&token), "/api/users/me").await, 401, "invalid_token", "the old token");
    assert_eq!(app.get(Some(&new_token), "/api/users/me").await.status, 200);

    // Deleted: its token stops, its messages stay, its name stays taken.
    let deleted =
        app.send_empty(reqwest::Method::DELETE, Some(&alice.token), &format!("/api/bots/{id}")).await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_error(
        &app.get(Some(&new_token), "/api/users/me").await,
        401,
        "invalid_token",
        "a deleted bot's token",
    );
    assert!(bots_of(&app, &alice).await.is_empty());
    let texts = app.history_texts(&alice, conversation_of(&sent), "limit=10").await;
    assert_eq!(texts, vec!["hello from a bot".to_owned()]);
    let again = app.post(Some(&alice.token), "/api/bots", &json!({"username": "helper_bot"})).await;
    assert_error(&again, 409, "username_taken", "the name of a deleted bot");
}

async fn bad_bot_input_is_422_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    for (body, field, what) in [
        (json!({"username": "x"}), "username", "too short"),
        (json!({"username": "ok_bot", "display_name": "a\u{7}b"}), "display_name", "a control character"),
        (
            json!({"username": "ok_bot", "webhook_url": "ftp://example.com/hook"}),
            "webhook_url",
            "not http(s)",
        ),
        (json!({"username": "ok_bot", "webhook_url": "not a url"}), "webhook_url", "not a URL"),
        (json!({"username": "ok_bot", "webhook_url": "http://127.0.0.1:9/hook"}), "webhook_url", "loopback"),
        (json!({"username": "ok_bot", "webhook_url": "http://10.0.0.7/hook"}), "webhook_url", "private"),
        (json!({"username": "ok_bot", "webhook_url": "http://[::1]/hook"}), "webhook_url", "IPv6 loopback"),
        (json!({"username": "ok_bot", "kind": "assistant"}), "kind", "no assistant configured"),
        (json!({"username": "ok_bot", "kind": "robot"}), "kind", "an unknown kind"),
    ] {
        let reply = app.post(Some(&alice.token), "/api/bots", &body).await;
        assert_invalid(&reply, field, what);
    }
    assert!(bots_of(&app, &alice).await.is_empty(), "nothing stored");
    let (bot, _) = create_bot(&app, &alice, "ok_bot", None).await;
    let reply = app
        .send_json(
            reqwest::Method::PATCH,
            Some(&alice.token),
            &format!("/api/bots/{}", bot.id),
            &json!({"webhook_url": "http://192.168.1.1/x"}),
        )
        .await;
    assert_invalid(&reply, "webhook_url", "a private URL by PATCH");
    assert_eq!(bots_of(&app, &alice).await[0]["webhook_url"], Value::Null, "unchanged");
}

/// The hook answers 503 first (retried, the same event id), then a reply: the reply is posted
/// once, by the bot, quoting the message.
async fn a_direct_message_reaches_the_webhook_signed_and_its_reply_is_posted_once(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.bots.allow_private_urls = true).await;
    let receiver = Receiver::start().await;
    let alice = app.user("alice").await;
    let owner = app.user("owner").await;
    let (bot, secret) = create_bot(&app, &owner, "echo_bot", Some(&receiver.url("echo"))).await;
    receiver.trust("echo", &secret);
    receiver.script("echo", vec![status(503), reply("pong")]);

    let ping = app.dm(&alice, &bot, "ping").await;
    let calls = receiver.wait_for("echo", 2, Duration::from_secs(15)).await;
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), vec![503, 200]);
    assert_eq!(calls[0].event_id, calls[1].event_id, "the retry is the same event");
    let body = &calls[1].body;
    assert_eq!(body["type"], "new_message");
    assert_eq!(body["bot_id"], bot.id);
    assert_eq!(body["message"]["id"], ping["id"]);
    assert_eq!(body["message"]["message"], "ping");
    assert_eq!(body["conversation"]["id"], ping["conversation_id"]);

    let conversation = conversation_of(&ping);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut messages = app.all_messages(&alice, conversation).await;
    while messages.len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        messages = app.all_messages(&alice, conversation).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let messages = app.all_messages(&alice, conversation).await;
    assert_eq!(messages.len(), 2, "ping and one pong: {messages:#?}");
    let pong = &messages[1];
    assert_eq!((pong["sender_id"].clone(), pong["message"].clone()), (json!(bot.id), json!("pong")));
    assert_eq!(pong["reply_to"]["id"], ping["id"]);
    // The bot's own reply does not go back to its hook.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.calls("echo").len(), 2);
    receiver.assert_all_verified();
}

async fn in_groups_only_mentions_reach_a_bot_and_bots_never_trigger_bots(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.bots.allow_private_urls = true).await;
    let receiver = Receiver::start().await;
    let alice = app.user("alice").await;
    let (first, first_secret) = create_bot(&app, &alice, "first_bot", Some(&receiver.url("first"))).await;
    let (second, second_secret) = create_bot(&app, &alice, "second_bot", Some(&receiver.url("second"))).await;
    receiver.trust("first", &first_secret);
    receiver.trust("second", &second_secret);
    let group = app.create_group(&alice, "Ops", &[&first, &second]).await;
    // The first bot answers by mentioning the second: a bot's message calls no bot.
    receiver.script("first", vec![reply("@second_bot over to you")]);

    app.group_send(&alice, group, "morning all").await;
    let asked = app.group_send(&alice, group, "@first_bot status?").await;
    let calls = receiver.wait_for("first", 1, Duration::from_secs(10)).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].body["message"]["id"], asked["id"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.all_messages(&alice, group).await.len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let texts = app.history_texts(&alice, group, "limit=10").await;
    assert!(texts.contains(&"@second_bot over to you".to_owned()), "{texts:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.calls("first").len(), 1, "not for the plain message, nor for its own");
    assert!(receiver.calls("second").is_empty(), "bots never trigger bots");
    receiver.assert_all_verified();
}

/// 400 is not retried; after `max_consecutive_failures` failures in a row the hook is off
/// (listed so), its owner gets a message from the bot, and later messages call nothing.
async fn a_hook_that_keeps_failing_is_disabled_and_its_owner_told(backend: Backend) {
    let app = spawn_app_with(backend, |settings| {
        settings.bots.allow_private_urls = true;
        settings.bots.max_consecutive_failures = 2;
    })
    .await;
    let receiver = Receiver::start().await;
    let owner = app.user("owner").await;
    let alice = app.user("alice").await;
    let (bot, secret) = create_bot(&app, &owner, "fragile_bot", Some(&receiver.url("fragile"))).await;
    receiver.trust("fragile", &secret);
    receiver.script("fragile", vec![status(400), status(400)]);

    app.dm(&alice, &bot, "one").await;
    app.dm(&alice, &bot, "two").await;
    let calls = receiver.wait_for("fragile", 2, Duration::from_secs(10)).await;
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), vec![400, 400], "each once, not retried");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while bots_of(&app, &owner).await[0]["webhook_enabled"] != false && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bots_of(&app, &owner).await[0]["webhook_enabled"], false);
    let told = app.conversations(&owner).await;
    let from_bot =
        told.iter().find(|c| c["other_user"]["id"] == bot.id).expect("a conversation with the bot");
    let texts = app.history_texts(&owner, from_bot["id"].as_i64().unwrap(), "limit=10").await;
    assert!(texts.iter().any(|t| t.contains("disabled")), "{texts:?}");

    app.dm(&alice, &bot, "three").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.calls("fragile").len(), 2, "a disabled hook is not called");
    // A new URL turns it back on.
    let patched = app
        .send_json(
            reqwest::Method::PATCH,
            Some(&owner.token),
            &format!("/api/bots/{}", bot.id),
            &json!({"webhook_url": receiver.url("fragile")}),
        )
        .await;
    assert_eq!(patched.body["webhook_enabled"], true, "{}", patched.body);
    app.dm(&alice, &bot, "four").await;
    let calls = receiver.wait_for("fragile", 3, Duration::from_secs(10)).await;
    assert_eq!(calls.last().map(|c| c.body["message"]["message"].clone()), Some(json!("four")));
    receiver.assert_all_verified();
}

/// An OpenAI-compatible `chat/completions` for the tests: records each request (body and
/// Authorization) and answers from a script: `Some(text)` a completion, `None` a 400.
pub struct Model {
    pub port: u16,
    pub requests: Requests,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for Model {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

type Script = Arc<Mutex<Vec<Option<&'static str>>>>;
/// Each request's body and Authorization header.
pub type Requests = Arc<Mutex<Vec<(Value, Option<String>)>>>;

async fn completions(
    request: HttpRequest,
    body: web::Json<Value>,
    state: web::Data<(Requests, Script)>,
) -> HttpResponse {
    let authorization =
        request.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    state.0.lock().unwrap().push((body.into_inner(), authorization));
    let next = {
        let mut script = state.1.lock().unwrap();
        if script.is_empty() { Some("ok") } else { script.remove(0) }
    };
    match next {
        Some(text) => HttpResponse::Ok().json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "test-model",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        })),
        None => HttpResponse::BadRequest().json(json!({"error": {"message": "bad request"}})),
    }
}

impl Model {
    pub async fn start(script: Vec<Option<&'static str>>) -> Model {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new((requests.clone(), Arc::new(Mutex::new(script))));
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let port = listener.local_addr().unwrap().port();
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .route("/v1/chat/completions", web::post().to(completions))
                })
                .workers(1)
                .listen(listener)
                .unwrap()
                .run();
                let _ = tx.send((port, server.handle()));
                let _ = server.await;
            });
        });
        let (port, handle) = rx.await.unwrap();
        Model { port, requests, handle }
    }
}

/// With `assistant.base_url` set, a bot of kind `assistant` answers from the model: the
/// system prompt and the conversation so far go to it, its answer is the bot's reply. A
/// model that fails gets the bot to say so, in its own name.
async fn an_assistant_bot_answers_through_the_chat_completions_api(backend: Backend) {
    let model = Model::start(vec![Some("It is 42."), None]).await;
    let base_url = format!("http://127.0.0.1:{}/v1", model.port);
    let app = spawn_app_with(backend, move |settings| {
        settings.assistant.base_url = base_url;
        settings.assistant.api_key = "sk-test".to_owned().into();
        settings.assistant.model = "test-model".into();
        settings.assistant.system_prompt = "Answer in one sentence.".into();
    })
    .await;
    let alice = app.user("alice").await;
    let reply =
        app.post(Some(&alice.token), "/api/bots", &json!({"username": "oracle", "kind": "assistant"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let bot_id = reply.body["bot"]["id"].as_i64().unwrap();
    assert_eq!(bots_of(&app, &alice).await[0]["kind"], "assistant");
    let bot = TestUser {
        id: bot_id,
        username: "oracle".into(),
        token: reply.body["token"].as_str().unwrap().into(),
    };

    let question = app.dm(&alice, &bot, "What is six times seven?").await;
    let conversation = conversation_of(&question);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.all_messages(&alice, conversation).await.len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages = app.all_messages(&alice, conversation).await;
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert_eq!(
        (messages[1]["sender_id"].clone(), messages[1]["message"].clone()),
        (json!(bot_id), json!("It is 42."))
    );
    assert_eq!(messages[1]["reply_to"]["id"], question["id"]);
    let (sent, authorization) = model.requests.lock().unwrap()[0].clone();
    assert_eq!(authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(sent["model"], "test-model");
    assert_eq!(
        sent["messages"],
        json!([{"role": "system", "content": "Answer in one sentence."}, {"role": "user", "content": "What is six times seven?"}])
    );

    // The model refuses the next one (400, not retried): the bot apologizes as itself.
    app.dm(&alice, &bot, "And eight times nine?").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.all_messages(&alice, conversation).await.len() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages = app.all_messages(&alice, conversation).await;
    assert_eq!(messages.len(), 4, "{messages:#?}");
    assert_eq!(messages[3]["sender_id"], bot_id, "the apology is the bot's");
    assert!(messages[3]["message"].as_str().unwrap().contains("cannot answer"), "{}", messages[3]);
    let (sent, _) = model.requests.lock().unwrap()[1].clone();
    let roles: Vec<&str> =
        sent["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, vec!["system", "user", "assistant", "user"], "the conversation so far");
}
