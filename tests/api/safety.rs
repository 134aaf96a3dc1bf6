//! Edits and deletes, blocks, contacts and the contacts policy, PII masking, and message search.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard::config::DirectPolicy;

use crate::helpers::*;
use crate::on_both_databases;

async fn edit(app: &TestApp, user: &TestUser, message_id: i64, text: &str) -> Reply {
    app.send_json(
        Method::PATCH,
        Some(&user.token),
        &format!("/api/messages/{message_id}"),
        &json!({"message": text}),
    )
    .await
}

async fn delete(app: &TestApp, user: &TestUser, message_id: i64) -> Reply {
    app.send_empty(Method::DELETE, Some(&user.token), &format!("/api/messages/{message_id}")).await
}

/// Creates a group owned by `owner` with `members`; returns its id.
async fn group(app: &TestApp, owner: &TestUser, members: &[&TestUser]) -> i64 {
    let ids: Vec<i64> = members.iter().map(|user| user.id).collect();
    let reply =
        app.post(Some(&owner.token), "/api/groups", &json!({"name": "the group", "member_ids": ids})).await;
    assert_eq!(reply.status, 201, "create group: {}", reply.body);
    id_of(&reply.body)
}

/// Sends to a group and asserts 201; returns the message.
async fn group_send(app: &TestApp, from: &TestUser, group_id: i64, text: &str) -> Value {
    let reply = app
        .post(Some(&from.token), &format!("/api/groups/{group_id}/messages"), &json!({"message": text}))
        .await;
    assert_eq!(reply.status, 201, "group send: {}", reply.body);
    reply.body
}

/// `user` leaves (or is removed from) a group; asserts 204.
async fn leave(app: &TestApp, by: &TestUser, group_id: i64, user: &TestUser) {
    let reply = app
        .send_empty(Method::DELETE, Some(&by.token), &format!("/api/groups/{group_id}/members/{}", user.id))
        .await;
    assert_eq!(reply.status, 204, "remove member: {}", reply.body);
}

/// `GET /api/conversations/{id}` as `user`; asserts 200.
async fn conversation(app: &TestApp, user: &TestUser, id: i64) -> Value {
    let reply = app.get(Some(&user.token), &format!("/api/conversations/{id}")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The entry for conversation `id` in `user`'s conversation list.
async fn list_entry(app: &TestApp, user: &TestUser, id: i64) -> Value {
    let reply = app.get(Some(&user.token), "/api/conversations").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["conversations"]
        .as_array()
        .expect("conversations")
        .iter()
        .find(|entry| entry["id"] == id)
        .unwrap_or_else(|| panic!("conversation {id} missing from the list: {}", reply.body))
        .clone()
}

/// Every message of a conversation, oldest first.
async fn all_messages(app: &TestApp, user: &TestUser, conversation_id: i64) -> Vec<Value> {
    let page = app.history(user, conversation_id, "limit=100").await;
    assert_eq!(page["has_more"], false);
    page["messages"].as_array().expect("messages").clone()
}

/// One message as `user`'s history shows it.
async fn history_message(app: &TestApp, user: &TestUser, conversation_id: i64, message_id: i64) -> Value {
    all_messages(app, user, conversation_id)
        .await
        .into_iter()
        .find(|message| id_of(message) == message_id)
        .unwrap_or_else(|| panic!("message {message_id} missing from history"))
}

/// Every event `user` can sync, from the start.
async fn sync_all(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let reply = app.get(Some(&user.token), "/api/sync?since=0&limit=1000").await;
    assert_eq!(reply.status, 200, "sync: {}", reply.body);
    assert_eq!(reply.body["has_more"], false);
    reply.body["events"].as_array().expect("events").clone()
}

fn count_of(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|event| event["type"] == kind).count()
}

fn assert_deleted_frame(frame: &Value, conversation_id: i64, message_id: i64, what: &str) {
    assert_eq!(frame["type"], "message_deleted", "{what}: {frame}");
    assert!(frame["event_id"].as_i64().is_some_and(|id| id > 0), "{what}: {frame}");
    assert_eq!(frame["conversation_id"], conversation_id, "{what}: {frame}");
    assert_eq!(frame["message_id"], message_id, "{what}: {frame}");
}

/// Asserts `message` is the deleted form of `original`.
fn assert_shown_deleted(message: &Value, original: &Value, what: &str) {
    assert_eq!(message["id"], original["id"], "{what}: {message}");
    assert_eq!(message["sender_id"], original["sender_id"], "{what}: {message}");
    assert_eq!(message["conversation_id"], original["conversation_id"], "{what}: {message}");
    assert_eq!(message["created_at"], original["created_at"], "{what}: {message}");
    assert_eq!(message["message"], "", "{what}: {message}");
    assert_eq!(message["attachments"], json!([]), "{what}: {message}");
    assert_eq!(message["deleted"], true, "{what}: {message}");
}

// ---------------------------------------------------------------------------------------------
// Edits and deletes

async fn an_edit_returns_the_message_and_reaches_every_device_of_both_users(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let original = app.dm(&alice, &bob, "see you at noon").await;
    let conversation_id = conversation_of(&original);
    let message_id = id_of(&original);
    let mut sockets =
        vec![app.ws(&alice).await, app.ws(&alice).await, app.ws(&bob).await, app.ws(&bob).await];

    let reply = edit(&app, &alice, message_id, "  see you at one \n").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let edited = reply.body.clone();
    assert_eq!(edited["id"], message_id);
    assert_eq!(edited["message"], "see you at one", "trimmed");
    assert_eq!(edited["created_at"], original["created_at"]);
    assert_eq!(edited["sender_id"], alice.id);
    assert_eq!(edited["recipient_id"], bob.id);
    assert_eq!(edited["deleted"], false);
    assert_contract_time(&edited["edited_at"]);

    let mut event_ids = HashSet::new();
    for (n, socket) in sockets.iter_mut().enumerate() {
        let frame = socket.next_of("message_edited").await;
        assert_eq!(frame["message"], edited, "socket {n}: {frame}");
        event_ids.insert(frame["event_id"].as_i64().unwrap_or_else(|| panic!("event_id: {frame}")));
    }
    assert_eq!(event_ids.len(), 1, "one event for every device");

    // History and the conversation list show the edit, to both users.
    for user in [&alice, &bob] {
        assert_eq!(history_message(&app, user, conversation_id, message_id).await, edited);
        assert_eq!(list_entry(&app, user, conversation_id).await["last_message"], edited);
        assert_eq!(conversation(&app, user, conversation_id).await["last_message"], edited);
    }

    // The same text again changes nothing and tells no one.
    let reply = edit(&app, &alice, message_id, "\tsee you at one  ").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, edited, "unchanged, edited_at too");
    for socket in &mut sockets {
        socket.expect_none_of("message_edited", QUIET).await;
    }
    for user in [&alice, &bob] {
        assert_eq!(count_of(&sync_all(&app, user).await, "message_edited"), 1, "one stored edit");
    }

    // A message can be edited more than once within the window.
    let reply = edit(&app, &alice, message_id, "see you at two").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["message"], "see you at two");
    for socket in &mut sockets {
        assert_eq!(socket.next_of("message_edited").await["message"]["message"], "see you at two");
    }
}

