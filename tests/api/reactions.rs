//! Reactions (v1.1): `PUT`/`DELETE /api/messages/{id}/reactions/{emoji}`, idempotent both
//! ways, the `reactions` list in first-reaction order, `reaction_added`/`reaction_removed`
//! frames to every device of every member, emoji validation and the 20-emoji limit, and the
//! same frames in sync and `since` replay. Reactions never touch unread counts.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::cluster::{Instance, RedisServer};
use crate::helpers::*;
use crate::on_both_databases;

on_both_databases!(
    a_reaction_reaches_every_device_of_every_member_once_and_no_outsider,
    reactions_never_change_unread_counts_and_show_in_history_and_the_conversation,
    emoji_are_1_to_32_bytes_of_utf8_without_whitespace_or_control_characters,
    a_message_takes_at_most_twenty_distinct_emoji,
    a_deleted_message_takes_no_reactions_and_shows_none,
    outsiders_and_unknown_messages_get_404,
    reactions_are_in_sync_and_since_replay_in_order_with_the_live_shape,
);

const THUMBS: &str = "👍";
const PARTY: &str = "🎉";
/// Two code points: U+2764 and the emoji variation selector U+FE0F (6 bytes).
const HEART: &str = "\u{2764}\u{fe0f}";

/// One entry of a message's `reactions`.
fn reaction(emoji: &str, user_ids: &[i64]) -> Value {
    json!({"emoji": emoji, "count": user_ids.len(), "user_ids": user_ids})
}

/// The reply of a reaction route: `{message_id, reactions}`.
fn reactions_reply(message_id: i64, reactions: &[Value]) -> Value {
    json!({"message_id": message_id, "reactions": reactions})
}

/// A `reaction_added` or `reaction_removed` frame.
fn reaction_frame(
    kind: &str,
    event_id: i64,
    conversation_id: i64,
    message_id: i64,
    user_id: i64,
    emoji: &str,
) -> Value {
    json!({
        "type": kind,
        "event_id": event_id,
        "conversation_id": conversation_id,
        "message_id": message_id,
        "user_id": user_id,
        "emoji": emoji,
    })
}

fn count_of(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|event| event["type"] == kind).count()
}

/// Every socket gets the same frame of `kind` (one event); returns its event id.
async fn each_gets(
    sockets: &mut [(&str, WsClient)],
    kind: &str,
    conversation_id: i64,
    message_id: i64,
    user_id: i64,
    emoji: &str,
) -> i64 {
    let mut event_id = None;
    for (who, socket) in sockets.iter_mut() {
        let frame = socket.next_of(kind).await;
        let id = *event_id.get_or_insert_with(|| event_id_of(&frame));
        assert!(id > 0, "{who}: {frame}");
        assert_eq!(frame, reaction_frame(kind, id, conversation_id, message_id, user_id, emoji), "{who}");
    }
    event_id.unwrap_or_else(|| panic!("no sockets to check"))
}

/// The next frame whose type is one of `kinds`, skipping others.
async fn next_of_kinds(socket: &mut WsClient, kinds: &[&str]) -> Value {
    loop {
        let frame = socket.next().await;
        if kinds.iter().any(|kind| frame["type"] == *kind) {
            return frame;
        }
    }
}

/// Asserts no frame of any of `kinds` arrives within `wait` (other frames are skipped).
async fn expect_none_of_kinds(socket: &mut WsClient, kinds: &[&str], wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, socket.stream.next()).await {
        if let WsMessage::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).expect("JSON frame");
            assert!(!kinds.iter().any(|kind| frame["type"] == *kind), "unexpected frame: {frame}");
        }
    }
}

// ---------------------------------------------------------------------------------------------

