//! Pins (v1.1): `PUT`/`DELETE /api/messages/{id}/pin`, idempotent both ways; either user in a
//! direct conversation, only the owner and admins in a group; `GET
//! /api/conversations/{id}/pins` most recently pinned first; `message_pinned` /
//! `message_unpinned` frames to every device of every member, in sync and replay.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

on_both_databases!(
    either_user_pins_in_a_direct_conversation_and_every_device_hears_it_once,
    in_a_group_only_the_owner_and_admins_pin_and_unpin,
    the_owner_makes_a_member_an_admin_who_may_then_pin,
    outsiders_get_404_and_a_deleted_message_leaves_the_pins_and_cannot_be_pinned,
);

/// A `message_pinned` or `message_unpinned` frame.
fn pin_frame(kind: &str, event_id: i64, conversation_id: i64, message_id: i64, user_id: i64) -> Value {
    json!({
        "type": kind,
        "event_id": event_id,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "user_id": user_id,
    })
}

/// `message` as it shows once pinned.
fn pinned(message: &Value) -> Value {
    let mut message = message.clone();
    message["pinned"] = json!(true);
    message
}

/// Every socket gets the same frame of `kind` (one event); returns it.
async fn each_gets(
    sockets: &mut [(&str, WsClient)],
    kind: &str,
    conversation_id: i64,
    message_id: i64,
    user_id: i64,
) -> Value {
    let mut first: Option<Value> = None;
    for (who, socket) in sockets.iter_mut() {
        let frame = socket.next_of(kind).await;
        let expected = pin_frame(kind, event_id_of(&frame), conversation_id, message_id, user_id);
        assert_eq!(frame, expected, "{who}");
        if let Some(first) = &first {
            assert_eq!(frame, *first, "{who}: one event for every device");
        } else {
            first = Some(frame);
        }
    }
    first.unwrap_or_else(|| panic!("no sockets to check"))
}

/// The ids of the pins list, in its order.
async fn pin_ids(app: &TestApp, user: &TestUser, conversation_id: i64) -> Vec<i64> {
    app.pins(user, conversation_id).await.iter().map(id_of).collect()
}

// ---------------------------------------------------------------------------------------------

async fn either_user_pins_in_a_direct_conversation_and_every_device_hears_it_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let first = app.dm(&alice, &bob, "the address is 1 Main St").await;
    let second = app.dm(&bob, &alice, "the door code is 4321").await;
    let third = app.dm(&alice, &bob, "just chatting").await;
    let conversation_id = conversation_of(&first);
    assert_eq!(first["pinned"], false, "{first}");
    assert_eq!(app.pins(&alice, conversation_id).await, Vec::<Value>::new());
    let mut sockets = vec![
        ("alice's phone", app.ws(&alice).await),
        ("alice's laptop", app.ws(&alice).await),
        ("bob's phone", app.ws(&bob).await),
        ("bob's laptop", app.ws(&bob).await),
    ];
    let seen = sockets[0].1.hello["last_event_id"].as_i64().expect("last_event_id");
    let mut live = Vec::new();

    // Bob pins Alice's message: 200 with the message, pinned; every device hears it.
    let reply = app.pin_reply(&bob, id_of(&first)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, pinned(&first), "the message, pinned");
    live.push(each_gets(&mut sockets, "message_pinned", conversation_id, id_of(&first), bob.id).await);

    // Again: 200, the same, nothing emitted.
    let again = app.pin_reply(&bob, id_of(&first)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body, pinned(&first));
    none_get(&mut sockets, "message_pinned").await;

    // Alice pins Bob's message: the newest pin comes first.
    assert_eq!(app.pin(&alice, id_of(&second)).await, pinned(&second));
    live.push(each_gets(&mut sockets, "message_pinned", conversation_id, id_of(&second), alice.id).await);
    // Pinning the older one again does not move it.
    assert_eq!(app.pin(&alice, id_of(&first)).await, pinned(&first));
    none_get(&mut sockets, "message_pinned").await;
    for user in [&alice, &bob] {
        assert_eq!(
            app.pins(user, conversation_id).await,
            [pinned(&second), pinned(&first)],
            "{}",
            user.username
        );
        let messages = app.all_messages(user, conversation_id).await;
        assert_eq!(messages, [pinned(&first), pinned(&second), third.clone()], "{}'s history", user.username);
        assert_eq!(app.conversation(user, conversation_id).await["last_message"]["pinned"], false);
    }

    // Unpinning: 204 and a frame for every device; again, 204 and nothing.
    let reply = app.unpin_reply(&alice, id_of(&first)).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    live.push(each_gets(&mut sockets, "message_unpinned", conversation_id, id_of(&first), alice.id).await);
    let again = app.unpin_reply(&alice, id_of(&first)).await;
    assert_eq!(again.status, 204, "{}", again.body);
    app.unpin(&bob, id_of(&third)).await;
    none_get(&mut sockets, "message_unpinned").await;
    for user in [&alice, &bob] {
        assert_eq!(pin_ids(&app, user, conversation_id).await, [id_of(&second)], "{}", user.username);
        assert_eq!(app.history_message(user, conversation_id, id_of(&first)).await, first);
    }

    // Sync and replay hold exactly the live frames, in order.
    assert!(event_id_of(&live[0]) > seen);
    assert!(live.windows(2).all(|pair| event_id_of(&pair[0]) < event_id_of(&pair[1])), "{live:?}");
    for user in [&alice, &bob] {
        let (events, _) = app.sync(user, seen).await;
        assert_eq!(events, live, "{}'s sync", user.username);
        let mut socket = app.ws_since(user, seen).await;
        let mut replayed = Vec::new();
        while replayed.len() < live.len() {
            let frame = socket.next().await;
            if frame["type"] == "message_pinned" || frame["type"] == "message_unpinned" {
                replayed.push(frame);
            }
        }
        assert_eq!(replayed, live, "{}'s replay", user.username);
    }
}

