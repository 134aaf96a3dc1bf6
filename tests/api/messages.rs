use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

/// The contract's message fields, v1.1's last.
pub const CONTRACT_FIELDS: [&str; 15] = [
    "id",
    "conversation_id",
    "sender_id",
    "recipient_id",
    "message",
    "client_id",
    "created_at",
    "edited_at",
    "deleted",
    "attachments",
    "reply_to",
    "mentions",
    "reactions",
    "pinned",
    "auto_reply",
];

/// The ids of every message in a conversation, oldest first.
async fn all_message_ids(app: &TestApp, user: &TestUser, conversation_id: i64) -> Vec<i64> {
    app.all_messages(user, conversation_id).await.iter().map(id_of).collect()
}

async fn sending_a_direct_message_returns_201_with_the_whole_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let reply = app
        .send_message(
            &alice,
            &json!({"recipient_id": bob.id, "message": "  hello, bob \n", "client_id": "c-1_A"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let message = &reply.body;
    for field in CONTRACT_FIELDS {
        assert!(message.get(field).is_some(), "{field} missing: {message}");
    }
    assert!(message["id"].as_i64().is_some_and(|id| id > 0), "{message}");
    assert!(message["conversation_id"].as_i64().is_some_and(|id| id > 0));
    assert_eq!(message["sender_id"], alice.id);
    assert_eq!(message["recipient_id"], bob.id);
    assert_eq!(message["message"], "hello, bob", "trimmed");
    assert_eq!(message["client_id"], "c-1_A");
    assert_eq!(message["edited_at"], Value::Null);
    assert_eq!(message["deleted"], false);
    assert_eq!(message["attachments"], json!([]));
    assert_contract_time(&message["created_at"]);
    let created_at =
        chrono::DateTime::parse_from_rfc3339(message["created_at"].as_str().expect("created_at"))
            .expect("rfc 3339");
    assert!(created_at > before && created_at < chrono::Utc::now() + chrono::Duration::seconds(5));

    // History serves exactly what the send returned, to both members.
    let conversation_id = message["conversation_id"].as_i64().expect("conversation");
    for user in [&alice, &bob] {
        let page = app.history(user, conversation_id, "").await;
        assert_eq!(page["messages"], json!([message]));
    }

    // Without a client_id the message says null.
    let reply = app.send_message(&bob, &json!({"recipient_id": alice.id, "message": "hi"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["client_id"], Value::Null);
    assert_eq!(reply.body["conversation_id"], conversation_id, "one conversation per pair");
    assert_eq!(reply.body["recipient_id"], alice.id);
}

async fn an_empty_or_whitespace_only_message_is_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    // White space, and text a reader would see as nothing: zero-width spaces and joiners, a
    // byte-order mark, direction marks and overrides, a Hangul filler, the blank Braille cell.
    for text in [
        "",
        " ",
        "   \n\t  ",
        "\u{3000}\u{00a0}",
        "\u{200b}",
        "\u{200b}\u{200c}\u{200d}\u{2060}",
        "\u{feff}",
        " \u{feff} \u{200b} ",
        "\u{200e}\u{202e}\u{2066}\u{2069}",
        "\u{3164}",
        "\u{2800}\u{2800}",
    ] {
        let reply = app.send_message(&alice, &json!({"recipient_id": bob.id, "message": text})).await;
        assert_invalid(&reply, "message", &format!("{text:?}"));
    }
    // Nothing was stored: the pair has no conversation yet.
    let reply = app.get(Some(&alice.token), &format!("/api/conversations/direct/{}", bob.id)).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    // An edit to invisible text is refused alike, and the message keeps its text.
    let sent = app.dm(&alice, &bob, "visible").await;
    let edit = app.edit_message(&alice, id_of(&sent), "\u{200b}\u{feff}").await;
    assert_invalid(&edit, "message", "an invisible edit");
    // Invisible characters beside visible ones are text like any other, stored as sent.
    let joined = app.dm(&alice, &bob, "a\u{200d}b \u{202e}olleh").await;
    assert_eq!(joined["message"], "a\u{200d}b \u{202e}olleh");
}

async fn a_message_may_be_2000_characters_but_not_2001(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    // Characters are counted, not bytes: 2000 four-byte emoji fit.
    for unit in ["a", "é", "€", "😀"] {
        let text = unit.repeat(2000);
        let reply = app.send_message(&alice, &json!({"recipient_id": bob.id, "message": text})).await;
        assert_eq!(reply.status, 201, "2000 × {unit}: {}", reply.body);
        assert_eq!(reply.body["message"], text.as_str(), "stored intact");

        let reply =
            app.send_message(&alice, &json!({"recipient_id": bob.id, "message": unit.repeat(2001)})).await;
        assert_invalid(&reply, "message", &format!("2001 × {unit}"));
    }
    // The limit applies after trimming.
    let text = "z".repeat(2000);
    let reply = app
        .send_message(&alice, &json!({"recipient_id": bob.id, "message": format!("   {text}\n\n ")}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["message"], text.as_str());
}

async fn a_message_needs_exactly_one_target(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let first = app.dm(&alice, &bob, "first").await;
    let conversation_id = first["conversation_id"].as_i64().expect("conversation");
    for (body, what) in [
        (json!({"recipient_id": bob.id, "conversation_id": conversation_id, "message": "x"}), "both"),
        (json!({"message": "x"}), "neither"),
        (json!({"recipient_id": null, "conversation_id": null, "message": "x"}), "both null"),
    ] {
        let reply = app.send_message(&alice, &body).await;
        assert_eq!(reply.status, 422, "{what}: {}", reply.body);
        assert_eq!(reply.error_code(), "validation_failed");
        assert!(
            matches!(reply.error_field(), Some("recipient_id" | "conversation_id")),
            "{what}: {}",
            reply.body
        );
    }
    assert_eq!(all_message_ids(&app, &alice, conversation_id).await, [first["id"].as_i64().expect("id")]);
}

async fn sending_to_yourself_is_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let reply = app.send_message(&alice, &json!({"recipient_id": alice.id, "message": "note to self"})).await;
    assert_invalid(&reply, "recipient_id", "self-send");
    let list = app.get(Some(&alice.token), "/api/conversations").await;
    assert_eq!(list.body["conversations"], json!([]));
}

async fn values_of_the_wrong_json_type_are_422_naming_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let id = bob.id;
    for (body, field) in [
        (json!({"recipient_id": id.to_string(), "message": "x"}), "recipient_id"),
        (json!({"recipient_id": 1.5, "message": "x"}), "recipient_id"),
        (json!({"recipient_id": (id as f64) + 0.5, "message": "x"}), "recipient_id"),
        (json!({"recipient_id": 1e30, "message": "x"}), "recipient_id"),
        (json!({"recipient_id": u64::MAX, "message": "x"}), "recipient_id"),
        (json!({"recipient_id": -1, "message": "x"}), "recipient_id"),
        (json!({"recipient_id": 0, "message": "x"}), "recipient_id"),
        (json!({"recipient_id": true, "message": "x"}), "recipient_id"),
        (json!({"recipient_id": [id], "message": "x"}), "recipient_id"),
        (json!({"conversation_id": "1", "message": "x"}), "conversation_id"),
        (json!({"recipient_id": id, "message": 5}), "message"),
        (json!({"recipient_id": id, "message": null}), "message"),
        (json!({"recipient_id": id, "message": ["x"]}), "message"),
        (json!({"recipient_id": id, "message": "x", "client_id": 7}), "client_id"),
    ] {
        let reply = app.send_message(&alice, &body).await;
        assert_invalid(&reply, field, &body.to_string());
    }
    // A number too large for any integer type, written out in full.
    let reply = app
        .post_raw(
            Some(&alice.token),
            "/api/messages",
            "application/json",
            r#"{"recipient_id": 99999999999999999999999, "message": "x"}"#,
        )
        .await;
    assert_invalid(&reply, "recipient_id", "huge id");
}

async fn a_missing_message_is_422_naming_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let reply = app.send_message(&alice, &json!({"recipient_id": bob.id})).await;
    assert_invalid(&reply, "message", "no message");
}

async fn a_message_with_a_nul_character_is_422_on_every_database(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let reply = app.send_message(&alice, &json!({"recipient_id": bob.id, "message": "a\u{0}b"})).await;
    assert_invalid(&reply, "message", "NUL");
    // Other control characters people type (tab, newline) are kept.
    let reply = app.send_message(&alice, &json!({"recipient_id": bob.id, "message": "a\tb\nc"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["message"], "a\tb\nc");
}

async fn two_first_messages_crossing_each_other_share_one_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let (a, b) = tokio::join!(app.dm(&alice, &bob, "hi bob"), app.dm(&bob, &alice, "hi alice"));
    assert_eq!(a["conversation_id"], b["conversation_id"]);
    for user in [&alice, &bob] {
        let list = app.get(Some(&user.token), "/api/conversations").await;
        assert_eq!(list.body["conversations"].as_array().map(Vec::len), Some(1));
        assert_eq!(list.body["conversations"][0]["id"], a["conversation_id"]);
    }
}

async fn a_bad_client_id_is_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    for client_id in [
        "x".repeat(65),
        String::new(),
        "has space".to_owned(),
        " padded".to_owned(),
        "slash/id".to_owned(),
        "dot.id".to_owned(),
        "ümlaut".to_owned(),
    ] {
        let reply = app
            .send_message(&alice, &json!({"recipient_id": bob.id, "message": "x", "client_id": client_id}))
            .await;
        assert_invalid(&reply, "client_id", &format!("{client_id:?}"));
    }
    let longest = format!("{}q-_Z", "Az9".repeat(20));
    assert_eq!(longest.len(), 64);
    let reply = app
        .send_message(&alice, &json!({"recipient_id": bob.id, "message": "x", "client_id": longest}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["client_id"], longest.as_str());
}

async fn an_unknown_recipient_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let reply = app.send_message(&alice, &json!({"recipient_id": 987_654_321, "message": "anyone?"})).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.error_code(), "not_found");
}