async fn a_reaction_reaches_every_device_of_every_member_once_and_no_outsider(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let erin = app.user("erin").await;
    let group = app.create_group(&alice, "club", &[&bob, &carol, &erin]).await;
    let message = app.group_send(&alice, group, "lunch at noon?").await;
    let id = id_of(&message);
    assert_eq!(message["reactions"], json!([]), "a new message has no reactions: {message}");
    app.remove_member(&alice, group, erin.id).await;
    let mut members = vec![
        ("alice's phone", app.ws(&alice).await),
        ("alice's laptop", app.ws(&alice).await),
        ("bob's phone", app.ws(&bob).await),
        ("bob's laptop", app.ws(&bob).await),
        ("carol's phone", app.ws(&carol).await),
        ("carol's laptop", app.ws(&carol).await),
    ];
    let mut outsiders = vec![("dave", app.ws(&dave).await), ("erin, removed", app.ws(&erin).await)];

    // Bob adds 👍: the reply lists it, and every device of every member hears it.
    let reply = app.react_reply(&bob, id, THUMBS).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, reactions_reply(id, &[reaction(THUMBS, &[bob.id])]));
    let first_event = each_gets(&mut members, "reaction_added", group, id, bob.id, THUMBS).await;
    none_get(&mut outsiders, "reaction_added").await;

    // The same again: 200 with the same reactions, and nothing emitted or stored.
    let again = app.react_reply(&bob, id, THUMBS).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body, reply.body, "adding twice changes nothing");
    none_get(&mut members, "reaction_added").await;

    // A second user on the same emoji counts; a new emoji goes after the first one.
    let reply = app.react(&carol, id, THUMBS).await;
    assert_eq!(reply, reactions_reply(id, &[reaction(THUMBS, &[bob.id, carol.id])]));
    let second_event = each_gets(&mut members, "reaction_added", group, id, carol.id, THUMBS).await;
    assert!(second_event > first_event, "event ids increase: {second_event} after {first_event}");
    let reply = app.react(&alice, id, PARTY).await;
    assert_eq!(
        reply,
        reactions_reply(id, &[reaction(THUMBS, &[bob.id, carol.id]), reaction(PARTY, &[alice.id])])
    );
    each_gets(&mut members, "reaction_added", group, id, alice.id, PARTY).await;
    let reply = app.react(&bob, id, PARTY).await;
    assert_eq!(
        reply,
        reactions_reply(id, &[reaction(THUMBS, &[bob.id, carol.id]), reaction(PARTY, &[alice.id, bob.id])])
    );
    each_gets(&mut members, "reaction_added", group, id, bob.id, PARTY).await;

    // Bob takes his 👍 back: every device hears it; the emoji stays for Carol.
    let reply = app.unreact_reply(&bob, id, THUMBS).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let after_removal =
        reactions_reply(id, &[reaction(THUMBS, &[carol.id]), reaction(PARTY, &[alice.id, bob.id])]);
    assert_eq!(reply.body, after_removal);
    each_gets(&mut members, "reaction_removed", group, id, bob.id, THUMBS).await;
    none_get(&mut outsiders, "reaction_removed").await;

    // Removing it again, or an emoji never added: 200, unchanged, nothing emitted.
    let again = app.unreact_reply(&bob, id, THUMBS).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body, after_removal, "removing an absent reaction changes nothing");
    let never = app.unreact_reply(&carol, id, HEART).await;
    assert_eq!(never.status, 200, "{}", never.body);
    assert_eq!(never.body, after_removal);
    none_get(&mut members, "reaction_removed").await;

    // The last reactor leaving takes the emoji off the list.
    let reply = app.unreact(&carol, id, THUMBS).await;
    let last = [reaction(PARTY, &[alice.id, bob.id])];
    assert_eq!(reply, reactions_reply(id, &last));
    each_gets(&mut members, "reaction_removed", group, id, carol.id, THUMBS).await;

    for user in [&alice, &bob, &carol] {
        let shown = app.history_message(user, group, id).await;
        assert_eq!(shown["reactions"], json!(last), "{}'s history", user.username);
        let events = app.sync(user, 0).await.0;
        assert_eq!(count_of(&events, "reaction_added"), 4, "{}'s sync: one event per change", user.username);
        assert_eq!(count_of(&events, "reaction_removed"), 2, "{}'s sync", user.username);
    }
    let dave_events = app.sync(&dave, 0).await.0;
    assert_eq!(count_of(&dave_events, "reaction_added") + count_of(&dave_events, "reaction_removed"), 0);
}

