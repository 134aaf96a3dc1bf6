use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A token signed as another service would sign it.
fn mint(algorithm: Algorithm, secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("encode token")
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[test]
fn the_test_base64url_encoder_matches_rfc_4648() {
    for (input, expected) in [
        (&b""[..], ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg"),
        (b"foobar", "Zm9vYmFy"),
        (b"\xfb\xff", "-_8"),
    ] {
        assert_eq!(base64url(input), expected);
    }
}

async fn register_raw(app: &TestApp, body: Value) -> Reply {
    app.post(None, "/api/auth/register", &body).await
}

/// Asserts a 422 naming `field`.
fn assert_invalid(reply: &Reply, field: &str) {
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.error_code(), "validation_failed");
    assert_eq!(reply.error_field(), Some(field), "{}", reply.body);
}

/// Asserts a 401 with the contract's error body.
fn assert_unauthorized(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.body);
    assert!(!reply.error_code().is_empty(), "{what}");
}

// ---- register ----

async fn registering_returns_201_with_a_token_and_the_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply =
        register_raw(&app, json!({"username": "alice", "password": PASSWORD, "display_name": "Alice A."}))
            .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let user = &reply.body["user"];
    assert!(user["id"].as_i64().is_some_and(|id| id > 0), "{user}");
    assert_eq!(user["username"], "alice");
    assert_eq!(user["display_name"], "Alice A.");
    assert_contract_time(&user["created_at"]);
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());

    // The token works at once and names this user.
    let token = reply.body["token"].as_str().expect("token");
    let me = app.get(Some(token), "/api/users/me").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(&me.body, user);
}

async fn upper_case_usernames_are_folded_and_stored_lowercase(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = register_raw(&app, json!({"username": "MiXeD.Case_1", "password": PASSWORD})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["user"]["username"], "mixed.case_1");

    // Logging in works whatever the case the name is typed in.
    for name in ["mixed.case_1", "MIXED.CASE_1"] {
        let login = app.post(None, "/api/auth/login", &json!({"username": name, "password": PASSWORD})).await;
        assert_eq!(login.status, 200, "{name}: {}", login.body);
        assert_eq!(login.body["user"]["id"], reply.body["user"]["id"]);
    }
}

async fn the_display_name_defaults_to_the_username(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = register_raw(&app, json!({"username": "Bob", "password": PASSWORD})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["user"]["display_name"], "bob");
}

async fn usernames_with_bad_characters_or_length_are_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let too_long = "a".repeat(33);
    for username in ["ab", too_long.as_str(), "", "has space", "slash/name", "émile", "at@sign", "tab\tname"]
    {
        let reply = register_raw(&app, json!({"username": username, "password": PASSWORD})).await;
        assert_invalid(&reply, "username");
    }
    // The bounds themselves are accepted, and so is every allowed character.
    for username in ["abc", &"b".repeat(32), "a-b.c_9"] {
        let reply = register_raw(&app, json!({"username": username, "password": PASSWORD})).await;
        assert_eq!(reply.status, 201, "{username}: {}", reply.body);
    }
}

async fn passwords_must_be_8_to_128_characters(backend: Backend) {
    let app = spawn_app(backend).await;
    for password in ["1234567".to_owned(), "x".repeat(129), "é".repeat(129)] {
        let reply = register_raw(&app, json!({"username": "pw_user", "password": password})).await;
        assert_invalid(&reply, "password");
    }
    // Characters are counted, not bytes: 8 two-byte characters is long enough.
    for (username, password) in
        [("pw_eight", "12345678".to_owned()), ("pw_max", "y".repeat(128)), ("pw_multibyte", "é".repeat(8))]
    {
        let reply = register_raw(&app, json!({"username": username, "password": password})).await;
        assert_eq!(reply.status, 201, "{username}: {}", reply.body);
        let login =
            app.post(None, "/api/auth/login", &json!({"username": username, "password": password})).await;
        assert_eq!(login.status, 200, "{username}: {}", login.body);
    }
}

