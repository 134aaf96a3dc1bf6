//! Notification settings (v1.1): `PUT /api/conversations/{id}/settings` `{notify?,
//! muted_until?}`, per user, shown on the conversation, told to the caller's own devices
//! only with `settings_changed`, and never touching unread counts.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

on_both_databases!(
    settings_are_per_user_and_reach_only_the_caller_s_own_devices,
    settings_are_validated_and_for_members_only,
    notification_settings_leave_unread_counts_alone,
);

const LATER: &str = "2030-01-01T00:00:00.000Z";

/// The settings reply: `{conversation_id, notify, muted_until}`.
fn settings_of(conversation_id: i64, notify: &str, muted_until: Option<&str>) -> Value {
    json!({"conversation_id": conversation_id, "notify": notify, "muted_until": muted_until})
}

/// Asserts `user`'s view of the conversation, and its entry in the list, show these settings.
async fn assert_shown(app: &TestApp, user: &TestUser, id: i64, notify: &str, muted_until: Option<&str>) {
    let muted_until = json!(muted_until);
    for (source, conversation) in
        [("view", app.conversation(user, id).await), ("list", app.conversation_entry(user, id).await)]
    {
        assert_eq!(conversation["notify"], notify, "{}'s {source}: {conversation}", user.username);
        assert_eq!(
            conversation.get("muted_until"),
            Some(&muted_until),
            "{}'s {source}: {conversation}",
            user.username
        );
    }
}

/// Both sockets get the same `settings_changed` frame; returns it.
async fn both_get(
    phone: &mut WsClient,
    laptop: &mut WsClient,
    conversation_id: i64,
    notify: &str,
    muted_until: Option<&str>,
) -> Value {
    let frame = phone.next_of("settings_changed").await;
    let expected = json!({
        "type": "settings_changed",
        "event_id": event_id_of(&frame),
        "conversation_id": conversation_id,
        "notify": notify,
        "muted_until": muted_until,
    });
    assert_eq!(frame, expected, "the phone");
    assert_eq!(laptop.next_of("settings_changed").await, expected, "the laptop: the same event");
    frame
}

async fn settings_are_per_user_and_reach_only_the_caller_s_own_devices(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "hello").await;
    let id = conversation_of(&message);
    for user in [&alice, &bob] {
        assert_shown(&app, user, id, "all", None).await;
    }
    let mut alice_phone = app.ws(&alice).await;
    let mut alice_laptop = app.ws(&alice).await;
    let mut bob_socket = app.ws(&bob).await;
    let seen = alice_phone.hello["last_event_id"].as_i64().expect("last_event_id");
    let mut live = Vec::new();

    // notify alone.
    let reply = app.settings(&alice, id, &json!({"notify": "mentions"})).await;
    assert_eq!(reply, settings_of(id, "mentions", None));
    live.push(both_get(&mut alice_phone, &mut alice_laptop, id, "mentions", None).await);
    bob_socket.expect_none_of("settings_changed", QUIET).await;
    assert_shown(&app, &alice, id, "mentions", None).await;
    assert_shown(&app, &bob, id, "all", None).await;

    // muted_until alone keeps notify.
    let reply = app.settings(&alice, id, &json!({"muted_until": LATER})).await;
    assert_eq!(reply, settings_of(id, "mentions", Some(LATER)));
    assert_contract_time(&reply["muted_until"]);
    live.push(both_get(&mut alice_phone, &mut alice_laptop, id, "mentions", Some(LATER)).await);
    assert_shown(&app, &alice, id, "mentions", Some(LATER)).await;
    assert_shown(&app, &bob, id, "all", None).await;

    // A time with an offset is the same instant, shown in the contract's UTC form.
    let reply = app.settings(&alice, id, &json!({"muted_until": "2030-06-01T12:30:00+02:00"})).await;
    let utc = "2030-06-01T10:30:00.000Z";
    assert_eq!(reply, settings_of(id, "mentions", Some(utc)));
    live.push(both_get(&mut alice_phone, &mut alice_laptop, id, "mentions", Some(utc)).await);

    // null clears the mute, notify stays; both fields at once.
    let reply = app.settings(&alice, id, &json!({"muted_until": null})).await;
    assert_eq!(reply, settings_of(id, "mentions", None));
    live.push(both_get(&mut alice_phone, &mut alice_laptop, id, "mentions", None).await);
    assert_shown(&app, &alice, id, "mentions", None).await;
    let reply = app.settings(&alice, id, &json!({"notify": "none", "muted_until": LATER})).await;
    assert_eq!(reply, settings_of(id, "none", Some(LATER)));
    live.push(both_get(&mut alice_phone, &mut alice_laptop, id, "none", Some(LATER)).await);
    assert_shown(&app, &alice, id, "none", Some(LATER)).await;

    // Bob's own change is his alone.
    let reply = app.settings(&bob, id, &json!({"notify": "none"})).await;
    assert_eq!(reply, settings_of(id, "none", None));
    assert_eq!(bob_socket.next_of("settings_changed").await["notify"], "none");
    alice_phone.expect_none_of("settings_changed", QUIET).await;
    alice_laptop.expect_none_of("settings_changed", Duration::from_millis(100)).await;
    assert_shown(&app, &alice, id, "none", Some(LATER)).await;
    assert_shown(&app, &bob, id, "none", None).await;
    let reply = app.settings(&bob, id, &json!({"notify": "all"})).await;
    assert_eq!(reply, settings_of(id, "all", None));

    // The events are in alice's sync and replay, in the live shape, and in no one else's.
    assert!(live.windows(2).all(|pair| event_id_of(&pair[0]) < event_id_of(&pair[1])), "{live:?}");
    let (events, _) = app.sync(&alice, seen).await;
    let settings: Vec<Value> = events.into_iter().filter(|e| e["type"] == "settings_changed").collect();
    assert_eq!(settings, live, "alice's sync");
    let (events, _) = app.sync(&bob, seen).await;
    let bobs: Vec<&Value> = events.iter().filter(|e| e["type"] == "settings_changed").collect();
    assert_eq!(bobs.len(), 2, "only bob's own two changes: {bobs:?}");
    assert!(bobs.iter().all(|e| e["notify"] != "mentions"), "{bobs:?}");
    let mut socket = app.ws_since(&alice, seen).await;
    let mut replayed = Vec::new();
    while replayed.len() < live.len() {
        replayed.push(socket.next_of("settings_changed").await);
    }
    assert_eq!(replayed, live, "alice's replay");
    socket.expect_none_of("settings_changed", QUIET).await;
}