async fn reactions_never_change_unread_counts_and_show_in_history_and_the_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let first = app.dm(&alice, &bob, "first").await;
    let second = app.dm(&alice, &bob, "second").await;
    let conversation_id = conversation_of(&first);
    let unread = async |user: &TestUser| {
        let listed = app.conversation_entry(user, conversation_id).await["unread_count"].clone();
        let viewed = app.conversation(user, conversation_id).await["unread_count"].clone();
        assert_eq!(listed, viewed, "{}: the list and the conversation agree", user.username);
        listed
    };
    assert_eq!(unread(&alice).await, 0);
    assert_eq!(unread(&bob).await, 2);
    let mut alice_socket = app.ws(&alice).await;

    // Reactions from both sides, on both messages.
    app.react(&bob, id_of(&second), PARTY).await;
    app.react(&alice, id_of(&second), THUMBS).await;
    app.react(&alice, id_of(&first), HEART).await;
    assert_eq!(alice_socket.next_of("reaction_added").await["user_id"], bob.id);
    assert_eq!(unread(&alice).await, 0, "a reaction is not a message to read");
    assert_eq!(unread(&bob).await, 2, "reacting reads nothing and adds nothing");

    let on_second = json!([reaction(PARTY, &[bob.id]), reaction(THUMBS, &[alice.id])]);
    let on_first = json!([reaction(HEART, &[alice.id])]);
    for user in [&alice, &bob] {
        let messages = app.all_messages(user, conversation_id).await;
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0]["reactions"], on_first, "{}'s history", user.username);
        assert_eq!(messages[1]["reactions"], on_second, "{}'s history", user.username);
        let viewed = app.conversation(user, conversation_id).await;
        assert_eq!(viewed["last_message"]["reactions"], on_second, "{}: {viewed}", user.username);
        assert_eq!(viewed["last_message"], messages[1], "the last message is the history's");
        let listed = app.conversation_entry(user, conversation_id).await;
        assert_eq!(listed["last_message"]["reactions"], on_second, "{}: {listed}", user.username);
    }

    // Taking one back changes no count either; a later message counts as ever.
    app.unreact(&bob, id_of(&second), PARTY).await;
    let third = app.dm(&bob, &alice, "third").await;
    assert_eq!(third["reactions"], json!([]), "{third}");
    assert_eq!(unread(&alice).await, 1);
    assert_eq!(unread(&bob).await, 2);
    let reply = app.mark_read(&bob, conversation_id, None).await;
    assert_eq!(reply.body["unread_count"], 0, "{}", reply.body);
    app.react(&alice, id_of(&third), PARTY).await;
    assert_eq!(unread(&bob).await, 0, "a reaction to bob's own message does not make it unread");
    assert_eq!(unread(&alice).await, 1);
}

async fn emoji_are_1_to_32_bytes_of_utf8_without_whitespace_or_control_characters(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "react to me").await;
    let id = id_of(&message);
    let conversation_id = conversation_of(&message);

    let longest = THUMBS.repeat(8);
    assert_eq!(longest.len(), 32);
    let too_long = format!("{longest}x");
    assert_eq!(too_long.len(), 33);
    let refused = [
        (" ", "a space"),
        ("a b", "a space inside"),
        ("👍\t", "a tab"),
        ("\n", "a newline"),
        ("\u{a0}", "a no-break space"),
        ("\u{1}", "a control character"),
        ("x\u{7f}", "DEL"),
        (too_long.as_str(), "33 bytes"),
    ];
    for (emoji, what) in refused {
        assert_invalid(&app.react_reply(&bob, id, emoji).await, "emoji", &format!("PUT {what}"));
        assert_invalid(&app.unreact_reply(&bob, id, emoji).await, "emoji", &format!("DELETE {what}"));
    }

    // 32 bytes (8 characters) is fine; multi-code-point emoji and plain ASCII come back as sent.
    let reply = app.react(&bob, id, &longest).await;
    assert_eq!(reply, reactions_reply(id, &[reaction(&longest, &[bob.id])]));
    app.react(&bob, id, HEART).await;
    let reply = app.react(&alice, id, "+1").await;
    let expected = [reaction(&longest, &[bob.id]), reaction(HEART, &[bob.id]), reaction("+1", &[alice.id])];
    assert_eq!(reply, reactions_reply(id, &expected));
    assert_eq!(app.history_message(&alice, conversation_id, id).await["reactions"], json!(expected));

    // The refused ones left nothing behind.
    let events = app.sync(&alice, 0).await.0;
    assert_eq!(count_of(&events, "reaction_added"), 3, "{events:?}");
    assert_eq!(count_of(&events, "reaction_removed"), 0, "{events:?}");
}

/// The `n`th of a run of distinct single-character emoji (U+1F600 onwards).
fn nth_emoji(n: u32) -> String {
    char::from_u32(0x1F600 + n).map(String::from).unwrap_or_else(|| panic!("no emoji {n}"))
}