async fn a_display_name_over_64_characters_is_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = register_raw(
        &app,
        json!({"username": "long_name", "password": PASSWORD, "display_name": "d".repeat(65)}),
    )
    .await;
    assert_invalid(&reply, "display_name");

    // 64 characters fit, multi-byte ones too.
    let name = "ü".repeat(64);
    let reply =
        register_raw(&app, json!({"username": "long_name", "password": PASSWORD, "display_name": name}))
            .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["user"]["display_name"], name.as_str());
}

async fn a_taken_username_is_409_whatever_its_case(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("carol").await;
    for username in ["carol", "CAROL", "Carol"] {
        let reply = register_raw(&app, json!({"username": username, "password": PASSWORD})).await;
        assert_eq!(reply.status, 409, "{username}: {}", reply.body);
        assert_eq!(reply.error_code(), "username_taken");
    }
}

async fn of_two_concurrent_registrations_of_one_name_exactly_one_wins(backend: Backend) {
    let app = spawn_app(backend).await;
    let (first, second) = tokio::join!(
        register_raw(&app, json!({"username": "racer", "password": PASSWORD})),
        register_raw(&app, json!({"username": "RACER", "password": PASSWORD})),
    );
    let mut statuses = [first.status, second.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{} / {}", first.body, second.body);
    let loser = if first.status == 409 { &first } else { &second };
    assert_eq!(loser.error_code(), "username_taken");

    let search = app
        .get(
            Some(first.body["token"].as_str().or(second.body["token"].as_str()).expect("token")),
            "/api/users/search?q=racer",
        )
        .await;
    assert_eq!(search.body["users"].as_array().map(Vec::len), Some(1));
}

async fn a_registration_missing_a_field_is_422_naming_it(backend: Backend) {
    let app = spawn_app(backend).await;
    for (body, field) in [
        (json!({"password": PASSWORD}), "username"),
        (json!({"username": "nopass"}), "password"),
        (json!({"username": 5, "password": PASSWORD}), "username"),
    ] {
        let reply = register_raw(&app, body.clone()).await;
        assert_invalid(&reply, field);
    }
}

async fn unknown_fields_in_a_registration_are_ignored(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply =
        register_raw(&app, json!({"username": "extra", "password": PASSWORD, "is_admin": true, "id": 7}))
            .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

// ---- login ----

async fn logging_in_returns_200_with_a_working_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register("dave").await;
    let reply = app.post(None, "/api/auth/login", &json!({"username": "dave", "password": PASSWORD})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["user"]["id"], user.id);
    assert_eq!(reply.body["user"]["username"], "dave");
    let token = reply.body["token"].as_str().expect("token");
    let me = app.get(Some(token), "/api/users/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["id"], user.id);
}

async fn unknown_users_and_wrong_passwords_get_the_same_401(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register("erin").await;
    let wrong_password =
        app.post(None, "/api/auth/login", &json!({"username": "erin", "password": "not the password"})).await;
    let unknown_user =
        app.post(None, "/api/auth/login", &json!({"username": "nobody", "password": PASSWORD})).await;
    let invalid_name =
        app.post(None, "/api/auth/login", &json!({"username": "no such user!", "password": PASSWORD})).await;
    for reply in [&wrong_password, &unknown_user, &invalid_name] {
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.error_code(), "invalid_credentials");
    }
    assert_eq!(wrong_password.body, unknown_user.body);
    assert_eq!(wrong_password.body, invalid_name.body);
}

// ---- tokens ----

async fn a_request_without_a_token_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/api/users/me", "/api/users/1", "/api/users/search?q=ab", "/api/conversations"] {
        let reply = app.get(None, path).await;
        assert_unauthorized(&reply, path);
    }
    let reply = app.post(None, "/api/messages", &json!({"recipient_id": 1, "message": "hi"})).await;
    assert_unauthorized(&reply, "send");
}

async fn a_malformed_authorization_header_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("malformed").await;
    let basic = format!("Basic {}", user.token);
    let bare = user.token.clone();
    let truncated = format!("Bearer {}", &user.token[..user.token.len() - 4]);
    for header in [
        "Bearer",
        "Bearer ",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        basic.as_str(),
        bare.as_str(),
        truncated.as_str(),
    ] {
        let reply = app.get_with_authorization(header, "/api/users/me").await;
        assert_unauthorized(&reply, header);
    }
}

