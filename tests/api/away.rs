//! Away replies (`PUT /api/users/me/away`): while a user is offline everywhere, a direct
//! message still unread after `away.delay_seconds` gets one reply per sender and away period,
//! posted as the user and marked `auto_reply`: their fixed text, or what their assistant
//! bot's webhook (an `away_request`) or the model answers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bots::{Model, create_bot};
use crate::helpers::*;
use crate::on_both_databases;
use crate::webhook_receiver::{Receiver, reply, status};

on_both_databases!(
    the_away_setting_is_validated_and_read_back,
    a_fixed_text_answers_once_per_sender_and_period_and_never_while_online,
    a_webhook_assistant_gets_an_away_request_and_its_answer_is_posted_once_as_the_user,
    a_model_assistant_answers_for_the_user_and_the_fixed_text_covers_its_failure,
    a_pending_request_is_dropped_when_the_setting_changes_and_an_empty_answer_falls_back,
    two_away_users_writing_to_each_other_get_one_reply_each,
);

/// Longer than the delay (1 s) plus a planning tick, with room for a loaded machine.
const SETTLE: Duration = Duration::from_millis(2500);

async fn set_away(app: &TestApp, user: &TestUser, body: &Value) -> Reply {
    app.send_json(reqwest::Method::PUT, Some(&user.token), "/api/users/me/away", body).await
}

async fn fast_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |settings| {
        settings.away.delay_seconds = 1;
        settings.bots.allow_private_urls = true;
    })
    .await
}

/// The conversation's away replies, oldest first.
async fn auto_replies(app: &TestApp, viewer: &TestUser, conversation: i64) -> Vec<Value> {
    let messages = app.all_messages(viewer, conversation).await;
    messages.into_iter().filter(|m| !m["auto_reply"].is_null()).collect()
}

