//! Push subscriptions (Web Push): `GET /api/push/vapid-public-key`, and
//! `POST`/`GET /api/push/subscriptions` and `DELETE /api/push/subscriptions/{id}`. One
//! subscription per endpoint, owned by whoever registered it last; endpoints must be `https://`
//! to a public host (unless `push.allow_insecure_endpoints`), and the keys must be a real P-256
//! point and a 16-byte secret, because the server encrypts to them later.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use std::time::{Duration, Instant, SystemTime};

use crate::helpers::*;
use crate::on_both_databases;
use crate::push_service::{Answer, PushService, answer};

on_both_databases!(
    the_vapid_public_key_is_a_p256_point_and_stays_the_same,
    a_subscription_is_stored_once_per_endpoint_and_listed_for_its_owner_only,
    a_subscription_is_deleted_by_its_owner_only,
    bad_subscriptions_are_422_naming_the_field_and_store_nothing,
    insecure_endpoints_only_where_the_config_allows_them,
    push_routes_need_a_token,
    an_offline_member_gets_one_push_per_subscription_after_the_delay,
    a_member_with_a_live_socket_gets_no_push,
    a_message_read_within_the_delay_is_not_pushed,
    conversation_settings_decide_what_is_pushed,
    push_service_answers_decide_retries_and_removals,
    without_preview_a_push_names_only_the_sender,
);

/// The P-256 generator point, uncompressed (0x04 || x || y), base64url without padding: a
/// valid `p256dh` key.
const P256DH: &str =
    "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";
/// `P256DH` with its `=` padding.
const P256DH_PADDED: &str =
    "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU=";
/// The first 64 bytes of the generator point: one byte short.
const P256DH_64_BYTES: &str =
    "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UQ";
/// 0x04 followed by 64 bytes of 0x01: the right length and prefix, but (1, 1) is not on the curve.
const P256DH_OFF_CURVE: &str =
    "BAEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
/// Bytes 0..16, base64url without padding: a valid `auth` secret.
const AUTH: &str = "AAECAwQFBgcICQoLDA0ODw";
/// `AUTH` with its `=` padding.
const AUTH_PADDED: &str = "AAECAwQFBgcICQoLDA0ODw==";
/// Bytes 0..15: one byte short.
const AUTH_15_BYTES: &str = "AAECAwQFBgcICQoLDA0O";
/// Bytes 0..17: one byte long.
const AUTH_17_BYTES: &str = "AAECAwQFBgcICQoLDA0ODxA";

const SUBSCRIPTIONS: &str = "/api/push/subscriptions";
const VAPID_KEY: &str = "/api/push/vapid-public-key";

/// Decodes base64url, with or without `=` padding.
fn base64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .unwrap_or_else(|err| panic!("not base64url ({err}): {text}"))
}

#[test]
fn the_test_keys_are_what_their_names_say() {
    assert_eq!(base64url_decode(AUTH), (0..16).collect::<Vec<u8>>());
    assert_eq!(base64url_decode(AUTH_PADDED), (0..16).collect::<Vec<u8>>());
    assert_eq!(base64url_decode(AUTH_15_BYTES).len(), 15);
    assert_eq!(base64url_decode(AUTH_17_BYTES).len(), 17);
    let point = base64url_decode(P256DH);
    assert_eq!((point.len(), point[0], point[1], point[64]), (65, 0x04, 0x6b, 0xf5));
    assert_eq!(base64url_decode(P256DH_PADDED), point);
    assert_eq!(base64url_decode(P256DH_64_BYTES), &point[..64]);
    let off_curve = base64url_decode(P256DH_OFF_CURVE);
    assert_eq!(off_curve.len(), 65);
    assert_eq!(off_curve[0], 0x04);
    assert!(off_curve[1..].iter().all(|b| *b == 1));
}

/// An empty subscription list.
fn none() -> Vec<(i64, String)> {
    Vec::new()
}

/// An endpoint on a public push service, unique by `name`.
fn endpoint(name: &str) -> String {
    format!("https://push.example.com/send/{name}")
}