async fn a_token_signed_with_another_secret_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("forged").await;
    let claims = json!({"sub": user.id.to_string(), "iat": now(), "exp": now() + 600});
    let token = mint(Algorithm::HS256, "a-different-secret-that-is-also-32-bytes-long", &claims);
    let reply = app.get(Some(&token), "/api/users/me").await;
    assert_unauthorized(&reply, "wrong secret");

    // Rewriting the subject of a good token to another real user breaks its signature.
    let victim = app.user("victim").await;
    let good = mint(Algorithm::HS256, TEST_SECRET, &claims);
    let mut parts: Vec<&str> = good.split('.').collect();
    let other = base64url(
        json!({"sub": victim.id.to_string(), "iat": now(), "exp": now() + 600}).to_string().as_bytes(),
    );
    parts[1] = &other;
    let reply = app.get(Some(&parts.join(".")), "/api/users/me").await;
    assert_unauthorized(&reply, "tampered claims");
}

async fn a_token_expired_beyond_the_leeway_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("expired").await;
    for expired_for in [10, 3600] {
        let claims = json!({
            "sub": user.id.to_string(),
            "iat": now() - 7200,
            "exp": now() - expired_for,
        });
        let token = mint(Algorithm::HS256, TEST_SECRET, &claims);
        let reply = app.get(Some(&token), "/api/users/me").await;
        assert_unauthorized(&reply, &format!("expired {expired_for} s ago"));
    }
}

async fn an_unsigned_alg_none_token_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("algnone").await;
    let claims = json!({"sub": user.id.to_string(), "iat": now(), "exp": now() + 600});
    let good = mint(Algorithm::HS256, TEST_SECRET, &claims);
    let signature = good.rsplit('.').next().expect("signature");
    let payload = base64url(claims.to_string().as_bytes());
    for alg in ["none", "None", "NONE"] {
        let header = base64url(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
            format!("{header}.{payload}.{signature}"),
        ] {
            let reply = app.get(Some(&token), "/api/users/me").await;
            assert_unauthorized(&reply, &format!("alg {alg}: {token}"));
        }
    }
}

async fn a_token_signed_with_hs384_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("hs384").await;
    let claims = json!({"sub": user.id.to_string(), "iat": now(), "exp": now() + 600});
    for algorithm in [Algorithm::HS384, Algorithm::HS512] {
        let token = mint(algorithm, TEST_SECRET, &claims);
        let reply = app.get(Some(&token), "/api/users/me").await;
        assert_unauthorized(&reply, &format!("{algorithm:?}"));
    }
}

async fn a_token_minted_by_another_service_with_the_same_secret_is_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("foreign").await;
    // Exactly the contract's claims, plus one the other service happens to add.
    let claims = json!({
        "sub": user.id.to_string(),
        "iat": now(),
        "exp": now() + 300,
        "name": "issued elsewhere",
    });
    let token = mint(Algorithm::HS256, TEST_SECRET, &claims);
    let me = app.get(Some(&token), "/api/users/me").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["id"], user.id);
    assert_eq!(me.body["username"], user.username.as_str());

    // It works for sending too, not only for reading.
    let other = app.user("foreign_peer").await;
    let sent = app
        .post(
            Some(&token),
            "/api/messages",
            &json!({"recipient_id": other.id, "message": "from the old site"}),
        )
        .await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    assert_eq!(sent.body["sender_id"], user.id);
}

async fn a_valid_token_naming_no_user_or_a_bad_subject_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("canonical").await;
    let id = user.id;
    let max = i64::MAX.to_string();
    // No such user, not a user id, or user 1 spelled another way.
    for sub in [
        "987654321",
        max.as_str(),
        "abc",
        "0",
        "-4",
        "",
        &format!("+{id}"),
        &format!("0{id}"),
        &format!(" {id}"),
    ] {
        let claims = json!({"sub": sub, "iat": now(), "exp": now() + 600});
        let token = mint(Algorithm::HS256, TEST_SECRET, &claims);
        let reply = app.get(Some(&token), "/api/users/me").await;
        assert_unauthorized(&reply, &format!("sub {sub:?}"));
    }
}