async fn edits_and_deletes_in_a_group_reach_every_member_and_no_one_else(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let erin = app.user("erin").await;
    let group_id = group(&app, &alice, &[&bob, &carol, &erin]).await;
    let message = group_send(&app, &alice, group_id, "draft agenda").await;
    let message_id = id_of(&message);
    leave(&app, &alice, group_id, &erin).await;
    let mut members =
        vec![app.ws(&alice).await, app.ws(&alice).await, app.ws(&bob).await, app.ws(&carol).await];
    let mut outsiders = vec![app.ws(&dave).await, app.ws(&erin).await];

    let reply = edit(&app, &alice, message_id, "final agenda").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["recipient_id"], Value::Null);
    for socket in &mut members {
        assert_eq!(socket.next_of("message_edited").await["message"], reply.body);
    }

    let reply = delete(&app, &alice, message_id).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    for (n, socket) in members.iter_mut().enumerate() {
        let frame = socket.next_of("message_deleted").await;
        assert_deleted_frame(&frame, group_id, message_id, &format!("socket {n}"));
    }
    for socket in &mut outsiders {
        socket.expect_silence(QUIET).await;
    }

    for user in [&alice, &bob, &carol] {
        let shown = history_message(&app, user, group_id, message_id).await;
        assert_shown_deleted(&shown, &message, "group history");
        assert_shown_deleted(&list_entry(&app, user, group_id).await["last_message"], &message, "group list");
    }
}

async fn only_the_sender_may_edit_or_delete_and_outsiders_get_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let message = app.dm(&alice, &bob, "mine").await;
    let message_id = id_of(&message);
    let conversation_id = conversation_of(&message);

    assert_error(&edit(&app, &bob, message_id, "yours now").await, 403, "not_owner", "recipient edits");
    assert_error(&delete(&app, &bob, message_id).await, 403, "not_owner", "recipient deletes");
    assert_error(&edit(&app, &carol, message_id, "hi").await, 404, "not_found", "outsider edits");
    assert_error(&delete(&app, &carol, message_id).await, 404, "not_found", "outsider deletes");
    let unknown = message_id + 1000;
    assert_error(&edit(&app, &alice, unknown, "hi").await, 404, "not_found", "unknown id edit");
    assert_error(&delete(&app, &alice, unknown).await, 404, "not_found", "unknown id delete");
    assert_eq!(history_message(&app, &alice, conversation_id, message_id).await, message, "untouched");

    // A member who left a group can no longer change what they wrote there.
    let group_id = group(&app, &alice, &[&carol]).await;
    let carols = group_send(&app, &carol, group_id, "bye all").await;
    leave(&app, &carol, group_id, &carol).await;
    assert_error(&edit(&app, &carol, id_of(&carols), "hi").await, 404, "not_found", "left member edits");
    assert_error(&delete(&app, &carol, id_of(&carols)).await, 404, "not_found", "left member deletes");
    assert_eq!(history_message(&app, &alice, group_id, id_of(&carols)).await, carols);

    // An edit is validated like a send.
    let reply = edit(&app, &alice, message_id, "   ").await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.error_field(), Some("message"));
    let reply = edit(&app, &alice, message_id, &"x".repeat(2001)).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.error_field(), Some("message"));
}

async fn the_edit_window_closes_after_the_configured_time(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.messaging.edit_window_seconds = 2).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "typo hre").await;
    let message_id = id_of(&message);

    let reply = edit(&app, &alice, message_id, "typo here").await;
    assert_eq!(reply.status, 200, "within the window: {}", reply.body);
    let edited = reply.body;

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let reply = edit(&app, &alice, message_id, "too late").await;
    assert_error(&reply, 403, "edit_window_passed", "past the window");
    assert_eq!(history_message(&app, &bob, conversation_of(&message), message_id).await, edited);
}

async fn a_deleted_message_cannot_be_edited(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "oops").await;
    assert_eq!(delete(&app, &alice, id_of(&message)).await.status, 204);
    let reply = edit(&app, &alice, id_of(&message), "resurrected").await;
    assert_error(&reply, 409, "message_deleted", "edit after delete");
    let shown = history_message(&app, &bob, conversation_of(&message), id_of(&message)).await;
    assert_shown_deleted(&shown, &message, "still deleted");
}

async fn a_delete_is_soft_repeatable_and_reaches_every_device(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let first = app.dm(&alice, &bob, "first words").await;
    let message = app.dm(&alice, &bob, "regrettable words").await;
    let conversation_id = conversation_of(&message);
    let message_id = id_of(&message);
    let mut sockets =
        vec![app.ws(&alice).await, app.ws(&alice).await, app.ws(&bob).await, app.ws(&bob).await];

    let reply = delete(&app, &alice, message_id).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let mut event_ids = HashSet::new();
    for (n, socket) in sockets.iter_mut().enumerate() {
        let frame = socket.next_of("message_deleted").await;
        assert_deleted_frame(&frame, conversation_id, message_id, &format!("socket {n}"));
        event_ids.insert(frame["event_id"].as_i64().expect("event_id"));
    }
    assert_eq!(event_ids.len(), 1, "one event for every device");

    for user in [&alice, &bob] {
        let messages = all_messages(&app, user, conversation_id).await;
        assert_eq!(messages.len(), 2, "kept in history");
        assert_eq!(messages[0], first, "the other message is untouched");
        assert_shown_deleted(&messages[1], &message, "history");
        assert_shown_deleted(
            &list_entry(&app, user, conversation_id).await["last_message"],
            &message,
            "list",
        );
        assert_shown_deleted(
            &conversation(&app, user, conversation_id).await["last_message"],
            &message,
            "conversation",
        );
    }

    // Again: 204, nothing new.
    let reply = delete(&app, &alice, message_id).await;
    assert_eq!(reply.status, 204, "repeated delete: {}", reply.body);
    for socket in &mut sockets {
        socket.expect_none_of("message_deleted", QUIET).await;
    }
    for user in [&alice, &bob] {
        assert_eq!(count_of(&sync_all(&app, user).await, "message_deleted"), 1, "one stored delete");
    }
}

