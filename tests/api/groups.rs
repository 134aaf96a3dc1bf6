//! Groups: creation and its limits, members and roles, adding, removing and leaving,
//! ownership passing on, group messages fanned out to every device of every member,
//! delivered and read receipts per member, typing, and what a removed member no longer sees.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::cluster::{Instance, RedisServer};
use crate::helpers::*;
use crate::on_both_databases;

on_both_databases!(
    creating_a_group_returns_the_owner_s_view_and_announces_it_to_every_member,
    group_names_and_member_ids_are_validated_and_the_size_is_limited,
    the_members_list_is_for_current_members_of_groups_only,
    adding_members_obeys_roles_and_the_size_limit_and_announces_them,
    a_new_member_reads_earlier_history_but_has_nothing_unread,
    only_the_owner_changes_roles,
    removing_members_follows_the_role_rules,
    when_the_owner_leaves_the_longest_standing_admin_becomes_owner,
    without_admins_ownership_passes_to_the_longest_standing_member,
    a_group_message_reaches_every_device_of_every_member_with_their_own_unread_count,
    post_api_messages_accepts_a_group_conversation_id,
    group_routes_answer_404_for_a_direct_conversation,
    a_removed_member_is_told_then_gets_nothing_more_and_loses_access,
    a_removed_member_s_sync_ends_at_their_member_removed_event,
    a_removed_member_can_be_added_again,
    the_conversation_list_orders_groups_and_direct_conversations_by_latest_activity,
    acking_a_group_message_tells_only_its_senders_it_was_delivered,
    a_removed_sender_hears_no_delivered_receipt,
    the_owner_s_role_cannot_be_changed,
    group_read_receipts_reach_every_member_and_show_in_the_members_list,
    typing_in_a_group_reaches_the_other_members_but_not_a_removed_one,
    concurrent_sends_from_several_members_leave_each_their_own_unread_count,
    presence_frames_skip_groups_over_the_limit_whose_members_list_shows_presence,
);

/// The user as the API shows them (`GET /api/users/me`).
async fn me(app: &TestApp, user: &TestUser) -> Value {
    let reply = app.get(Some(&user.token), "/api/users/me").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn members_reply(app: &TestApp, user: &TestUser, group: i64) -> Reply {
    app.get(Some(&user.token), &format!("/api/groups/{group}/members")).await
}

/// The members list; asserts 200.
async fn members(app: &TestApp, user: &TestUser, group: i64) -> Vec<Value> {
    let reply = members_reply(app, user, group).await;
    assert_eq!(reply.status, 200, "members: {}", reply.body);
    reply.body["members"].as_array().expect("members").clone()
}

/// `(user id, role)` of every member, sorted by user id.
async fn roles(app: &TestApp, user: &TestUser, group: i64) -> Vec<(i64, String)> {
    let mut roles: Vec<(i64, String)> = members(app, user, group)
        .await
        .iter()
        .map(|entry| (id_of(&entry["user"]), entry["role"].as_str().expect("role").to_owned()))
        .collect();
    roles.sort();
    roles
}

fn sorted(mut roles: Vec<(i64, &str)>) -> Vec<(i64, String)> {
    roles.sort();
    roles.into_iter().map(|(id, role)| (id, role.to_owned())).collect()
}

/// One member's entry in the members list.
async fn entry_of(app: &TestApp, viewer: &TestUser, group: i64, user: &TestUser) -> Value {
    members(app, viewer, group)
        .await
        .into_iter()
        .find(|entry| entry["user"]["id"] == user.id)
        .unwrap_or_else(|| panic!("{} is not listed", user.username))
}

async fn set_role(app: &TestApp, actor: &TestUser, group: i64, user_id: i64, role: &str) -> Reply {
    app.send_json(
        Method::PATCH,
        Some(&actor.token),
        &format!("/api/groups/{group}/members/{user_id}"),
        &json!({"role": role}),
    )
    .await
}

fn assert_status(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
}

/// The ids in the caller's conversation list, in its order.
async fn list_ids(app: &TestApp, user: &TestUser) -> Vec<i64> {
    app.conversations(user).await.iter().map(id_of).collect()
}

/// The next frame that carries an `event_id` (ephemeral frames such as presence are skipped).
async fn next_event(socket: &mut WsClient) -> Value {
    loop {
        let frame = socket.next().await;
        if frame.get("event_id").is_some() {
            return frame;
        }
    }
}

/// Asserts nothing but presence notices arrives within `wait`.
async fn expect_nothing_but_presence(socket: &mut WsClient, wait: Duration, who: &str) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.stream.next()).await {
        if let WsMessage::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).expect("JSON frame");
            assert_eq!(frame["type"], "presence", "{who} got an unexpected frame: {frame}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Creating

async fn creating_a_group_returns_the_owner_s_view_and_announces_it_to_every_member(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let mut alice_socket = app.ws(&alice).await;
    let mut bob_phone = app.ws(&bob).await;
    let mut bob_laptop = app.ws(&bob).await;
    let mut carol_socket = app.ws(&carol).await;

    // Duplicates and the owner's own id are ignored; the name is trimmed.
    let reply = app.create_group_reply(&alice, "  Team  ", &[bob.id, carol.id, bob.id, alice.id]).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let group = &reply.body;
    assert!(group["id"].as_i64().is_some_and(|id| id > 0), "{group}");
    assert_eq!(group["kind"], "group");
    assert_eq!(group["name"], "Team");
    assert_eq!(group["other_user"], Value::Null);
    assert_eq!(group["members_count"], 3, "owner included, duplicates once");
    assert_eq!(group["last_message"], Value::Null);
    assert_eq!(group["unread_count"], 0);
    assert!(group.get("last_read_message_id").is_some(), "{group}");
    assert_eq!(group["last_read_message_id"], Value::Null);
    assert_contract_time(&group["created_at"]);
    let id = id_of(group);

    // Every member's every device hears of it, with the same event.
    let mut event_ids = Vec::new();
    for (who, socket) in [
        ("alice", &mut alice_socket),
        ("bob's phone", &mut bob_phone),
        ("bob's laptop", &mut bob_laptop),
        ("carol", &mut carol_socket),
    ] {
        let frame = socket.next_of("conversation_created").await;
        assert_eq!(frame["conversation"], *group, "{who}: {frame}");
        event_ids.push(event_id_of(&frame));
    }
    assert!(event_ids.windows(2).all(|pair| pair[0] == pair[1]), "one event: {event_ids:?}");

    // Each member sees the same group, and it is in their sync.
    for user in [&alice, &bob, &carol] {
        let reply = app.get(Some(&user.token), &format!("/api/conversations/{id}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body, *group, "{}'s view", user.username);
        let (events, _) = app.sync(user, 0).await;
        assert!(
            events.iter().any(|e| e["type"] == "conversation_created" && e["event_id"] == event_ids[0]),
            "{}'s sync: {events:?}",
            user.username
        );
    }

    // The creator owns it; the others are members; no receipts yet.
    let listed = members(&app, &bob, id).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    for (user, role) in [(&alice, "owner"), (&bob, "member"), (&carol, "member")] {
        let entry = listed.iter().find(|e| e["user"]["id"] == user.id).expect("listed");
        assert_eq!(entry["user"], me(&app, user).await);
        assert_eq!(entry["role"], role, "{entry}");
        assert!(entry.get("last_read_message_id").is_some(), "{entry}");
        assert_eq!(entry["last_read_message_id"], Value::Null);
        assert_eq!(entry["last_delivered_message_id"], Value::Null);
    }

    // A group of one is allowed.
    let alone = app.create_group_reply(&bob, "just me", &[]).await;
    assert_eq!(alone.status, 201, "{}", alone.body);
    assert_eq!(alone.body["members_count"], 1);
    assert_eq!(roles(&app, &bob, id_of(&alone.body)).await, sorted(vec![(bob.id, "owner")]));
}

async fn group_names_and_member_ids_are_validated_and_the_size_is_limited(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.messaging.max_group_members = 3).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;

    let too_long = "x".repeat(101);
    for name in ["", "   ", "\n\t", too_long.as_str()] {
        let reply = app.create_group_reply(&alice, name, &[bob.id]).await;
        assert_invalid(&reply, "name", &format!("name {name:?}"));
    }
    // 100 characters is fine, counted as characters, not bytes.
    let longest = "é".repeat(100);
    let reply = app.create_group_reply(&alice, &format!(" {longest} "), &[bob.id]).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["name"], longest.as_str());
    let first = id_of(&reply.body);

    // An unknown member fails the whole request.
    let reply = app.create_group_reply(&alice, "ghosts", &[bob.id, 987_654_321]).await;
    assert_error(&reply, 404, "not_found", "unknown member");

    // Three members at most, the owner included.
    let reply = app.create_group_reply(&alice, "crowd", &[bob.id, carol.id, dave.id]).await;
    assert_invalid(&reply, "member_ids", "four members");
    // Duplicates and the owner's own id do not count twice.
    let reply = app.create_group_reply(&alice, "trio", &[bob.id, carol.id, carol.id, alice.id, bob.id]).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["members_count"], 3);
    let second = id_of(&reply.body);

    let reply = app.post(None, "/api/groups", &json!({"name": "anonymous", "member_ids": []})).await;
    assert_eq!(reply.status, 401, "{}", reply.body);

    // Only the two valid requests made groups.
    let mut listed = list_ids(&app, &alice).await;
    listed.sort_unstable();
    assert_eq!(listed, [first, second]);
    assert!(list_ids(&app, &dave).await.is_empty());
}