/// A subscription body.
fn subscription_with(endpoint: &str, p256dh: &str, auth: &str) -> Value {
    json!({"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}})
}

/// A valid subscription body for `endpoint`.
fn subscription(endpoint: &str) -> Value {
    subscription_with(endpoint, P256DH, AUTH)
}

/// `POST /api/push/subscriptions` as `user`.
async fn subscribe_reply(app: &TestApp, user: &TestUser, body: &Value) -> Reply {
    app.post(Some(&user.token), SUBSCRIPTIONS, body).await
}

/// Subscribes a new endpoint; asserts 201 `{id}` and returns the id.
async fn subscribe(app: &TestApp, user: &TestUser, endpoint: &str) -> i64 {
    let reply = subscribe_reply(app, user, &subscription(endpoint)).await;
    assert_eq!(reply.status, 201, "subscribe {endpoint}: {}", reply.body);
    let id = id_of(&reply.body);
    assert_eq!(reply.body, json!({"id": id}), "only the id");
    id
}

/// `DELETE /api/push/subscriptions/{id}` as `user`.
async fn unsubscribe_reply(app: &TestApp, user: &TestUser, id: i64) -> Reply {
    app.send_empty(reqwest::Method::DELETE, Some(&user.token), &format!("{SUBSCRIPTIONS}/{id}")).await
}

/// `user`'s subscriptions as `(id, endpoint)`, in the list's order; asserts 200 and that each
/// entry is exactly `{id, endpoint, created_at}` with a contract time.
async fn subscriptions(app: &TestApp, user: &TestUser) -> Vec<(i64, String)> {
    let reply = app.get(Some(&user.token), SUBSCRIPTIONS).await;
    assert_eq!(reply.status, 200, "{}'s subscriptions: {}", user.username, reply.body);
    let list = reply.body["subscriptions"]
        .as_array()
        .unwrap_or_else(|| panic!("no subscriptions array: {}", reply.body))
        .clone();
    assert_eq!(reply.body, json!({"subscriptions": list}), "only the list");
    list.iter()
        .map(|entry| {
            let id = id_of(entry);
            let endpoint =
                entry["endpoint"].as_str().unwrap_or_else(|| panic!("endpoint: {entry}")).to_owned();
            assert_contract_time(&entry["created_at"]);
            let expected = json!({"id": id, "endpoint": endpoint, "created_at": entry["created_at"].clone()});
            assert_eq!(*entry, expected, "exactly id, endpoint and created_at");
            (id, endpoint)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------

/// Browsers need the server's VAPID key to subscribe; it must be a P-256 point and must not
/// change, or every existing subscription stops working.
async fn the_vapid_public_key_is_a_p256_point_and_stays_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let reply = app.get(Some(&alice.token), VAPID_KEY).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let key = reply.body["public_key"]
        .as_str()
        .unwrap_or_else(|| panic!("public_key is a string: {}", reply.body))
        .to_owned();
    assert_eq!(reply.body, json!({"public_key": key}), "only the key");
    assert!(!key.contains('='), "base64url without padding: {key}");
    assert_eq!(key.len(), 87, "65 bytes are 87 characters: {key}");
    let bytes = base64url_decode(&key);
    assert_eq!(bytes.len(), 65, "an uncompressed P-256 point: {key}");
    assert_eq!(bytes[0], 0x04, "uncompressed points start with 0x04: {key}");
    assert_ne!(bytes, base64url_decode(P256DH), "not the generator");

    for (who, user) in [("alice again", &alice), ("bob", &bob), ("alice once more", &alice)] {
        let again = app.get(Some(&user.token), VAPID_KEY).await;
        assert_eq!(again.status, 200, "{who}: {}", again.body);
        assert_eq!(again.body, json!({"public_key": key}), "{who}: the same key");
    }
}

/// A browser re-sends its subscription on every page load: the same endpoint is one
/// subscription, and an endpoint belongs to whoever registered it last (a shared browser).
async fn a_subscription_is_stored_once_per_endpoint_and_listed_for_its_owner_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    for user in [&alice, &bob, &carol] {
        assert_eq!(subscriptions(&app, user).await, none(), "{} starts with none", user.username);
    }

    let phone = endpoint("alice-phone");
    let phone_id = subscribe(&app, &alice, &phone).await;

    // The same endpoint again: 200, the same id, still one entry.
    let again = subscribe_reply(&app, &alice, &subscription(&phone)).await;
    assert_eq!(again.status, 200, "the same endpoint again: {}", again.body);
    assert_eq!(again.body, json!({"id": phone_id}), "the same id");
    assert_eq!(subscriptions(&app, &alice).await, [(phone_id, phone.clone())]);

    // A second endpoint is a second subscription, listed after the first.
    let laptop = endpoint("alice-laptop");
    let laptop_id = subscribe(&app, &alice, &laptop).await;
    assert_ne!(laptop_id, phone_id);
    assert_eq!(
        subscriptions(&app, &alice).await,
        [(phone_id, phone.clone()), (laptop_id, laptop.clone())],
        "oldest first"
    );
    let reply = app.get(Some(&alice.token), SUBSCRIPTIONS).await;
    let list = &reply.body["subscriptions"];
    let (older, newer) = (list[0]["created_at"].as_str(), list[1]["created_at"].as_str());
    assert!(older <= newer, "oldest first: {}", reply.body);

    // Others see none of Alice's.
    assert_eq!(subscriptions(&app, &bob).await, none(), "bob");
    assert_eq!(subscriptions(&app, &carol).await, none(), "carol");

    // Bob registers the phone's endpoint: 200, the same id, and it is his now.
    let moved = subscribe_reply(&app, &bob, &subscription(&phone)).await;
    assert_eq!(moved.status, 200, "another user's endpoint: {}", moved.body);
    assert_eq!(moved.body, json!({"id": phone_id}), "the same id");
    assert_eq!(subscriptions(&app, &bob).await, [(phone_id, phone.clone())], "bob owns it now");
    assert_eq!(subscriptions(&app, &alice).await, [(laptop_id, laptop.clone())], "alice no longer");
    assert_eq!(subscriptions(&app, &carol).await, none(), "carol");

    // Bob again: still 200 and the same id.
    let again = subscribe_reply(&app, &bob, &subscription(&phone)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body, json!({"id": phone_id}));
    assert_eq!(subscriptions(&app, &bob).await, [(phone_id, phone)]);
}

/// Signing out of one browser removes that subscription only, and no one can remove, or probe
/// for, another user's.
async fn a_subscription_is_deleted_by_its_owner_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let phone = endpoint("alice-phone-to-delete");
    let laptop = endpoint("alice-laptop-to-keep");
    let bobs = endpoint("bob-desktop");
    let phone_id = subscribe(&app, &alice, &phone).await;
    let laptop_id = subscribe(&app, &alice, &laptop).await;
    let bob_id = subscribe(&app, &bob, &bobs).await;

    // Bob cannot delete Alice's: 404, as for an id that does not exist.
    let reply = unsubscribe_reply(&app, &bob, phone_id).await;
    assert_error(&reply, 404, "not_found", "someone else's subscription");
    let unknown = phone_id.max(laptop_id).max(bob_id) + 1000;
    let reply = unsubscribe_reply(&app, &alice, unknown).await;
    assert_error(&reply, 404, "not_found", "an unknown id");
    assert_eq!(
        subscriptions(&app, &alice).await,
        [(phone_id, phone.clone()), (laptop_id, laptop.clone())],
        "nothing deleted"
    );

    // Alice deletes her phone's: 204, gone from her list; again, 404.
    let reply = unsubscribe_reply(&app, &alice, phone_id).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(subscriptions(&app, &alice).await, [(laptop_id, laptop.clone())]);
    let reply = unsubscribe_reply(&app, &alice, phone_id).await;
    assert_error(&reply, 404, "not_found", "deleted already");
    assert_eq!(subscriptions(&app, &bob).await, [(bob_id, bobs)], "bob's untouched");

    // Alice cannot delete Bob's either.
    let reply = unsubscribe_reply(&app, &alice, bob_id).await;
    assert_error(&reply, 404, "not_found", "bob's, as alice");

    // The deleted endpoint can be subscribed afresh.
    let renewed = subscribe(&app, &alice, &phone).await;
    let list = subscriptions(&app, &alice).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.contains(&(renewed, phone)), "{list:?}");
    assert!(list.contains(&(laptop_id, laptop)), "{list:?}");
}

/// The server later connects to the endpoint and encrypts to the keys: an endpoint that is not
/// public `https://` would let a user make the server call internal hosts, and bad keys would
/// only fail at send time. Each is refused up front, naming the field, with nothing stored.
async fn bad_subscriptions_are_422_naming_the_field_and_store_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let kept = endpoint("alice-kept");
    let kept_id = subscribe(&app, &alice, &kept).await;
    let before = vec![(kept_id, kept)];
    let fresh = endpoint("never-stored");
    let too_long = format!("https://push.example.com/send/{}", "a".repeat(2048));
    assert!(too_long.len() > 2048);

    let mut cases: Vec<(String, Value, &str)> = Vec::new();
    for bad in [
        "not a url",
        "http://push.example.com/abc",
        "ftp://push.example.com/x",
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://[::1]/x",
        "https://10.1.2.3/x",
        "https://192.168.0.10/x",
        "https://172.16.5.4/x",
        "https://169.254.10.10/x",
        "https://0.0.0.0/x",
        "https://[fe80::1]/x",
        too_long.as_str(),
    ] {
        let what =
            if bad.len() > 100 { "an endpoint over 2048 characters".to_owned() } else { bad.to_owned() };
        cases.push((what, subscription(bad), "endpoint"));
    }
    for (what, p256dh) in [
        ("p256dh not base64url", "***"),
        ("p256dh of 64 bytes", P256DH_64_BYTES),
        ("p256dh not on the curve", P256DH_OFF_CURVE),
    ] {
        cases.push((what.to_owned(), subscription_with(&fresh, p256dh, AUTH), "keys.p256dh"));
    }
    for (what, auth) in [
        ("auth not base64url", "***"),
        ("auth of 15 bytes", AUTH_15_BYTES),
        ("auth of 17 bytes", AUTH_17_BYTES),
    ] {
        cases.push((what.to_owned(), subscription_with(&fresh, P256DH, auth), "keys.auth"));
    }

    for (what, body, field) in &cases {
        let reply = subscribe_reply(&app, &alice, body).await;
        assert_invalid(&reply, field, what);
        assert_eq!(subscriptions(&app, &alice).await, before, "{what}: nothing stored");
    }

    // Padding is optional: padded keys are the same keys.
    let padded = endpoint("alice-padded");
    let reply = subscribe_reply(&app, &alice, &subscription_with(&padded, P256DH_PADDED, AUTH_PADDED)).await;
    assert_eq!(reply.status, 201, "padded keys: {}", reply.body);
    let padded_id = id_of(&reply.body);
    let mixed = endpoint("alice-mixed");
    let reply = subscribe_reply(&app, &alice, &subscription_with(&mixed, P256DH, AUTH_PADDED)).await;
    assert_eq!(reply.status, 201, "one key padded: {}", reply.body);
    let mixed_id = id_of(&reply.body);
    let mut expected = before;
    expected.push((padded_id, padded));
    expected.push((mixed_id, mixed));
    assert_eq!(subscriptions(&app, &alice).await, expected);
}