async fn deleting_an_unread_message_lowers_the_unread_count(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let one = app.dm(&alice, &bob, "one").await;
    let two = app.dm(&alice, &bob, "two").await;
    let three = app.dm(&alice, &bob, "three").await;
    let conversation_id = conversation_of(&one);
    assert_eq!(conversation(&app, &bob, conversation_id).await["unread_count"], 3);

    assert_eq!(delete(&app, &alice, id_of(&three)).await.status, 204);
    assert_eq!(conversation(&app, &bob, conversation_id).await["unread_count"], 2);
    assert_eq!(list_entry(&app, &bob, conversation_id).await["unread_count"], 2);
    assert_eq!(conversation(&app, &alice, conversation_id).await["unread_count"], 0, "the sender's stays 0");

    // A message bob has read no longer counts, so deleting it changes nothing.
    let reply = app
        .post(
            Some(&bob.token),
            &format!("/api/conversations/{conversation_id}/read"),
            &json!({"message_id": id_of(&one)}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["unread_count"], 1);
    assert_eq!(delete(&app, &alice, id_of(&one)).await.status, 204);
    assert_eq!(conversation(&app, &bob, conversation_id).await["unread_count"], 1);
    assert_eq!(delete(&app, &alice, id_of(&two)).await.status, 204);
    assert_eq!(conversation(&app, &bob, conversation_id).await["unread_count"], 0);
    assert_eq!(list_entry(&app, &bob, conversation_id).await["unread_count"], 0);

    // In a group only the members who had not read it lose one.
    let group_id = group(&app, &alice, &[&bob, &carol]).await;
    let message = group_send(&app, &alice, group_id, "hello group").await;
    let reply = app.post(Some(&bob.token), &format!("/api/conversations/{group_id}/read"), &json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(conversation(&app, &carol, group_id).await["unread_count"], 1);
    assert_eq!(delete(&app, &alice, id_of(&message)).await.status, 204);
    assert_eq!(conversation(&app, &carol, group_id).await["unread_count"], 0);
    assert_eq!(conversation(&app, &bob, group_id).await["unread_count"], 0);

    // A member added later never counted the older message, so its deletion leaves them be.
    let older = group_send(&app, &alice, group_id, "before dave").await;
    let dave = app.user("dave").await;
    let reply = app
        .post(Some(&alice.token), &format!("/api/groups/{group_id}/members"), &json!({"user_id": dave.id}))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut dave_socket = app.ws(&dave).await;
    group_send(&app, &alice, group_id, "after dave").await;
    assert_eq!(dave_socket.next_of("new_message").await["conversation"]["unread_count"], 1);
    assert_eq!(delete(&app, &alice, id_of(&older)).await.status, 204);
    assert_eq!(conversation(&app, &dave, group_id).await["unread_count"], 1, "dave still has one");
    assert_eq!(conversation(&app, &carol, group_id).await["unread_count"], 1, "carol lost one of two");
    // The next message's frame counts from the lowered number.
    group_send(&app, &alice, group_id, "one more").await;
    assert_eq!(dave_socket.next_of("new_message").await["conversation"]["unread_count"], 2);
    assert_eq!(conversation(&app, &carol, group_id).await["unread_count"], 2);
}

async fn sync_and_replay_show_a_deleted_message_without_its_text(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "the secret password is swordfish").await;
    let message_id = id_of(&message);
    let kept = app.dm(&alice, &bob, "this one stays").await;
    let reply = edit(&app, &alice, message_id, "the secret password is marlin").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(delete(&app, &alice, message_id).await.status, 204);

    for (user, kind) in [(&bob, "new_message"), (&alice, "message_sent")] {
        let events = sync_all(&app, user).await;
        let created = events
            .iter()
            .find(|event| event["type"] == kind && event["message"]["id"] == message_id)
            .unwrap_or_else(|| panic!("{kind} for the deleted message missing: {events:?}"));
        assert_shown_deleted(&created["message"], &message, &format!("sync {kind}"));
        let deleted =
            events.iter().find(|event| event["type"] == "message_deleted").expect("message_deleted");
        assert_deleted_frame(deleted, conversation_of(&message), message_id, "sync");
        let text = serde_json::to_string(&events).expect("json");
        assert!(
            !text.contains("swordfish") && !text.contains("marlin"),
            "the deleted text leaks through sync: {text}"
        );
        assert!(text.contains("this one stays"), "other messages keep their text");

        // A socket opened with since=0 replays the same.
        let mut socket = app.ws_since(user, 0).await;
        let replayed = loop {
            let frame = socket.next_of(kind).await;
            if frame["message"]["id"] == message_id {
                break frame;
            }
        };
        assert_shown_deleted(&replayed["message"], &message, &format!("replayed {kind}"));
        let mut seen = vec![replayed];
        loop {
            let frame = socket.next().await;
            let done = frame["type"] == "message_deleted";
            seen.push(frame);
            if done {
                break;
            }
        }
        let text = serde_json::to_string(&seen).expect("json");
        assert!(!text.contains("swordfish") && !text.contains("marlin"), "replay leaks: {text}");
    }
    assert_eq!(history_message(&app, &bob, conversation_of(&kept), id_of(&kept)).await, kept);
}

// ---------------------------------------------------------------------------------------------
// Blocks

async fn block(app: &TestApp, by: &TestUser, user_id: i64) -> Reply {
    app.post(Some(&by.token), "/api/blocks", &json!({"user_id": user_id})).await
}

async fn unblock(app: &TestApp, by: &TestUser, user_id: i64) -> Reply {
    app.send_empty(Method::DELETE, Some(&by.token), &format!("/api/blocks/{user_id}")).await
}

async fn blocks_of(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let reply = app.get(Some(&user.token), "/api/blocks").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["blocks"].as_array().expect("blocks").clone()
}

/// Asserts every way of sending a direct message between the two is refused with `code`.
async fn assert_direct_refused(app: &TestApp, a: &TestUser, b: &TestUser, conversation_id: i64, code: &str) {
    for (from, to) in [(a, b), (b, a)] {
        let by_recipient = app.send_message(from, &json!({"recipient_id": to.id, "message": "hi"})).await;
        assert_error(
            &by_recipient,
            403,
            code,
            &format!("{} → {} by recipient_id", from.username, to.username),
        );
        let by_conversation =
            app.send_message(from, &json!({"conversation_id": conversation_id, "message": "hi"})).await;
        assert_error(
            &by_conversation,
            403,
            code,
            &format!("{} → {} by conversation_id", from.username, to.username),
        );
    }
}

async fn a_block_refuses_direct_messages_and_contact_requests_both_ways(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let first = app.dm(&bob, &alice, "hello alice").await;
    let conversation_id = conversation_of(&first);
    let mut alice_socket = app.ws(&alice).await;

    let reply = block(&app, &alice, bob.id).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["user"]["id"], bob.id);
    assert_eq!(reply.body["user"]["username"], bob.username.as_str());
    assert_contract_time(&reply.body["created_at"]);
    let blocked = reply.body.clone();
    let reply = block(&app, &alice, bob.id).await;
    assert_eq!(reply.status, 200, "blocking again: {}", reply.body);
    assert_eq!(reply.body, blocked, "the same block");

    assert_direct_refused(&app, &alice, &bob, conversation_id, "blocked").await;
    for (from, to) in [(&alice, &bob), (&bob, &alice)] {
        let reply = app.post(Some(&from.token), "/api/contacts/requests", &json!({"user_id": to.id})).await;
        assert_error(&reply, 403, "blocked", "contact request while blocked");
    }
    alice_socket.expect_none_of("new_message", QUIET).await;
    assert_eq!(
        all_messages(&app, &alice, conversation_id).await,
        std::slice::from_ref(&first),
        "nothing stored"
    );
    let requests = app.get(Some(&bob.token), "/api/contacts/requests").await;
    assert_eq!(requests.body, json!({"incoming": [], "outgoing": []}), "no request stored");

    // Unblocking restores messaging both ways; unblocking again is still 204.
    assert_eq!(unblock(&app, &alice, bob.id).await.status, 204);
    assert_eq!(unblock(&app, &alice, bob.id).await.status, 204);
    app.dm(&bob, &alice, "are we good?").await;
    assert_eq!(alice_socket.next_of("new_message").await["message"]["message"], "are we good?");
    app.dm(&alice, &bob, "yes").await;
    let reply =
        app.send_message(&bob, &json!({"conversation_id": conversation_id, "message": "great"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(all_messages(&app, &bob, conversation_id).await.len(), 4);
}

async fn a_block_holds_while_either_side_keeps_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let conversation_id = conversation_of(&app.dm(&alice, &bob, "hi").await);
    assert_eq!(block(&app, &alice, bob.id).await.status, 201);
    assert_eq!(block(&app, &bob, alice.id).await.status, 201);
    assert_eq!(unblock(&app, &alice, bob.id).await.status, 204);
    assert_direct_refused(&app, &alice, &bob, conversation_id, "blocked").await;
    assert_eq!(unblock(&app, &bob, alice.id).await.status, 204);
    app.dm(&alice, &bob, "free again").await;
    app.dm(&bob, &alice, "indeed").await;
}

async fn a_block_stops_a_first_message_without_creating_a_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut bob_socket = app.ws(&bob).await;
    assert_eq!(block(&app, &bob, alice.id).await.status, 201);
    let reply = app.send_message(&alice, &json!({"recipient_id": bob.id, "message": "hi stranger"})).await;
    assert_error(&reply, 403, "blocked", "first message to a blocker");
    bob_socket.expect_none_of("conversation_created", QUIET).await;
    for (user, other) in [(&alice, &bob), (&bob, &alice)] {
        let reply = app.get(Some(&user.token), &format!("/api/conversations/direct/{}", other.id)).await;
        assert_eq!(reply.status, 404, "no conversation: {}", reply.body);
    }
}

async fn blocks_do_not_affect_groups(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    assert_eq!(block(&app, &alice, bob.id).await.status, 201);
    assert_eq!(block(&app, &bob, carol.id).await.status, 201);
    let group_id = group(&app, &alice, &[&bob, &carol]).await;
    let mut bob_socket = app.ws(&bob).await;
    let mut alice_socket = app.ws(&alice).await;

    let message = group_send(&app, &alice, group_id, "welcome bob").await;
    assert_eq!(bob_socket.next_of("new_message").await["message"], message);
    let reply =
        app.send_message(&bob, &json!({"conversation_id": group_id, "message": "thanks alice"})).await;
    assert_eq!(reply.status, 201, "group message by conversation_id: {}", reply.body);
    assert_eq!(alice_socket.next_of("new_message").await["message"], reply.body);
    group_send(&app, &carol, group_id, "hi both").await;
    assert_eq!(all_messages(&app, &bob, group_id).await.len(), 3);

    // A group the blocked user creates with the blocker works too.
    let group_id = group(&app, &bob, &[&alice]).await;
    group_send(&app, &bob, group_id, "hello").await;
    group_send(&app, &alice, group_id, "hello back").await;
}

async fn the_block_list_and_its_validation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;

    assert_eq!(blocks_of(&app, &alice).await, Vec::<Value>::new());
    let reply = block(&app, &alice, alice.id).await;
    assert_error(&reply, 422, "validation_failed", "self block");
    assert_eq!(reply.error_field(), Some("user_id"));
    assert_error(&block(&app, &alice, carol.id + 1000).await, 404, "not_found", "unknown user");

    let to_bob = block(&app, &alice, bob.id).await.body;
    let to_carol = block(&app, &alice, carol.id).await.body;
    let list = blocks_of(&app, &alice).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.contains(&to_bob) && list.contains(&to_carol), "{list:?}");
    for entry in &list {
        assert!(entry["user"]["display_name"].is_string(), "a full user: {entry}");
        assert_contract_time(&entry["created_at"]);
    }
    assert_eq!(blocks_of(&app, &bob).await, Vec::<Value>::new(), "bob blocked no one");

    assert_eq!(unblock(&app, &alice, bob.id).await.status, 204);
    assert_eq!(blocks_of(&app, &alice).await, [to_carol]);
    assert_eq!(unblock(&app, &alice, carol.id + 1000).await.status, 204, "never blocked");
}