async fn the_members_list_is_for_current_members_of_groups_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let stranger = app.user("stranger").await;
    let group = app.create_group(&alice, "club", &[&bob]).await;
    let direct = app.dm(&alice, &bob, "hi").await["conversation_id"].as_i64().expect("conversation");

    assert_eq!(members(&app, &bob, group).await.len(), 2);
    let cases = [
        (&stranger, group, "a non-member"),
        (&alice, direct, "a direct conversation"),
        (&alice, 987_654_321, "an unknown id"),
    ];
    for (user, id, what) in cases {
        assert_error(&members_reply(&app, user, id).await, 404, "not_found", what);
    }
    let reply = app.get(None, &format!("/api/groups/{group}/members")).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
}

// ---------------------------------------------------------------------------------------------
// Members and roles

async fn adding_members_obeys_roles_and_the_size_limit_and_announces_them(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.messaging.max_group_members = 4).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let erin = app.user("erin").await;
    let group = app.create_group(&alice, "club", &[&bob]).await;
    let mut alice_socket = app.ws(&alice).await;
    let mut bob_socket = app.ws(&bob).await;
    let mut carol_socket = app.ws(&carol).await;

    // A plain member may not add anyone; nor may an outsider.
    assert_error(&app.add_member(&bob, group, carol.id).await, 403, "not_allowed", "member adds");
    assert_error(&app.add_member(&erin, group, erin.id).await, 404, "not_found", "outsider adds");
    assert_error(&app.add_member(&alice, group, 987_654_321).await, 404, "not_found", "unknown user");

    // The owner adds Carol: 200 with her member entry.
    let reply = app.add_member(&alice, group, carol.id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["user"], me(&app, &carol).await);
    assert_eq!(reply.body["role"], "member");
    assert_eq!(reply.body["last_read_message_id"], Value::Null, "no messages yet");
    assert_eq!(reply.body["last_delivered_message_id"], Value::Null);

    // Carol's device: first the group itself, then her arrival.
    let created = next_event(&mut carol_socket).await;
    assert_eq!(created["type"], "conversation_created", "{created}");
    assert_eq!(created["conversation"]["id"], group);
    assert_eq!(created["conversation"]["kind"], "group");
    assert_eq!(created["conversation"]["name"], "club");
    assert_eq!(created["conversation"]["members_count"], 3);
    assert_eq!(created["conversation"]["unread_count"], 0);
    let added = next_event(&mut carol_socket).await;
    assert_eq!(added["type"], "member_added", "{added}");
    assert!(event_id_of(&added) > event_id_of(&created));
    let expected = json!({
        "type": "member_added",
        "event_id": event_id_of(&added),
        "conversation_id": group,
        "user": me(&app, &carol).await,
    });
    assert_eq!(added, expected);
    // The existing members get member_added only, the same event.
    for (who, socket) in [("alice", &mut alice_socket), ("bob", &mut bob_socket)] {
        let frame = next_event(socket).await;
        assert_eq!(frame, expected, "{who}");
    }

    // Adding a current member again: 200, nothing emitted.
    let again = app.add_member(&alice, group, carol.id).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["user"]["id"], carol.id);
    assert_eq!(again.body["role"], "member");
    alice_socket.expect_none_of("member_added", QUIET).await;
    carol_socket.expect_none_of("conversation_created", Duration::from_millis(100)).await;

    // An admin may add.
    assert_status(&set_role(&app, &alice, group, bob.id, "admin").await, 200, "make bob admin");
    let reply = app.add_member(&bob, group, dave.id).await;
    assert_eq!(reply.status, 200, "admin adds: {}", reply.body);
    assert_eq!(reply.body["role"], "member");
    assert_eq!(alice_socket.next_of("member_added").await["user"]["id"], dave.id);

    // Four members: the group is full, whoever asks.
    assert_invalid(&app.add_member(&bob, group, erin.id).await, "user_id", "full group, admin");
    assert_invalid(&app.add_member(&alice, group, erin.id).await, "user_id", "full group, owner");
    assert_error(
        &app.add_member(&carol, group, erin.id).await,
        403,
        "not_allowed",
        "member adds to full group",
    );
    alice_socket.expect_none_of("member_added", QUIET).await;

    assert_eq!(
        roles(&app, &dave, group).await,
        sorted(vec![(alice.id, "owner"), (bob.id, "admin"), (carol.id, "member"), (dave.id, "member")])
    );
    assert!(list_ids(&app, &erin).await.is_empty());
}

