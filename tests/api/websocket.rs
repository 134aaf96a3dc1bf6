use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::*;
use crate::on_both_databases;

on_both_databases!(
    a_direct_message_reaches_every_device_of_both_users,
    the_first_message_announces_the_new_conversation,
    a_read_receipt_reaches_the_other_side,
    since_replays_what_was_missed_then_goes_live,
    the_seam_between_replay_and_live_has_no_gap_and_no_duplicate,
    sync_returns_the_same_frames_as_the_socket,
    typing_reaches_the_other_member_only_and_is_rate_limited,
    a_device_that_connects_after_the_send_delivers_by_acking_its_hello,
);

/// A client that opens without `since` loads what it shows over HTTP; acking the hello's
/// `last_event_id` then delivers everything before it (the sender's ✓✓ for a recipient who
/// was offline), and later acks deliver what arrives live.
async fn a_device_that_connects_after_the_send_delivers_by_acking_its_hello(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    app.dm(&alice, &bob, "are you there?").await;
    let direct = app.dm(&alice, &bob, "call me when you're back").await;
    let group = app.create_group(&carol, "club", &[&alice, &bob]).await;
    let in_group = app.group_send(&carol, group, "meeting at 5").await;
    // Not bob's: his ack must not deliver it.
    app.dm(&alice, &carol, "bob is not in this one").await;
    let mut alice_socket = app.ws(&alice).await;
    let mut carol_socket = app.ws(&carol).await;

    let mut bob_socket = app.ws(&bob).await;
    let hello = bob_socket.hello["last_event_id"].as_i64().expect("last_event_id");
    bob_socket.send(json!({"type": "ack", "event_id": hello})).await;
    let delivered = |conversation: i64, user: i64, message: &Value| {
        json!({
            "type": "message_delivered",
            "conversation_id": conversation,
            "user_id": user,
            "last_delivered_message_id": message["id"],
        })
    };
    assert_eq!(
        alice_socket.next_of("message_delivered").await,
        delivered(conversation_of(&direct), bob.id, &direct),
        "alice: both of her messages, up to the newest"
    );
    assert_eq!(carol_socket.next_of("message_delivered").await, delivered(group, bob.id, &in_group));
    alice_socket.expect_none_of("message_delivered", QUIET).await;
    carol_socket.expect_none_of("message_delivered", Duration::from_millis(100)).await;

    // Acking it again, from this socket or another fresh one, moves nothing.
    bob_socket.send(json!({"type": "ack", "event_id": hello})).await;
    let mut bob_laptop = app.ws(&bob).await;
    bob_laptop.send(json!({"type": "ack", "event_id": hello})).await;
    alice_socket.expect_none_of("message_delivered", QUIET).await;

    // What arrives live is delivered when acked, not before.
    let later = app.dm(&alice, &bob, "still there?").await;
    let frame = bob_socket.next_of("new_message").await;
    alice_socket.expect_none_of("message_delivered", QUIET).await;
    bob_socket.send(json!({"type": "ack", "event_id": event_id_of(&frame)})).await;
    assert_eq!(
        alice_socket.next_of("message_delivered").await,
        delivered(conversation_of(&direct), bob.id, &later)
    );
}

async fn typing_reaches_the_other_member_only_and_is_rate_limited(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let conversation_id = app.dm(&alice, &bob, "hi").await["conversation_id"].as_i64().expect("conversation");
    let mut alice_socket = app.ws(&alice).await;
    let mut bob_socket = app.ws(&bob).await;
    let mut carol_socket = app.ws(&carol).await;

    alice_socket.send(json!({"type": "typing", "conversation_id": conversation_id})).await;
    // Presence notices may come first; they are not what this test is about.
    assert_eq!(
        bob_socket.next_of("typing").await,
        json!({"type": "typing", "conversation_id": conversation_id, "user_id": alice.id})
    );
    // Rate limited: a burst of typing frames is one notice.
    for _ in 0..5 {
        alice_socket.send(json!({"type": "typing", "conversation_id": conversation_id})).await;
    }
    bob_socket.expect_none_of("typing", Duration::from_millis(400)).await;
    // A non-member's typing reaches nobody and gets no error; nor does a made-up conversation.
    carol_socket.send(json!({"type": "typing", "conversation_id": conversation_id})).await;
    carol_socket.send(json!({"type": "typing", "conversation_id": 987_654})).await;
    bob_socket.expect_none_of("typing", Duration::from_millis(400)).await;
    carol_socket.send(json!({"type": "ping"})).await;
    assert_eq!(carol_socket.next_of("pong").await, json!({"type": "pong"}));
    // Never stored: the log has no typing events.
    let page = app.get(Some(&bob.token), "/api/sync?since=0").await;
    assert!(page.body["events"].as_array().expect("events").iter().all(|e| e["type"] != "typing"));
    // Alice's own devices do not hear her typing.
    alice_socket.expect_none_of("typing", Duration::from_millis(200)).await;
}