// ---------------------------------------------------------------------------------------------
// Contacts

async fn request_contact(app: &TestApp, from: &TestUser, to: &TestUser) -> Reply {
    app.post(Some(&from.token), "/api/contacts/requests", &json!({"user_id": to.id})).await
}

async fn accept(app: &TestApp, user: &TestUser, request_id: i64) -> Reply {
    app.send_empty(Method::POST, Some(&user.token), &format!("/api/contacts/requests/{request_id}/accept"))
        .await
}

async fn become_contacts(app: &TestApp, a: &TestUser, b: &TestUser) {
    let reply = request_contact(app, a, b).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = accept(app, b, id_of(&reply.body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "accepted");
}

async fn contacts_of(app: &TestApp, user: &TestUser) -> Vec<i64> {
    let reply = app.get(Some(&user.token), "/api/contacts").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["contacts"].as_array().expect("contacts").iter().map(id_of).collect()
}

async fn requests_of(app: &TestApp, user: &TestUser) -> Value {
    let reply = app.get(Some(&user.token), "/api/contacts/requests").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn a_contact_request_is_made_once_and_accepted_by_its_recipient(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;

    let reply = request_contact(&app, &alice, &bob).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let request = reply.body.clone();
    assert!(request["id"].as_i64().is_some_and(|id| id > 0), "{request}");
    assert_eq!(request["from_user"]["id"], alice.id);
    assert_eq!(request["from_user"]["username"], alice.username.as_str());
    assert_eq!(request["to_user"]["id"], bob.id);
    assert_eq!(request["status"], "pending");
    assert_contract_time(&request["created_at"]);

    let reply = request_contact(&app, &alice, &bob).await;
    assert_eq!(reply.status, 200, "asking again: {}", reply.body);
    assert_eq!(reply.body, request, "the same request");

    assert_eq!(requests_of(&app, &bob).await, json!({"incoming": [request], "outgoing": []}));
    assert_eq!(requests_of(&app, &alice).await, json!({"incoming": [], "outgoing": [request]}));
    assert_eq!(requests_of(&app, &carol).await, json!({"incoming": [], "outgoing": []}));
    assert!(contacts_of(&app, &alice).await.is_empty() && contacts_of(&app, &bob).await.is_empty());

    let request_id = id_of(&request);
    assert_error(&accept(&app, &alice, request_id).await, 403, "not_allowed", "the sender accepts");
    assert_error(&accept(&app, &carol, request_id).await, 404, "not_found", "a third user accepts");
    assert_error(&accept(&app, &bob, request_id + 1000).await, 404, "not_found", "unknown request");
    assert_eq!(requests_of(&app, &bob).await["incoming"], json!([request]), "still pending");

    let reply = accept(&app, &bob, request_id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["id"], request_id);
    assert_eq!(reply.body["status"], "accepted");
    assert_eq!(reply.body["from_user"], request["from_user"]);
    assert_eq!(reply.body["to_user"], request["to_user"]);

    assert_eq!(contacts_of(&app, &alice).await, [bob.id]);
    assert_eq!(contacts_of(&app, &bob).await, [alice.id]);
    assert!(contacts_of(&app, &carol).await.is_empty());
    let contacts = app.get(Some(&alice.token), "/api/contacts").await.body;
    assert_eq!(contacts["contacts"][0]["username"], bob.username.as_str(), "a full user: {contacts}");
    for user in [&alice, &bob] {
        assert_eq!(requests_of(&app, user).await, json!({"incoming": [], "outgoing": []}), "pending only");
    }

    // Asking again once accepted changes nothing.
    let reply = request_contact(&app, &alice, &bob).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["id"], request_id);
    assert_eq!(reply.body["status"], "accepted");
    let reply = request_contact(&app, &bob, &alice).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["id"], request_id);
    assert_eq!(reply.body["status"], "accepted");
    assert_eq!(contacts_of(&app, &alice).await, [bob.id], "no duplicate contact");
    assert_eq!(contacts_of(&app, &bob).await, [alice.id], "no duplicate contact");
}