async fn a_new_member_reads_earlier_history_but_has_nothing_unread(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.create_group(&alice, "club", &[&bob]).await;
    let first = app.group_send(&alice, group, "before carol 1").await;
    let second = app.group_send(&bob, group, "before carol 2").await;

    assert_status(&app.add_member(&alice, group, carol.id).await, 200, "add carol");
    let view = app.get(Some(&carol.token), &format!("/api/conversations/{group}")).await;
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(view.body["unread_count"], 0, "{}", view.body);
    assert_eq!(view.body["last_message"], second);
    assert_eq!(view.body["members_count"], 3);
    let history = app.history(&carol, group, "").await;
    assert_eq!(history["messages"], json!([first, second]));

    let mut carol_socket = app.ws(&carol).await;
    let third = app.group_send(&alice, group, "welcome carol").await;
    let frame = carol_socket.next_of("new_message").await;
    assert_eq!(frame["message"], third);
    assert_eq!(frame["conversation"]["unread_count"], 1, "only what came after she joined");
    let view = app.get(Some(&carol.token), &format!("/api/conversations/{group}")).await;
    assert_eq!(view.body["unread_count"], 1);
}

async fn only_the_owner_changes_roles(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;

    assert_error(&set_role(&app, &bob, group, carol.id, "admin").await, 403, "not_allowed", "member");
    let reply = set_role(&app, &alice, group, bob.id, "admin").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["user"], me(&app, &bob).await);
    assert_eq!(reply.body["role"], "admin");
    assert_error(&set_role(&app, &bob, group, carol.id, "admin").await, 403, "not_allowed", "admin");

    assert_invalid(&set_role(&app, &alice, group, bob.id, "owner").await, "role", "role owner");
    assert_invalid(&set_role(&app, &alice, group, alice.id, "member").await, "role", "owner changes self");
    assert_error(&set_role(&app, &alice, group, dave.id, "admin").await, 404, "not_found", "non-member");
    assert_error(&set_role(&app, &dave, group, bob.id, "member").await, 404, "not_found", "outsider");

    assert_eq!(
        roles(&app, &carol, group).await,
        sorted(vec![(alice.id, "owner"), (bob.id, "admin"), (carol.id, "member")])
    );
    let reply = set_role(&app, &alice, group, bob.id, "member").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["role"], "member");
    assert_eq!(
        roles(&app, &carol, group).await,
        sorted(vec![(alice.id, "owner"), (bob.id, "member"), (carol.id, "member")])
    );
}

async fn removing_members_follows_the_role_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let erin = app.user("erin").await;
    let frank = app.user("frank").await;
    let gina = app.user("gina").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol, &dave, &erin, &frank]).await;
    assert_status(&set_role(&app, &alice, group, bob.id, "admin").await, 200, "bob admin");
    assert_status(&set_role(&app, &alice, group, carol.id, "admin").await, 200, "carol admin");

    // A plain member removes nobody else.
    for target in [&erin, &bob, &alice] {
        let reply = app.remove_member_reply(&dave, group, target.id).await;
        assert_error(&reply, 403, "not_allowed", &format!("member removes {}", target.username));
    }
    // An admin removes plain members only.
    assert_error(
        &app.remove_member_reply(&bob, group, carol.id).await,
        403,
        "not_allowed",
        "admin removes admin",
    );
    assert_error(
        &app.remove_member_reply(&bob, group, alice.id).await,
        403,
        "not_allowed",
        "admin removes owner",
    );
    assert_status(&app.remove_member_reply(&bob, group, dave.id).await, 204, "admin removes member");
    // The owner removes anyone.
    assert_status(&app.remove_member_reply(&alice, group, carol.id).await, 204, "owner removes admin");
    // Anyone leaves.
    assert_status(&app.remove_member_reply(&erin, group, erin.id).await, 204, "member leaves");

    // Not a current member: 404, for the target and for the caller.
    assert_error(&app.remove_member_reply(&alice, group, dave.id).await, 404, "not_found", "already removed");
    assert_error(&app.remove_member_reply(&alice, group, gina.id).await, 404, "not_found", "never a member");
    assert_error(
        &app.remove_member_reply(&alice, group, 987_654_321).await,
        404,
        "not_found",
        "unknown user",
    );
    assert_error(
        &app.remove_member_reply(&dave, group, frank.id).await,
        404,
        "not_found",
        "removed member removes",
    );
    assert_error(
        &app.remove_member_reply(&dave, group, dave.id).await,
        404,
        "not_found",
        "removed member leaves",
    );

    assert_eq!(
        roles(&app, &frank, group).await,
        sorted(vec![(alice.id, "owner"), (bob.id, "admin"), (frank.id, "member")])
    );
    // An admin may leave too.
    assert_status(&app.remove_member_reply(&bob, group, bob.id).await, 204, "admin leaves");
    assert_eq!(roles(&app, &frank, group).await, sorted(vec![(alice.id, "owner"), (frank.id, "member")]));
    let view = app.get(Some(&alice.token), &format!("/api/conversations/{group}")).await;
    assert_eq!(view.body["members_count"], 2, "{}", view.body);
}

async fn when_the_owner_leaves_the_longest_standing_admin_becomes_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    // Joined in the order dave, carol, bob (the reverse of their ids); dave stays a member.
    let group = app.create_group(&alice, "club", &[&dave]).await;
    assert_status(&app.add_member(&alice, group, carol.id).await, 200, "add carol");
    assert_status(&app.add_member(&alice, group, bob.id).await, 200, "add bob");
    assert_status(&set_role(&app, &alice, group, bob.id, "admin").await, 200, "bob admin");
    assert_status(&set_role(&app, &alice, group, carol.id, "admin").await, 200, "carol admin");
    let mut dave_socket = app.ws(&dave).await;
    let mut alice_socket = app.ws(&alice).await;

    assert_status(&app.remove_member_reply(&alice, group, alice.id).await, 204, "owner leaves");
    for socket in [&mut dave_socket, &mut alice_socket] {
        let frame = socket.next_of("member_removed").await;
        assert_eq!(frame["user"], me(&app, &alice).await);
        assert_eq!(frame["conversation_id"], group);
    }
    assert_eq!(
        roles(&app, &dave, group).await,
        sorted(vec![(carol.id, "owner"), (bob.id, "admin"), (dave.id, "member")]),
        "carol is the admin who joined first"
    );
    assert_error(&members_reply(&app, &alice, group).await, 404, "not_found", "the old owner");

    // The new owner has the owner's powers.
    assert_status(&set_role(&app, &carol, group, bob.id, "member").await, 200, "new owner demotes");
    assert_status(&app.add_member(&carol, group, alice.id).await, 200, "new owner adds the old one back");
    assert_eq!(
        roles(&app, &dave, group).await,
        sorted(vec![(alice.id, "member"), (bob.id, "member"), (carol.id, "owner"), (dave.id, "member")])
    );
}