async fn a_direct_message_reaches_every_device_of_both_users(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut alice_phone = app.ws(&alice).await;
    let mut alice_laptop = app.ws(&alice).await;
    let mut bob_phone = app.ws(&bob).await;
    let mut bob_laptop = app.ws(&bob).await;

    let sent = app.dm(&alice, &bob, "hello bob").await;

    for bob_device in [&mut bob_phone, &mut bob_laptop] {
        let frame = bob_device.next_of("new_message").await;
        assert_eq!(frame["message"], sent);
        assert!(frame["event_id"].as_i64().is_some_and(|id| id > 0));
        assert_eq!(frame["conversation"]["id"], sent["conversation_id"]);
        assert_eq!(frame["conversation"]["other_user"]["id"], alice.id);
        assert_eq!(frame["conversation"]["unread_count"], 1);
    }
    for alice_device in [&mut alice_phone, &mut alice_laptop] {
        let frame = alice_device.next_of("message_sent").await;
        assert_eq!(frame["message"], sent);
    }
    // Nobody gets the other side's frame type.
    bob_phone.expect_silence(Duration::from_millis(200)).await;
    alice_phone.expect_silence(Duration::from_millis(200)).await;

    // A refresh shows the same message.
    let conversation_id = sent["conversation_id"].as_i64().expect("conversation id");
    let history = app.get(Some(&bob.token), &format!("/api/conversations/{conversation_id}/messages")).await;
    assert_eq!(history.body["messages"], json!([sent]));
    let list = app.get(Some(&bob.token), "/api/conversations").await;
    assert_eq!(list.body["conversations"][0]["last_message"], sent);
}

async fn the_first_message_announces_the_new_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut bob_socket = app.ws(&bob).await;
    let mut alice_socket = app.ws(&alice).await;

    let first = app.dm(&alice, &bob, "first").await;
    let created = bob_socket.next().await;
    assert_eq!(created["type"], "conversation_created", "{created}");
    assert_eq!(created["conversation"]["id"], first["conversation_id"]);
    assert_eq!(created["conversation"]["kind"], "direct");
    assert_eq!(created["conversation"]["other_user"]["id"], alice.id);
    let message = bob_socket.next().await;
    assert_eq!(message["type"], "new_message");
    assert!(message["event_id"].as_i64() > created["event_id"].as_i64());

    let created = alice_socket.next().await;
    assert_eq!(created["type"], "conversation_created");
    assert_eq!(created["conversation"]["other_user"]["id"], bob.id);

    // The second message in the same conversation announces nothing new.
    app.dm(&bob, &alice, "second").await;
    assert_eq!(bob_socket.next().await["type"], "message_sent");
    assert_eq!(alice_socket.next_of("new_message").await["message"]["message"], "second");
}