/// Tests run a push service on 127.0.0.1 over plain HTTP; only the config switch lets such an
/// endpoint in, and it still wants a URL.
async fn insecure_endpoints_only_where_the_config_allows_them(backend: Backend) {
    const LOCAL: &str = "http://127.0.0.1:9/push/abc";

    let strict = spawn_app(backend).await;
    let alice = strict.user("alice").await;
    let reply = subscribe_reply(&strict, &alice, &subscription(LOCAL)).await;
    assert_invalid(&reply, "endpoint", "a local http endpoint by default");
    assert_eq!(subscriptions(&strict, &alice).await, none(), "nothing stored");
    // A name that resolves to loopback (from /etc/hosts) is refused like the address.
    let name = loopback_name();
    let reply = subscribe_reply(&strict, &alice, &subscription(&format!("https://{name}/push/abc"))).await;
    assert_invalid(&reply, "endpoint", "a name resolving to loopback");
    assert_eq!(subscriptions(&strict, &alice).await, none(), "nothing stored");

    let relaxed = spawn_app_with(backend, |settings| settings.push.allow_insecure_endpoints = true).await;
    let bob = relaxed.user("bob").await;
    let reply = subscribe_reply(&relaxed, &bob, &subscription(LOCAL)).await;
    assert_eq!(reply.status, 201, "allowed by the config: {}", reply.body);
    let id = id_of(&reply.body);
    assert_eq!(reply.body, json!({"id": id}));
    assert_eq!(subscriptions(&relaxed, &bob).await, [(id, LOCAL.to_owned())]);
    let reply = subscribe_reply(&relaxed, &bob, &subscription("not a url")).await;
    assert_invalid(&reply, "endpoint", "not a url, even when insecure endpoints are allowed");
    assert_eq!(subscriptions(&relaxed, &bob).await, [(id, LOCAL.to_owned())], "nothing more stored");
}