async fn without_admins_ownership_passes_to_the_longest_standing_member(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let group = app.create_group(&alice, "club", &[&dave]).await;
    assert_status(&app.add_member(&alice, group, carol.id).await, 200, "add carol");
    assert_status(&app.add_member(&alice, group, bob.id).await, 200, "add bob");

    assert_status(&app.remove_member_reply(&alice, group, alice.id).await, 204, "owner leaves");
    assert_eq!(
        roles(&app, &bob, group).await,
        sorted(vec![(dave.id, "owner"), (carol.id, "member"), (bob.id, "member")]),
        "dave joined first"
    );
    assert_status(&set_role(&app, &dave, group, bob.id, "admin").await, 200, "new owner promotes");

    // Dave leaves too: bob is now the admin, so he inherits, although carol joined earlier.
    assert_status(&app.remove_member_reply(&dave, group, dave.id).await, 204, "second owner leaves");
    assert_eq!(roles(&app, &carol, group).await, sorted(vec![(carol.id, "member"), (bob.id, "owner")]));
}

// ---------------------------------------------------------------------------------------------
// Messages

async fn a_group_message_reaches_every_device_of_every_member_with_their_own_unread_count(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    let mut alice_phone = app.ws(&alice).await;
    let mut alice_laptop = app.ws(&alice).await;
    let mut bob_phone = app.ws(&bob).await;
    let mut bob_laptop = app.ws(&bob).await;
    let mut carol_socket = app.ws(&carol).await;

    let reply = app.group_send_reply(&alice, group, &json!({"message": " first ", "client_id": "g-1"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let first = reply.body;
    assert_eq!(first["conversation_id"], group);
    assert_eq!(first["sender_id"], alice.id);
    assert_eq!(first["recipient_id"], Value::Null);
    assert_eq!(first["message"], "first");
    assert_eq!(first["client_id"], "g-1");
    assert_eq!(first["deleted"], false);
    assert_eq!(first["attachments"], json!([]));

    let mut event_ids = Vec::new();
    for (who, socket) in
        [("bob's phone", &mut bob_phone), ("bob's laptop", &mut bob_laptop), ("carol", &mut carol_socket)]
    {
        let frame = socket.next_of("new_message").await;
        assert_eq!(frame["message"], first, "{who}");
        let conversation = &frame["conversation"];
        assert_eq!(conversation["id"], group, "{who}");
        assert_eq!(conversation["kind"], "group");
        assert_eq!(conversation["name"], "club");
        assert_eq!(conversation["other_user"], Value::Null);
        assert_eq!(conversation["members_count"], 3);
        assert_eq!(conversation["last_message"], first);
        assert_eq!(conversation["unread_count"], 1, "{who}");
        assert_eq!(conversation["last_read_message_id"], Value::Null, "{who}");
        event_ids.push(event_id_of(&frame));
    }
    for (who, socket) in [("alice's phone", &mut alice_phone), ("alice's laptop", &mut alice_laptop)] {
        let frame = socket.next_of("message_sent").await;
        assert_eq!(
            frame,
            json!({"type": "message_sent", "event_id": event_ids[0], "message": first}),
            "{who}"
        );
    }
    assert!(event_ids.windows(2).all(|pair| pair[0] == pair[1]), "{event_ids:?}");

    // Bob reads; then each member's frame carries their own count and pointer.
    app.mark_read(&bob, group, None).await;
    let second = app.group_send(&alice, group, "second").await;
    for (who, socket) in [("bob's phone", &mut bob_phone), ("bob's laptop", &mut bob_laptop)] {
        let frame = socket.next_of("new_message").await;
        assert_eq!(frame["message"], second, "{who}");
        assert_eq!(frame["conversation"]["unread_count"], 1, "{who}");
        assert_eq!(frame["conversation"]["last_read_message_id"], first["id"], "{who}");
    }
    let frame = carol_socket.next_of("new_message").await;
    assert_eq!(frame["message"], second);
    assert_eq!(frame["conversation"]["unread_count"], 2);
    assert_eq!(frame["conversation"]["last_read_message_id"], Value::Null);
    for socket in [&mut alice_phone, &mut alice_laptop] {
        assert_eq!(socket.next_of("message_sent").await["message"], second);
    }
    let view = app.get(Some(&carol.token), &format!("/api/conversations/{group}")).await;
    assert_eq!(view.body["unread_count"], 2);
    let view = app.get(Some(&bob.token), &format!("/api/conversations/{group}")).await;
    assert_eq!(view.body["unread_count"], 1);

    // The same client_id again: 200, the original, and nothing broadcast.
    let again = app.group_send_reply(&alice, group, &json!({"message": "first", "client_id": "g-1"})).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body, first);

    // Exactly once each, and the sender never gets new_message.
    for socket in [&mut bob_phone, &mut bob_laptop, &mut carol_socket, &mut alice_phone] {
        socket.expect_none_of("new_message", QUIET).await;
    }
    alice_laptop.expect_none_of("message_sent", Duration::from_millis(100)).await;
    let history = app.history(&carol, group, "").await;
    assert_eq!(history["messages"], json!([first, second]));
}

async fn post_api_messages_accepts_a_group_conversation_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let outsider = app.user("outsider").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    let mut bob_socket = app.ws(&bob).await;
    let mut carol_socket = app.ws(&carol).await;

    let reply = app.send_message(&bob, &json!({"conversation_id": group, "message": "via messages"})).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let sent = reply.body;
    assert_eq!(sent["conversation_id"], group);
    assert_eq!(sent["sender_id"], bob.id);
    assert_eq!(sent["recipient_id"], Value::Null);
    assert_eq!(carol_socket.next_of("new_message").await["message"], sent);
    assert_eq!(bob_socket.next_of("message_sent").await["message"], sent);
    assert_eq!(app.history(&alice, group, "").await["messages"], json!([sent]));

    // Validation as for any message; outsiders cannot see the group.
    let reply = app.group_send_reply(&alice, group, &json!({"message": "   "})).await;
    assert_invalid(&reply, "message", "blank group message");
    let reply = app.send_message(&alice, &json!({"conversation_id": group, "message": ""})).await;
    assert_invalid(&reply, "message", "blank message by conversation_id");
    let reply = app.group_send_reply(&outsider, group, &json!({"message": "let me in"})).await;
    assert_error(&reply, 404, "not_found", "outsider, group route");
    let reply = app.send_message(&outsider, &json!({"conversation_id": group, "message": "let me in"})).await;
    assert_error(&reply, 404, "not_found", "outsider, conversation_id");
    let reply = app.group_send_reply(&alice, 987_654_321, &json!({"message": "nowhere"})).await;
    assert_error(&reply, 404, "not_found", "unknown group");
    carol_socket.expect_none_of("new_message", QUIET).await;
    assert_eq!(app.history(&alice, group, "").await["messages"], json!([sent]));
}

async fn group_routes_answer_404_for_a_direct_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let sent = app.dm(&alice, &bob, "just us").await;
    let direct = sent["conversation_id"].as_i64().expect("conversation");
    let mut bob_socket = app.ws(&bob).await;

    assert_error(&members_reply(&app, &alice, direct).await, 404, "not_found", "members");
    assert_error(&app.add_member(&alice, direct, carol.id).await, 404, "not_found", "add");
    assert_error(&app.remove_member_reply(&alice, direct, bob.id).await, 404, "not_found", "remove");
    assert_error(&app.remove_member_reply(&bob, direct, bob.id).await, 404, "not_found", "leave");
    assert_error(&set_role(&app, &alice, direct, bob.id, "admin").await, 404, "not_found", "role");
    let reply = app.group_send_reply(&alice, direct, &json!({"message": "wrong route"})).await;
    assert_error(&reply, 404, "not_found", "group send");

    // Nothing changed: still two members, one message, and Bob heard nothing.
    assert_eq!(app.history(&bob, direct, "").await["messages"], json!([sent]));
    let view = app.get(Some(&bob.token), &format!("/api/conversations/{direct}")).await;
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(view.body["members_count"], 2);
    assert_eq!(view.body["kind"], "direct");
    assert!(list_ids(&app, &carol).await.is_empty());
    expect_nothing_but_presence(&mut bob_socket, QUIET, "bob").await;
}