async fn a_read_receipt_reaches_the_other_side(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let sent = app.dm(&alice, &bob, "read me").await;
    let conversation_id = sent["conversation_id"].as_i64().expect("conversation id");
    let mut alice_socket = app.ws(&alice).await;

    let reply = app.mark_read_reply(&bob, conversation_id, None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let receipt = alice_socket.next_of("message_read").await;
    assert_eq!(receipt["conversation_id"], conversation_id);
    assert_eq!(receipt["reader_id"], bob.id);
    assert_eq!(receipt["last_read_message_id"], sent["id"]);
    assert!(receipt["read_at"].as_str().is_some_and(|at| at.ends_with('Z')));

    // Reading again changes nothing and sends nothing.
    app.mark_read_reply(&bob, conversation_id, None).await;
    alice_socket.expect_silence(Duration::from_millis(300)).await;
}

async fn since_replays_what_was_missed_then_goes_live(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let first = app.dm(&alice, &bob, "before").await;

    let bob_socket = app.ws(&bob).await;
    let seen = bob_socket.hello["last_event_id"].as_i64().expect("last_event_id");
    assert!(seen > 0, "hello reports the newest visible event: {}", bob_socket.hello);
    drop(bob_socket);

    // Bob is offline while three messages arrive.
    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(app.dm(&alice, &bob, &format!("missed {n}")).await);
    }
    let mut bob_socket = app.ws_since(&bob, seen).await;
    let mut last = seen;
    for expected in &missed {
        let frame = bob_socket.next().await;
        assert_eq!(frame["type"], "new_message", "{frame}");
        assert_eq!(frame["message"]["id"], expected["id"]);
        let event_id = frame["event_id"].as_i64().expect("event id");
        assert!(event_id > last, "event ids increase");
        last = event_id;
    }
    assert_eq!(bob_socket.hello["last_event_id"], last, "hello named the newest event");
    assert_ne!(first["id"], missed[0]["id"]);

    // Then live, with nothing repeated.
    let live = app.dm(&alice, &bob, "live").await;
    let frame = bob_socket.next().await;
    assert_eq!(frame["type"], "new_message");
    assert_eq!(frame["message"]["id"], live["id"]);
}