async fn malformed_json_is_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let trailing = format!(r#"{{"recipient_id": {}, "message": "x"}} extra"#, bob.id);
    for body in [
        "",
        "not json",
        r#"{"recipient_id": 1,"#,
        r#"{"recipient_id": 1, "message": "x""#,
        "{'recipient_id': 1}",
        trailing.as_str(),
    ] {
        let reply =
            app.post_raw(Some(&alice.token), "/api/messages", "application/json", body.to_owned()).await;
        assert_eq!(reply.status, 400, "{body:?}: {}", reply.body);
        assert!(!reply.error_code().is_empty());
    }
}

async fn a_body_that_is_not_json_by_content_type_is_415(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let body = json!({"recipient_id": bob.id, "message": "x"}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonp",
        "multipart/form-data; boundary=x",
    ] {
        let reply = app.post_raw(Some(&alice.token), "/api/messages", content_type, body.clone()).await;
        assert_eq!(reply.status, 415, "{content_type}: {}", reply.body);
        assert_eq!(reply.error_code(), "unsupported_media_type");
    }
    // No content type at all.
    let request = app.client.post(app.url("/api/messages")).bearer_auth(&alice.token).body(body.clone());
    let reply = app.send_request(request).await;
    assert_eq!(reply.status, 415, "{}", reply.body);
    reply.error_code();
    // Parameters and case do not matter.
    let reply =
        app.post_raw(Some(&alice.token), "/api/messages", "Application/JSON; charset=utf-8", body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

async fn a_body_over_64_kib_is_413(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let body = json!({"recipient_id": bob.id, "message": "x".repeat(64 * 1024)}).to_string();
    let reply = app.post_raw(Some(&alice.token), "/api/messages", "application/json", body).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(reply.error_code(), "payload_too_large");

    // Just under the limit the body is read, and judged on its content.
    let padding = "p".repeat(60 * 1024);
    let body = json!({"recipient_id": bob.id, "message": "fits", "padding": padding}).to_string();
    let reply = app.post_raw(Some(&alice.token), "/api/messages", "application/json", body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

async fn unknown_fields_are_ignored(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let reply = app
        .send_message(
            &alice,
            &json!({
                "recipient_id": bob.id,
                "message": "hi",
                "sender_id": bob.id,
                "id": 1,
                "deleted": true,
                "nested": {"anything": [1, 2]},
            }),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["sender_id"], alice.id, "the sender is the caller");
    assert_eq!(reply.body["deleted"], false);
}

async fn a_retry_with_the_same_client_id_returns_200_and_the_original(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let first = app
        .send_message(&alice, &json!({"recipient_id": bob.id, "message": "original", "client_id": "retry-1"}))
        .await;
    assert_eq!(first.status, 201, "{}", first.body);

    for retry_text in ["original", "edited on the way"] {
        let retry = app
            .send_message(
                &alice,
                &json!({"recipient_id": bob.id, "message": retry_text, "client_id": "retry-1"}),
            )
            .await;
        assert_eq!(retry.status, 200, "{}", retry.body);
        assert_eq!(retry.body, first.body, "the original, unchanged");
    }
    let conversation_id = first.body["conversation_id"].as_i64().expect("conversation");
    // Retrying by conversation id finds the same message too.
    let retry = app
        .send_message(
            &alice,
            &json!({"conversation_id": conversation_id, "message": "again", "client_id": "retry-1"}),
        )
        .await;
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.body["id"], first.body["id"]);

    assert_eq!(all_message_ids(&app, &bob, conversation_id).await, [first.body["id"].as_i64().expect("id")]);
    // A new client_id is a new message.
    let next = app
        .send_message(&alice, &json!({"recipient_id": bob.id, "message": "original", "client_id": "retry-2"}))
        .await;
    assert_eq!(next.status, 201, "{}", next.body);
    assert_ne!(next.body["id"], first.body["id"]);
}

async fn ten_concurrent_retries_store_exactly_one_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let body = json!({"recipient_id": bob.id, "message": "once", "client_id": "burst"});
    let replies = join_all((0..10).map(|_| app.send_message(&alice, &body))).await;

    let created = replies.iter().filter(|reply| reply.status == 201).count();
    let repeated = replies.iter().filter(|reply| reply.status == 200).count();
    assert_eq!(
        (created, repeated),
        (1, 9),
        "{:?}",
        replies.iter().map(|r| (r.status, &r.body)).collect::<Vec<_>>()
    );
    let id = &replies[0].body["id"];
    assert!(id.is_i64());
    assert!(replies.iter().all(|reply| &reply.body["id"] == id));

    let conversation_id = replies[0].body["conversation_id"].as_i64().expect("conversation");
    assert_eq!(all_message_ids(&app, &alice, conversation_id).await, [id.as_i64().expect("id")]);
    let list = app.get(Some(&bob.token), "/api/conversations").await;
    assert_eq!(list.body["conversations"][0]["unread_count"], 1);
}

/// Concurrent sends are stored together by the writer; each still gets its own answer, and
/// counters and frames come out as if they had been sent one by one.
async fn a_burst_of_mixed_sends_gets_each_its_own_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, bob, carol, dave, erin) = (
        app.user("alice").await,
        app.user("bob").await,
        app.user("carol").await,
        app.user("dave").await,
        app.user("erin").await,
    );
    let blocked = app.block(&dave, carol.id).await;
    assert_eq!(blocked.status, 201, "{}", blocked.body);
    let private = app.dm(&carol, &erin, "just us").await;
    let mut bob_ws = app.ws(&bob).await;

    let mut sends: Vec<(&TestUser, Value)> = Vec::new();
    for n in 0..10 {
        sends.push((&alice, json!({"recipient_id": bob.id, "message": format!("burst {n}")})));
    }
    for _ in 0..5 {
        sends.push((&alice, json!({"recipient_id": bob.id, "message": "retried", "client_id": "same"})));
    }
    sends.push((&carol, json!({"recipient_id": dave.id, "message": "blocked"})));
    sends.push((&erin, json!({"recipient_id": 987_654_321, "message": "nobody"})));
    sends.push((&alice, json!({"conversation_id": conversation_of(&private), "message": "not mine"})));
    let replies = join_all(sends.iter().map(|(from, body)| app.send_message(from, body))).await;

    for reply in &replies[..10] {
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let retried = &replies[10..15];
    assert_eq!(retried.iter().filter(|reply| reply.status == 201).count(), 1);
    assert_eq!(retried.iter().filter(|reply| reply.status == 200).count(), 4);
    assert!(retried.iter().all(|reply| reply.body["id"] == retried[0].body["id"]));
    assert_error(&replies[15], 403, "blocked", "a blocked pair");
    assert_eq!(replies[16].status, 404, "{}", replies[16].body);
    assert_eq!(replies[17].status, 404, "{}", replies[17].body);

    // Eleven messages, one conversation, ids distinct.
    let conversation_id = conversation_of(&replies[0].body);
    let mut stored: Vec<i64> = replies[..15].iter().map(|reply| id_of(&reply.body)).collect();
    stored.sort_unstable();
    stored.dedup();
    assert_eq!(stored.len(), 11);
    assert!(replies[..15].iter().all(|reply| conversation_of(&reply.body) == conversation_id));
    assert_eq!(all_message_ids(&app, &alice, conversation_id).await, stored);
    let list = app.get(Some(&bob.token), "/api/conversations").await;
    assert_eq!(list.body["conversations"][0]["unread_count"], 11);

    // Bob's socket: the conversation once, then each message with its unread count so far,
    // in event order.
    let created = bob_ws.next().await;
    assert_eq!(created["type"], "conversation_created", "{created}");
    let mut last_event = created["event_id"].as_i64().expect("event id");
    let mut received = Vec::new();
    for unread in 1..=11 {
        let frame = bob_ws.next_of("new_message").await;
        assert_eq!(frame["conversation"]["unread_count"], unread, "{frame}");
        let event_id = frame["event_id"].as_i64().expect("event id");
        assert!(event_id > last_event);
        last_event = event_id;
        received.push(id_of(&frame["message"]));
    }
    assert_eq!(received, stored);
    bob_ws.expect_none_of("new_message", std::time::Duration::from_millis(300)).await;
    assert_eq!(app.get(Some(&dave.token), "/api/conversations").await.body["conversations"], json!([]));
}

async fn the_same_client_id_from_another_sender_is_another_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let from_alice = app
        .send_message(
            &alice,
            &json!({"recipient_id": bob.id, "message": "from alice", "client_id": "shared"}),
        )
        .await;
    let from_bob = app
        .send_message(&bob, &json!({"recipient_id": alice.id, "message": "from bob", "client_id": "shared"}))
        .await;
    assert_eq!(from_alice.status, 201, "{}", from_alice.body);
    assert_eq!(from_bob.status, 201, "{}", from_bob.body);
    assert_ne!(from_alice.body["id"], from_bob.body["id"]);
    assert_eq!(from_bob.body["message"], "from bob");
    assert_eq!(from_bob.body["sender_id"], bob.id);
    let conversation_id = from_alice.body["conversation_id"].as_i64().expect("id");
    assert_eq!(all_message_ids(&app, &alice, conversation_id).await.len(), 2);
}