// ---------------------------------------------------------------------------------------------
// Removed members

async fn a_removed_member_is_told_then_gets_nothing_more_and_loses_access(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let erin = app.user("erin").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol, &dave]).await;
    let before = app.group_send(&alice, group, "dave is still here").await;
    let mut alice_socket = app.ws(&alice).await;
    let mut bob_socket = app.ws(&bob).await;
    let mut carol_socket = app.ws(&carol).await;
    let mut dave_phone = app.ws(&dave).await;
    let mut dave_laptop = app.ws(&dave).await;

    assert_status(&app.remove_member_reply(&alice, group, dave.id).await, 204, "remove dave");
    let expected_user = me(&app, &dave).await;
    let mut event_ids = Vec::new();
    for (who, socket) in [
        ("alice", &mut alice_socket),
        ("bob", &mut bob_socket),
        ("carol", &mut carol_socket),
        ("dave's phone", &mut dave_phone),
        ("dave's laptop", &mut dave_laptop),
    ] {
        let frame = socket.next_of("member_removed").await;
        let event_id = event_id_of(&frame);
        let expected = json!({
            "type": "member_removed",
            "event_id": event_id,
            "conversation_id": group,
            "user": expected_user,
        });
        assert_eq!(frame, expected, "{who}");
        event_ids.push(event_id);
    }
    assert!(event_ids.windows(2).all(|pair| pair[0] == pair[1]), "{event_ids:?}");

    // The group goes on without him: a message, a read receipt, a new member, typing.
    let after = app.group_send(&bob, group, "dave is gone").await;
    assert_eq!(carol_socket.next_of("new_message").await["message"], after);
    assert_eq!(alice_socket.next_of("new_message").await["message"], after);
    app.mark_read(&carol, group, None).await;
    assert_eq!(alice_socket.next_of("message_read").await["reader_id"], carol.id);
    assert_status(&app.add_member(&alice, group, erin.id).await, 200, "add erin");
    assert_eq!(bob_socket.next_of("member_added").await["user"]["id"], erin.id);
    alice_socket.send(json!({"type": "typing", "conversation_id": group})).await;
    assert_eq!(bob_socket.next_of("typing").await["user_id"], alice.id);
    expect_nothing_but_presence(&mut dave_phone, QUIET, "dave's phone").await;
    dave_laptop.expect_none_of("new_message", Duration::from_millis(100)).await;

    // Everything about the group is 404 to him now.
    let reply = app.get(Some(&dave.token), &format!("/api/conversations/{group}")).await;
    assert_error(&reply, 404, "not_found", "conversation");
    let reply = app.get(Some(&dave.token), &format!("/api/conversations/{group}/messages")).await;
    assert_error(&reply, 404, "not_found", "history");
    let reply = app.group_send_reply(&dave, group, &json!({"message": "let me back"})).await;
    assert_error(&reply, 404, "not_found", "group send");
    let reply = app.send_message(&dave, &json!({"conversation_id": group, "message": "let me back"})).await;
    assert_error(&reply, 404, "not_found", "send by conversation_id");
    let reply = app.mark_read_reply(&dave, group, None).await;
    assert_error(&reply, 404, "not_found", "read");
    assert_error(&members_reply(&app, &dave, group).await, 404, "not_found", "members");
    assert!(list_ids(&app, &dave).await.is_empty(), "it left his conversation list");
    let history = app.history(&alice, group, "").await;
    assert_eq!(history["messages"], json!([before, after]), "his attempts stored nothing");
    bob_socket.expect_none_of("new_message", QUIET).await;
}

async fn a_removed_member_s_sync_ends_at_their_member_removed_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let dave = app.user("dave").await;
    let group = app.create_group(&alice, "club", &[&bob, &dave]).await;
    let before = app.group_send(&alice, group, "before").await;
    let mut alice_socket = app.ws(&alice).await;

    // Dave leaves on his own.
    assert_status(&app.remove_member_reply(&dave, group, dave.id).await, 204, "dave leaves");
    let removed = alice_socket.next_of("member_removed").await;
    assert_eq!(removed["user"]["id"], dave.id);
    let removed_id = event_id_of(&removed);

    let after = app.group_send(&bob, group, "secret after dave left").await;
    app.mark_read(&alice, group, None).await;
    assert_status(&app.add_member(&alice, group, app.user("erin").await.id).await, 200, "add erin");
    let edited = app.edit_message(&alice, id_of(&before), "edited later").await;
    assert_status(&edited, 200, "edit after he left");

    let (events, last_event_id) = app.sync(&dave, 0).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(kinds, ["conversation_created", "new_message", "member_removed"], "{events:?}");
    assert_eq!(events[1]["message"]["id"], before["id"]);
    assert_eq!(events[2], removed, "the same frame the members got");
    assert_eq!(last_event_id, removed_id);
    assert!(events.iter().all(|e| event_id_of(e) <= removed_id), "{events:?}");
    assert!(!events.iter().any(|e| e["message"]["id"] == after["id"]));

    let (later, last) = app.sync(&dave, removed_id).await;
    assert!(later.is_empty(), "nothing after member_removed: {later:?}");
    assert_eq!(last, removed_id);

    // A fresh socket names the same end, and replaying from 0 stops there too.
    let mut socket = app.ws_since(&dave, 0).await;
    assert_eq!(socket.hello["last_event_id"], removed_id);
    for expected in &events {
        assert_eq!(next_event(&mut socket).await, *expected);
    }
    expect_nothing_but_presence(&mut socket, QUIET, "dave's replay").await;

    // Nor does any later content reach him inside the replayed frames (e.g. as the
    // conversation's last_message, or an edit's new text).
    let text = serde_json::to_string(&events).expect("json");
    for later in ["secret after dave left", "edited later"] {
        assert!(!text.contains(later), "{later:?} reached the removed member's sync: {text}");
    }
}