async fn asking_someone_who_asked_you_accepts_their_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let request = request_contact(&app, &alice, &bob).await.body;

    let reply = request_contact(&app, &bob, &alice).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["id"], request["id"], "alice's request, accepted");
    assert_eq!(reply.body["status"], "accepted");
    assert_eq!(reply.body["from_user"]["id"], alice.id);
    assert_eq!(contacts_of(&app, &alice).await, [bob.id]);
    assert_eq!(contacts_of(&app, &bob).await, [alice.id]);
    for user in [&alice, &bob] {
        assert_eq!(requests_of(&app, user).await, json!({"incoming": [], "outgoing": []}));
    }
}

async fn contact_request_validation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let reply = request_contact(&app, &alice, &alice).await;
    assert_error(&reply, 422, "validation_failed", "self request");
    assert_eq!(reply.error_field(), Some("user_id"));
    let reply =
        app.post(Some(&alice.token), "/api/contacts/requests", &json!({"user_id": alice.id + 1000})).await;
    assert_error(&reply, 404, "not_found", "unknown user");
    let reply = app.post(Some(&alice.token), "/api/contacts/requests", &json!({})).await;
    assert_error(&reply, 422, "validation_failed", "no user_id");
    assert_eq!(reply.error_field(), Some("user_id"));
    assert_eq!(requests_of(&app, &alice).await, json!({"incoming": [], "outgoing": []}));
}

async fn the_contacts_policy_needs_an_accepted_contact(backend: Backend) {
    let app =
        spawn_app_with(backend, |settings| settings.messaging.direct_policy = DirectPolicy::Contacts).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;

    for (from, to) in [(&alice, &bob), (&bob, &alice)] {
        let reply = app.send_message(from, &json!({"recipient_id": to.id, "message": "hi"})).await;
        assert_error(&reply, 403, "not_connected", "strangers");
    }
    let reply = app.get(Some(&alice.token), &format!("/api/conversations/direct/{}", bob.id)).await;
    assert_eq!(reply.status, 404, "nothing was created: {}", reply.body);

    // A pending request is not enough.
    let request = request_contact(&app, &alice, &bob).await;
    assert_eq!(request.status, 201, "{}", request.body);
    for (from, to) in [(&alice, &bob), (&bob, &alice)] {
        let reply = app.send_message(from, &json!({"recipient_id": to.id, "message": "hi"})).await;
        assert_error(&reply, 403, "not_connected", "pending request");
    }

    assert_eq!(accept(&app, &bob, id_of(&request.body)).await.status, 200);
    let message = app.dm(&alice, &bob, "hi contact").await;
    app.dm(&bob, &alice, "hi back").await;
    let reply = app
        .send_message(&bob, &json!({"conversation_id": conversation_of(&message), "message": "again"}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    // Others are still refused, and groups are not direct messages.
    let reply = app.send_message(&carol, &json!({"recipient_id": alice.id, "message": "hi"})).await;
    assert_error(&reply, 403, "not_connected", "carol is no contact");
    let group_id = group(&app, &carol, &[&alice]).await;
    group_send(&app, &carol, group_id, "group hello").await;
    group_send(&app, &alice, group_id, "group hello back").await;

    // A block still wins over a contact.
    assert_eq!(block(&app, &bob, alice.id).await.status, 201);
    let reply = app.send_message(&alice, &json!({"recipient_id": bob.id, "message": "hi"})).await;
    assert_error(&reply, 403, "blocked", "blocked contact");
}

// ---------------------------------------------------------------------------------------------
// PII masking

async fn masking_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |settings| settings.messaging.mask_pii_before_contact = true).await
}

/// Sends `text` from `from` to `to`, whose `socket` is open; returns the 201 body and the
/// `new_message` frame that reached `to`.
async fn send_and_receive(
    app: &TestApp,
    from: &TestUser,
    to: &TestUser,
    socket: &mut WsClient,
    text: &str,
) -> (Value, Value) {
    let reply = app.send_message(from, &json!({"recipient_id": to.id, "message": text})).await;
    assert_eq!(reply.status, 201, "{text:?}: {}", reply.body);
    let frame = socket.next_of("new_message").await;
    assert_eq!(frame["message"]["id"], reply.body["id"], "{text:?}");
    (reply.body, frame)
}

/// Expected masked forms, exact where the contract's examples fix the shape.
const MASKED: &[(&str, &str)] = &[
    ("john@example.com", "j***@e***.com"),
    ("555-1234", "***-****"),
    ("write me at john+chat@example.com please", "write me at j***@e***.com please"),
    ("call 555 123 4567 tonight", "call *** *** **** tonight"),
    ("my cell is 555-123-4567", "my cell is ***-***-****"),
    ("office (555) 123-4567", "office (***) ***-****"),
    ("from abroad +1 (555) 123-4567", "from abroad +* (***) ***-****"),
    ("London +44 20 7946 0958", "London +** ** **** ****"),
    ("Berlin +49-30-1234567", "Berlin +**-**-*******"),
    ("see https://example.com/path?q=1 now", "see [link removed] now"),
    ("http://x.io", "[link removed]"),
    ("go to www.example.com/page", "go to [link removed]"),
    ("visit example.com for details", "visit [link removed] for details"),
    ("find us at shop.example.co.uk/item.", "find us at [link removed]."),
    (
        "I'm john@example.com, +1 (555) 123-4567, https://john.dev",
        "I'm j***@e***.com, +* (***) ***-****, [link removed]",
    ),
];

/// Emails whose exact masked form the contract leaves open: none of their parts may survive.
const MASKED_LOOSELY: &[(&str, &[&str])] = &[
    ("jane.doe@mail.example.co.uk", &["jane", "doe", "mail", "example"]),
    ("Write to Support+billing@Sub.Example.ORG today", &["upport", "billing", "Sub", "Example"]),
    ("ping first.last+news@eu.mail.my-company.de ok", &["first", "last", "news", "mail", "company"]),
];

