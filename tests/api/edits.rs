//! Editing and deleting messages: who may, the edit window, and what every device, history,
//! the conversation list, unread counts, sync and replay show afterwards.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

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

async fn an_edit_returns_the_message_and_reaches_every_device_of_both_users(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let original = app.dm(&alice, &bob, "see you at noon").await;
    let conversation_id = conversation_of(&original);
    let message_id = id_of(&original);
    let mut sockets =
        vec![app.ws(&alice).await, app.ws(&alice).await, app.ws(&bob).await, app.ws(&bob).await];

    let reply = app.edit_message(&alice, message_id, "  see you at one \n").await;
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
        assert_eq!(app.history_message(user, conversation_id, message_id).await, edited);
        assert_eq!(app.conversation_entry(user, conversation_id).await["last_message"], edited);
        assert_eq!(app.conversation(user, conversation_id).await["last_message"], edited);
    }

    // The same text again changes nothing and tells no one.
    let reply = app.edit_message(&alice, message_id, "\tsee you at one  ").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, edited, "unchanged, edited_at too");
    for socket in &mut sockets {
        socket.expect_none_of("message_edited", QUIET).await;
    }
    for user in [&alice, &bob] {
        assert_eq!(count_of(&app.sync(user, 0).await.0, "message_edited"), 1, "one stored edit");
    }

    // A message can be edited more than once within the window.
    let reply = app.edit_message(&alice, message_id, "see you at two").await;
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
    let group_id = app.create_group(&alice, "the group", &[&bob, &carol, &erin]).await;
    let message = app.group_send(&alice, group_id, "draft agenda").await;
    let message_id = id_of(&message);
    app.remove_member(&alice, group_id, erin.id).await;
    let mut members =
        vec![app.ws(&alice).await, app.ws(&alice).await, app.ws(&bob).await, app.ws(&carol).await];
    let mut outsiders = vec![app.ws(&dave).await, app.ws(&erin).await];

    let reply = app.edit_message(&alice, message_id, "final agenda").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["recipient_id"], Value::Null);
    for socket in &mut members {
        assert_eq!(socket.next_of("message_edited").await["message"], reply.body);
    }

    let reply = app.delete_message(&alice, message_id).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    for (n, socket) in members.iter_mut().enumerate() {
        let frame = socket.next_of("message_deleted").await;
        assert_deleted_frame(&frame, group_id, message_id, &format!("socket {n}"));
    }
    for socket in &mut outsiders {
        socket.expect_silence(QUIET).await;
    }

    for user in [&alice, &bob, &carol] {
        let shown = app.history_message(user, group_id, message_id).await;
        assert_shown_deleted(&shown, &message, "group history");
        assert_shown_deleted(
            &app.conversation_entry(user, group_id).await["last_message"],
            &message,
            "group list",
        );
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

    assert_error(&app.edit_message(&bob, message_id, "yours now").await, 403, "not_owner", "recipient edits");
    assert_error(&app.delete_message(&bob, message_id).await, 403, "not_owner", "recipient deletes");
    assert_error(&app.edit_message(&carol, message_id, "hi").await, 404, "not_found", "outsider edits");
    assert_error(&app.delete_message(&carol, message_id).await, 404, "not_found", "outsider deletes");
    let unknown = message_id + 1000;
    assert_error(&app.edit_message(&alice, unknown, "hi").await, 404, "not_found", "unknown id edit");
    assert_error(&app.delete_message(&alice, unknown).await, 404, "not_found", "unknown id delete");
    assert_eq!(app.history_message(&alice, conversation_id, message_id).await, message, "untouched");

    // A member who left a group can no longer change what they wrote there.
    let group_id = app.create_group(&alice, "the group", &[&carol]).await;
    let carols = app.group_send(&carol, group_id, "bye all").await;
    app.remove_member(&carol, group_id, carol.id).await;
    assert_error(
        &app.edit_message(&carol, id_of(&carols), "hi").await,
        404,
        "not_found",
        "left member edits",
    );
    assert_error(&app.delete_message(&carol, id_of(&carols)).await, 404, "not_found", "left member deletes");
    assert_eq!(app.history_message(&alice, group_id, id_of(&carols)).await, carols);

    // An edit is validated like a send.
    let reply = app.edit_message(&alice, message_id, "   ").await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.error_field(), Some("message"));
    let reply = app.edit_message(&alice, message_id, &"x".repeat(2001)).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    assert_eq!(reply.error_field(), Some("message"));
}

async fn the_edit_window_closes_after_the_configured_time(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.messaging.edit_window_seconds = 2).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "typo hre").await;
    let message_id = id_of(&message);

    let reply = app.edit_message(&alice, message_id, "typo here").await;
    assert_eq!(reply.status, 200, "within the window: {}", reply.body);
    let edited = reply.body;

    tokio::time::sleep(Duration::from_millis(2500)).await;
    let reply = app.edit_message(&alice, message_id, "too late").await;
    assert_error(&reply, 403, "edit_window_passed", "past the window");
    assert_eq!(app.history_message(&bob, conversation_of(&message), message_id).await, edited);
}