/// A signed token for a user that does not exist is refused everywhere, before any work:
/// never a socket, a ticket, a list, or a 500 from a foreign key.
async fn a_signed_token_for_a_missing_user_is_401_on_every_route_and_the_socket(backend: Backend) {
    let app = spawn_app(backend).await;
    let real = app.user("real").await;
    for sub in ["999999".to_owned(), i64::MAX.to_string()] {
        let token =
            mint(Algorithm::HS256, TEST_SECRET, &json!({"sub": sub, "iat": now(), "exp": now() + 600}));
        for path in ["/api/conversations", "/api/sync?since=0", "/api/messages/search?q=hello", "/api/blocks"]
        {
            let reply = app.get(Some(&token), path).await;
            assert_eq!(reply.status, 401, "GET {path}: {}", reply.body);
            assert_eq!(reply.error_code(), "invalid_token", "GET {path}");
        }
        for (path, body) in [
            ("/api/ws-ticket", json!({})),
            ("/api/blocks", json!({"user_id": real.id})),
            ("/api/messages", json!({"recipient_id": real.id, "message": "hi"})),
            ("/api/groups", json!({"name": "g", "member_ids": [real.id]})),
        ] {
            let reply = app.post(Some(&token), path, &body).await;
            assert_eq!(reply.status, 401, "POST {path}: {}", reply.body);
            assert_eq!(reply.error_code(), "invalid_token", "POST {path}");
        }
        let refused = tokio_tungstenite::connect_async(format!("{}/ws?token={token}", app.ws_address)).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 401, "refused before the upgrade")
            }
            other => panic!("the socket must be refused with 401, got {other:?}"),
        }
    }
}

/// `nbf` is enforced, `iat` may not lie ahead beyond the leeway, and no token lives longer
/// than `auth.max_token_lifetime_seconds`, whoever minted it.
async fn tokens_not_yet_valid_issued_in_the_future_or_living_too_long_are_401(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.auth.max_token_lifetime_seconds = 7 * 86_400).await;
    let user = app.user("timely").await;
    let sub = user.id.to_string();
    let cases = [
        ("nbf in the future", json!({"sub": sub, "iat": now(), "nbf": now() + 120, "exp": now() + 600})),
        ("iat in the future", json!({"sub": sub, "iat": now() + 120, "exp": now() + 600})),
        ("exp 10^15", json!({"sub": sub, "iat": now(), "exp": 1_000_000_000_000_000_i64})),
        ("lifetime over the cap", json!({"sub": sub, "iat": now(), "exp": now() + 8 * 86_400})),
        ("old iat, far exp", json!({"sub": sub, "iat": now() - 30 * 86_400, "exp": now() + 86_400})),
    ];
    for (what, claims) in cases {
        let reply = app.get(Some(&mint(Algorithm::HS256, TEST_SECRET, &claims)), "/api/users/me").await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert_eq!(reply.error_code(), "invalid_token", "{what}");
    }
    // Within the leeway and the cap, all is well.
    for (what, claims) in [
        ("nbf now", json!({"sub": sub, "iat": now(), "nbf": now() + 2, "exp": now() + 600})),
        ("iat 2 s ahead", json!({"sub": sub, "iat": now() + 2, "exp": now() + 600})),
        ("7 days", json!({"sub": sub, "iat": now(), "exp": now() + 7 * 86_400})),
    ] {
        let reply = app.get(Some(&mint(Algorithm::HS256, TEST_SECRET, &claims)), "/api/users/me").await;
        assert_eq!(reply.status, 200, "{what}: {}", reply.body);
    }
}

// ---- users ----

