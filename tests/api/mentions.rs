//! Mentions (v1.1): `@username` in a group names current members (`mentions`), and each
//! member's `unread_mentions` counts their unread messages that name them, moved by reading,
//! deleting and editing like `unread_count`.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

on_both_databases!(
    mentions_name_current_members_once_case_insensitively_and_never_the_sender,
    direct_messages_have_no_mentions,
    unread_mentions_count_the_reader_s_unread_mentioning_messages_and_reading_lowers_them,
    deleting_an_unread_mentioning_message_lowers_unread_mentions,
    an_edit_updates_mentions_and_the_unread_mentions_of_members_who_have_not_read_it,
    a_member_who_comes_back_starts_with_no_unread_mentions_and_default_settings,
);

/// The ids of `mentions`, sorted (the contract names no order).
fn mentioned(message: &Value) -> Vec<i64> {
    let ids = message["mentions"].as_array().unwrap_or_else(|| panic!("mentions is a list: {message}"));
    let mut ids: Vec<i64> =
        ids.iter().map(|id| id.as_i64().unwrap_or_else(|| panic!("an id: {message}"))).collect();
    ids.sort_unstable();
    ids
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

/// `Bob7` for `bob7`.
fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `(unread_count, unread_mentions)` of `user` in conversation `id`, from its view and from
/// the list, which must agree.
async fn unread(app: &TestApp, user: &TestUser, id: i64) -> (i64, i64) {
    let view = app.conversation(user, id).await;
    let listed = app.conversation_entry(user, id).await;
    let counts = |conversation: &Value| {
        let count = conversation["unread_count"].as_i64();
        let mentions = conversation["unread_mentions"].as_i64();
        match (count, mentions) {
            (Some(count), Some(mentions)) => (count, mentions),
            _ => panic!("{}: unread_count and unread_mentions in {conversation}", user.username),
        }
    };
    let shown = counts(&view);
    assert_eq!(counts(&listed), shown, "{}: the list and the conversation agree", user.username);
    shown
}

async fn mentions_name_current_members_once_case_insensitively_and_never_the_sender(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let outsider = app.user("outsider").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol, &dave]).await;
    let mut bob_socket = app.ws(&bob).await;
    let mut dave_socket = app.ws(&dave).await;

    let text = format!(
        "@{} and @{} and @{} again and @nobody and @{} and me, @{}",
        capitalized(&bob.username),
        carol.username,
        bob.username.to_uppercase(),
        outsider.username,
        alice.username,
    );
    let message = app.group_send(&alice, group, &text).await;
    assert_eq!(message["message"], text.as_str(), "the text is kept as written");
    assert_eq!(mentioned(&message), sorted(vec![bob.id, carol.id]), "{message}");

    // The same frame carries each reader's own unread_mentions.
    let frame = bob_socket.next_of("new_message").await;
    assert_eq!(frame["message"], message);
    assert_eq!(frame["conversation"]["unread_count"], 1, "{frame}");
    assert_eq!(frame["conversation"]["unread_mentions"], 1, "bob is named: {frame}");
    let frame = dave_socket.next_of("new_message").await;
    assert_eq!(frame["message"], message);
    assert_eq!(frame["conversation"]["unread_count"], 1, "{frame}");
    assert_eq!(frame["conversation"]["unread_mentions"], 0, "dave is not named: {frame}");

    for (user, counts) in [(&alice, (0, 0)), (&bob, (1, 1)), (&carol, (1, 1)), (&dave, (1, 0))] {
        assert_eq!(unread(&app, user, group).await, counts, "{}", user.username);
        let shown = app.history_message(user, group, id_of(&message)).await;
        assert_eq!(shown, message, "{}'s history", user.username);
    }

    // No names, no mentions.
    let plain = app.group_send(&bob, group, "nothing for anyone here").await;
    assert_eq!(plain["mentions"], json!([]), "{plain}");
    // Once a member leaves, naming them names no one.
    app.remove_member(&alice, group, dave.id).await;
    let late = app.group_send(&alice, group, &format!("@{} are you there?", dave.username)).await;
    assert_eq!(late["mentions"], json!([]), "{late}");
}