/// A host name other than `localhost` that /etc/hosts maps to a loopback address.
fn loopback_name() -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").expect("/etc/hosts");
    hosts
        .lines()
        .filter_map(|line| line.split('#').next())
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address: std::net::IpAddr = fields.next()?.parse().ok()?;
            address
                .is_loopback()
                .then(|| fields.find(|name| !name.contains("localhost")).map(str::to_owned))?
        })
        .next()
        .expect("the test needs a name besides localhost for a loopback address in /etc/hosts")
}

/// Subscriptions belong to a user; none of the push routes work anonymously.
async fn push_routes_need_a_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let phone = endpoint("alice-phone");
    let id = subscribe(&app, &alice, &phone).await;

    let replies = [
        ("the VAPID key", app.get(None, VAPID_KEY).await),
        ("subscribe", app.post(None, SUBSCRIPTIONS, &subscription(&endpoint("anonymous"))).await),
        ("list", app.get(None, SUBSCRIPTIONS).await),
        ("delete", app.send_empty(reqwest::Method::DELETE, None, &format!("{SUBSCRIPTIONS}/{id}")).await),
    ];
    for (what, reply) in &replies {
        assert_eq!(reply.status, 401, "{what} without a token: {}", reply.body);
        assert!(!reply.error_code().is_empty(), "{what}");
    }
    assert_eq!(subscriptions(&app, &alice).await, [(id, phone)], "nothing changed");
}