const ORDINARY: &[&str] = &[
    "Hello there, how are you doing today?",
    "It costs $1,299.99 now, or 49.99 EUR",
    "Meeting at 10:30 on 2026-11-22",
    "Born 22.11.1990, moved in 2026",
    "Upgrade to 1.2.3 or v10.15.7",
    "see you in room 42",
    "See you in 2026!",
    "I'm 25 and have 3 kids",
    "pi is 3.14",
    "we lived there from 1990-2020",
    "rooms 1202-1204 are free",
    "open file.txt and main.rs",
    "Mr. Smith and Dr. Jones met at 5 p.m.",
    "50% off until 12/31",
    "the score was 3-2 at 9:45",
];

async fn contact_details_are_masked_between_strangers(backend: Backend) {
    let app = masking_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut bob_socket = app.ws(&bob).await;
    let mut stored = Vec::new();

    for (text, expected) in MASKED {
        let (message, frame) = send_and_receive(&app, &alice, &bob, &mut bob_socket, text).await;
        assert_eq!(message["message"], *expected, "201 body for {text:?}");
        assert_eq!(frame["message"]["message"], *expected, "new_message for {text:?}");
        assert_eq!(frame["conversation"]["last_message"]["message"], *expected, "frame's conversation");
        stored.push(message);
    }
    for (text, parts) in MASKED_LOOSELY {
        let (message, frame) = send_and_receive(&app, &alice, &bob, &mut bob_socket, text).await;
        assert_eq!(frame["message"]["message"], message["message"], "{text:?}");
        let masked = message["message"].as_str().expect("text");
        assert!(masked.contains("***@"), "{text:?} → {masked:?}");
        for part in *parts {
            assert!(!masked.contains(part), "{text:?} → {masked:?} keeps {part:?}");
        }
        stored.push(message);
    }

    // Either direction, and by conversation_id too.
    let conversation_id = conversation_of(&stored[0]);
    let reply = app
        .send_message(
            &bob,
            &json!({"conversation_id": conversation_id, "message": "mine is bob@example.org"}),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["message"], "mine is b***@e***.org");
    stored.push(reply.body);

    // History serves the masked text to both.
    for user in [&alice, &bob] {
        assert_eq!(all_messages(&app, user, conversation_id).await, stored, "history");
    }
    let text = serde_json::to_string(&sync_all(&app, &bob).await).expect("json");
    for needle in ["john", "example.com", "4567", "7946", "jane", "bob@"] {
        assert!(!text.contains(needle), "sync keeps {needle:?}: {text}");
    }
}

async fn ordinary_words_and_numbers_are_not_masked(backend: Backend) {
    let app = masking_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut bob_socket = app.ws(&bob).await;
    let mut stored = Vec::new();
    for text in ORDINARY {
        let (message, frame) = send_and_receive(&app, &alice, &bob, &mut bob_socket, text).await;
        assert_eq!(message["message"], *text, "201 body");
        assert_eq!(frame["message"]["message"], *text, "new_message");
        stored.push(message);
    }
    let history = all_messages(&app, &bob, conversation_of(&stored[0])).await;
    let texts: Vec<&str> = history.iter().map(|m| m["message"].as_str().expect("text")).collect();
    assert_eq!(texts, ORDINARY);
}

const PII: &str = "mail john@example.com or call 555-1234, see https://example.com/me";
const PII_MASKED: &str = "mail j***@e***.com or call ***-****, see [link removed]";

async fn contacts_and_groups_are_never_masked(backend: Backend) {
    let app = masking_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let mut bob_socket = app.ws(&bob).await;

    // A group: raw, even between strangers.
    let group_id = group(&app, &alice, &[&bob, &carol]).await;
    let message = group_send(&app, &alice, group_id, PII).await;
    assert_eq!(message["message"], PII, "group 201");
    assert_eq!(bob_socket.next_of("new_message").await["message"]["message"], PII, "group frame");
    let reply = app.send_message(&carol, &json!({"conversation_id": group_id, "message": PII})).await;
    assert_eq!(reply.body["message"], PII, "group by conversation_id");
    let frame = bob_socket.next_of("new_message").await;
    assert_eq!(frame["message"]["id"], reply.body["id"]);
    assert_eq!(frame["message"]["message"], PII, "group frame from a stranger");
    let history = all_messages(&app, &bob, group_id).await;
    assert!(history.iter().all(|m| m["message"] == PII), "group history: {history:?}");

    // Strangers: masked; the same pair once contacts: raw. What was masked stays masked.
    let (before, _) = send_and_receive(&app, &alice, &bob, &mut bob_socket, PII).await;
    assert_eq!(before["message"], PII_MASKED);
    let request = request_contact(&app, &bob, &alice).await;
    assert_eq!(request.status, 201, "{}", request.body);
    let (pending, _) = send_and_receive(&app, &alice, &bob, &mut bob_socket, PII).await;
    assert_eq!(pending["message"], PII_MASKED, "a pending request is no contact");
    assert_eq!(accept(&app, &alice, id_of(&request.body)).await.status, 200);
    let (after, frame) = send_and_receive(&app, &alice, &bob, &mut bob_socket, PII).await;
    assert_eq!(after["message"], PII, "contacts 201");
    assert_eq!(frame["message"]["message"], PII, "contacts frame");
    let reply = app.send_message(&bob, &json!({"recipient_id": alice.id, "message": PII})).await;
    assert_eq!(reply.body["message"], PII, "the other way");
    let texts: Vec<Value> = all_messages(&app, &alice, conversation_of(&before))
        .await
        .iter()
        .map(|m| m["message"].clone())
        .collect();
    assert_eq!(texts, [json!(PII_MASKED), json!(PII_MASKED), json!(PII), json!(PII)]);
}

async fn masking_is_off_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    assert_eq!(app.dm(&alice, &bob, PII).await["message"], PII);
}

async fn edits_are_masked_the_same_way(backend: Backend) {
    let app = masking_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "let me find my details").await;
    let mut bob_socket = app.ws(&bob).await;

    let reply = edit(&app, &alice, id_of(&message), PII).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["message"], PII_MASKED, "edit reply");
    assert_eq!(bob_socket.next_of("message_edited").await["message"]["message"], PII_MASKED, "frame");
    let shown = history_message(&app, &bob, conversation_of(&message), id_of(&message)).await;
    assert_eq!(shown["message"], PII_MASKED, "history");
    assert_eq!(
        list_entry(&app, &bob, conversation_of(&message)).await["last_message"]["message"],
        PII_MASKED
    );

    // Once contacts, edits are stored as written.
    become_contacts(&app, &alice, &bob).await;
    let reply = edit(&app, &alice, id_of(&message), PII).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["message"], PII, "edit between contacts");
    assert_eq!(bob_socket.next_of("message_edited").await["message"]["message"], PII);

    // A group message's edit is never masked.
    let group_id = group(&app, &alice, &[&bob]).await;
    let stranger = app.user("carol").await;
    let reply = app
        .post(
            Some(&alice.token),
            &format!("/api/groups/{group_id}/members"),
            &json!({"user_id": stranger.id}),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let message = group_send(&app, &stranger, group_id, "hello all").await;
    let reply = edit(&app, &stranger, id_of(&message), PII).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["message"], PII, "group edit");
}

// ---------------------------------------------------------------------------------------------
// Search

async fn search(app: &TestApp, user: &TestUser, params: &[(&str, &str)]) -> Reply {
    let query = serde_urlencoded::to_string(params).expect("query string");
    app.get(Some(&user.token), &format!("/api/messages/search?{query}")).await
}