async fn a_message_takes_at_most_twenty_distinct_emoji(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "rate this").await;
    let id = id_of(&message);
    let conversation_id = conversation_of(&message);

    let mut reactions = Vec::new();
    for n in 0..20 {
        let reply = app.react_reply(&alice, id, &nth_emoji(n)).await;
        assert_eq!(reply.status, 200, "emoji {n}: {}", reply.body);
        reactions.push(reaction(&nth_emoji(n), &[alice.id]));
        assert_eq!(reply.body, reactions_reply(id, &reactions), "emoji {n}");
    }
    let mut bob_socket = app.ws(&bob).await;

    // A 21st distinct emoji is refused, whoever adds it.
    assert_invalid(&app.react_reply(&alice, id, &nth_emoji(20)).await, "emoji", "21st emoji by alice");
    assert_invalid(&app.react_reply(&bob, id, &nth_emoji(20)).await, "emoji", "21st emoji by bob");
    bob_socket.expect_none_of("reaction_added", QUIET).await;

    // An emoji already there can still be added by someone else.
    let reply = app.react(&bob, id, &nth_emoji(0)).await;
    reactions[0] = reaction(&nth_emoji(0), &[alice.id, bob.id]);
    assert_eq!(reply, reactions_reply(id, &reactions));
    assert_eq!(bob_socket.next_of("reaction_added").await["emoji"], nth_emoji(0).as_str());
    let shown = app.history_message(&bob, conversation_id, id).await;
    assert_eq!(shown["reactions"], json!(reactions), "twenty, in first-reaction order");

    // Once one emoji is gone entirely, there is room for another.
    app.unreact(&alice, id, &nth_emoji(5)).await;
    reactions.remove(5);
    let reply = app.react(&bob, id, &nth_emoji(20)).await;
    reactions.push(reaction(&nth_emoji(20), &[bob.id]));
    assert_eq!(reply, reactions_reply(id, &reactions));
}

async fn a_deleted_message_takes_no_reactions_and_shows_none(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "soon gone").await;
    let id = id_of(&message);
    let conversation_id = conversation_of(&message);
    app.react(&bob, id, THUMBS).await;
    assert_eq!(app.delete_message(&alice, id).await.status, 204);
    let mut alice_socket = app.ws(&alice).await;

    assert_error(&app.react_reply(&bob, id, PARTY).await, 409, "message_deleted", "a new emoji");
    assert_error(&app.react_reply(&alice, id, THUMBS).await, 409, "message_deleted", "an existing emoji");
    alice_socket.expect_none_of("reaction_added", QUIET).await;

    for user in [&alice, &bob] {
        let shown = app.history_message(user, conversation_id, id).await;
        assert_eq!(shown["deleted"], true, "{shown}");
        assert_eq!(shown["reactions"], json!([]), "a deleted message shows no reactions: {shown}");
        let listed = app.conversation_entry(user, conversation_id).await;
        assert_eq!(listed["last_message"]["reactions"], json!([]), "{listed}");
    }
}

async fn outsiders_and_unknown_messages_get_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let message = app.dm(&alice, &bob, "between us").await;
    let id = id_of(&message);
    let group = app.create_group(&alice, "club", &[&carol]).await;
    let in_group = app.group_send(&alice, group, "for the club").await;
    app.remove_member(&carol, group, carol.id).await;
    let mut bob_socket = app.ws(&bob).await;

    let cases = [
        (&carol, id, "an outsider"),
        (&carol, id_of(&in_group), "a member who left"),
        (&alice, id + 1_000_000, "an unknown message"),
    ];
    for (user, message_id, what) in cases {
        assert_error(
            &app.react_reply(user, message_id, THUMBS).await,
            404,
            "not_found",
            &format!("PUT {what}"),
        );
        assert_error(
            &app.unreact_reply(user, message_id, THUMBS).await,
            404,
            "not_found",
            &format!("DELETE {what}"),
        );
    }
    let path = format!("/api/messages/{id}/reactions/{}", path_segment(THUMBS));
    assert_eq!(app.send_empty(reqwest::Method::PUT, None, &path).await.status, 401);
    bob_socket.expect_none_of("reaction_added", QUIET).await;
    let shown = app.history_message(&alice, conversation_of(&message), id).await;
    assert_eq!(shown["reactions"], json!([]), "{shown}");
    assert_eq!(app.history_message(&alice, group, id_of(&in_group)).await["reactions"], json!([]));
}