async fn a_deleted_message_cannot_be_edited(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "oops").await;
    assert_eq!(app.delete_message(&alice, id_of(&message)).await.status, 204);
    let reply = app.edit_message(&alice, id_of(&message), "resurrected").await;
    assert_error(&reply, 409, "message_deleted", "edit after delete");
    let shown = app.history_message(&bob, conversation_of(&message), id_of(&message)).await;
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

    let reply = app.delete_message(&alice, message_id).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let mut event_ids = HashSet::new();
    for (n, socket) in sockets.iter_mut().enumerate() {
        let frame = socket.next_of("message_deleted").await;
        assert_deleted_frame(&frame, conversation_id, message_id, &format!("socket {n}"));
        event_ids.insert(frame["event_id"].as_i64().expect("event_id"));
    }
    assert_eq!(event_ids.len(), 1, "one event for every device");

    for user in [&alice, &bob] {
        let messages = app.all_messages(user, conversation_id).await;
        assert_eq!(messages.len(), 2, "kept in history");
        assert_eq!(messages[0], first, "the other message is untouched");
        assert_shown_deleted(&messages[1], &message, "history");
        assert_shown_deleted(
            &app.conversation_entry(user, conversation_id).await["last_message"],
            &message,
            "list",
        );
        assert_shown_deleted(
            &app.conversation(user, conversation_id).await["last_message"],
            &message,
            "conversation",
        );
    }

    // Again: 204, nothing new.
    let reply = app.delete_message(&alice, message_id).await;
    assert_eq!(reply.status, 204, "repeated delete: {}", reply.body);
    for socket in &mut sockets {
        socket.expect_none_of("message_deleted", QUIET).await;
    }
    for user in [&alice, &bob] {
        assert_eq!(count_of(&app.sync(user, 0).await.0, "message_deleted"), 1, "one stored delete");
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
    assert_eq!(app.conversation(&bob, conversation_id).await["unread_count"], 3);

    assert_eq!(app.delete_message(&alice, id_of(&three)).await.status, 204);
    assert_eq!(app.conversation(&bob, conversation_id).await["unread_count"], 2);
    assert_eq!(app.conversation_entry(&bob, conversation_id).await["unread_count"], 2);
    assert_eq!(app.conversation(&alice, conversation_id).await["unread_count"], 0, "the sender's stays 0");

    // A message bob has read no longer counts, so deleting it changes nothing.
    let reply = app.mark_read(&bob, conversation_id, Some(id_of(&one))).await;
    assert_eq!(reply.body["unread_count"], 1);
    assert_eq!(app.delete_message(&alice, id_of(&one)).await.status, 204);
    assert_eq!(app.conversation(&bob, conversation_id).await["unread_count"], 1);
    assert_eq!(app.delete_message(&alice, id_of(&two)).await.status, 204);
    assert_eq!(app.conversation(&bob, conversation_id).await["unread_count"], 0);
    assert_eq!(app.conversation_entry(&bob, conversation_id).await["unread_count"], 0);

    // In a group only the members who had not read it lose one.
    let group_id = app.create_group(&alice, "the group", &[&bob, &carol]).await;
    let message = app.group_send(&alice, group_id, "hello group").await;
    app.mark_read(&bob, group_id, None).await;
    assert_eq!(app.conversation(&carol, group_id).await["unread_count"], 1);
    assert_eq!(app.delete_message(&alice, id_of(&message)).await.status, 204);
    assert_eq!(app.conversation(&carol, group_id).await["unread_count"], 0);
    assert_eq!(app.conversation(&bob, group_id).await["unread_count"], 0);

    // A member added later never counted the older message, so its deletion leaves them be.
    let older = app.group_send(&alice, group_id, "before dave").await;
    let dave = app.user("dave").await;
    let reply = app.add_member(&alice, group_id, dave.id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mut dave_socket = app.ws(&dave).await;
    app.group_send(&alice, group_id, "after dave").await;
    assert_eq!(dave_socket.next_of("new_message").await["conversation"]["unread_count"], 1);
    assert_eq!(app.delete_message(&alice, id_of(&older)).await.status, 204);
    assert_eq!(app.conversation(&dave, group_id).await["unread_count"], 1, "dave still has one");
    assert_eq!(app.conversation(&carol, group_id).await["unread_count"], 1, "carol lost one of two");
    // The next message's frame counts from the lowered number.
    app.group_send(&alice, group_id, "one more").await;
    assert_eq!(dave_socket.next_of("new_message").await["conversation"]["unread_count"], 2);
    assert_eq!(app.conversation(&carol, group_id).await["unread_count"], 2);
}

async fn sync_and_replay_show_a_deleted_message_without_its_text(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "the secret password is swordfish").await;
    let message_id = id_of(&message);
    let kept = app.dm(&alice, &bob, "this one stays").await;
    let reply = app.edit_message(&alice, message_id, "the secret password is marlin").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(app.delete_message(&alice, message_id).await.status, 204);

    for (user, kind) in [(&bob, "new_message"), (&alice, "message_sent")] {
        let events = app.sync(user, 0).await.0;
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
    assert_eq!(app.history_message(&bob, conversation_of(&kept), id_of(&kept)).await, kept);
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
);