async fn a_removed_member_can_be_added_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let dave = app.user("dave").await;
    let group = app.create_group(&alice, "club", &[&bob, &dave]).await;
    assert_status(&set_role(&app, &alice, group, dave.id, "admin").await, 200, "dave admin");
    let first = app.group_send(&alice, group, "first").await;
    let mut dave_socket = app.ws(&dave).await;
    let mut bob_socket = app.ws(&bob).await;

    assert_status(&app.remove_member_reply(&alice, group, dave.id).await, 204, "remove dave");
    let removed_id = event_id_of(&dave_socket.next_of("member_removed").await);
    let gap = app.group_send(&bob, group, "while dave was out").await;
    assert_eq!(bob_socket.next_of("message_sent").await["message"], gap);

    let reply = app.add_member(&alice, group, dave.id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["user"]["id"], dave.id);
    assert_eq!(reply.body["role"], "member", "back as a plain member");

    let created = next_event(&mut dave_socket).await;
    assert_eq!(created["type"], "conversation_created", "{created}");
    assert_eq!(created["conversation"]["id"], group);
    assert_eq!(created["conversation"]["unread_count"], 0);
    assert_eq!(created["conversation"]["members_count"], 3);
    assert_eq!(created["conversation"]["last_message"], gap);
    let added = next_event(&mut dave_socket).await;
    assert_eq!(added["type"], "member_added", "{added}");
    assert_eq!(added["user"]["id"], dave.id);
    assert_eq!(bob_socket.next_of("member_added").await, added);

    let view = app.get(Some(&dave.token), &format!("/api/conversations/{group}")).await;
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(view.body["unread_count"], 0);
    assert_eq!(app.history(&dave, group, "").await["messages"], json!([first, gap]));
    assert_eq!(list_ids(&app, &dave).await, [group]);
    assert_eq!(
        roles(&app, &dave, group).await,
        sorted(vec![(alice.id, "owner"), (bob.id, "member"), (dave.id, "member")])
    );

    // Live again, with his own count.
    let third = app.group_send(&bob, group, "welcome back").await;
    let frame = dave_socket.next_of("new_message").await;
    assert_eq!(frame["message"], third);
    assert_eq!(frame["conversation"]["unread_count"], 1);

    // His log has the rejoin and what followed, never the message sent while he was out.
    let (events, _) = app.sync(&dave, removed_id).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(kinds, ["conversation_created", "member_added", "new_message"], "{events:?}");
    assert_eq!(events[2]["message"]["id"], third["id"]);
    assert!(!events.iter().any(|e| e["message"]["id"] == gap["id"]), "{events:?}");
}

