//! Masking of contact details (emails, phone numbers, links) in direct messages between
//! strangers, and where it does not apply.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

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

async fn become_contacts(app: &TestApp, a: &TestUser, b: &TestUser) {
    let reply = app.request_contact(a, b).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = app.accept_contact(b, id_of(&reply.body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["status"], "accepted");
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
        assert_eq!(app.all_messages(user, conversation_id).await, stored, "history");
    }
    let text = serde_json::to_string(&app.sync(&bob, 0).await.0).expect("json");
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
    let history = app.all_messages(&bob, conversation_of(&stored[0])).await;
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
    let group_id = app.create_group(&alice, "the group", &[&bob, &carol]).await;
    let message = app.group_send(&alice, group_id, PII).await;
    assert_eq!(message["message"], PII, "group 201");
    assert_eq!(bob_socket.next_of("new_message").await["message"]["message"], PII, "group frame");
    let reply = app.send_message(&carol, &json!({"conversation_id": group_id, "message": PII})).await;
    assert_eq!(reply.body["message"], PII, "group by conversation_id");
    let frame = bob_socket.next_of("new_message").await;
    assert_eq!(frame["message"]["id"], reply.body["id"]);
    assert_eq!(frame["message"]["message"], PII, "group frame from a stranger");
    let history = app.all_messages(&bob, group_id).await;
    assert!(history.iter().all(|m| m["message"] == PII), "group history: {history:?}");

    // Strangers: masked; the same pair once contacts: raw. What was masked stays masked.
    let (before, _) = send_and_receive(&app, &alice, &bob, &mut bob_socket, PII).await;
    assert_eq!(before["message"], PII_MASKED);
    let request = app.request_contact(&bob, &alice).await;
    assert_eq!(request.status, 201, "{}", request.body);
    let (pending, _) = send_and_receive(&app, &alice, &bob, &mut bob_socket, PII).await;
    assert_eq!(pending["message"], PII_MASKED, "a pending request is no contact");
    assert_eq!(app.accept_contact(&alice, id_of(&request.body)).await.status, 200);
    let (after, frame) = send_and_receive(&app, &alice, &bob, &mut bob_socket, PII).await;
    assert_eq!(after["message"], PII, "contacts 201");
    assert_eq!(frame["message"]["message"], PII, "contacts frame");
    let reply = app.send_message(&bob, &json!({"recipient_id": alice.id, "message": PII})).await;
    assert_eq!(reply.body["message"], PII, "the other way");
    let texts: Vec<Value> = app
        .all_messages(&alice, conversation_of(&before))
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

    let reply = app.edit_message(&alice, id_of(&message), PII).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["message"], PII_MASKED, "edit reply");
    assert_eq!(bob_socket.next_of("message_edited").await["message"]["message"], PII_MASKED, "frame");
    let shown = app.history_message(&bob, conversation_of(&message), id_of(&message)).await;
    assert_eq!(shown["message"], PII_MASKED, "history");
    assert_eq!(
        app.conversation_entry(&bob, conversation_of(&message)).await["last_message"]["message"],
        PII_MASKED
    );

    // Once contacts, edits are stored as written.
    become_contacts(&app, &alice, &bob).await;
    let reply = app.edit_message(&alice, id_of(&message), PII).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["message"], PII, "edit between contacts");
    assert_eq!(bob_socket.next_of("message_edited").await["message"]["message"], PII);

    // A group message's edit is never masked.
    let group_id = app.create_group(&alice, "the group", &[&bob]).await;
    let stranger = app.user("carol").await;
    let reply = app.add_member(&alice, group_id, stranger.id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let message = app.group_send(&stranger, group_id, "hello all").await;
    let reply = app.edit_message(&stranger, id_of(&message), PII).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["message"], PII, "group edit");
}

on_both_databases!(
    contact_details_are_masked_between_strangers,
    ordinary_words_and_numbers_are_not_masked,
    contacts_and_groups_are_never_masked,
    masking_is_off_by_default,
    edits_are_masked_the_same_way,
);