async fn sending_by_conversation_id_reaches_the_other_member(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let first = app.dm(&alice, &bob, "first").await;
    let conversation_id = first["conversation_id"].as_i64().expect("conversation");
    let reply =
        app.send_message(&bob, &json!({"conversation_id": conversation_id, "message": "reply"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["conversation_id"], conversation_id);
    assert_eq!(reply.body["sender_id"], bob.id);
    assert_eq!(reply.body["recipient_id"], alice.id);
}

async fn sending_into_a_conversation_you_are_not_in_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mallory = app.user("mallory").await;
    let first = app.dm(&alice, &bob, "private").await;
    let conversation_id = first["conversation_id"].as_i64().expect("conversation");
    let absent = conversation_id + 1000;
    let mut bodies = Vec::new();
    for target in [conversation_id, absent] {
        let reply =
            app.send_message(&mallory, &json!({"conversation_id": target, "message": "let me in"})).await;
        assert_eq!(reply.status, 404, "{target}: {}", reply.body);
        assert_eq!(reply.error_code(), "not_found");
        bodies.push(reply.body);
    }
    assert_eq!(bodies[0], bodies[1], "a hidden conversation reads like an absent one");
    assert_eq!(all_message_ids(&app, &alice, conversation_id).await, [first["id"].as_i64().expect("id")]);
}

async fn a_third_user_can_neither_see_nor_write_into_a_pair_s_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let message = app.dm(&alice, &bob, "between us").await;
    let conversation_id = message["conversation_id"].as_i64().expect("conversation");
    let message_id = message["id"].as_i64().expect("id");
    let token = Some(carol.token.as_str());

    for path in [
        format!("/api/conversations/{conversation_id}"),
        format!("/api/conversations/{conversation_id}/messages"),
        format!("/api/conversations/{conversation_id}/messages?before_id={}", message_id + 1),
        format!("/api/conversations/{conversation_id}/messages?after_id=1"),
    ] {
        let reply = app.get(token, &path).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_eq!(reply.error_code(), "not_found");
        assert!(!reply.body.to_string().contains("between us"));
    }
    let reply = app.mark_read_without_body(&carol, conversation_id).await;
    assert_eq!(reply.status, 404, "read: {}", reply.body);
    reply.error_code();
    let reply = app.mark_read_reply(&carol, conversation_id, Some(message_id)).await;
    assert_eq!(reply.status, 404, "read up to: {}", reply.body);
    let reply =
        app.send_empty(reqwest::Method::PATCH, token, &format!("/api/messages/{message_id}/read")).await;
    assert_eq!(reply.status, 404, "patch read: {}", reply.body);
    reply.error_code();
    let reply =
        app.send_message(&carol, &json!({"conversation_id": conversation_id, "message": "hi both"})).await;
    assert_eq!(reply.status, 404, "send: {}", reply.body);

    // Carol's own view holds nothing of theirs, and theirs nothing of hers.
    let list = app.get(token, "/api/conversations").await;
    assert_eq!(list.body["conversations"], json!([]));
    for other in [&alice, &bob] {
        let reply = app.get(token, &format!("/api/conversations/direct/{}", other.id)).await;
        assert_eq!(reply.status, 404, "{}", reply.body);
    }
    assert_eq!(all_message_ids(&app, &bob, conversation_id).await, [message_id]);
    let page = app.history(&bob, conversation_id, "").await;
    assert_eq!(page["messages"][0]["message"], "between us");
    let bob_view = app.get(Some(&bob.token), &format!("/api/conversations/{conversation_id}")).await;
    assert_eq!(bob_view.body["unread_count"], 1);
    assert_eq!(bob_view.body["last_read_message_id"], Value::Null);
}