async fn the_conversation_list_orders_groups_and_direct_conversations_by_latest_activity(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let club = app.create_group(&alice, "club", &[&bob, &carol]).await;
    assert_eq!(list_ids(&app, &alice).await, [club]);

    let direct = app.dm(&bob, &alice, "psst").await["conversation_id"].as_i64().expect("conversation");
    assert_eq!(list_ids(&app, &alice).await, [direct, club]);
    assert_eq!(list_ids(&app, &bob).await, [direct, club]);
    assert_eq!(list_ids(&app, &carol).await, [club]);

    let latest = app.group_send(&carol, club, "club news").await;
    assert_eq!(list_ids(&app, &alice).await, [club, direct]);
    assert_eq!(list_ids(&app, &bob).await, [club, direct]);

    let team = app.create_group(&bob, "team", &[&alice]).await;
    assert_eq!(list_ids(&app, &alice).await, [team, club, direct]);
    assert_eq!(list_ids(&app, &carol).await, [club], "not a member of team");

    app.dm(&alice, &bob, "back to you").await;
    assert_eq!(list_ids(&app, &alice).await, [direct, team, club]);

    // A listed group: no other user, its name, count, last message and the caller's unread.
    let reply = app.get(Some(&alice.token), "/api/conversations").await;
    let listed = reply.body["conversations"].as_array().expect("list").clone();
    let club_view = listed.iter().find(|c| c["id"] == club).expect("club listed");
    assert_eq!(club_view["kind"], "group");
    assert_eq!(club_view["name"], "club");
    assert_eq!(club_view["other_user"], Value::Null);
    assert_eq!(club_view["members_count"], 3);
    assert_eq!(club_view["last_message"], latest);
    assert_eq!(club_view["unread_count"], 1);
    let team_view = listed.iter().find(|c| c["id"] == team).expect("team listed");
    assert_eq!(team_view["last_message"], Value::Null);
    assert_eq!(team_view["unread_count"], 0);

    // A removed member's list loses the group.
    assert_status(&app.remove_member_reply(&alice, club, carol.id).await, 204, "remove carol");
    assert!(list_ids(&app, &carol).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Receipts and typing

async fn a_removed_sender_hears_no_delivered_receipt(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    let mut carol_socket = app.ws(&carol).await;
    app.group_send(&carol, group, "from carol").await;
    assert_eq!(app.remove_member_reply(&alice, group, carol.id).await.status, 204);
    carol_socket.next_of("member_removed").await;
    // Bob comes online afterwards, is replayed Carol's message and his removal notice, and acks.
    let mut bob_socket = app.ws_since(&bob, 0).await;
    bob_socket.next_of("new_message").await;
    let removed = bob_socket.next_of("member_removed").await;
    bob_socket.send(json!({"type": "ack", "event_id": event_id_of(&removed)})).await;
    carol_socket.expect_none_of("message_delivered", QUIET).await;
    // The pointer still moved for the members who can see it.
    let mut moved = false;
    for _ in 0..50 {
        if entry_of(&app, &alice, group, &bob).await["last_delivered_message_id"].is_i64() {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(moved, "bob's delivered pointer moved");
}

async fn the_owner_s_role_cannot_be_changed(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let group = app.create_group(&alice, "club", &[&bob]).await;
    assert_eq!(set_role(&app, &alice, group, bob.id, "admin").await.status, 200);
    // Alice leaves: Bob, the admin, becomes owner; Alice's earlier rights are gone.
    assert_eq!(app.remove_member_reply(&alice, group, alice.id).await.status, 204);
    assert_error(&set_role(&app, &alice, group, bob.id, "member").await, 404, "not_found", "former owner");
    assert_eq!(roles(&app, &bob, group).await, [(bob.id, "owner".to_owned())]);
}

async fn acking_a_group_message_tells_only_its_senders_it_was_delivered(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol, &dave]).await;
    let mut alice_phone = app.ws(&alice).await;
    let mut alice_laptop = app.ws(&alice).await;
    let mut bob_socket = app.ws(&bob).await;
    let mut carol_socket = app.ws(&carol).await;
    let mut dave_socket = app.ws(&dave).await;

    let from_alice = app.group_send(&alice, group, "from alice").await;
    let from_carol = app.group_send(&carol, group, "from carol").await;
    assert_eq!(bob_socket.next_of("new_message").await["message"], from_alice);
    let newest = bob_socket.next_of("new_message").await;
    assert_eq!(newest["message"], from_carol);
    assert_eq!(carol_socket.next_of("new_message").await["message"], from_alice);
    let carol_newest = carol_socket.next_of("message_sent").await;
    assert_eq!(carol_newest["message"], from_carol);

    // Bob acks both: Alice (both devices) and Carol learn; Bob and Dave do not.
    bob_socket.send(json!({"type": "ack", "event_id": event_id_of(&newest)})).await;
    let expected = json!({
        "type": "message_delivered",
        "conversation_id": group,
        "user_id": bob.id,
        "last_delivered_message_id": from_carol["id"],
    });
    for (who, socket) in [
        ("alice's phone", &mut alice_phone),
        ("alice's laptop", &mut alice_laptop),
        ("carol", &mut carol_socket),
    ] {
        assert_eq!(socket.next_of("message_delivered").await, expected, "{who}");
    }
    bob_socket.expect_none_of("message_delivered", QUIET).await;
    dave_socket.expect_none_of("message_delivered", Duration::from_millis(100)).await;

    let entry = entry_of(&app, &dave, group, &bob).await;
    assert_eq!(entry["last_delivered_message_id"], from_carol["id"], "{entry}");
    for user in [&alice, &carol, &dave] {
        let entry = entry_of(&app, &dave, group, user).await;
        assert_eq!(entry["last_delivered_message_id"], Value::Null, "{entry}");
    }

    // The same ack again changes nothing.
    bob_socket.send(json!({"type": "ack", "event_id": event_id_of(&newest)})).await;
    alice_phone.expect_none_of("message_delivered", QUIET).await;

    // Carol acks what her socket got: only Alice sent something Carol received.
    carol_socket.send(json!({"type": "ack", "event_id": event_id_of(&carol_newest)})).await;
    let delivered = alice_laptop.next_of("message_delivered").await;
    assert_eq!(delivered["user_id"], carol.id);
    assert_eq!(delivered["last_delivered_message_id"], from_carol["id"]);
    carol_socket.expect_none_of("message_delivered", QUIET).await;
    bob_socket.expect_none_of("message_delivered", Duration::from_millis(100)).await;
    let entry = entry_of(&app, &alice, group, &carol).await;
    assert_eq!(entry["last_delivered_message_id"], from_carol["id"], "{entry}");
}

async fn group_read_receipts_reach_every_member_and_show_in_the_members_list(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    let first = app.group_send(&alice, group, "one").await;
    let second = app.group_send(&alice, group, "two").await;
    let mut alice_socket = app.ws(&alice).await;
    let mut bob_phone = app.ws(&bob).await;
    let mut bob_laptop = app.ws(&bob).await;
    let mut carol_socket = app.ws(&carol).await;

    let reply = app.mark_read(&bob, group, Some(id_of(&first))).await;
    assert_eq!(
        reply.body,
        json!({
            "conversation_id": group,
            "last_read_message_id": first["id"],
            "unread_count": 1,
            "unread_mentions": 0,
        })
    );
    let mut frames = Vec::new();
    for socket in [&mut alice_socket, &mut bob_phone, &mut bob_laptop, &mut carol_socket] {
        frames.push(socket.next_of("message_read").await);
    }
    for frame in &frames {
        assert_eq!(frame["conversation_id"], group, "{frame}");
        assert_eq!(frame["reader_id"], bob.id);
        assert_eq!(frame["last_read_message_id"], first["id"]);
        assert_contract_time(&frame["read_at"]);
        assert_eq!(*frame, frames[0], "the same frame for every member");
    }
    assert!(event_id_of(&frames[0]) > 0);

    let reply = app.mark_read(&carol, group, None).await;
    assert_eq!(reply.body["last_read_message_id"], second["id"]);
    assert_eq!(reply.body["unread_count"], 0);
    for socket in [&mut alice_socket, &mut bob_phone, &mut carol_socket] {
        let frame = socket.next_of("message_read").await;
        assert_eq!(frame["reader_id"], carol.id);
        assert_eq!(frame["last_read_message_id"], second["id"]);
    }

    let listed = members(&app, &alice, group).await;
    let pointer = |user: &TestUser| {
        listed.iter().find(|e| e["user"]["id"] == user.id).expect("listed")["last_read_message_id"].clone()
    };
    assert_eq!(pointer(&alice), Value::Null);
    assert_eq!(pointer(&bob), first["id"]);
    assert_eq!(pointer(&carol), second["id"]);

    // Never backwards, and no receipt when nothing moves.
    let reply = app.mark_read(&carol, group, Some(id_of(&first))).await;
    assert_eq!(reply.body["last_read_message_id"], second["id"]);
    alice_socket.expect_none_of("message_read", QUIET).await;
    assert_eq!(entry_of(&app, &bob, group, &carol).await["last_read_message_id"], second["id"]);
}

/// Above `presence.max_group_members` a group carries no presence frames (n members
/// connecting would cost n² of them); its members list says who is online instead.
async fn presence_frames_skip_groups_over_the_limit_whose_members_list_shows_presence(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.presence.max_group_members = 3).await;
    let (alice, bob, carol, dave) =
        (app.user("alice").await, app.user("bob").await, app.user("carol").await, app.user("dave").await);
    let erin = app.user("erin").await;
    let small = app.create_group(&alice, "small", &[&bob]).await;
    let large = app.create_group(&alice, "large", &[&carol, &dave, &erin]).await;
    let mut alice_socket = app.ws(&alice).await;

    // Carol shares only the large group with Alice: her connecting is not announced. Bob's,
    // through the small group, is, and it is the first presence frame Alice gets.
    let carol_socket = app.ws(&carol).await;
    let _bob_socket = app.ws(&bob).await;
    let frame = alice_socket.next_of("presence").await;
    assert_eq!(
        (frame["user_id"].as_i64(), frame["status"].as_str()),
        (Some(bob.id), Some("online")),
        "{frame}"
    );
    alice_socket.expect_none_of("presence", Duration::from_millis(300)).await;

    // The members list has everyone's presence: Carol online, Dave never seen.
    let presence_of = async |user: &TestUser| {
        members(&app, &alice, large)
            .await
            .into_iter()
            .find(|entry| entry["user"]["id"] == user.id)
            .map(|entry| entry["presence"].clone())
            .unwrap_or_else(|| panic!("{} is not listed", user.username))
    };
    let carol_seen = presence_of(&carol).await;
    assert_eq!(
        (carol_seen["user_id"].as_i64(), carol_seen["status"].as_str()),
        (Some(carol.id), Some("online"))
    );
    assert_eq!(presence_of(&dave).await, json!({"user_id": dave.id, "status": "offline", "last_seen": null}));
    assert_eq!(presence_of(&alice).await["status"], "online", "the caller, connected");

    // Carol leaves: still no frame to Alice, and the list says when she was last seen.
    drop(carol_socket);
    alice_socket.expect_none_of("presence", Duration::from_millis(300)).await;
    let mut gone = presence_of(&carol).await;
    for _ in 0..50 {
        if gone["status"] == "offline" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        gone = presence_of(&carol).await;
    }
    assert_eq!(gone["status"], "offline", "{gone}");
    assert_contract_time(&gone["last_seen"]);

    // The small group's members list carries presence too.
    let listed = members(&app, &bob, small).await;
    let alice_entry = listed.iter().find(|entry| entry["user"]["id"] == alice.id).expect("alice listed");
    assert_eq!(alice_entry["presence"]["status"], "online");
}

async fn typing_in_a_group_reaches_the_other_members_but_not_a_removed_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol, &dave]).await;
    assert_status(&app.remove_member_reply(&alice, group, dave.id).await, 204, "remove dave");
    let mut alice_socket = app.ws(&alice).await;
    let mut bob_phone = app.ws(&bob).await;
    let mut bob_laptop = app.ws(&bob).await;
    let mut carol_socket = app.ws(&carol).await;
    let mut dave_socket = app.ws(&dave).await;

    alice_socket.send(json!({"type": "typing", "conversation_id": group})).await;
    let expected = json!({"type": "typing", "conversation_id": group, "user_id": alice.id});
    for (who, socket) in
        [("bob's phone", &mut bob_phone), ("bob's laptop", &mut bob_laptop), ("carol", &mut carol_socket)]
    {
        assert_eq!(socket.next_of("typing").await, expected, "{who}");
    }
    dave_socket.expect_none_of("typing", QUIET).await;
    alice_socket.expect_none_of("typing", Duration::from_millis(100)).await;

    // The removed member's own typing reaches nobody.
    dave_socket.send(json!({"type": "typing", "conversation_id": group})).await;
    for socket in [&mut alice_socket, &mut bob_phone, &mut carol_socket] {
        socket.expect_none_of("typing", Duration::from_millis(250)).await;
    }

    // Another member typing reaches the owner too.
    carol_socket.send(json!({"type": "typing", "conversation_id": group})).await;
    let frame = alice_socket.next_of("typing").await;
    assert_eq!(frame, json!({"type": "typing", "conversation_id": group, "user_id": carol.id}));
    assert_eq!(bob_phone.next_of("typing").await["user_id"], carol.id);
    dave_socket.expect_none_of("typing", QUIET).await;
}