async fn settings_are_validated_and_for_members_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let message = app.dm(&alice, &bob, "hello").await;
    let id = conversation_of(&message);
    let group = app.create_group(&alice, "club", &[&carol]).await;
    app.remove_member(&carol, group, carol.id).await;
    let mut alice_socket = app.ws(&alice).await;

    for notify in [json!("loud"), json!(3), json!(["all"])] {
        let reply = app.settings_reply(&alice, id, &json!({"notify": notify})).await;
        assert_invalid(&reply, "notify", &format!("notify {notify}"));
    }
    for muted_until in [json!("tomorrow"), json!(5), json!("2030-13-01T00:00:00Z"), json!(true)] {
        let reply = app.settings_reply(&alice, id, &json!({"muted_until": muted_until})).await;
        assert_invalid(&reply, "muted_until", &format!("muted_until {muted_until}"));
        // A valid notify beside it is not applied either.
        let both = json!({"notify": "none", "muted_until": muted_until});
        let reply = app.settings_reply(&alice, id, &both).await;
        assert_invalid(&reply, "muted_until", &format!("with notify, muted_until {muted_until}"));
    }
    alice_socket.expect_none_of("settings_changed", QUIET).await;
    assert_shown(&app, &alice, id, "all", None).await;

    // Only members: an outsider, a member who left and an unknown id get 404.
    let body = json!({"notify": "none"});
    assert_error(&app.settings_reply(&carol, id, &body).await, 404, "not_found", "an outsider");
    assert_error(&app.settings_reply(&carol, group, &body).await, 404, "not_found", "a member who left");
    assert_error(&app.settings_reply(&alice, group + 1_000_000, &body).await, 404, "not_found", "unknown");
    let path = format!("/api/conversations/{id}/settings");
    let reply = app.send_json(reqwest::Method::PUT, None, &path, &body).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert_shown(&app, &alice, id, "all", None).await;
    assert_shown(&app, &bob, id, "all", None).await;
    let events = app.sync(&carol, 0).await.0;
    assert!(!events.iter().any(|e| e["type"] == "settings_changed"), "{events:?}");
}

async fn notification_settings_leave_unread_counts_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let first = app.dm(&alice, &bob, "one").await;
    let id = conversation_of(&first);
    let group = app.create_group(&alice, "club", &[&bob, &carol]).await;
    let mut bob_socket = app.ws(&bob).await;

    // Changing settings leaves the count as it was.
    assert_eq!(app.conversation(&bob, id).await["unread_count"], 1);
    app.settings(&bob, id, &json!({"notify": "none", "muted_until": LATER})).await;
    assert_eq!(app.conversation(&bob, id).await["unread_count"], 1);
    assert_eq!(app.conversation_entry(&bob, id).await["unread_count"], 1);

    // Messages to a silenced conversation count, and the frame shows the reader's settings.
    app.dm(&alice, &bob, "two").await;
    let frame = bob_socket.next_of("new_message").await;
    assert_eq!(frame["conversation"]["unread_count"], 2, "{frame}");
    assert_eq!(frame["conversation"]["notify"], "none", "{frame}");
    assert_eq!(frame["conversation"]["muted_until"], LATER, "{frame}");
    assert_eq!(app.conversation(&bob, id).await["unread_count"], 2);
    let reply = app.mark_read(&bob, id, None).await;
    assert_eq!(reply.body["unread_count"], 0, "{}", reply.body);

    // In a group set to mentions only, every message counts and mentions count too.
    app.settings(&bob, group, &json!({"notify": "mentions"})).await;
    app.group_send(&alice, group, "for everyone").await;
    app.group_send(&carol, group, &format!("@{} for you", bob.username)).await;
    let view = app.conversation(&bob, group).await;
    assert_eq!(view["unread_count"], 2, "{view}");
    assert_eq!(view["unread_mentions"], 1, "{view}");
    assert_eq!(view["notify"], "mentions", "{view}");
    let carol_view = app.conversation(&carol, group).await;
    assert_eq!(carol_view["notify"], "all", "{carol_view}");
    assert_eq!(carol_view["unread_count"], 1, "{carol_view}");
}