async fn in_a_group_only_the_owner_and_admins_pin_and_unpin(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    let message = app.group_send(&bob, group, "the plan").await;
    let id = id_of(&message);
    let mut members = vec![
        ("alice", app.ws(&alice).await),
        ("bob's phone", app.ws(&bob).await),
        ("bob's laptop", app.ws(&bob).await),
        ("carol", app.ws(&carol).await),
    ];
    let mut dave_socket = app.ws(&dave).await;

    // A plain member may not, even for their own message.
    assert_error(&app.pin_reply(&bob, id).await, 403, "not_allowed", "the sender, a member");
    assert_error(&app.pin_reply(&carol, id).await, 403, "not_allowed", "a member");
    none_get(&mut members, "message_pinned").await;
    assert_eq!(app.pins(&bob, group).await, Vec::<Value>::new());
    assert_eq!(app.history_message(&bob, group, id).await["pinned"], false);

    // The owner may; every member hears it, the outsider does not.
    assert_eq!(app.pin(&alice, id).await, pinned(&message));
    each_gets(&mut members, "message_pinned", group, id, alice.id).await;
    dave_socket.expect_none_of("message_pinned", QUIET).await;
    for user in [&alice, &bob, &carol] {
        assert_eq!(app.pins(user, group).await, [pinned(&message)], "{}", user.username);
    }

    // Nor may a plain member unpin.
    assert_error(&app.unpin_reply(&bob, id).await, 403, "not_allowed", "a member unpins");
    none_get(&mut members, "message_unpinned").await;
    assert_eq!(pin_ids(&app, &carol, group).await, [id]);
    app.unpin(&alice, id).await;
    each_gets(&mut members, "message_unpinned", group, id, alice.id).await;
    dave_socket.expect_none_of("message_unpinned", QUIET).await;
    assert_eq!(app.pins(&carol, group).await, Vec::<Value>::new());
}