async fn direct_messages_have_no_mentions(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut bob_socket = app.ws(&bob).await;
    let message = app.dm(&alice, &bob, &format!("@{} look at this", bob.username)).await;
    assert_eq!(message["mentions"], json!([]), "{message}");
    let conversation_id = conversation_of(&message);
    let frame = bob_socket.next_of("new_message").await;
    assert_eq!(frame["message"]["mentions"], json!([]), "{frame}");
    assert_eq!(frame["conversation"]["unread_mentions"], 0, "{frame}");
    assert_eq!(unread(&app, &bob, conversation_id).await, (1, 0));
    assert_eq!(app.history_message(&bob, conversation_id, id_of(&message)).await["mentions"], json!([]));
}

async fn unread_mentions_count_the_reader_s_unread_mentioning_messages_and_reading_lowers_them(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    assert_eq!(unread(&app, &bob, group).await, (0, 0));

    let first = app.group_send(&alice, group, &format!("@{} look", bob.username)).await;
    assert_eq!(unread(&app, &bob, group).await, (1, 1));
    app.group_send(&alice, group, "nothing for bob").await;
    assert_eq!(unread(&app, &bob, group).await, (2, 1), "unread_count counts every message");
    let second = app.group_send(&carol, group, &format!("@{} again", bob.username)).await;
    assert_eq!(unread(&app, &bob, group).await, (3, 2));
    assert_eq!(unread(&app, &carol, group).await, (2, 0), "carol is named by no one");
    assert_eq!(unread(&app, &alice, group).await, (1, 0));

    // Reading up to the first moves both counts; the reply says so.
    let reply = app.mark_read(&bob, group, Some(id_of(&first))).await;
    assert_eq!(
        reply.body,
        json!({
            "conversation_id": group,
            "last_read_message_id": first["id"],
            "unread_count": 2,
            "unread_mentions": 1,
        })
    );
    assert_eq!(unread(&app, &bob, group).await, (2, 1));

    // Reading the rest through PATCH /api/messages/{id}/read clears them.
    let reply = app.read_message_reply(&bob, id_of(&second)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["last_read_message_id"], second["id"]);
    assert_eq!(reply.body["unread_count"], 0, "{}", reply.body);
    assert_eq!(reply.body["unread_mentions"], 0, "{}", reply.body);
    assert_eq!(unread(&app, &bob, group).await, (0, 0));

    // Reading backwards changes nothing.
    let reply = app.mark_read(&bob, group, Some(id_of(&first))).await;
    assert_eq!(reply.body["unread_mentions"], 0, "{}", reply.body);

    // A new mention counts again; reading everything (no message_id) clears it.
    app.group_send(&carol, group, &format!("hey @{}", bob.username)).await;
    assert_eq!(unread(&app, &bob, group).await, (1, 1));
    let reply = app.mark_read(&bob, group, None).await;
    assert_eq!(reply.body["unread_count"], 0, "{}", reply.body);
    assert_eq!(reply.body["unread_mentions"], 0, "{}", reply.body);
    assert_eq!(unread(&app, &bob, group).await, (0, 0));
}

async fn deleting_an_unread_mentioning_message_lowers_unread_mentions(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    let first = app.group_send(&alice, group, &format!("@{} one", bob.username)).await;
    let second =
        app.group_send(&alice, group, &format!("@{} and @{} two", bob.username, carol.username)).await;
    assert_eq!(unread(&app, &bob, group).await, (2, 2));
    assert_eq!(unread(&app, &carol, group).await, (2, 1));

    // Carol has read everything; bob has not.
    app.mark_read(&carol, group, None).await;
    assert_eq!(app.delete_message(&alice, id_of(&second)).await.status, 204);
    assert_eq!(unread(&app, &bob, group).await, (1, 1), "bob loses the deleted mention");
    assert_eq!(unread(&app, &carol, group).await, (0, 0), "carol had read it");
    let shown = app.history_message(&bob, group, id_of(&second)).await;
    assert_eq!(shown["deleted"], true);
    assert_eq!(shown["mentions"], json!([]), "a deleted message names no one: {shown}");

    // A mention bob has read no longer counts, so its deletion changes nothing.
    app.mark_read(&bob, group, None).await;
    assert_eq!(app.delete_message(&alice, id_of(&first)).await.status, 204);
    assert_eq!(unread(&app, &bob, group).await, (0, 0));
    let third = app.group_send(&alice, group, &format!("@{} three", bob.username)).await;
    assert_eq!(unread(&app, &bob, group).await, (1, 1), "counting goes on from there");
    assert_eq!(mentioned(&third), [bob.id]);
}