// ---- delivery to a push service ----------------------------------------------------------

/// Seconds from commit to push in these tests.
const DELAY: u64 = 1;
/// Long enough for a push that is due to have arrived: the delay, a tick, a request.
const SETTLE: Duration = Duration::from_millis(2500);

/// An app that pushes after `DELAY`, to the test's push service on loopback.
async fn push_app(backend: Backend, customize: impl FnOnce(&mut switchboard::config::Settings)) -> TestApp {
    spawn_app_with(backend, |settings| {
        settings.push.delay_seconds = DELAY;
        settings.push.allow_insecure_endpoints = true;
        customize(settings);
    })
    .await
}

/// A push service that trusts `app`'s VAPID key.
async fn push_service(app: &TestApp, user: &TestUser) -> PushService {
    let reply = app.get(Some(&user.token), VAPID_KEY).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    PushService::start(reply.body["public_key"].as_str().expect("public_key")).await
}

/// Subscribes `user` from a new browser named `browser` on `service`; returns the id.
async fn subscribe_browser(app: &TestApp, service: &PushService, user: &TestUser, browser: &str) -> i64 {
    let subscription = service.browser(browser);
    let reply = subscribe_reply(app, user, &subscription.body).await;
    assert_eq!(reply.status, 201, "subscribe {browser}: {}", reply.body);
    id_of(&reply.body)
}