/// The ids found for `q` (first page, up to 100), asserting 200 and a consistent page.
async fn found(app: &TestApp, user: &TestUser, q: &str) -> Vec<i64> {
    let reply = search(app, user, &[("q", q), ("page_size", "100")]).await;
    assert_eq!(reply.status, 200, "{q:?}: {}", reply.body);
    let messages = reply.body["messages"].as_array().expect("messages");
    assert_eq!(reply.body["total"], messages.len(), "{q:?}: {}", reply.body);
    messages.iter().map(id_of).collect()
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

async fn search_matches_stemmed_words_all_of_them_and_a_prefix(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let run = id_of(&app.dm(&alice, &bob, "We run every morning").await);
    let running = id_of(&app.dm(&bob, &alice, "She was running late").await);
    let hello_world = id_of(&app.dm(&alice, &bob, "hello world").await);
    let hello_there = id_of(&app.dm(&alice, &bob, "Hello there").await);
    let helpful = id_of(&app.dm(&bob, &alice, "some helpful tips").await);

    assert_eq!(sorted(found(&app, &alice, "running").await), [run, running], "running finds run");
    assert_eq!(sorted(found(&app, &bob, "runs").await), [run, running], "runs finds both");
    assert_eq!(sorted(found(&app, &alice, "hello").await), [hello_world, hello_there]);
    assert_eq!(sorted(found(&app, &alice, "HELLO").await), [hello_world, hello_there], "any case");
    assert_eq!(found(&app, &alice, "hello world").await, [hello_world], "every word must match");
    assert_eq!(found(&app, &alice, "world hello").await, [hello_world], "in any order");
    assert_eq!(found(&app, &alice, "morning run").await, [run]);
    assert_eq!(found(&app, &alice, "late morning").await, Vec::<i64>::new(), "not in one message");
    assert_eq!(sorted(found(&app, &alice, "hel").await), [hello_world, hello_there, helpful], "prefix");
    assert_eq!(found(&app, &alice, "hello wor").await, [hello_world], "the last word is a prefix");
    assert_eq!(found(&app, &alice, "tips hel").await, [helpful]);
    assert_eq!(found(&app, &alice, "goodbye").await, Vec::<i64>::new());

    // The hits are whole messages, as history shows them.
    let reply = search(&app, &alice, &[("q", "world")]).await;
    assert_eq!(reply.body["page"], 1);
    assert_eq!(reply.body["page_size"], 20);
    let history =
        history_message(&app, &alice, conversation_of(&reply.body["messages"][0]), hello_world).await;
    assert_eq!(reply.body["messages"], json!([history]));
}

async fn search_ranks_by_relevance_then_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let strong = id_of(&app.dm(&alice, &bob, "kiwi kiwi kiwi, I really love kiwi").await);
    let weak =
        id_of(&app.dm(&bob, &alice, "I ate one kiwi yesterday with some bread and cheese and tea").await);
    assert_eq!(found(&app, &alice, "kiwi").await, [strong, weak], "more relevant first, though older");

    let mut equal = Vec::new();
    for _ in 0..3 {
        equal.push(id_of(&app.dm(&alice, &bob, "apple pie").await));
    }
    equal.reverse();
    assert_eq!(found(&app, &bob, "apple pie").await, equal, "equals: newest first");
}

async fn search_pages_through_the_hits(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut ids = Vec::new();
    for n in 0..25 {
        ids.push(id_of(&app.dm(&alice, &bob, &format!("weekly report number {n}")).await));
        app.dm(&alice, &bob, &format!("unrelated chatter {n}")).await;
    }
    ids.reverse();

    let page = |params: Vec<(&'static str, &'static str)>| {
        let (app, bob) = (&app, &bob);
        async move {
            let mut all = vec![("q", "report")];
            all.extend(params);
            let reply = search(app, bob, &all).await;
            assert_eq!(reply.status, 200, "{all:?}: {}", reply.body);
            assert_eq!(reply.body["total"], 25, "{all:?}");
            (reply.body["page"].clone(), reply.body["page_size"].clone(), reply.body["messages"].clone())
        }
    };
    let ids_of =
        |messages: &Value| messages.as_array().expect("messages").iter().map(id_of).collect::<Vec<_>>();

    let (number, size, messages) = page(vec![]).await;
    assert_eq!((number, size), (json!(1), json!(20)), "defaults");
    assert_eq!(ids_of(&messages), ids[..20]);
    let (number, _, messages) = page(vec![("page", "2")]).await;
    assert_eq!(number, 2);
    assert_eq!(ids_of(&messages), ids[20..]);
    let (_, size, messages) = page(vec![("page", "3"), ("page_size", "10")]).await;
    assert_eq!(size, 10);
    assert_eq!(ids_of(&messages), ids[20..]);
    let (_, _, messages) = page(vec![("page", "2"), ("page_size", "10")]).await;
    assert_eq!(ids_of(&messages), ids[10..20]);
    let (_, _, messages) = page(vec![("page", "4"), ("page_size", "10")]).await;
    assert_eq!(messages, json!([]), "past the end");
}

