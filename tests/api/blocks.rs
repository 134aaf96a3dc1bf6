//! Blocks: a block refuses direct messages and contact requests both ways, leaves groups
//! alone, and the block list with its validation.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

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

    let reply = app.block(&alice, bob.id).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["user"]["id"], bob.id);
    assert_eq!(reply.body["user"]["username"], bob.username.as_str());
    assert_contract_time(&reply.body["created_at"]);
    let blocked = reply.body.clone();
    let reply = app.block(&alice, bob.id).await;
    assert_eq!(reply.status, 200, "blocking again: {}", reply.body);
    assert_eq!(reply.body, blocked, "the same block");

    assert_direct_refused(&app, &alice, &bob, conversation_id, "blocked").await;
    for (from, to) in [(&alice, &bob), (&bob, &alice)] {
        let reply = app.request_contact(from, to).await;
        assert_error(&reply, 403, "blocked", "contact request while blocked");
    }
    alice_socket.expect_none_of("new_message", QUIET).await;
    assert_eq!(
        app.all_messages(&alice, conversation_id).await,
        std::slice::from_ref(&first),
        "nothing stored"
    );
    let requests = app.get(Some(&bob.token), "/api/contacts/requests").await;
    assert_eq!(requests.body, json!({"incoming": [], "outgoing": []}), "no request stored");

    // Unblocking restores messaging both ways; unblocking again is still 204.
    assert_eq!(app.unblock(&alice, bob.id).await.status, 204);
    assert_eq!(app.unblock(&alice, bob.id).await.status, 204);
    app.dm(&bob, &alice, "are we good?").await;
    assert_eq!(alice_socket.next_of("new_message").await["message"]["message"], "are we good?");
    app.dm(&alice, &bob, "yes").await;
    let reply =
        app.send_message(&bob, &json!({"conversation_id": conversation_id, "message": "great"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(app.all_messages(&bob, conversation_id).await.len(), 4);
}

async fn a_block_holds_while_either_side_keeps_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let conversation_id = conversation_of(&app.dm(&alice, &bob, "hi").await);
    assert_eq!(app.block(&alice, bob.id).await.status, 201);
    assert_eq!(app.block(&bob, alice.id).await.status, 201);
    assert_eq!(app.unblock(&alice, bob.id).await.status, 204);
    assert_direct_refused(&app, &alice, &bob, conversation_id, "blocked").await;
    assert_eq!(app.unblock(&bob, alice.id).await.status, 204);
    app.dm(&alice, &bob, "free again").await;
    app.dm(&bob, &alice, "indeed").await;
}

async fn a_block_stops_a_first_message_without_creating_a_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut bob_socket = app.ws(&bob).await;
    assert_eq!(app.block(&bob, alice.id).await.status, 201);
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
    assert_eq!(app.block(&alice, bob.id).await.status, 201);
    assert_eq!(app.block(&bob, carol.id).await.status, 201);
    let group_id = app.create_group(&alice, "the group", &[&bob, &carol]).await;
    let mut bob_socket = app.ws(&bob).await;
    let mut alice_socket = app.ws(&alice).await;

    let message = app.group_send(&alice, group_id, "welcome bob").await;
    assert_eq!(bob_socket.next_of("new_message").await["message"], message);
    let reply =
        app.send_message(&bob, &json!({"conversation_id": group_id, "message": "thanks alice"})).await;
    assert_eq!(reply.status, 201, "group message by conversation_id: {}", reply.body);
    assert_eq!(alice_socket.next_of("new_message").await["message"], reply.body);
    app.group_send(&carol, group_id, "hi both").await;
    assert_eq!(app.all_messages(&bob, group_id).await.len(), 3);

    // A group the blocked user creates with the blocker works too.
    let group_id = app.create_group(&bob, "the group", &[&alice]).await;
    app.group_send(&bob, group_id, "hello").await;
    app.group_send(&alice, group_id, "hello back").await;
}

async fn the_block_list_and_its_validation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;

    assert_eq!(blocks_of(&app, &alice).await, Vec::<Value>::new());
    let reply = app.block(&alice, alice.id).await;
    assert_error(&reply, 422, "validation_failed", "self block");
    assert_eq!(reply.error_field(), Some("user_id"));
    assert_error(&app.block(&alice, carol.id + 1000).await, 404, "not_found", "unknown user");

    let to_bob = app.block(&alice, bob.id).await.body;
    let to_carol = app.block(&alice, carol.id).await.body;
    let list = blocks_of(&app, &alice).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.contains(&to_bob) && list.contains(&to_carol), "{list:?}");
    for entry in &list {
        assert!(entry["user"]["display_name"].is_string(), "a full user: {entry}");
        assert_contract_time(&entry["created_at"]);
    }
    assert_eq!(blocks_of(&app, &bob).await, Vec::<Value>::new(), "bob blocked no one");

    assert_eq!(app.unblock(&alice, bob.id).await.status, 204);
    assert_eq!(blocks_of(&app, &alice).await, [to_carol]);
    assert_eq!(app.unblock(&alice, carol.id + 1000).await.status, 204, "never blocked");
}

on_both_databases!(
    a_block_refuses_direct_messages_and_contact_requests_both_ways,
    a_block_holds_while_either_side_keeps_it,
    a_block_stops_a_first_message_without_creating_a_conversation,
    blocks_do_not_affect_groups,
    the_block_list_and_its_validation,
);
