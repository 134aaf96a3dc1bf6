//! Rate limits answer 429 with `Retry-After` and the contract's body; `limits.enabled =
//! false` turns them off. Limits are in memory per instance, so SQLite alone covers them.

use std::time::Duration;

use serde_json::json;
use switchboard::config::Settings;

use crate::helpers::{Backend, PASSWORD, Reply, TestApp, spawn_app_with};

async fn limited(customize: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(Backend::Sqlite, |settings| {
        settings.limits.enabled = true;
        customize(settings);
    })
    .await
}

fn assert_rate_limited(reply: &Reply) {
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.error_code(), "rate_limited");
    let retry_after: u64 = reply
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .expect("a Retry-After header in whole seconds");
    assert!((1..=3600).contains(&retry_after), "Retry-After {retry_after}");
}

/// A login from `address` (the deployment trusts the proxy's `X-Forwarded-For`).
async fn login_from(app: &TestApp, address: &str, username: &str, password: &str) -> Reply {
    let request = app
        .client
        .post(app.url("/api/auth/login"))
        .header("x-forwarded-for", address)
        .json(&json!({"username": username, "password": password}));
    app.send_request(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_limited_per_address() {
    let app = limited(|s| s.limits.login_per_minute_per_ip = 5).await;
    app.register("alice").await;
    for _ in 0..5 {
        assert_eq!(
            app.post(None, "/api/auth/login", &json!({"username": "nobody", "password": "whatever-it-is"}))
                .await
                .status,
            401
        );
    }
    let right = json!({"username": "ALICE", "password": PASSWORD});
    assert_rate_limited(&app.post(None, "/api/auth/login", &right).await);
}

/// Targeted lockout: wrong passwords for one username from one address throttle that
/// address for that username only; the owner logs in from their own address, and the same
/// attacker's other usernames are unaffected. Only guessing spread over many addresses
/// reaches the loose per-username limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_from_one_address_cannot_lock_the_owner_out() {
    let app = limited(|s| {
        s.limits.trust_forwarded_for = true;
        s.limits.login_per_minute_per_ip = 1000;
        s.limits.login_per_hour_per_username_and_ip = 5;
        s.limits.login_per_hour_per_username = 12;
    })
    .await;
    let alice = app.register("alice").await;
    app.register("bob").await;
    let attacker = "203.0.113.9";
    for _ in 0..5 {
        assert_eq!(login_from(&app, attacker, "alice", "not-her-password").await.status, 401);
    }
    // The attacker is throttled for alice, even were they to guess right…
    assert_rate_limited(&login_from(&app, attacker, "alice", PASSWORD).await);
    assert_rate_limited(&login_from(&app, attacker, "alice", "not-her-password").await);
    // …while alice logs in from her own address, and the attacker's address still serves bob.
    let owner = login_from(&app, "198.51.100.7", "ALICE", PASSWORD).await;
    assert_eq!(owner.status, 200, "{}", owner.body);
    assert_eq!(login_from(&app, attacker, "bob", PASSWORD).await.status, 200);
    // Guessing from many addresses at once reaches the per-username limit (12 here).
    for n in 0..6 {
        let reply = login_from(&app, &format!("192.0.2.{n}"), "alice", "not-her-password").await;
        assert_eq!(reply.status, 401, "guess {n}");
    }
    assert_rate_limited(&login_from(&app, "198.51.100.7", "alice", PASSWORD).await);
    // Tokens already issued keep working.
    assert_eq!(app.get(Some(&alice.token), "/api/users/me").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_per_address() {
    let app = limited(|s| s.limits.register_per_hour_per_ip = 2).await;
    app.register("first").await;
    app.register("second").await;
    let third =
        app.post(None, "/api/auth/register", &json!({"username": "third", "password": PASSWORD})).await;
    assert_rate_limited(&third);
    // Nothing was created for the refused attempt.
    let first = app.post(None, "/api/auth/login", &json!({"username": "first", "password": PASSWORD})).await;
    let token = first.body["token"].as_str().expect("token").to_owned();
    let search = app.get(Some(&token), "/api/users/search?q=third").await;
    assert_eq!(search.body["users"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_are_limited_per_user() {
    let app = limited(|s| s.limits.send_per_minute_per_user = 3).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    for n in 0..3 {
        app.dm(&alice, &bob, &format!("message {n}")).await;
    }
    let over = app.send_message(&alice, &json!({"recipient_id": bob.id, "message": "one too many"})).await;
    assert_rate_limited(&over);
    let group = app.create_group_reply(&alice, "g", &[bob.id]).await;
    let group_id = group.body["id"].as_i64().expect("group id");
    let to_group = app.group_send_reply(&alice, group_id, &json!({"message": "hi"})).await;
    assert_rate_limited(&to_group);
    // Bob has his own allowance; the refused message was never stored.
    app.dm(&bob, &alice, "my turn").await;
    let conversation = app.get(Some(&bob.token), &format!("/api/conversations/direct/{}", alice.id)).await;
    let texts = app.history_texts(&bob, conversation.body["id"].as_i64().expect("id"), "").await;
    assert_eq!(texts, ["message 0", "message 1", "message 2", "my turn"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_may_open_only_so_many_sockets() {
    let app = limited(|s| s.limits.max_sockets_per_user = 2).await;
    let alice = app.register("alice").await;
    let first = app.ws(&alice).await;
    let _second = app.ws(&alice).await;
    let refused = app.get(Some(&alice.token), "/ws").await;
    assert_rate_limited(&refused);
    // Closing one frees a place.
    drop(first);
    let mut opened = false;
    for _ in 0..50 {
        let url = format!("{}/ws?token={}", app.ws_address, alice.token);
        if tokio_tungstenite::connect_async(url).await.is_ok() {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(opened, "a socket opens again once one is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_over_the_limit_is_dropped() {
    let app = limited(|s| s.limits.typing_per_minute_per_user = 1).await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let carol = app.register("carol").await;
    let with_bob = app.dm(&alice, &bob, "hi bob").await["conversation_id"].as_i64().expect("id");
    let with_carol = app.dm(&alice, &carol, "hi carol").await["conversation_id"].as_i64().expect("id");
    let mut alice_socket = app.ws(&alice).await;
    let mut bob_socket = app.ws(&bob).await;
    let mut carol_socket = app.ws(&carol).await;
    alice_socket.send(json!({"type": "typing", "conversation_id": with_bob})).await;
    assert_eq!(bob_socket.next_of("typing").await["user_id"], alice.id);
    // Another conversation, but the user's allowance is spent.
    alice_socket.send(json!({"type": "typing", "conversation_id": with_carol})).await;
    carol_socket.expect_none_of("typing", Duration::from_millis(400)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_limits_refuse_nothing() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.limits.enabled = false;
        s.limits.register_per_hour_per_ip = 1;
        s.limits.send_per_minute_per_user = 1;
        s.limits.max_sockets_per_user = 1;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    for n in 0..3 {
        app.dm(&alice, &bob, &format!("message {n}")).await;
    }
    let _one = app.ws(&alice).await;
    let _two = app.ws(&alice).await;
}