/// Presence is answered only about oneself and people one shares a conversation with, the
/// same rule as the socket's presence frames; to anyone else a user is as absent as an
/// unknown id (ids are sequential, so otherwise everyone could be watched).
async fn presence_is_visible_only_to_people_who_share_a_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, bob, carol) = (app.user("alice").await, app.user("bob").await, app.user("carol").await);
    assert_eq!(app.presence_reply(&carol, &carol).await.status, 200, "one's own presence");
    let stranger = app.presence_reply(&carol, &bob).await;
    assert_error(&stranger, 404, "not_found", "a stranger's presence");
    let unknown = app.get(Some(&carol.token), "/api/users/987654/presence").await;
    assert_eq!(unknown.body, stranger.body, "a stranger looks exactly like nobody");

    app.dm(&alice, &bob, "hi").await;
    let seen = app.presence_reply(&alice, &bob).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.body["user_id"], bob.id);
    assert_eq!(app.presence_reply(&bob, &alice).await.status, 200, "both ways");

    // A group makes members visible to each other, and leaving it ends that.
    let group = app.create_group_reply(&carol, "g", &[bob.id]).await;
    assert_eq!(group.status, 201, "{}", group.body);
    assert_eq!(app.presence_reply(&carol, &bob).await.status, 200, "fellow group member");
    let left = app.remove_member_reply(&bob, id_of(&group.body), bob.id).await;
    assert_eq!(left.status, 204, "{}", left.body);
    assert_error(&app.presence_reply(&carol, &bob).await, 404, "not_found", "after bob left");
}

async fn users_me_returns_the_caller(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user("me").await;
    let reply = app.get(Some(&user.token), "/api/users/me").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["id"], user.id);
    assert_eq!(reply.body["username"], user.username.as_str());
    assert_eq!(reply.body["display_name"], user.username.as_str());
    assert_contract_time(&reply.body["created_at"]);
}

async fn a_user_is_found_by_id_and_an_unknown_id_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let caller = app.user("caller").await;
    let other = app.user("other").await;
    let reply = app.get(Some(&caller.token), &format!("/api/users/{}", other.id)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["id"], other.id);
    assert_eq!(reply.body["username"], other.username.as_str());
    assert_contract_time(&reply.body["created_at"]);

    let reply = app.get(Some(&caller.token), "/api/users/99999999").await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.error_code(), "not_found");
}

async fn a_user_id_that_is_not_a_positive_64_bit_integer_is_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let caller = app.user("badid").await;
    for id in ["abc", "0", "-1", "99999999999999999999999", "1.5", "9223372036854775808"] {
        let reply = app.get(Some(&caller.token), &format!("/api/users/{id}")).await;
        assert_eq!(reply.status, 400, "{id}: {}", reply.body);
        assert!(!reply.error_code().is_empty());
    }
}