async fn reactions_are_in_sync_and_since_replay_in_order_with_the_live_shape(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "react").await;
    let id = id_of(&message);
    let conversation_id = conversation_of(&message);
    let mut alice_live = app.ws(&alice).await;
    let seen = alice_live.hello["last_event_id"].as_i64().expect("last_event_id");

    app.react(&bob, id, THUMBS).await;
    app.react(&alice, id, PARTY).await;
    app.unreact(&bob, id, THUMBS).await;
    let kinds = ["reaction_added", "reaction_removed"];
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(next_of_kinds(&mut alice_live, &kinds).await);
    }
    let expected = [
        ("reaction_added", bob.id, THUMBS),
        ("reaction_added", alice.id, PARTY),
        ("reaction_removed", bob.id, THUMBS),
    ];
    let mut last = seen;
    for (frame, (kind, user_id, emoji)) in live.iter().zip(expected) {
        let event_id = event_id_of(frame);
        assert!(event_id > last, "increasing event ids: {live:?}");
        last = event_id;
        assert_eq!(*frame, reaction_frame(kind, event_id, conversation_id, id, user_id, emoji));
    }

    // Sync after `seen` holds exactly these, for both users, in the live shape.
    for user in [&alice, &bob] {
        let (events, last_event_id) = app.sync(user, seen).await;
        assert_eq!(events, live, "{}'s sync", user.username);
        assert_eq!(last_event_id, last);
    }

    // A socket opened with `since` replays them in order and repeats nothing.
    let mut sockets = Vec::new();
    for user in [&alice, &bob] {
        let mut socket = app.ws_since(user, seen).await;
        let mut replayed = Vec::new();
        for _ in 0..3 {
            replayed.push(next_of_kinds(&mut socket, &kinds).await);
        }
        assert_eq!(replayed, live, "{}'s replay", user.username);
        expect_none_of_kinds(&mut socket, &kinds, QUIET).await;
        sockets.push((user.username.clone(), socket));
    }
    // Then live, the next change once.
    let reply = app.react(&bob, id, HEART).await;
    assert_eq!(reply["reactions"], json!([reaction(PARTY, &[alice.id]), reaction(HEART, &[bob.id])]));
    for (who, socket) in &mut sockets {
        let frame = next_of_kinds(socket, &kinds).await;
        let event_id = event_id_of(&frame);
        assert!(event_id > last, "{who}: {frame}");
        assert_eq!(
            frame,
            reaction_frame("reaction_added", event_id, conversation_id, id, bob.id, HEART),
            "{who}"
        );
        expect_none_of_kinds(socket, &kinds, Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Two instances

/// A reaction and a pin made through instance A reach the other member's socket on instance B
/// exactly once, in the same shape as on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaction_and_a_pin_made_on_one_instance_reach_a_member_on_the_other_once() {
    let redis = RedisServer::start().await;
    let database_url = fresh_postgres_database().await;
    let instance_a = Instance::start("react-a", &database_url, &redis.url()).await;
    let instance_b = Instance::start("react-b", &database_url, &redis.url()).await;
    let (a, b) = (instance_a.app(), instance_b.app());
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    let message = a.dm(&alice, &bob, "across instances").await;
    let id = id_of(&message);
    let conversation_id = conversation_of(&message);
    let mut alice_on_a = a.ws(&alice).await;
    let mut bob_on_b = b.ws(&bob).await;
    assert_eq!(alice_on_a.hello["instance_id"], "react-a");
    assert_eq!(bob_on_b.hello["instance_id"], "react-b");

    let reply = a.react(&alice, id, THUMBS).await;
    assert_eq!(reply, reactions_reply(id, &[reaction(THUMBS, &[alice.id])]));
    let frame = bob_on_b.next_of("reaction_added").await;
    assert_eq!(
        frame,
        reaction_frame("reaction_added", event_id_of(&frame), conversation_id, id, alice.id, THUMBS)
    );
    assert_eq!(alice_on_a.next_of("reaction_added").await, frame, "the same event on both instances");

    let pinned = a.pin(&alice, id).await;
    assert_eq!(pinned["pinned"], true, "{pinned}");
    let frame = bob_on_b.next_of("message_pinned").await;
    let expected = json!({
        "type": "message_pinned",
        "event_id": event_id_of(&frame),
        "conversation_id": conversation_id,
        "message_id": id,
        "user_id": alice.id,
    });
    assert_eq!(frame, expected);
    assert_eq!(alice_on_a.next_of("message_pinned").await, expected);

    // Once each: no copy comes from the other instance.
    expect_none_of_kinds(&mut bob_on_b, &["reaction_added", "message_pinned"], Duration::from_millis(500))
        .await;
    expect_none_of_kinds(&mut alice_on_a, &["reaction_added", "message_pinned"], Duration::from_millis(100))
        .await;
    let shown = b.history_message(&bob, conversation_id, id).await;
    assert_eq!(shown["reactions"], json!([reaction(THUMBS, &[alice.id])]), "{shown}");
    assert_eq!(shown["pinned"], true, "{shown}");
}