on_both_databases!(
    sending_a_direct_message_returns_201_with_the_whole_message,
    an_empty_or_whitespace_only_message_is_422,
    a_message_may_be_2000_characters_but_not_2001,
    a_message_needs_exactly_one_target,
    sending_to_yourself_is_422,
    values_of_the_wrong_json_type_are_422_naming_the_field,
    a_missing_message_is_422_naming_it,
    a_message_with_a_nul_character_is_422_on_every_database,
    two_first_messages_crossing_each_other_share_one_conversation,
    a_bad_client_id_is_422,
    an_unknown_recipient_is_404,
    malformed_json_is_400,
    a_body_that_is_not_json_by_content_type_is_415,
    a_body_over_64_kib_is_413,
    unknown_fields_are_ignored,
    a_retry_with_the_same_client_id_returns_200_and_the_original,
    ten_concurrent_retries_store_exactly_one_message,
    a_burst_of_mixed_sends_gets_each_its_own_answer,
    first_messages_to_many_users_at_once_each_open_their_own_conversation,
    the_same_client_id_from_another_sender_is_another_message,
    sending_by_conversation_id_reaches_the_other_member,
    sending_into_a_conversation_you_are_not_in_is_404,
    a_third_user_can_neither_see_nor_write_into_a_pair_s_conversation,
);