async fn the_owner_makes_a_member_an_admin_who_may_then_pin(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    let message = app.group_send(&carol, group, "minutes of the meeting").await;
    let id = id_of(&message);
    assert_error(&app.pin_reply(&bob, id).await, 403, "not_allowed", "bob, still a member");

    let reply = app.set_role_reply(&alice, group, bob.id, "admin").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["user"]["id"], bob.id, "{}", reply.body);
    assert_eq!(reply.body["user"]["username"], bob.username.as_str());
    assert_eq!(reply.body["role"], "admin");
    let mut carol_socket = app.ws(&carol).await;
    assert_eq!(app.pin(&bob, id).await, pinned(&message), "an admin pins");
    let frame = carol_socket.next_of("message_pinned").await;
    assert_eq!(frame, pin_frame("message_pinned", event_id_of(&frame), group, id, bob.id));

    // Only the owner sets roles.
    assert_error(&app.set_role_reply(&bob, group, carol.id, "admin").await, 403, "not_allowed", "an admin");
    assert_error(&app.set_role_reply(&carol, group, carol.id, "admin").await, 403, "not_allowed", "a member");
    for role in ["owner", "boss", ""] {
        let reply = app.set_role_reply(&alice, group, carol.id, role).await;
        assert_invalid(&reply, "role", &format!("role {role:?}"));
    }
    assert_error(
        &app.set_role_reply(&alice, group, dave.id, "admin").await,
        404,
        "not_found",
        "a non-member",
    );
    assert_error(
        &app.set_role_reply(&alice, group, 987_654_321, "admin").await,
        404,
        "not_found",
        "an unknown user",
    );
    assert_error(&app.set_role_reply(&dave, group, carol.id, "admin").await, 404, "not_found", "an outsider");

    // Back to member: the right goes with the role.
    let reply = app.set_role_reply(&alice, group, bob.id, "member").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["role"], "member");
    assert_error(&app.unpin_reply(&bob, id).await, 403, "not_allowed", "bob, a member again");
    assert_eq!(pin_ids(&app, &carol, group).await, [id]);
    app.unpin(&alice, id).await;
    assert_eq!(pin_ids(&app, &carol, group).await, Vec::<i64>::new());
}

async fn outsiders_get_404_and_a_deleted_message_leaves_the_pins_and_cannot_be_pinned(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let first = app.dm(&alice, &bob, "pin me").await;
    let second = app.dm(&alice, &bob, "and me").await;
    let conversation_id = conversation_of(&first);
    let group = app.create_group(&alice, "club", &[&carol]).await;
    let in_group = app.group_send(&alice, group, "club news").await;
    app.pin(&alice, id_of(&in_group)).await;
    app.remove_member(&carol, group, carol.id).await;
    app.pin(&alice, id_of(&first)).await;

    // Outsiders, a member who left and unknown ids: 404 everywhere.
    let cases = [
        (&carol, id_of(&first), "an outsider"),
        (&carol, id_of(&in_group), "a member who left"),
        (&alice, id_of(&second) + 1_000_000, "an unknown message"),
    ];
    for (user, message_id, what) in cases {
        assert_error(&app.pin_reply(user, message_id).await, 404, "not_found", &format!("pin, {what}"));
        assert_error(&app.unpin_reply(user, message_id).await, 404, "not_found", &format!("unpin, {what}"));
    }
    assert_error(&app.pins_reply(&carol, conversation_id).await, 404, "not_found", "pins, an outsider");
    assert_error(&app.pins_reply(&carol, group).await, 404, "not_found", "pins, a member who left");
    assert_error(&app.pins_reply(&alice, group + 1_000_000).await, 404, "not_found", "pins, unknown");
    let unauthenticated = app.get(None, &format!("/api/conversations/{conversation_id}/pins")).await;
    assert_eq!(unauthenticated.status, 401, "{}", unauthenticated.body);
    assert_eq!(
        pin_ids(&app, &alice, conversation_id).await,
        [id_of(&first)],
        "the outsiders changed nothing"
    );
    assert_eq!(pin_ids(&app, &alice, group).await, [id_of(&in_group)]);

    // Deleting a pinned message takes it off the pins; it shows unpinned and cannot be pinned.
    assert_eq!(app.delete_message(&alice, id_of(&first)).await.status, 204);
    for user in [&alice, &bob] {
        assert_eq!(app.pins(user, conversation_id).await, Vec::<Value>::new(), "{}", user.username);
        let shown = app.history_message(user, conversation_id, id_of(&first)).await;
        assert_eq!(shown["deleted"], true, "{shown}");
        assert_eq!(shown["pinned"], false, "{shown}");
    }
    assert_error(&app.pin_reply(&bob, id_of(&first)).await, 409, "message_deleted", "pin a deleted message");
    // It is not pinned, so unpinning it changes nothing, as for any unpinned message.
    app.unpin(&bob, id_of(&first)).await;
    assert_eq!(app.pins(&bob, conversation_id).await, Vec::<Value>::new());

    // The other message pins as usual.
    assert_eq!(app.pin(&bob, id_of(&second)).await, pinned(&second));
    assert_eq!(app.pins(&alice, conversation_id).await, [pinned(&second)]);
}
