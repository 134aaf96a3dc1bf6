//! Contact requests (made once, accepted by their recipient) and the contacts-only policy
//! for direct messages.

use serde_json::{Value, json};
use switchboard::config::DirectPolicy;

use crate::helpers::*;
use crate::on_both_databases;

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

    let reply = app.request_contact(&alice, &bob).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let request = reply.body.clone();
    assert!(request["id"].as_i64().is_some_and(|id| id > 0), "{request}");
    assert_eq!(request["from_user"]["id"], alice.id);
    assert_eq!(request["from_user"]["username"], alice.username.as_str());
    assert_eq!(request["to_user"]["id"], bob.id);
    assert_eq!(request["status"], "pending");
    assert_contract_time(&request["created_at"]);

    let reply = app.request_contact(&alice, &bob).await;
    assert_eq!(reply.status, 200, "asking again: {}", reply.body);
    assert_eq!(reply.body, request, "the same request");

    assert_eq!(requests_of(&app, &bob).await, json!({"incoming": [request], "outgoing": []}));
    assert_eq!(requests_of(&app, &alice).await, json!({"incoming": [], "outgoing": [request]}));
    assert_eq!(requests_of(&app, &carol).await, json!({"incoming": [], "outgoing": []}));
    assert!(contacts_of(&app, &alice).await.is_empty() && contacts_of(&app, &bob).await.is_empty());

    let request_id = id_of(&request);
    assert_error(&app.accept_contact(&alice, request_id).await, 403, "not_allowed", "the sender accepts");
    assert_error(&app.accept_contact(&carol, request_id).await, 404, "not_found", "a third user accepts");
    assert_error(&app.accept_contact(&bob, request_id + 1000).await, 404, "not_found", "unknown request");
    assert_eq!(requests_of(&app, &bob).await["incoming"], json!([request]), "still pending");

    let reply = app.accept_contact(&bob, request_id).await;
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
    let reply = app.request_contact(&alice, &bob).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["id"], request_id);
    assert_eq!(reply.body["status"], "accepted");
    let reply = app.request_contact(&bob, &alice).await;
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
    let request = app.request_contact(&alice, &bob).await.body;

    let reply = app.request_contact(&bob, &alice).await;
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
    let reply = app.request_contact(&alice, &alice).await;
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
    let request = app.request_contact(&alice, &bob).await;
    assert_eq!(request.status, 201, "{}", request.body);
    for (from, to) in [(&alice, &bob), (&bob, &alice)] {
        let reply = app.send_message(from, &json!({"recipient_id": to.id, "message": "hi"})).await;
        assert_error(&reply, 403, "not_connected", "pending request");
    }

    assert_eq!(app.accept_contact(&bob, id_of(&request.body)).await.status, 200);
    let message = app.dm(&alice, &bob, "hi contact").await;
    app.dm(&bob, &alice, "hi back").await;
    let reply = app
        .send_message(&bob, &json!({"conversation_id": conversation_of(&message), "message": "again"}))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.body);

    // Others are still refused, and groups are not direct messages.
    let reply = app.send_message(&carol, &json!({"recipient_id": alice.id, "message": "hi"})).await;
    assert_error(&reply, 403, "not_connected", "carol is no contact");
    let group_id = app.create_group(&carol, "the group", &[&alice]).await;
    app.group_send(&carol, group_id, "group hello").await;
    app.group_send(&alice, group_id, "group hello back").await;

    // A block still wins over a contact.
    assert_eq!(app.block(&bob, alice.id).await.status, 201);
    let reply = app.send_message(&alice, &json!({"recipient_id": bob.id, "message": "hi"})).await;
    assert_error(&reply, 403, "blocked", "blocked contact");
}

on_both_databases!(
    a_contact_request_is_made_once_and_accepted_by_its_recipient,
    asking_someone_who_asked_you_accepts_their_request,
    contact_request_validation,
    the_contacts_policy_needs_an_accepted_contact,
);