/// First messages that arrive together open their conversations together (one writer
/// batch); each recipient still hears of theirs before its first message.
async fn first_messages_to_many_users_at_once_each_open_their_own_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let mut friends = Vec::new();
    for n in 0..6 {
        friends.push(app.user(&format!("friend{n}")).await);
    }
    let mut sockets = Vec::new();
    for friend in &friends {
        sockets.push(app.ws(friend).await);
    }
    let bodies: Vec<Value> = friends
        .iter()
        .map(|friend| json!({"recipient_id": friend.id, "message": format!("hi {}", friend.username)}))
        .collect();
    let replies = join_all(bodies.iter().map(|body| app.send_message(&alice, body))).await;

    let mut conversations: Vec<i64> = replies
        .iter()
        .map(|reply| {
            assert_eq!(reply.status, 201, "{}", reply.body);
            conversation_of(&reply.body)
        })
        .collect();
    for ((friend, socket), reply) in friends.iter().zip(&mut sockets).zip(&replies) {
        let created = socket.next().await;
        assert_eq!(created["type"], "conversation_created", "{created}");
        assert_eq!(created["conversation"]["id"], reply.body["conversation_id"], "{created}");
        assert_eq!(created["conversation"]["other_user"]["id"], alice.id, "{created}");
        let frame = socket.next_of("new_message").await;
        assert_eq!(frame["message"], reply.body, "{}", friend.username);
        assert_eq!(frame["conversation"]["unread_count"], 1);
        assert!(frame["event_id"].as_i64() > created["event_id"].as_i64(), "{frame}");
    }
    let list = app.get(Some(&alice.token), "/api/conversations").await;
    let listed = list.body["conversations"].as_array().cloned().unwrap_or_default();
    assert_eq!(listed.len(), 6, "{}", list.body);
    for entry in &listed {
        let reply = replies.iter().find(|reply| reply.body["conversation_id"] == entry["id"]);
        let reply = reply.unwrap_or_else(|| panic!("an unknown conversation: {entry}"));
        assert_eq!(entry["last_message"]["id"], reply.body["id"], "{entry}");
    }
    conversations.sort_unstable();
    conversations.dedup();
    assert_eq!(conversations.len(), 6);
}