async fn the_seam_between_replay_and_live_has_no_gap_and_no_duplicate(backend: Backend) {
    const MESSAGES: usize = 60;
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.dm(&alice, &bob, "open the conversation").await;

    // Alice sends a burst while Bob connects with since=0 in the middle of it.
    let sender = {
        let app = app.clone();
        let (alice, bob) = (alice.clone(), bob.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..MESSAGES {
                ids.push(app.dm(&alice, &bob, &format!("burst {n}")).await["id"].as_i64().expect("id"));
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut bob_socket = app.ws_since(&bob, 0).await;
    let sent: HashSet<i64> = sender.await.expect("sender").into_iter().collect();

    let mut received = Vec::new();
    let mut last_event = 0;
    while !sent.iter().all(|id| received.contains(id)) {
        let frame = bob_socket.next().await;
        let event_id = frame["event_id"].as_i64().expect("stored events only");
        assert!(
            event_id > last_event,
            "strictly increasing event ids, no repeats: {event_id} after {last_event}"
        );
        last_event = event_id;
        if frame["type"] == "new_message" {
            received.push(frame["message"]["id"].as_i64().expect("message id"));
        }
    }
    let unique: HashSet<i64> = received.iter().copied().collect();
    assert_eq!(unique.len(), received.len(), "no duplicates");
    assert_eq!(received.len(), MESSAGES + 1, "every message exactly once");
    bob_socket.expect_silence(Duration::from_millis(300)).await;
}

async fn sync_returns_the_same_frames_as_the_socket(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut bob_socket = app.ws(&bob).await;
    let sent = app.dm(&alice, &bob, "one").await;
    app.mark_read_reply(&bob, conversation_of(&sent), None).await;
    app.dm(&alice, &bob, "two").await;

    let mut live = Vec::new();
    for _ in 0..4 {
        live.push(bob_socket.next().await);
    }
    let kinds: Vec<&str> = live.iter().map(|frame| frame["type"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["conversation_created", "new_message", "message_read", "new_message"]);

    let page = app.get(Some(&bob.token), "/api/sync?since=0&limit=2").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["has_more"], true);
    let events = page.body["events"].as_array().expect("events").clone();
    assert_eq!(events.len(), 2);
    let next = page.body["last_event_id"].as_i64().expect("cursor");
    assert_eq!(Some(next), events[1]["event_id"].as_i64());
    let rest = app.get(Some(&bob.token), &format!("/api/sync?since={next}")).await;
    assert_eq!(rest.body["has_more"], false);
    let all: Vec<Value> =
        events.into_iter().chain(rest.body["events"].as_array().expect("events").clone()).collect();
    assert_eq!(all.len(), 4);
    for (synced, frame) in all.iter().zip(&live) {
        assert_eq!(synced["type"], frame["type"]);
        assert_eq!(synced["event_id"], frame["event_id"]);
        assert_eq!(synced.get("message"), frame.get("message"));
    }
    // Alice sees her own messages as message_sent, and Bob's receipt.
    let alice_page = app.get(Some(&alice.token), "/api/sync?since=0").await;
    let alice_kinds: Vec<&str> = alice_page.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(alice_kinds, ["conversation_created", "message_sent", "message_read", "message_sent"]);
    // A stranger sees none of it.
    let carol = app.user("carol").await;
    let page = app.get(Some(&carol.token), "/api/sync?since=0").await;
    assert_eq!(page.body["events"], json!([]));
    assert_eq!(app.get(Some(&carol.token), "/api/sync?since=abc").await.status, 400);
}

// Protocol rules need no database variety; they run on SQLite.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_with_401_before_the_upgrade() {
    let app = spawn_app(Backend::Sqlite).await;
    for query in ["", "?token=", "?token=not.a.jwt", "?token=eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."] {
        let err = tokio_tungstenite::connect_async(format!("{}/ws{query}", app.ws_address))
            .await
            .expect_err("the upgrade is refused");
        match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status().as_u16(), 401, "query {query:?}");
            }
            other => panic!("expected an HTTP refusal, got {other:?}"),
        }
    }
    // The refusal carries the contract's body.
    let reply = app.get(None, "/ws?token=bad").await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.error_code(), "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_comes_first_and_the_token_may_come_as_a_header() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.user("alice").await;
    let socket = app.ws(&alice).await;
    assert_eq!(socket.hello["user_id"], alice.id);
    assert_eq!(socket.hello["instance_id"], "test-instance");
    assert_eq!(socket.hello["last_event_id"], 0);
    assert!(socket.hello["session_id"].is_number());

    let mut request = format!("{}/ws", app.ws_address).into_client_request().expect("request");
    request.headers_mut().insert("Authorization", format!("Bearer {}", alice.token).parse().expect("header"));
    let (stream, _) = tokio_tungstenite::connect_async(request).await.expect("header token accepted");
    let mut client = WsClient { stream, hello: Value::Null };
    let hello = client.next().await;
    assert_eq!(hello["type"], "hello");
    assert_ne!(hello["session_id"], socket.hello["session_id"], "each socket has its own session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gets_pong_and_a_malformed_frame_gets_bad_frame_without_closing() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.user("alice").await;
    let mut socket = app.ws(&alice).await;
    socket.send(json!({"type": "ping"})).await;
    assert_eq!(socket.next().await, json!({"type": "pong"}));
    for bad in
        ["not json", "{\"type\":\"dance\"}", "{\"no_type\":1}", "{\"type\":\"ack\",\"event_id\":\"x\"}", "[]"]
    {
        socket.send_raw(WsMessage::Text(bad.into())).await;
        let frame = socket.next().await;
        assert_eq!(frame["type"], "error", "{bad}");
        assert_eq!(frame["code"], "bad_frame", "{bad}");
        assert!(frame["message"].is_string());
    }
    // Typing and ack frames are accepted silently.
    socket.send(json!({"type": "ack", "event_id": 1})).await;
    socket.send(json!({"type": "typing", "conversation_id": 1})).await;
    socket.send(json!({"type": "ping"})).await;
    assert_eq!(socket.next().await, json!({"type": "pong"}), "still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_frame_closes_with_1003() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.user("alice").await;
    let mut socket = app.ws(&alice).await;
    socket.send_raw(WsMessage::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(socket.close_code().await, 1003);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_64_kib_closes_with_1009() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.user("alice").await;
    let mut socket = app.ws(&alice).await;
    let big = format!("{{\"type\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(70 * 1024));
    socket.send_raw(WsMessage::Text(big.into())).await;
    assert_eq!(socket.close_code().await, 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_after_the_client_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.websocket.ping_interval_seconds = 1;
        settings.websocket.client_timeout_seconds = 2;
    })
    .await;
    let alice = app.user("alice").await;
    let mut socket = app.ws(&alice).await;
    // Not reading means not answering the server's pings.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(socket.close_code().await, 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_with_4008_and_slows_nobody() {
    let app = spawn_app_with(Backend::Sqlite, |settings| {
        settings.websocket.max_frame_bytes = 16 * 1024;
        settings.websocket.outbound_queue_bytes = 64 * 1024;
    })
    .await;
    stop_reading_then_recover(&app, &app, &app).await;
}

/// Alice sends through `sender`; Bob's socket on `reader` never reads until it is closed
/// with 4008; he then reconnects with `since` through `recover` and must have every message
/// exactly once. Needs servers with a 64 KiB outbound budget.
pub async fn stop_reading_then_recover(sender: &TestApp, reader: &TestApp, recover: &TestApp) {
    // ~15 KB frames, ~9 MB in all: more than loopback's socket buffers can hide.
    const MESSAGES: usize = 600;
    let app = sender;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut alice_socket = app.ws(&alice).await;

    // Bob's socket has a tiny receive buffer and he never reads.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp =
        socket.connect(format!("127.0.0.1:{}", reader.port).parse().expect("addr")).await.expect("connect");
    let (bob_stream, _) = tokio_tungstenite::client_async(
        format!("{}/ws?token={}", reader.ws_address, bob.token),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .expect("upgrade");

    // Alice reads as she goes; Bob never does.
    let alice_reader = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            alice_socket.next_of("message_sent").await;
        }
    });
    let text = "\u{1F600}".repeat(1900);
    for _ in 0..MESSAGES {
        app.dm(&alice, &bob, &text).await;
    }
    // Alice's device got every confirmation: nothing waited for Bob.
    alice_reader.await.expect("alice received every message_sent");
    // Bob reads what reached him, then the 4008 close.
    let mut bob_stream = bob_stream;
    let mut received: Vec<i64> = Vec::new();
    let mut last_event = 0;
    let code = loop {
        let message = tokio::time::timeout(Duration::from_secs(5), bob_stream.next())
            .await
            .expect("frames, then a close")
            .expect("open")
            .expect("frame");
        match message {
            WsMessage::Text(text) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON");
                if let Some(event_id) = frame["event_id"].as_i64() {
                    assert!(event_id > last_event, "in order, no duplicates");
                    last_event = event_id;
                    if frame["type"] == "new_message" {
                        received.push(frame["message"]["id"].as_i64().expect("id"));
                    }
                }
            }
            WsMessage::Close(Some(close)) => break u16::from(close.code),
            _ => {}
        }
    };
    assert_eq!(code, 4008);
    let live = received.len();

    // He reconnects with `since` and gets the rest, exactly once.
    let recovering = Instant::now();
    let mut bob_again = recover.ws_since(&bob, last_event).await;
    while received.len() < MESSAGES {
        let frame = bob_again.next().await;
        if let Some(event_id) = frame["event_id"].as_i64() {
            assert!(event_id > last_event, "no duplicate across the reconnect");
            last_event = event_id;
        }
        if frame["type"] == "new_message" {
            received.push(frame["message"]["id"].as_i64().expect("id"));
        }
    }
    let unique: HashSet<i64> = received.iter().copied().collect();
    assert_eq!(unique.len(), MESSAGES, "every message exactly once");
    bob_again.expect_silence(Duration::from_millis(300)).await;
    eprintln!(
        "slow reader: sent {MESSAGES}, {live} live before 4008, {} by replay in {:?}, duplicated 0, lost 0",
        MESSAGES - live,
        recovering.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_and_sessions_are_gone_after_many_connect_and_disconnect_cycles() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    for _ in 0..25 {
        let a1 = app.ws(&alice).await;
        let a2 = app.ws(&alice).await;
        let mut b = app.ws(&bob).await;
        drop(a1);
        b.send(json!({"type": "ping"})).await;
        assert_eq!(b.next().await["type"], "pong");
        drop((a2, b));
    }
    let held = app.ws(&bob).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counts = app.live_counts().await;
        if counts == (1, 1) {
            break;
        }
        assert!(Instant::now() < deadline, "rooms and sessions leaked: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.live_counts().await != (0, 0) {
        assert!(Instant::now() < deadline, "the last room stays: {:?}", app.live_counts().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ws_ticket_opens_one_socket_once_and_keeps_the_token_out_of_the_url() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.user("alice").await;
    let reply = app.post(Some(&alice.token), "/api/ws-ticket", &json!({})).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["expires_in_seconds"], 30);
    let ticket = reply.body["ticket"].as_str().expect("ticket").to_owned();
    let socket = app.ws_at(&format!("/ws?ticket={ticket}")).await;
    assert_eq!(socket.hello["user_id"], alice.id);
    // Single use.
    let again = app.get(None, &format!("/ws?ticket={ticket}")).await;
    assert_eq!(again.status, 401);
    assert_eq!(again.error_code(), "invalid_ticket");
    assert_eq!(app.get(None, "/ws?ticket=made-up").await.status, 401);
    // Issuing one needs a token.
    assert_eq!(app.post(None, "/api/ws-ticket", &json!({})).await.status, 401);
}