async fn an_edit_updates_mentions_and_the_unread_mentions_of_members_who_have_not_read_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    let mut bob_socket = app.ws(&bob).await;
    let message = app.group_send(&alice, group, "hello all").await;
    let id = id_of(&message);
    assert_eq!(message["mentions"], json!([]));
    assert_eq!(bob_socket.next_of("new_message").await["conversation"]["unread_mentions"], 0);

    // Adding bob's name: the frame and every view name him, and it is an unread mention.
    let reply = app.edit_message(&alice, id, &format!("hello @{}", bob.username)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(mentioned(&reply.body), [bob.id], "{}", reply.body);
    let frame = bob_socket.next_of("message_edited").await;
    assert_eq!(frame["message"], reply.body);
    assert_eq!(mentioned(&frame["message"]), [bob.id]);
    assert_eq!(unread(&app, &bob, group).await, (1, 1));
    assert_eq!(unread(&app, &carol, group).await, (1, 0));
    assert_eq!(app.history_message(&carol, group, id).await, reply.body);

    // Carol reads it; then the edit names her instead of bob.
    app.mark_read(&carol, group, None).await;
    let reply = app.edit_message(&alice, id, &format!("hello @{}", carol.username)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(mentioned(&reply.body), [carol.id]);
    assert_eq!(mentioned(&bob_socket.next_of("message_edited").await["message"]), [carol.id]);
    assert_eq!(unread(&app, &bob, group).await, (1, 0), "bob is no longer named");
    assert_eq!(unread(&app, &carol, group).await, (0, 0), "carol had read it already");

    // Both named, then none.
    let reply =
        app.edit_message(&alice, id, &format!("hello @{} and @{}", carol.username, bob.username)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(mentioned(&reply.body), sorted(vec![bob.id, carol.id]));
    assert_eq!(
        mentioned(&bob_socket.next_of("message_edited").await["message"]),
        sorted(vec![bob.id, carol.id])
    );
    assert_eq!(unread(&app, &bob, group).await, (1, 1));
    assert_eq!(unread(&app, &carol, group).await, (0, 0));
    let reply = app.edit_message(&alice, id, "hello everyone").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["mentions"], json!([]));
    assert_eq!(bob_socket.next_of("message_edited").await["message"]["mentions"], json!([]));
    assert_eq!(unread(&app, &bob, group).await, (1, 0));
}

/// Removed with a mention unread and muted, then added again: nothing of the old membership
/// shows, as for a member added for the first time.
async fn a_member_who_comes_back_starts_with_no_unread_mentions_and_default_settings(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.create_group(&alice, "club", &[&bob]).await;
    app.settings(&bob, group, &json!({"notify": "none", "muted_until": "2030-01-01T00:00:00.000Z"})).await;
    app.group_send(&alice, group, &format!("@{} are you coming?", bob.username)).await;
    assert_eq!(unread(&app, &bob, group).await, (1, 1));

    app.remove_member(&alice, group, bob.id).await;
    let added = app.add_member(&alice, group, bob.id).await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(unread(&app, &bob, group).await, (0, 0));
    let view = app.conversation(&bob, group).await;
    assert_eq!((&view["notify"], &view["muted_until"]), (&json!("all"), &Value::Null), "{view}");
}