fn pushed_ids(service: &PushService, browser: &str) -> Vec<i64> {
    service
        .received_by(browser)
        .iter()
        .map(|push| push.payload["message_id"].as_i64().expect("message_id"))
        .collect()
}

/// Someone whose tabs are closed learns of a message: one push per subscription (laptop and
/// phone), with the contract's payload, no sooner than the delay, never to the sender, and
/// not repeated.
async fn an_offline_member_gets_one_push_per_subscription_after_the_delay(backend: Backend) {
    let app = push_app(backend, |_| {}).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let service = push_service(&app, &bob).await;
    subscribe_browser(&app, &service, &bob, "bob-laptop").await;
    subscribe_browser(&app, &service, &bob, "bob-phone").await;
    subscribe_browser(&app, &service, &alice, "alice-laptop").await;

    let text = format!("Is the bike still for sale? {}", "I can pick it up today. ".repeat(5));
    let sent_at = SystemTime::now();
    let message = app.dm(&alice, &bob, &text).await;
    let laptop = service.wait_for("bob-laptop", 1, Duration::from_secs(10)).await;
    let phone = service.wait_for("bob-phone", 1, Duration::from_secs(10)).await;
    assert_eq!((laptop.len(), phone.len()), (1, 1), "one push to each of bob's browsers");

    let me = app.get(Some(&alice.token), "/api/users/me").await.body;
    let expected = json!({
        "type": "new_message",
        "conversation_id": conversation_of(&message),
        "message_id": id_of(&message),
        "sender": {"id": alice.id, "username": alice.username, "display_name": me["display_name"]},
        "preview": text.chars().take(100).collect::<String>(),
    });
    assert_eq!(laptop[0].payload, expected);
    assert_eq!(phone[0].payload, expected);
    assert_eq!(laptop[0].topic.as_deref(), Some(format!("m{}", id_of(&message)).as_str()));
    let waited = laptop[0].at.duration_since(sent_at).unwrap_or_default();
    assert!(waited >= Duration::from_millis(DELAY * 1000 - 50), "pushed after {waited:?}, before the delay");

    tokio::time::sleep(SETTLE).await;
    assert_eq!(service.received_by("bob-laptop").len(), 1, "not pushed twice");
    assert_eq!(service.received_by("bob-phone").len(), 1, "not pushed twice");
    assert_eq!(service.requests("alice-laptop"), 0, "the sender is not pushed her own message");
    service.assert_all_verified();
    let metrics =
        app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    let sent = metrics
        .lines()
        .find_map(|line| line.strip_prefix("switchboard_push_sent_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(sent >= 2, "the pushes are counted: {sent}");
}

/// A member with an open socket sees the message live: no push. Once the socket is closed,
/// the next message is pushed (so the silence was not the push service's).
async fn a_member_with_a_live_socket_gets_no_push(backend: Backend) {
    let app = push_app(backend, |_| {}).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let service = push_service(&app, &bob).await;
    subscribe_browser(&app, &service, &bob, "bob").await;

    let mut socket = app.ws(&bob).await;
    let first = app.dm(&alice, &bob, "you there?").await;
    socket.next_of("new_message").await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(service.requests("bob"), 0, "online: no push");

    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.presence(&alice, &bob).await["status"] != "offline" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = app.dm(&alice, &bob, "ok, later then").await;
    let pushed = service.wait_for("bob", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(pushed_ids(&service, "bob"), vec![id_of(&second)], "only the message sent while away");
    assert_ne!(id_of(&first), id_of(&second));
    assert_eq!(pushed.len(), 1);
    service.assert_all_verified();
}

/// Reading a message on another device within the delay takes its push back.
async fn a_message_read_within_the_delay_is_not_pushed(backend: Backend) {
    let app = push_app(backend, |settings| settings.push.delay_seconds = 2).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let service = push_service(&app, &bob).await;
    subscribe_browser(&app, &service, &bob, "bob").await;

    let read = app.dm(&alice, &bob, "read me on your phone").await;
    let reply = app.mark_read(&bob, conversation_of(&read), Some(id_of(&read))).await;
    assert!(reply.status < 300, "{}", reply.body);
    let unread = app.dm(&alice, &bob, "and this one you missed").await;
    service.wait_for("bob", 1, Duration::from_secs(10)).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(pushed_ids(&service, "bob"), vec![id_of(&unread)]);
}

/// `notify: mentions` pushes only mentions, `none` nothing, `muted_until` in the future
/// nothing; a member with the defaults gets every message.
async fn conversation_settings_decide_what_is_pushed(backend: Backend) {
    let app = push_app(backend, |_| {}).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let erin = app.user("erin").await;
    let group = app.create_group(&alice, "Climbing", &[&bob, &carol, &dave, &erin]).await;
    let service = push_service(&app, &alice).await;
    for user in [&bob, &carol, &dave, &erin] {
        subscribe_browser(&app, &service, user, &user.username).await;
    }
    app.settings(&bob, group, &json!({"notify": "mentions"})).await;
    app.settings(&carol, group, &json!({"notify": "none"})).await;
    app.settings(&dave, group, &json!({"muted_until": "2099-01-01T00:00:00.000Z"})).await;

    let plain = app.group_send(&alice, group, "Saturday at ten?").await;
    let mention = app
        .group_send(
            &alice,
            group,
            &format!("@{} @{} @{} can you bring ropes?", bob.username, carol.username, dave.username),
        )
        .await;
    service.wait_for(&erin.username, 2, Duration::from_secs(10)).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        pushed_ids(&service, &erin.username),
        vec![id_of(&plain), id_of(&mention)],
        "defaults: every message"
    );
    assert_eq!(pushed_ids(&service, &bob.username), vec![id_of(&mention)], "mentions: only the mention");
    assert_eq!(service.requests(&carol.username), 0, "none: nothing");
    assert_eq!(service.requests(&dave.username), 0, "muted: nothing");
}

/// 404/410 remove the subscription; 503 and 429 (after its `Retry-After`) are retried
/// until the push is accepted, once; 413 is dropped without a retry.
async fn push_service_answers_decide_retries_and_removals(backend: Backend) {
    let app = push_app(backend, |_| {}).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let service = push_service(&app, &bob).await;
    subscribe_browser(&app, &service, &bob, "gone").await;
    let flaky = subscribe_browser(&app, &service, &bob, "flaky").await;
    let too_large = subscribe_browser(&app, &service, &bob, "too-large").await;
    service.script("gone", &[answer(410)]);
    service.script("flaky", &[answer(503), Answer { status: 429, retry_after: Some(1) }, answer(201)]);
    service.script("too-large", &[answer(413)]);

    let message = app.dm(&alice, &bob, "three browsers, three answers").await;
    let pushed = service.wait_for("flaky", 1, Duration::from_secs(20)).await;
    assert_eq!(pushed.len(), 1, "retried until accepted");
    assert_eq!(pushed[0].payload["message_id"], id_of(&message));
    assert_eq!(service.requests("flaky"), 3, "503, 429, then 201");
    assert_eq!(service.requests("gone"), 1);
    assert_eq!(service.requests("too-large"), 1, "413 is not retried");
    let listed: Vec<i64> = subscriptions(&app, &bob).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(listed, vec![flaky, too_large], "the 410 subscription is gone");

    app.dm(&alice, &bob, "again").await;
    service.wait_for("flaky", 2, Duration::from_secs(10)).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(service.requests("gone"), 1, "a removed subscription is not pushed again");
    assert_eq!(service.received_by("too-large").len(), 1, "the next push goes through");
    service.assert_all_verified();
}

/// `push.include_preview = false`: the push says who wrote, not what.
async fn without_preview_a_push_names_only_the_sender(backend: Backend) {
    let app = push_app(backend, |settings| settings.push.include_preview = false).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let service = push_service(&app, &bob).await;
    subscribe_browser(&app, &service, &bob, "bob").await;
    app.dm(&alice, &bob, "the door code is 4711").await;
    let pushed = service.wait_for("bob", 1, Duration::from_secs(10)).await;
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].payload["preview"], Value::Null);
    assert_eq!(pushed[0].payload["sender"]["id"], alice.id);
}