async fn wait_for_auto_replies(
    app: &TestApp,
    viewer: &TestUser,
    conversation: i64,
    count: usize,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let replies = auto_replies(app, viewer, conversation).await;
        if replies.len() >= count || Instant::now() > deadline {
            return replies;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn the_away_setting_is_validated_and_read_back(backend: Backend) {
    let app = fast_app(backend).await;
    let bob = app.user("bob").await;
    let mallory = app.user("mallory").await;
    let off = app.get(Some(&bob.token), "/api/users/me/away").await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.body, json!({"enabled": false, "assistant_bot_id": null, "message": null}));

    let (theirs, _) = create_bot(&app, &mallory, "mallorys_bot", None).await;
    let long = "x".repeat(2001);
    for (body, field, what) in [
        (json!({"enabled": true}), "message", "on with neither a bot nor a text"),
        (json!({"enabled": true, "message": "   "}), "message", "a blank text"),
        (json!({"enabled": true, "message": long}), "message", "a text over 2000 characters"),
        (json!({"enabled": true, "assistant_bot_id": theirs.id}), "assistant_bot_id", "someone else's bot"),
        (
            json!({"enabled": true, "assistant_bot_id": mallory.id}),
            "assistant_bot_id",
            "a user who is no bot",
        ),
    ] {
        assert_invalid(&set_away(&app, &bob, &body).await, field, what);
    }
    let missing = set_away(&app, &bob, &json!({"message": "away"})).await;
    assert_eq!(missing.status, 422, "enabled is required: {}", missing.body);
    assert_eq!(
        app.get(Some(&bob.token), "/api/users/me/away").await.body["enabled"],
        false,
        "nothing stored"
    );

    let (mine, _) = create_bot(&app, &bob, "bobs_bot", None).await;
    let by_bot = set_away(&app, &mine, &json!({"enabled": true, "message": "a bot is never away"})).await;
    assert_error(&by_bot, 403, "not_allowed", "a bot setting away replies");
    let body = json!({"enabled": true, "assistant_bot_id": mine.id, "message": "  Back on Monday. "});
    let set = set_away(&app, &bob, &body).await;
    assert_eq!(set.status, 200, "{}", set.body);
    let expected = json!({"enabled": true, "assistant_bot_id": mine.id, "message": "Back on Monday."});
    assert_eq!(set.body, expected);
    assert_eq!(app.get(Some(&bob.token), "/api/users/me/away").await.body, expected);
    // Off keeps what was set, for the next time.
    let off = set_away(
        &app,
        &bob,
        &json!({"enabled": false, "assistant_bot_id": mine.id, "message": "Back on Monday."}),
    )
    .await;
    assert_eq!(off.body["enabled"], false, "{}", off.body);
    // A deleted bot leaves the fixed text.
    let deleted =
        app.send_empty(reqwest::Method::DELETE, Some(&bob.token), &format!("/api/bots/{}", mine.id)).await;
    assert_eq!(deleted.status, 204);
    let now = app.get(Some(&bob.token), "/api/users/me/away").await.body;
    assert_eq!(
        (now["assistant_bot_id"].clone(), now["message"].clone()),
        (Value::Null, json!("Back on Monday."))
    );
}

/// Once per sender and away period; not for what was read in time; not while a socket is
/// open; an away reply never triggers another one.
async fn a_fixed_text_answers_once_per_sender_and_period_and_never_while_online(backend: Backend) {
    let app = fast_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let erin = app.user("erin").await;
    let set = set_away(&app, &bob, &json!({"enabled": true, "message": "Away until Monday."})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    // Alice is away too: bob's away reply must not start hers.
    set_away(&app, &alice, &json!({"enabled": true, "message": "Alice is out."})).await;

    let hi = app.dm(&alice, &bob, "hi bob").await;
    let conversation = conversation_of(&hi);
    let replies = wait_for_auto_replies(&app, &alice, conversation, 1).await;
    assert_eq!(replies.len(), 1, "{replies:#?}");
    let away = &replies[0];
    assert_eq!(away["sender_id"], bob.id);
    assert_eq!(away["message"], "Away until Monday.");
    assert_eq!(away["auto_reply"], json!({"bot_id": null}));
    assert_eq!(away["reply_to"]["id"], hi["id"]);
    assert!(hi["auto_reply"].is_null(), "a typed message is not marked: {hi}");

    // Same sender, same period: nothing more. Another sender: their own reply.
    app.dm(&alice, &bob, "are you there?").await;
    let from_carol = app.dm(&carol, &bob, "hello from carol").await;
    let carols = wait_for_auto_replies(&app, &carol, conversation_of(&from_carol), 1).await;
    assert_eq!(carols.len(), 1);
    // Read in time: no reply.
    let from_erin = app.dm(&erin, &bob, "read me").await;
    app.mark_read(&bob, conversation_of(&from_erin), None).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(auto_replies(&app, &alice, conversation).await.len(), 1, "once per sender and period");
    assert!(auto_replies(&app, &erin, conversation_of(&from_erin)).await.is_empty(), "it was read");
    let alices = app.all_messages(&alice, conversation).await;
    assert!(
        alices.iter().all(|m| m["sender_id"] != alice.id || m["auto_reply"].is_null()),
        "an away reply starts no other: {alices:#?}"
    );

    // Online: no reply. The socket's close starts a new period: a reply again.
    let mut socket = app.ws(&bob).await;
    app.dm(&alice, &bob, "now you are online").await;
    socket.next_of("new_message").await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(auto_replies(&app, &alice, conversation).await.len(), 1, "not while a socket is open");
    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.presence(&alice, &bob).await["status"] != "offline" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let later = app.dm(&alice, &bob, "gone again?").await;
    let replies = wait_for_auto_replies(&app, &alice, conversation, 2).await;
    assert_eq!(replies.len(), 2, "a new away period: {replies:#?}");
    assert_eq!(replies[1]["reply_to"]["id"], later["id"]);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(auto_replies(&app, &alice, conversation).await.len(), 2);
}

/// The webhook gets `away_request` with the message, the conversation as the user sees it and
/// its last messages; 503 is retried; the answer is posted once as the user, marked with the
/// bot, and a second message meanwhile asks nothing more.
async fn a_webhook_assistant_gets_an_away_request_and_its_answer_is_posted_once_as_the_user(
    backend: Backend,
) {
    let app = fast_app(backend).await;
    let receiver = Receiver::start().await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let (helper, secret) = create_bot(&app, &bob, "bobs_helper", Some(&receiver.url("helper"))).await;
    receiver.trust("helper", &secret);
    receiver.script("helper", vec![status(503), reply("Bob is away; he will answer on Monday.")]);
    let set = set_away(&app, &bob, &json!({"enabled": true, "assistant_bot_id": helper.id})).await;
    assert_eq!(set.status, 200, "{}", set.body);

    let earlier = app.dm(&bob, &alice, "send me the report").await;
    let conversation = conversation_of(&earlier);
    let question = app.dm(&alice, &bob, "here it is, thoughts?").await;
    let first = receiver.wait_for("helper", 1, Duration::from_secs(10)).await;
    // While the retry waits, another message: the period already has its request.
    app.dm(&alice, &bob, "ping").await;
    let calls = receiver.wait_for("helper", 2, Duration::from_secs(15)).await;
    assert_eq!(calls.iter().map(|c| c.status).collect::<Vec<_>>(), vec![503, 200]);
    assert_eq!(calls[0].event_id, first[0].event_id);
    assert_eq!(calls[1].event_id, calls[0].event_id, "the retry is the same request");
    let body = &calls[1].body;
    assert_eq!(body["type"], "away_request");
    assert_eq!(body["bot_id"], helper.id);
    assert_eq!(body["user_id"], bob.id);
    assert_eq!(body["message"]["id"], question["id"]);
    assert_eq!(body["conversation"]["id"], conversation);
    assert_eq!(body["conversation"]["other_user"]["id"], alice.id, "as bob sees it");
    let texts: Vec<&str> =
        body["messages"].as_array().expect("messages").iter().filter_map(|m| m["message"].as_str()).collect();
    // The conversation as it is when the request is made: "ping" came during the retry.
    assert_eq!(texts, vec!["send me the report", "here it is, thoughts?", "ping"]);

    let replies = wait_for_auto_replies(&app, &alice, conversation, 1).await;
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert_eq!(replies[0]["sender_id"], bob.id);
    assert_eq!(replies[0]["message"], "Bob is away; he will answer on Monday.");
    assert_eq!(replies[0]["auto_reply"], json!({"bot_id": helper.id}));
    assert_eq!(replies[0]["reply_to"]["id"], question["id"]);
    tokio::time::sleep(SETTLE).await;
    assert_eq!(auto_replies(&app, &alice, conversation).await.len(), 1);
    assert_eq!(receiver.calls("helper").len(), 2, "no request for the second message");
    receiver.assert_all_verified();
}

/// A bot of kind `assistant` asks the model, as the user's side of the conversation, told
/// that it answers for someone away; when the model fails, the user's fixed text goes out
/// instead (marked without a bot), never an apology in the user's name.
async fn a_model_assistant_answers_for_the_user_and_the_fixed_text_covers_its_failure(backend: Backend) {
    let model = Model::start(vec![Some("Bob is away right now."), None]).await;
    let base_url = format!("http://127.0.0.1:{}/v1", model.port);
    let app = spawn_app_with(backend, move |settings| {
        settings.away.delay_seconds = 1;
        settings.assistant.base_url = base_url;
        settings.assistant.system_prompt = "Be brief.".into();
    })
    .await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let bob = app.user("bob").await;
    let made =
        app.post(Some(&bob.token), "/api/bots", &json!({"username": "bobs_ai", "kind": "assistant"})).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let bot_id = made.body["bot"]["id"].as_i64().unwrap();
    let body = json!({"enabled": true, "assistant_bot_id": bot_id, "message": "Away; back soon."});
    assert_eq!(set_away(&app, &bob, &body).await.status, 200);

    let question = app.dm(&alice, &bob, "lunch tomorrow?").await;
    let replies = wait_for_auto_replies(&app, &alice, conversation_of(&question), 1).await;
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert_eq!(replies[0]["sender_id"], bob.id);
    assert_eq!(replies[0]["message"], "Bob is away right now.");
    assert_eq!(replies[0]["auto_reply"], json!({"bot_id": bot_id}));
    let (sent, _) = model.requests.lock().unwrap()[0].clone();
    let roles: Vec<(&str, &str)> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(roles[0], ("system", "Be brief."));
    assert_eq!(roles[1].0, "system");
    assert!(roles[1].1.contains("away"), "{roles:?}");
    assert_eq!(roles[2..], [("user", "lunch tomorrow?")]);

    // The model refuses the next (400, not retried): the fixed text answers carol.
    let from_carol = app.dm(&carol, &bob, "call me").await;
    let replies = wait_for_auto_replies(&app, &carol, conversation_of(&from_carol), 1).await;
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert_eq!(replies[0]["message"], "Away; back soon.");
    assert_eq!(replies[0]["auto_reply"], json!({"bot_id": null}));
    assert_eq!(model.requests.lock().unwrap().len(), 2);
}

/// The user turns away replies off while the request waits for its retry: the hook is not
/// called again and nothing is posted. On again, a hook answering 2xx without a reply gets
/// the fixed text out instead.
async fn a_pending_request_is_dropped_when_the_setting_changes_and_an_empty_answer_falls_back(
    backend: Backend,
) {
    let app = fast_app(backend).await;
    let receiver = Receiver::start().await;
    let alice = app.user("alice").await;
    let carol = app.user("carol").await;
    let bob = app.user("bob").await;
    let (helper, secret) = create_bot(&app, &bob, "bobs_helper", Some(&receiver.url("helper"))).await;
    receiver.trust("helper", &secret);
    receiver.script("helper", vec![status(503)]);
    let on = json!({"enabled": true, "assistant_bot_id": helper.id, "message": "Back soon."});
    assert_eq!(set_away(&app, &bob, &on).await.status, 200);

    let first = app.dm(&alice, &bob, "one").await;
    receiver.wait_for("helper", 1, Duration::from_secs(10)).await;
    let off = json!({"enabled": false, "assistant_bot_id": helper.id, "message": "Back soon."});
    assert_eq!(set_away(&app, &bob, &off).await.status, 200);
    // The retry falls due about 2 s after the 503.
    tokio::time::sleep(SETTLE + Duration::from_secs(2)).await;
    assert_eq!(receiver.calls("helper").len(), 1, "the dropped request is not made again");
    assert!(auto_replies(&app, &alice, conversation_of(&first)).await.is_empty());

    assert_eq!(set_away(&app, &bob, &on).await.status, 200);
    let from_carol = app.dm(&carol, &bob, "two").await;
    let replies = wait_for_auto_replies(&app, &carol, conversation_of(&from_carol), 1).await;
    assert_eq!(replies.len(), 1, "{replies:#?}");
    assert_eq!(replies[0]["message"], "Back soon.");
    assert_eq!(replies[0]["auto_reply"], json!({"bot_id": null}));
    assert_eq!(receiver.calls("helper").len(), 2);
    receiver.assert_all_verified();
}

/// Both away, each with an unread message from the other: each answers once, and neither
/// away reply starts another.
async fn two_away_users_writing_to_each_other_get_one_reply_each(backend: Backend) {
    let app = fast_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    set_away(&app, &alice, &json!({"enabled": true, "message": "Alice is out."})).await;
    set_away(&app, &bob, &json!({"enabled": true, "message": "Bob is out."})).await;
    // Sent together: often one commit, planned in one pass (the unit test of
    // `first_per_recipient` covers that case for certain).
    let (to_bob, to_alice) = tokio::join!(app.dm(&alice, &bob, "for bob"), app.dm(&bob, &alice, "for alice"));
    let conversation = conversation_of(&to_bob);
    let replies = wait_for_auto_replies(&app, &alice, conversation, 2).await;
    tokio::time::sleep(SETTLE).await;
    let replies_now = auto_replies(&app, &alice, conversation).await;
    assert_eq!(replies_now.len(), 2, "{replies:#?}");
    let mut pairs: Vec<(i64, i64)> = replies_now
        .iter()
        .map(|m| (m["sender_id"].as_i64().unwrap(), m["reply_to"]["id"].as_i64().unwrap()))
        .collect();
    pairs.sort_unstable();
    let mut expected = vec![(bob.id, id_of(&to_bob)), (alice.id, id_of(&to_alice))];
    expected.sort_unstable();
    assert_eq!(pairs, expected);
}