// ---------------------------------------------------------------------------------------------
// Two instances

/// Group members connected to two instances sharing PostgreSQL and Redis: one group message
/// reaches every device once, wherever it is connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_message_reaches_members_on_both_instances_once() {
    let redis = RedisServer::start().await;
    let database_url = fresh_postgres_database().await;
    let instance_a = Instance::start("group-a", &database_url, &redis.url()).await;
    let instance_b = Instance::start("group-b", &database_url, &redis.url()).await;
    let (a, b) = (instance_a.app(), instance_b.app());
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    let carol = b.user("carol").await;
    let mut alice_on_a = a.ws(&alice).await;
    let mut bob_on_a = a.ws(&bob).await;
    let mut bob_on_b = b.ws(&bob).await;
    let mut carol_on_b = b.ws(&carol).await;
    assert_eq!(alice_on_a.hello["instance_id"], "group-a");
    assert_eq!(bob_on_b.hello["instance_id"], "group-b");

    // Created on a: the member on b only hears of it through the relay.
    let group = a.create_group(&alice, "split", &[&bob, &carol]).await;
    for socket in [&mut alice_on_a, &mut bob_on_a, &mut bob_on_b, &mut carol_on_b] {
        assert_eq!(socket.next_of("conversation_created").await["conversation"]["id"], group);
    }

    let from_a = a.group_send(&alice, group, "from instance a").await;
    let mut event_ids = Vec::new();
    for (who, socket) in
        [("bob on a", &mut bob_on_a), ("bob on b", &mut bob_on_b), ("carol on b", &mut carol_on_b)]
    {
        let frame = socket.next_of("new_message").await;
        assert_eq!(frame["message"], from_a, "{who}");
        assert_eq!(frame["conversation"]["unread_count"], 1, "{who}");
        event_ids.push(event_id_of(&frame));
    }
    assert_eq!(alice_on_a.next_of("message_sent").await["message"], from_a);
    assert!(event_ids.windows(2).all(|pair| pair[0] == pair[1]), "{event_ids:?}");

    let from_b = b.group_send(&carol, group, "from instance b").await;
    for (who, socket) in
        [("alice on a", &mut alice_on_a), ("bob on a", &mut bob_on_a), ("bob on b", &mut bob_on_b)]
    {
        let frame = socket.next_of("new_message").await;
        assert_eq!(frame["message"], from_b, "{who}");
    }
    assert_eq!(carol_on_b.next_of("message_sent").await["message"], from_b);
    let bob_view = b.get(Some(&bob.token), &format!("/api/conversations/{group}")).await;
    assert_eq!(bob_view.body["unread_count"], 2, "{}", bob_view.body);

    // Once each: no duplicate from the other instance.
    for socket in [&mut alice_on_a, &mut bob_on_a, &mut bob_on_b, &mut carol_on_b] {
        socket.expect_none_of("new_message", Duration::from_millis(500)).await;
    }
}

/// Sends that arrive together are stored in one writer batch, where the members who sent
/// nothing gain every message at once and each sender gains only the others'.
async fn concurrent_sends_from_several_members_leave_each_their_own_unread_count(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol, &dave]).await;
    let mut dave_socket = app.ws(&dave).await;

    let mut sends: Vec<(&TestUser, Value)> = Vec::new();
    for (from, count) in [(&alice, 6), (&bob, 4), (&carol, 3)] {
        for n in 0..count {
            sends.push((from, json!({"message": format!("{} {n}", from.username)})));
        }
    }
    let replies = futures_util::future::join_all(
        sends.iter().map(|(from, body)| app.group_send_reply(from, group, body)),
    )
    .await;
    for reply in &replies {
        assert_status(reply, 201, "a concurrent group send");
    }

    for (user, unread) in [(&alice, 7), (&bob, 9), (&carol, 10), (&dave, 13)] {
        let view = app.get(Some(&user.token), &format!("/api/conversations/{group}")).await;
        assert_eq!(view.body["unread_count"], unread, "{}: {}", user.username, view.body);
    }
    // Dave's frames count up one by one, whichever batch each message was in.
    for unread in 1..=13 {
        let frame = dave_socket.next_of("new_message").await;
        assert_eq!(frame["conversation"]["unread_count"], unread, "{frame}");
    }
}
