//! Replies (v1.1): `reply_to_id` on every send route, the quoted `reply_to` (the first 200
//! characters of the original as it is now), and refusals that store nothing.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

on_both_databases!(
    a_reply_quotes_its_original_whichever_way_it_is_sent,
    the_multipart_send_takes_reply_to_id_too,
    the_quote_is_the_first_200_characters_of_the_original_as_it_is_now,
    a_reply_to_a_message_outside_the_conversation_is_refused_and_stores_nothing,
    every_message_and_conversation_shape_carries_the_v1_1_fields,
);

const UPLOAD: &str = "/api/messages/with-attachment";
const BOUNDARY: &str = "----switchboard-reply-boundary-Q2h8fLm0";
/// A 1×1 transparent PNG.
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\
\x1f\x15\xc4\x89\x00\x00\x00\x0aIDATx\x9cc\x00\x01\x00\x00\x05\x00\x01\x0d\x0a\x2d\xb4\
\x00\x00\x00\x00IEND\xaeB\x60\x82";

/// A multipart body with the text `fields` and one PNG as `file`.
fn multipart(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
    body.extend_from_slice(
        b"Content-Disposition: form-data; name=\"file\"; filename=\"photo.png\"\r\nContent-Type: image/png\r\n\r\n",
    );
    body.extend_from_slice(PNG);
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// `POST /api/messages/with-attachment` with `fields` and a PNG.
async fn upload(app: &TestApp, user: &TestUser, fields: &[(&str, &str)]) -> Reply {
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    app.post_raw(Some(&user.token), UPLOAD, &content_type, multipart(fields)).await
}

/// The `reply_to` a reply to `original` shows while its text is `text`.
fn quote_of(original: &Value, text: &str, deleted: bool) -> Value {
    json!({"id": original["id"], "sender_id": original["sender_id"], "message": text, "deleted": deleted})
}

/// Asserts `message` carries `reply_to: null` (present, not missing).
fn assert_no_reply(message: &Value, what: &str) {
    assert_eq!(message.get("reply_to"), Some(&Value::Null), "{what}: {message}");
}

async fn a_reply_quotes_its_original_whichever_way_it_is_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let original = app.dm(&alice, &bob, "where shall we meet?").await;
    let conversation_id = conversation_of(&original);
    assert_no_reply(&original, "a plain send");
    let mut alice_socket = app.ws(&alice).await;
    let mut bob_socket = app.ws(&bob).await;

    // By recipient_id.
    let reply = app
        .send_message(
            &bob,
            &json!({"recipient_id": alice.id, "message": "at the station", "reply_to_id": original["id"]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let answer = reply.body;
    assert_eq!(answer["reply_to"], quote_of(&original, "where shall we meet?", false), "{answer}");
    assert_eq!(answer["conversation_id"], conversation_id);
    assert_eq!(answer["message"], "at the station");
    let frame = alice_socket.next_of("new_message").await;
    assert_eq!(frame["message"], answer, "the new_message frame carries reply_to");
    assert_eq!(frame["conversation"]["last_message"], answer);
    assert_eq!(bob_socket.next_of("message_sent").await["message"], answer);

    // By conversation_id, quoting the reply.
    let reply = app
        .send_message(
            &alice,
            &json!({"conversation_id": conversation_id, "message": "see you there", "reply_to_id": answer["id"]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let closing = reply.body;
    assert_eq!(closing["reply_to"], quote_of(&answer, "at the station", false), "{closing}");
    assert_eq!(closing["reply_to"]["sender_id"], bob.id);
    assert_eq!(bob_socket.next_of("new_message").await["message"], closing);

    for user in [&alice, &bob] {
        let messages = app.all_messages(user, conversation_id).await;
        assert_eq!(
            messages,
            [original.clone(), answer.clone(), closing.clone()],
            "{}'s history",
            user.username
        );
        assert_eq!(app.conversation(user, conversation_id).await["last_message"], closing);
    }

    // In a group: by the group route and by POST /api/messages with its conversation_id.
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    let question = app.group_send(&carol, group, "pizza or sushi?").await;
    assert_no_reply(&question, "a plain group send");
    let reply =
        app.group_send_reply(&bob, group, &json!({"message": "sushi", "reply_to_id": question["id"]})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let vote = reply.body;
    assert_eq!(vote["reply_to"], quote_of(&question, "pizza or sushi?", false), "{vote}");
    let reply = app
        .send_message(
            &alice,
            &json!({"conversation_id": group, "message": "sushi it is", "reply_to_id": vote["id"]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let decision = reply.body;
    assert_eq!(decision["reply_to"], quote_of(&vote, "sushi", false), "{decision}");
    let messages = app.all_messages(&carol, group).await;
    assert_eq!(messages, [question, vote, decision], "carol's history");
}

async fn the_multipart_send_takes_reply_to_id_too(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let original = app.dm(&alice, &bob, "send me the photo").await;
    let conversation_id = conversation_of(&original);
    let elsewhere = app.dm(&alice, &carol, "not this one").await;
    let mut alice_socket = app.ws(&alice).await;

    let alice_id = alice.id.to_string();
    let original_id = id_of(&original).to_string();
    let reply = upload(
        &app,
        &bob,
        &[
            ("recipient_id", alice_id.as_str()),
            ("message", "here it is"),
            ("reply_to_id", original_id.as_str()),
        ],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let photo = reply.body;
    assert_eq!(photo["reply_to"], quote_of(&original, "send me the photo", false), "{photo}");
    assert_eq!(photo["attachments"].as_array().map(Vec::len), Some(1), "{photo}");
    assert_eq!(alice_socket.next_of("new_message").await["message"], photo);

    // By conversation_id, without text.
    let conversation = conversation_id.to_string();
    let reply = upload(
        &app,
        &alice,
        &[("conversation_id", conversation.as_str()), ("reply_to_id", original_id.as_str())],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["reply_to"], quote_of(&original, "send me the photo", false), "{}", reply.body);
    let second = reply.body;

    // A message of another conversation is refused, and nothing is stored.
    let elsewhere_id = id_of(&elsewhere).to_string();
    let reply = upload(
        &app,
        &bob,
        &[
            ("recipient_id", alice_id.as_str()),
            ("message", "wrong quote"),
            ("reply_to_id", elsewhere_id.as_str()),
        ],
    )
    .await;
    assert_invalid(&reply, "reply_to_id", "multipart reply to another conversation");
    let reply =
        upload(&app, &bob, &[("recipient_id", alice_id.as_str()), ("reply_to_id", "987654321")]).await;
    assert_invalid(&reply, "reply_to_id", "multipart reply to an unknown message");
    assert_eq!(app.all_messages(&bob, conversation_id).await, [original, photo, second]);
}

async fn the_quote_is_the_first_200_characters_of_the_original_as_it_is_now(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    // 300 characters, 450 bytes: the quote counts characters.
    let long = format!("{}{}", "é".repeat(150), "x".repeat(150));
    let original = app.dm(&alice, &bob, &long).await;
    let conversation_id = conversation_of(&original);
    let reply = app
        .send_message(
            &bob,
            &json!({"recipient_id": alice.id, "message": "tl;dr", "reply_to_id": original["id"]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let answer = reply.body;
    let quoted = answer["reply_to"]["message"].as_str().unwrap_or_else(|| panic!("a quote: {answer}"));
    assert_eq!(quoted.chars().count(), 200, "{quoted}");
    let expected = format!("{}{}", "é".repeat(150), "x".repeat(50));
    assert_eq!(quoted, expected);
    assert_eq!(answer["reply_to"], quote_of(&original, &expected, false));
    assert_eq!(app.history_message(&alice, conversation_id, id_of(&answer)).await, answer);

    // A short original is quoted whole.
    let short = app.dm(&alice, &bob, "ok").await;
    let reply = app
        .send_message(&bob, &json!({"recipient_id": alice.id, "message": "good", "reply_to_id": short["id"]}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["reply_to"], quote_of(&short, "ok", false));

    // After an edit, the quote shows the new text.
    let edit = app.edit_message(&alice, id_of(&original), "shorter now").await;
    assert_eq!(edit.status, 200, "{}", edit.body);
    assert_no_reply(&edit.body, "the edited original quotes nothing");
    for user in [&alice, &bob] {
        let shown = app.history_message(user, conversation_id, id_of(&answer)).await;
        assert_eq!(
            shown["reply_to"],
            quote_of(&original, "shorter now", false),
            "{}: {shown}",
            user.username
        );
        assert_eq!(shown["message"], "tl;dr");
    }

    // After a delete, the quote is empty and says so; the reply itself stays.
    assert_eq!(app.delete_message(&alice, id_of(&original)).await.status, 204);
    for user in [&alice, &bob] {
        let shown = app.history_message(user, conversation_id, id_of(&answer)).await;
        assert_eq!(shown["reply_to"], quote_of(&original, "", true), "{}: {shown}", user.username);
        assert_eq!(shown["deleted"], false);
        assert_eq!(shown["message"], "tl;dr");
        // Nor does the log hand out the removed text in the quote.
        let (events, _) = app.sync(user, 0).await;
        let replayed: Vec<&Value> =
            events.iter().filter(|event| event["message"]["id"] == answer["id"]).collect();
        assert!(!replayed.is_empty(), "{}: the reply is in the log", user.username);
        for event in replayed {
            assert_eq!(event["message"]["reply_to"], quote_of(&original, "", true), "{event}");
        }
    }

    // A deleted reply quotes nothing.
    assert_eq!(app.delete_message(&bob, id_of(&answer)).await.status, 204);
    let shown = app.history_message(&alice, conversation_id, id_of(&answer)).await;
    assert_eq!(shown["reply_to"], Value::Null, "{shown}");
}

async fn a_reply_to_a_message_outside_the_conversation_is_refused_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let erin = app.user("erin").await;
    let with_bob = app.dm(&alice, &bob, "hi bob").await;
    let conversation_id = conversation_of(&with_bob);
    let with_carol = app.dm(&alice, &carol, "hi carol").await;
    let invisible = app.dm(&dave, &erin, "just between dave and erin").await;
    let group = app.create_group(&alice, "club", &[&bob]).await;
    let in_group = app.group_send(&alice, group, "hello club").await;
    let mut bob_socket = app.ws(&bob).await;

    let cases = [
        (json!(with_carol["id"]), "a message of the sender's other conversation"),
        (json!(invisible["id"]), "a message of a conversation the sender cannot see"),
        (json!(in_group["id"]), "a group message"),
        (json!(987_654_321), "an unknown id"),
        (json!(with_bob["id"].to_string()), "an id as a string"),
    ];
    for (reply_to_id, what) in &cases {
        let reply = app
            .send_message(
                &alice,
                &json!({"recipient_id": bob.id, "message": "nope", "reply_to_id": reply_to_id}),
            )
            .await;
        assert_invalid(&reply, "reply_to_id", &format!("by recipient_id, {what}"));
        let reply = app
            .send_message(
                &alice,
                &json!({"conversation_id": conversation_id, "message": "nope", "reply_to_id": reply_to_id}),
            )
            .await;
        assert_invalid(&reply, "reply_to_id", &format!("by conversation_id, {what}"));
    }
    // To the group, a direct message cannot be quoted either.
    for (reply_to_id, what) in
        [(json!(with_bob["id"]), "a direct message"), (json!(invisible["id"]), "invisible")]
    {
        let reply = app
            .group_send_reply(&alice, group, &json!({"message": "nope", "reply_to_id": reply_to_id}))
            .await;
        assert_invalid(&reply, "reply_to_id", &format!("group route, {what}"));
    }

    // Nothing was stored or sent.
    assert_eq!(app.all_messages(&bob, conversation_id).await, std::slice::from_ref(&with_bob));
    assert_eq!(app.all_messages(&bob, group).await, [in_group]);
    bob_socket.expect_none_of("new_message", QUIET).await;
    assert_eq!(app.conversation(&bob, conversation_id).await["unread_count"], 1);

    // The same request with a proper reply_to_id goes through.
    let reply = app
        .send_message(
            &alice,
            &json!({"recipient_id": bob.id, "message": "yes", "reply_to_id": with_bob["id"]}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["reply_to"], quote_of(&with_bob, "hi bob", false));
    assert_eq!(bob_socket.next_of("new_message").await["message"], reply.body);
}

// ---------------------------------------------------------------------------------------------
// Every route and frame carries the added fields.

/// Asserts the v1.1 message fields: `reply_to`, `mentions`, `reactions`, `pinned`.
fn assert_v1_1_message(message: &Value, what: &str) {
    assert!(message.is_object(), "{what}: not a message: {message}");
    let reply_to = message.get("reply_to").unwrap_or_else(|| panic!("{what}: reply_to missing: {message}"));
    assert!(reply_to.is_null() || reply_to.is_object(), "{what}: {message}");
    assert!(message["mentions"].is_array(), "{what}: mentions: {message}");
    assert!(message["reactions"].is_array(), "{what}: reactions: {message}");
    assert!(message["pinned"].is_boolean(), "{what}: pinned: {message}");
}

/// Asserts the v1.1 conversation fields: `unread_mentions`, `notify`, `muted_until`, and the
/// message fields on its `last_message`.
fn assert_v1_1_conversation(conversation: &Value, what: &str) {
    assert!(conversation["unread_mentions"].is_i64(), "{what}: unread_mentions: {conversation}");
    assert!(conversation["notify"].is_string(), "{what}: notify: {conversation}");
    let muted_until = conversation
        .get("muted_until")
        .unwrap_or_else(|| panic!("{what}: muted_until missing: {conversation}"));
    assert!(muted_until.is_null() || muted_until.is_string(), "{what}: {conversation}");
    if !conversation["last_message"].is_null() {
        assert_v1_1_message(&conversation["last_message"], &format!("{what}, last_message"));
    }
}

async fn every_message_and_conversation_shape_carries_the_v1_1_fields(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut alice_socket = app.ws(&alice).await;
    let mut bob_socket = app.ws(&bob).await;

    let sent = app.dm(&alice, &bob, "hello there friend").await;
    let conversation_id = conversation_of(&sent);
    assert_v1_1_message(&sent, "send reply");
    let created = bob_socket.next_of("conversation_created").await;
    assert_v1_1_conversation(&created["conversation"], "conversation_created");
    let frame = bob_socket.next_of("new_message").await;
    assert_v1_1_message(&frame["message"], "new_message");
    assert_v1_1_conversation(&frame["conversation"], "new_message");
    assert_v1_1_message(&alice_socket.next_of("message_sent").await["message"], "message_sent");

    let edited = app.edit_message(&alice, id_of(&sent), "hello there, friend").await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_v1_1_message(&edited.body, "edit reply");
    assert_v1_1_message(&bob_socket.next_of("message_edited").await["message"], "message_edited");

    for user in [&alice, &bob] {
        for message in app.all_messages(user, conversation_id).await {
            assert_v1_1_message(&message, "history");
        }
        assert_v1_1_conversation(&app.conversation(user, conversation_id).await, "GET conversation");
        for conversation in app.conversations(user).await {
            assert_v1_1_conversation(&conversation, "the list");
        }
        let direct = app
            .get(Some(&user.token), &format!("/api/conversations/direct/{}", alice.id + bob.id - user.id))
            .await;
        assert_eq!(direct.status, 200, "{}", direct.body);
        assert_v1_1_conversation(&direct.body, "GET conversations/direct");
    }

    let found = app.search_messages(&bob, &[("q", "friend")]).await;
    assert_eq!(found.status, 200, "{}", found.body);
    let messages = found.body["messages"].as_array().unwrap_or_else(|| panic!("messages: {}", found.body));
    assert_eq!(messages.len(), 1, "{}", found.body);
    assert_v1_1_message(&messages[0], "search");

    let group = app.create_group_reply(&alice, "club", &[bob.id]).await;
    assert_eq!(group.status, 201, "{}", group.body);
    assert_v1_1_conversation(&group.body, "create group reply");
    let group_id = id_of(&group.body);
    assert_v1_1_message(&app.group_send(&bob, group_id, "group hello").await, "group send reply");
    assert_v1_1_conversation(&alice_socket.next_of("new_message").await["conversation"], "group new_message");

    let pinned = app.pin(&alice, id_of(&sent)).await;
    assert_v1_1_message(&pinned, "pin reply");
    for message in app.pins(&bob, conversation_id).await {
        assert_v1_1_message(&message, "pins");
    }

    for user in [&alice, &bob] {
        for event in app.sync(user, 0).await.0 {
            let kind = event["type"].as_str().unwrap_or_default().to_owned();
            if event.get("message").is_some() {
                assert_v1_1_message(&event["message"], &format!("sync {kind}"));
            }
            if event.get("conversation").is_some() {
                assert_v1_1_conversation(&event["conversation"], &format!("sync {kind}"));
            }
        }
    }
}