async fn search_matches_username_and_display_name_case_insensitively(backend: Backend) {
    let app = spawn_app(backend).await;
    let caller = app.user("searcher").await;
    for (username, display_name) in
        [("zebra_one", "Plain Name"), ("plain_two", "The ZEBRA Keeper"), ("unrelated", "Nothing Here")]
    {
        let reply = register_raw(
            &app,
            json!({"username": username, "password": PASSWORD, "display_name": display_name}),
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    for q in ["zebra", "ZeBrA", "EBR"] {
        let reply = app.get(Some(&caller.token), &format!("/api/users/search?q={q}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let mut names: Vec<&str> = reply.body["users"]
            .as_array()
            .expect("users")
            .iter()
            .map(|user| user["username"].as_str().expect("username"))
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["plain_two", "zebra_one"], "q={q}");
    }
    // Each result is a full user.
    let reply = app.get(Some(&caller.token), "/api/users/search?q=keeper").await;
    let found = &reply.body["users"][0];
    assert_eq!(found["display_name"], "The ZEBRA Keeper");
    assert!(found["id"].is_i64());
    assert_contract_time(&found["created_at"]);

    // The limit caps the list.
    let reply = app.get(Some(&caller.token), "/api/users/search?q=zebra&limit=1").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["users"].as_array().map(Vec::len), Some(1));

    // No match is an empty list, not 404.
    let reply = app.get(Some(&caller.token), "/api/users/search?q=quokka").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["users"], json!([]));
}

async fn search_treats_percent_and_underscore_literally(backend: Backend) {
    let app = spawn_app(backend).await;
    let caller = app.user("literal").await;
    for (username, display_name) in
        [("x_yz", "first"), ("xayz", "second"), ("pct_one", "50% off"), ("pct_two", "50 percent")]
    {
        let reply = register_raw(
            &app,
            json!({"username": username, "password": PASSWORD, "display_name": display_name}),
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    assert_eq!(search_names(&app, &caller, "x_").await, ["x_yz"]);
    assert_eq!(search_names(&app, &caller, "0%").await, ["pct_one"]);
    assert_eq!(search_names(&app, &caller, "%%").await, Vec::<String>::new());
    assert_eq!(search_names(&app, &caller, "__").await, Vec::<String>::new());
    assert_eq!(search_names(&app, &caller, "\\%").await, Vec::<String>::new());
    // A NUL can match no stored name, on any database.
    assert_eq!(search_names(&app, &caller, "x\0").await, Vec::<String>::new());
}

/// The usernames `GET /api/users/search?q=` finds, sorted.
async fn search_names(app: &TestApp, caller: &TestUser, q: &str) -> Vec<String> {
    let path = format!("/api/users/search?q={}", percent_encode(q));
    let reply = app.get(Some(&caller.token), &path).await;
    assert_eq!(reply.status, 200, "q={q}: {}", reply.body);
    let mut names: Vec<String> = reply.body["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|user| user["username"].as_str().expect("username").to_owned())
        .collect();
    names.sort_unstable();
    names
}

/// Percent-encodes a query value.
fn percent_encode(q: &str) -> String {
    q.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn search_refuses_short_queries_and_out_of_range_limits(backend: Backend) {
    let app = spawn_app(backend).await;
    let caller = app.user("bounds").await;
    for (query, field) in [
        ("", "q"),
        ("q=", "q"),
        ("q=a", "q"),
        ("q=%20a%20", "q"),
        ("q=ab&limit=0", "limit"),
        ("q=ab&limit=51", "limit"),
        ("q=ab&limit=-1", "limit"),
        ("q=ab&limit=many", "limit"),
    ] {
        let reply = app.get(Some(&caller.token), &format!("/api/users/search?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        reply.error_code();
        assert_eq!(reply.error_field(), Some(field), "{query}");
    }
    for query in ["q=ab&limit=1", "q=ab&limit=50", "q=ab"] {
        let reply = app.get(Some(&caller.token), &format!("/api/users/search?{query}")).await;
        assert_eq!(reply.status, 200, "{query}: {}", reply.body);
    }
}

async fn search_requires_authentication(backend: Backend) {
    let app = spawn_app(backend).await;
    app.user("hidden").await;
    let reply = app.get(None, "/api/users/search?q=hidden").await;
    assert_unauthorized(&reply, "search");
    assert!(reply.body.get("users").is_none());
}

on_both_databases!(
    registering_returns_201_with_a_token_and_the_user,
    upper_case_usernames_are_folded_and_stored_lowercase,
    the_display_name_defaults_to_the_username,
    usernames_with_bad_characters_or_length_are_422,
    passwords_must_be_8_to_128_characters,
    a_display_name_over_64_characters_is_422,
    a_taken_username_is_409_whatever_its_case,
    of_two_concurrent_registrations_of_one_name_exactly_one_wins,
    a_registration_missing_a_field_is_422_naming_it,
    unknown_fields_in_a_registration_are_ignored,
    logging_in_returns_200_with_a_working_token,
    unknown_users_and_wrong_passwords_get_the_same_401,
    a_request_without_a_token_is_401,
    a_malformed_authorization_header_is_401,
    a_token_signed_with_another_secret_is_401,
    a_token_expired_beyond_the_leeway_is_401,
    an_unsigned_alg_none_token_is_401,
    a_token_signed_with_hs384_is_401,
    a_token_minted_by_another_service_with_the_same_secret_is_accepted,
    a_valid_token_naming_no_user_or_a_bad_subject_is_401,
    a_signed_token_for_a_missing_user_is_401_on_every_route_and_the_socket,
    tokens_not_yet_valid_issued_in_the_future_or_living_too_long_are_401,
    users_me_returns_the_caller,
    presence_is_visible_only_to_people_who_share_a_conversation,
    a_user_is_found_by_id_and_an_unknown_id_is_404,
    a_user_id_that_is_not_a_positive_64_bit_integer_is_400,
    search_matches_username_and_display_name_case_insensitively,
    search_treats_percent_and_underscore_literally,
    search_refuses_short_queries_and_out_of_range_limits,
    search_requires_authentication,
);