async fn search_covers_only_the_callers_current_conversations(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let ours = app.dm(&alice, &bob, "pineapple for alice and bob").await;
    let theirs = app.dm(&carol, &dave, "pineapple for carol and dave").await;
    let group_id = group(&app, &alice, &[&carol]).await;
    let in_group = group_send(&app, &alice, group_id, "pineapple for the group").await;

    assert_eq!(sorted(found(&app, &alice, "pineapple").await), [id_of(&ours), id_of(&in_group)]);
    assert_eq!(found(&app, &bob, "pineapple").await, [id_of(&ours)]);
    assert_eq!(sorted(found(&app, &carol, "pineapple").await), [id_of(&theirs), id_of(&in_group)]);

    // Filtered to one conversation.
    let only = |conversation_id: i64| conversation_id.to_string();
    let filter = only(conversation_of(&ours));
    let reply = search(&app, &alice, &[("q", "pineapple"), ("conversation_id", &filter)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["total"], 1);
    assert_eq!(reply.body["messages"][0]["id"], ours["id"]);
    let reply = search(&app, &alice, &[("q", "pineapple"), ("conversation_id", &only(group_id))]).await;
    assert_eq!(reply.body["messages"][0]["id"], in_group["id"]);
    for hidden in [conversation_of(&theirs), group_id + 1000] {
        let reply = search(&app, &alice, &[("q", "pineapple"), ("conversation_id", &only(hidden))]).await;
        assert_error(&reply, 404, "not_found", "an invisible conversation");
    }

    // A group carol left no longer shows.
    leave(&app, &carol, group_id, &carol).await;
    group_send(&app, &alice, group_id, "pineapple again after carol left").await;
    assert_eq!(found(&app, &carol, "pineapple").await, [id_of(&theirs)]);
    let reply = search(&app, &carol, &[("q", "pineapple"), ("conversation_id", &only(group_id))]).await;
    assert_error(&reply, 404, "not_found", "a group carol left");
    assert_eq!(found(&app, &alice, "pineapple").await.len(), 3);
}

async fn search_skips_deleted_messages_and_follows_edits(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let smoothie = app.dm(&alice, &bob, "mango smoothie").await;
    let salsa = app.dm(&alice, &bob, "mango salsa").await;
    assert_eq!(found(&app, &bob, "mango").await, [id_of(&salsa), id_of(&smoothie)]);

    assert_eq!(delete(&app, &alice, id_of(&salsa)).await.status, 204);
    assert_eq!(found(&app, &bob, "mango").await, [id_of(&smoothie)]);
    assert_eq!(found(&app, &bob, "salsa").await, Vec::<i64>::new());

    let reply = edit(&app, &alice, id_of(&smoothie), "papaya smoothie").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(found(&app, &bob, "mango").await, Vec::<i64>::new(), "the old word is gone");
    let hits = search(&app, &bob, &[("q", "papaya")]).await;
    assert_eq!(hits.body["messages"], json!([reply.body]), "the edited message");
    assert_eq!(found(&app, &alice, "smoothie").await, [id_of(&smoothie)]);

    // A deleted message that had been edited stays out too.
    assert_eq!(delete(&app, &alice, id_of(&smoothie)).await.status, 204);
    assert_eq!(found(&app, &bob, "papaya").await, Vec::<i64>::new());
}

async fn search_refuses_bad_parameters_with_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.dm(&alice, &bob, "hello world").await;
    let long = "a".repeat(201);
    let longest = "b".repeat(200);
    let bad: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "q"),
        (vec![("q", "")], "q"),
        (vec![("q", "a")], "q"),
        (vec![("q", "  a   ")], "q"),
        (vec![("q", "é")], "q"),
        (vec![("q", &long)], "q"),
        (vec![("q", "hello"), ("page", "0")], "page"),
        (vec![("q", "hello"), ("page", "-1")], "page"),
        (vec![("q", "hello"), ("page", "abc")], "page"),
        (vec![("q", "hello"), ("page_size", "0")], "page_size"),
        (vec![("q", "hello"), ("page_size", "101")], "page_size"),
        (vec![("q", "hello"), ("page_size", "ten")], "page_size"),
        (vec![("q", "hello"), ("conversation_id", "abc")], "conversation_id"),
        (vec![("q", "hello"), ("conversation_id", "0")], "conversation_id"),
    ];
    for (params, field) in bad {
        let reply = search(&app, &alice, &params).await;
        assert_error(&reply, 400, "bad_query", &format!("{params:?}"));
        assert_eq!(reply.error_field(), Some(field), "{params:?}: {}", reply.body);
    }
    for params in [
        vec![("q", longest.as_str())],
        vec![("q", "he")],
        vec![("q", "  hello  ")],
        vec![("q", "hello"), ("page_size", "100")],
        vec![("q", "hello"), ("page_size", "1"), ("page", "1")],
        vec![("q", "hello"), ("page", "9999"), ("page_size", "100")],
    ] {
        let reply = search(&app, &alice, &params).await;
        assert_eq!(reply.status, 200, "{params:?}: {}", reply.body);
    }
    assert_eq!(found(&app, &alice, "  hello  ").await.len(), 1, "q is trimmed");
    let reply = app.get(None, "/api/messages/search?q=hello").await;
    assert_eq!(reply.status, 401, "needs a token");
}

async fn query_syntax_never_breaks_search(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let hello = id_of(&app.dm(&alice, &bob, "hello world").await);
    app.dm(&alice, &bob, "C++ and C# are languages; 100% sure").await;

    // Only words count: these all find the hello message.
    for q in [
        "\"hello",
        "hello\"",
        "\"hello\"",
        "hello*",
        "(hello)",
        "^hello",
        "hello:",
        "'hello'",
        "[hello]",
        "hello:*",
    ] {
        assert_eq!(found(&app, &alice, q).await, [hello], "{q:?}");
    }
    // None of these may fail.
    for q in [
        "\"\"",
        "''",
        "**",
        "()",
        "::",
        "^^",
        "--",
        "&&",
        "||",
        "!!",
        "\\\\",
        "%%",
        "__",
        "{}",
        "hello OR world",
        "OR hello",
        "hello OR",
        "NOT hello",
        "hello AND NOT world",
        "AND OR",
        "NEAR(hello world)",
        "NEAR(hello world, 2)",
        "hello NEAR world",
        "hello NEAR/2 world",
        "message:hello",
        "body:hello",
        "{body}: hello",
        "-hello",
        "+hello",
        "hello -world",
        "hello & world",
        "hello | world",
        "!hello",
        "hello <-> world",
        "hello <2> world",
        ":* hello",
        "hello'; DROP TABLE messages; --",
        "%hello%",
        "hello_",
        "hello\\",
        "\\hello",
        "a'b\"c",
        "C++",
        "C#",
        "100%",
        "café au lait",
        "日本語 テキスト",
        "hello\u{0}world",
        "\u{0}\u{0}",
        "the and of",
        "* *",
        "\" OR \"",
        "hello*world*",
        "(((((hello",
        "hello)))))",
        "x² ½",
        "ǅemal ǈ",
        "Ⅻ century",
        "٣٤٥ ١٢",
        "ｈｅｌｌｏ",
        "İstanbul",
        "e\u{301}te",
        "ß straße",
        "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    ] {
        let reply = search(&app, &alice, &[("q", q)]).await;
        assert_eq!(reply.status, 200, "{q:?}: {}", reply.body);
        assert!(reply.body["messages"].is_array(), "{q:?}: {}", reply.body);
        assert!(reply.body["total"].is_i64(), "{q:?}: {}", reply.body);
    }
}

on_both_databases!(
    an_edit_returns_the_message_and_reaches_every_device_of_both_users,
    edits_and_deletes_in_a_group_reach_every_member_and_no_one_else,
    only_the_sender_may_edit_or_delete_and_outsiders_get_404,
    the_edit_window_closes_after_the_configured_time,
    a_deleted_message_cannot_be_edited,
    a_delete_is_soft_repeatable_and_reaches_every_device,
    deleting_an_unread_message_lowers_the_unread_count,
    sync_and_replay_show_a_deleted_message_without_its_text,
    a_block_refuses_direct_messages_and_contact_requests_both_ways,
    a_block_holds_while_either_side_keeps_it,
    a_block_stops_a_first_message_without_creating_a_conversation,
    blocks_do_not_affect_groups,
    the_block_list_and_its_validation,
    a_contact_request_is_made_once_and_accepted_by_its_recipient,
    asking_someone_who_asked_you_accepts_their_request,
    contact_request_validation,
    the_contacts_policy_needs_an_accepted_contact,
    contact_details_are_masked_between_strangers,
    ordinary_words_and_numbers_are_not_masked,
    contacts_and_groups_are_never_masked,
    masking_is_off_by_default,
    edits_are_masked_the_same_way,
    search_matches_stemmed_words_all_of_them_and_a_prefix,
    search_ranks_by_relevance_then_newest_first,
    search_pages_through_the_hits,
    search_covers_only_the_callers_current_conversations,
    search_skips_deleted_messages_and_follows_edits,
    search_refuses_bad_parameters_with_400,
    query_syntax_never_breaks_search,
);
