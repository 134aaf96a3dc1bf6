use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

fn ids(messages: &Value) -> Vec<i64> {
    messages.as_array().expect("messages").iter().map(id_of).collect()
}

/// Asserts a read reply's pointer and count.
fn assert_read_state(reply: &Reply, conversation_id: i64, last_read: i64, unread: i64) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body,
        json!({
            "conversation_id": conversation_id,
            "last_read_message_id": last_read,
            "unread_count": unread,
            "unread_mentions": 0,
        })
    );
}

async fn the_list_shows_the_most_recent_activity_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let with_bob = conversation_of(&app.dm(&alice, &bob, "to bob").await);
    let with_carol = conversation_of(&app.dm(&carol, &alice, "from carol").await);
    let with_dave = conversation_of(&app.dm(&alice, &dave, "to dave").await);

    let order = |conversations: Vec<Value>| conversations.iter().map(id_of).collect::<Vec<_>>();
    assert_eq!(order(app.conversations(&alice).await), [with_dave, with_carol, with_bob]);

    // A new message moves its conversation to the top, whoever sent it.
    app.dm(&bob, &alice, "bob again").await;
    assert_eq!(order(app.conversations(&alice).await), [with_bob, with_dave, with_carol]);
    app.dm(&alice, &carol, "to carol").await;
    assert_eq!(order(app.conversations(&alice).await), [with_carol, with_bob, with_dave]);

    // Each member sees only their own conversations.
    assert_eq!(order(app.conversations(&bob).await), [with_bob]);
    assert_eq!(order(app.conversations(&dave).await), [with_dave]);
}

async fn each_listed_conversation_has_its_last_message_and_the_caller_s_unread_count(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    for text in ["one", "two", "three"] {
        app.dm(&alice, &bob, text).await;
    }
    let last = app.dm(&bob, &alice, "reply").await;

    let bob_user = app.get(Some(&bob.token), "/api/users/me").await.body;
    let alice_user = app.get(Some(&alice.token), "/api/users/me").await.body;

    let alice_list = app.conversations(&alice).await;
    assert_eq!(alice_list.len(), 1);
    let seen_by_alice = &alice_list[0];
    assert_eq!(seen_by_alice["id"], last["conversation_id"]);
    assert_eq!(seen_by_alice["kind"], "direct");
    assert_eq!(seen_by_alice["name"], Value::Null);
    assert_eq!(seen_by_alice["other_user"], bob_user);
    assert_eq!(seen_by_alice["members_count"], 2);
    assert_contract_time(&seen_by_alice["created_at"]);
    assert_eq!(seen_by_alice["last_message"], last);
    assert_eq!(seen_by_alice["unread_count"], 1, "bob's reply; her own do not count");
    assert!(seen_by_alice.get("last_read_message_id").is_some());
    assert_eq!(seen_by_alice["last_read_message_id"], Value::Null);

    let bob_list = app.conversations(&bob).await;
    assert_eq!(bob_list.len(), 1);
    let seen_by_bob = &bob_list[0];
    assert_eq!(seen_by_bob["id"], seen_by_alice["id"]);
    assert_eq!(seen_by_bob["other_user"], alice_user);
    assert_eq!(seen_by_bob["members_count"], 2);
    assert_eq!(seen_by_bob["last_message"], last);
    assert_eq!(seen_by_bob["unread_count"], 3);
}

async fn the_list_limit_must_be_1_to_200(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    app.dm(&alice, &bob, "first").await;
    let newest = app.dm(&alice, &carol, "second").await;

    let reply = app.get(Some(&alice.token), "/api/conversations?limit=1").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let conversations = reply.body["conversations"].as_array().expect("list");
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0]["id"], newest["conversation_id"]);

    let reply = app.get(Some(&alice.token), "/api/conversations?limit=200").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["conversations"].as_array().map(Vec::len), Some(2));

    for limit in ["0", "201", "-1", "many", "1.5", "99999999999999999999999"] {
        let reply = app.get(Some(&alice.token), &format!("/api/conversations?limit={limit}")).await;
        assert_eq!(reply.status, 400, "limit={limit}: {}", reply.body);
        reply.error_code();
        assert_eq!(reply.error_field(), Some("limit"), "limit={limit}");
    }
}

async fn a_conversation_is_fetched_by_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "hello").await;
    let id = conversation_of(&message);

    for user in [&alice, &bob] {
        let listed = app.conversations(user).await;
        assert_eq!(app.conversation(user, id).await, listed[0]);
    }

    let reply = app.get(Some(&alice.token), &format!("/api/conversations/{}", id + 1000)).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.error_code(), "not_found");
    for bad in ["abc", "0", "-1", "99999999999999999999999"] {
        let reply = app.get(Some(&alice.token), &format!("/api/conversations/{bad}")).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        reply.error_code();
    }
}

async fn the_direct_conversation_is_404_until_a_message_then_the_same_both_ways(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let path_to = |user: &TestUser| format!("/api/conversations/direct/{}", user.id);

    for (caller, other) in [(&alice, &bob), (&bob, &alice)] {
        let reply = app.get(Some(&caller.token), &path_to(other)).await;
        assert_eq!(reply.status, 404, "{}", reply.body);
        assert_eq!(reply.error_code(), "not_found");
    }

    let message = app.dm(&bob, &alice, "first").await;
    let from_alice = app.get(Some(&alice.token), &path_to(&bob)).await;
    let from_bob = app.get(Some(&bob.token), &path_to(&alice)).await;
    assert_eq!(from_alice.status, 200, "{}", from_alice.body);
    assert_eq!(from_bob.status, 200, "{}", from_bob.body);
    assert_eq!(from_alice.body["id"], message["conversation_id"]);
    assert_eq!(from_bob.body["id"], message["conversation_id"]);
    assert_eq!(from_alice.body["other_user"]["id"], bob.id);
    assert_eq!(from_bob.body["other_user"]["id"], alice.id);
    assert_eq!(from_alice.body["unread_count"], 1);
    assert_eq!(from_bob.body["unread_count"], 0);
    assert_eq!(from_alice.body, app.conversation(&alice, conversation_of(&message)).await);

    // Nobody has a direct conversation with themselves or with a stranger.
    for path in [path_to(&alice), "/api/conversations/direct/987654321".to_owned()] {
        let reply = app.get(Some(&alice.token), &path).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
    }
    let reply = app.get(Some(&alice.token), "/api/conversations/direct/abc").await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    reply.error_code();
}

async fn history_pages_back_and_forward_over_120_messages(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    // The first message creates the conversation; the rest go ten at a time.
    let mut sent = vec![app.dm(&alice, &bob, "message 0").await];
    for batch in (1..120).collect::<Vec<_>>().chunks(10) {
        let replies = join_all(batch.iter().map(|n| {
            let (from, to) = if n % 3 == 0 { (&bob, &alice) } else { (&alice, &bob) };
            let (app, text) = (&app, format!("message {n}"));
            async move { app.dm(from, to, &text).await }
        }))
        .await;
        sent.extend(replies);
    }
    sent.sort_by_key(id_of);
    let all: Vec<i64> = sent.iter().map(id_of).collect();
    assert_eq!(all.len(), 120);
    assert!(all.windows(2).all(|pair| pair[0] < pair[1]), "ids are distinct");
    let conversation_id = conversation_of(&sent[0]);
    let page = |query: String| {
        let (app, alice) = (&app, &alice);
        async move { app.history(alice, conversation_id, &query).await }
    };

    // The latest page: the newest 50, ascending.
    let latest = page("".to_owned()).await;
    assert_eq!(ids(&latest["messages"]), all[70..]);
    assert_eq!(latest["has_more"], true);
    assert_eq!(latest["messages"][49], sent[119], "whole messages, as sent");
    assert_eq!(latest["messages"][0], sent[70]);

    // Paging back reaches the first message.
    let older = page(format!("before_id={}", all[70])).await;
    assert_eq!(ids(&older["messages"]), all[20..70]);
    assert_eq!(older["has_more"], true);
    let oldest = page(format!("before_id={}", all[20])).await;
    assert_eq!(ids(&oldest["messages"]), all[..20]);
    assert_eq!(oldest["has_more"], false);
    // Exactly a page left is not "more".
    let exact = page(format!("before_id={}", all[50])).await;
    assert_eq!(ids(&exact["messages"]), all[..50]);
    assert_eq!(exact["has_more"], false);
    let nothing = page(format!("before_id={}", all[0])).await;
    assert_eq!(nothing["messages"], json!([]));
    assert_eq!(nothing["has_more"], false);

    // after_id pages forward, oldest first.
    let forward = page(format!("after_id={}", all[0])).await;
    assert_eq!(ids(&forward["messages"]), all[1..51]);
    assert_eq!(forward["has_more"], true);
    let forward = page(format!("after_id={}&limit=30", all[50])).await;
    assert_eq!(ids(&forward["messages"]), all[51..81]);
    assert_eq!(forward["has_more"], true);
    let tail = page(format!("after_id={}", all[100])).await;
    assert_eq!(ids(&tail["messages"]), all[101..]);
    assert_eq!(tail["has_more"], false);
    let exact = page(format!("after_id={}", all[69])).await;
    assert_eq!(ids(&exact["messages"]), all[70..]);
    assert_eq!(exact["has_more"], false);
    let caught_up = page(format!("after_id={}", all[119])).await;
    assert_eq!(caught_up["messages"], json!([]));
    assert_eq!(caught_up["has_more"], false);

    // The limit's bounds.
    let big = page("limit=100".to_owned()).await;
    assert_eq!(ids(&big["messages"]), all[20..]);
    assert_eq!(big["has_more"], true);
    let one = page("limit=1".to_owned()).await;
    assert_eq!(ids(&one["messages"]), all[119..]);
    assert_eq!(one["has_more"], true);

    // Both members read the same history.
    assert_eq!(app.history(&bob, conversation_id, "").await, latest);
}

/// `before_id` with `after_id`: the oldest page strictly between them, ascending, so a client
/// can fill a gap in what it has.
async fn before_and_after_together_give_the_oldest_page_between(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut all = Vec::new();
    let mut conversation_id = 0;
    for n in 0..10 {
        let message = app.dm(&alice, &bob, &format!("m{n}")).await;
        conversation_id = conversation_of(&message);
        all.push(id_of(&message));
    }
    let between = |query: String| {
        let (app, bob) = (&app, &bob);
        async move { app.history(bob, conversation_id, &query).await }
    };
    let ids =
        |page: &Value| page["messages"].as_array().expect("messages").iter().map(id_of).collect::<Vec<_>>();
    let first = between(format!("after_id={}&before_id={}&limit=3", all[2], all[8])).await;
    assert_eq!(ids(&first), all[3..6]);
    assert_eq!(first["has_more"], true);
    let rest = between(format!("after_id={}&before_id={}&limit=3", all[5], all[8])).await;
    assert_eq!(ids(&rest), all[6..8]);
    assert_eq!(rest["has_more"], false);
    let empty = between(format!("after_id={}&before_id={}", all[8], all[2])).await;
    assert_eq!(ids(&empty), Vec::<i64>::new());
    assert_eq!(empty["has_more"], false);
}

async fn bad_history_queries_are_400_naming_the_parameter(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let message = app.dm(&alice, &bob, "hi").await;
    let conversation_id = conversation_of(&message);
    let id = id_of(&message);
    for (query, field) in [
        ("before_id=temp_client_123".to_owned(), Some("before_id")),
        ("after_id=temp_client_123".to_owned(), Some("after_id")),
        ("before_id=0".to_owned(), Some("before_id")),
        ("before_id=-5".to_owned(), Some("before_id")),
        ("after_id=1.5".to_owned(), Some("after_id")),
        ("limit=0".to_owned(), Some("limit")),
        ("limit=101".to_owned(), Some("limit")),
        ("limit=-1".to_owned(), Some("limit")),
        (format!("before_id={id}&after_id=0"), Some("after_id")),
    ] {
        let reply = app
            .get(Some(&alice.token), &format!("/api/conversations/{conversation_id}/messages?{query}"))
            .await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.body);
        reply.error_code();
        match field {
            Some(field) => assert_eq!(reply.error_field(), Some(field), "{query}"),
            None => assert!(
                matches!(reply.error_field(), Some("before_id" | "after_id")),
                "{query}: {}",
                reply.body
            ),
        }
    }
    let reply = app.get(Some(&alice.token), "/api/conversations/abc/messages").await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    reply.error_code();
}

async fn reading_with_no_body_reads_up_to_the_latest_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut last = Value::Null;
    for text in ["one", "two", "three"] {
        last = app.dm(&alice, &bob, text).await;
    }
    let conversation_id = conversation_of(&last);
    assert_eq!(app.conversations(&bob).await[0]["unread_count"], 3);

    let reply = app.mark_read_without_body(&bob, conversation_id).await;
    assert_read_state(&reply, conversation_id, id_of(&last), 0);

    let seen = &app.conversations(&bob).await[0];
    assert_eq!(seen["unread_count"], 0);
    assert_eq!(seen["last_read_message_id"], id_of(&last));
    // Alice's own pointer did not move.
    let hers = app.conversation(&alice, conversation_id).await;
    assert_eq!(hers["last_read_message_id"], Value::Null);
    assert_eq!(hers["unread_count"], 0);

    // An empty JSON object is the same as no body.
    let newer = app.dm(&alice, &bob, "four").await;
    assert_eq!(app.conversation(&bob, conversation_id).await["unread_count"], 1);
    let reply = app.mark_read_reply(&bob, conversation_id, None).await;
    assert_read_state(&reply, conversation_id, id_of(&newer), 0);
}

async fn reading_up_to_a_message_never_moves_the_pointer_backwards(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let m1 = id_of(&app.dm(&alice, &bob, "one").await);
    let m2 = id_of(&app.dm(&alice, &bob, "two").await);
    let last = app.dm(&alice, &bob, "three").await;
    let m3 = id_of(&last);
    let conversation_id = conversation_of(&last);

    assert_read_state(&app.mark_read_reply(&bob, conversation_id, Some(m2)).await, conversation_id, m2, 1);
    let seen = app.conversation(&bob, conversation_id).await;
    assert_eq!(seen["last_read_message_id"], m2);
    assert_eq!(seen["unread_count"], 1);

    // An older message keeps the newer pointer.
    assert_read_state(&app.mark_read_reply(&bob, conversation_id, Some(m1)).await, conversation_id, m2, 1);
    assert_read_state(&app.mark_read_reply(&bob, conversation_id, Some(m2)).await, conversation_id, m2, 1);
    assert_read_state(&app.mark_read_without_body(&bob, conversation_id).await, conversation_id, m3, 0);
    assert_read_state(&app.mark_read_reply(&bob, conversation_id, Some(m1)).await, conversation_id, m3, 0);
    let seen = app.conversation(&bob, conversation_id).await;
    assert_eq!(seen["last_read_message_id"], m3);
    assert_eq!(seen["unread_count"], 0);
}

async fn reading_up_to_a_message_of_another_conversation_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let with_alice = app.dm(&alice, &bob, "from alice").await;
    let with_carol = app.dm(&carol, &bob, "from carol").await;
    let conversation_id = conversation_of(&with_alice);

    // Bob is in both conversations, but the message must belong to the one named.
    for message_id in [id_of(&with_carol), id_of(&with_carol) + 1000] {
        let reply = app.mark_read_reply(&bob, conversation_id, Some(message_id)).await;
        assert_eq!(reply.status, 404, "{message_id}: {}", reply.body);
        assert_eq!(reply.error_code(), "not_found");
    }
    let seen = app.conversation(&bob, conversation_id).await;
    assert_eq!(seen["last_read_message_id"], Value::Null);
    assert_eq!(seen["unread_count"], 1);

    // A message id that is not a positive integer is a bad field.
    for body in [json!({"message_id": "x"}), json!({"message_id": 0})] {
        let reply =
            app.post(Some(&bob.token), &format!("/api/conversations/{conversation_id}/read"), &body).await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.body);
        assert_eq!(reply.error_field(), Some("message_id"));
    }
}

async fn patching_a_message_as_read_moves_the_pointer_up_to_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let m1 = id_of(&app.dm(&alice, &bob, "one").await);
    let m2 = id_of(&app.dm(&alice, &bob, "two").await);
    let last = app.dm(&alice, &bob, "three").await;
    let conversation_id = conversation_of(&last);
    let patch = |id: String| {
        let token = bob.token.clone();
        let app = &app;
        async move { app.send_empty(Method::PATCH, Some(&token), &format!("/api/messages/{id}/read")).await }
    };

    assert_read_state(&patch(m2.to_string()).await, conversation_id, m2, 1);
    assert_read_state(&patch(m1.to_string()).await, conversation_id, m2, 1);
    assert_eq!(app.conversation(&bob, conversation_id).await["last_read_message_id"], m2);
    assert_read_state(&patch(id_of(&last).to_string()).await, conversation_id, id_of(&last), 0);

    let reply = patch((id_of(&last) + 1000).to_string()).await;
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.error_code(), "not_found");
    for bad in ["abc", "0", "-1"] {
        let reply = patch(bad.to_owned()).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        reply.error_code();
    }
}

async fn the_listed_unread_count_drops_after_reading_and_rises_with_new_messages(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let mut from_alice = Vec::new();
    for n in 0..4 {
        from_alice.push(app.dm(&alice, &bob, &format!("a{n}")).await);
    }
    let from_carol = app.dm(&carol, &bob, "c0").await;
    let unread = |conversations: &[Value]| {
        conversations
            .iter()
            .map(|c| (c["id"].as_i64().expect("id"), c["unread_count"].as_i64().expect("count")))
            .collect::<Vec<_>>()
    };
    let with_alice = conversation_of(&from_alice[0]);
    let with_carol = conversation_of(&from_carol);
    assert_eq!(unread(&app.conversations(&bob).await), [(with_carol, 1), (with_alice, 4)]);

    app.mark_read_reply(&bob, with_alice, Some(id_of(&from_alice[1]))).await;
    assert_eq!(unread(&app.conversations(&bob).await), [(with_carol, 1), (with_alice, 2)]);
    app.mark_read_without_body(&bob, with_carol).await;
    assert_eq!(unread(&app.conversations(&bob).await), [(with_carol, 0), (with_alice, 2)]);

    // Bob's own message neither counts nor reads for him; Alice's next one counts.
    app.dm(&bob, &alice, "b0").await;
    assert_eq!(unread(&app.conversations(&bob).await), [(with_alice, 2), (with_carol, 0)]);
    app.dm(&alice, &bob, "a4").await;
    assert_eq!(unread(&app.conversations(&bob).await), [(with_alice, 3), (with_carol, 0)]);
    assert_eq!(unread(&app.conversations(&alice).await), [(with_alice, 1)]);
}

async fn the_health_endpoints_answer_200(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/health/live", "/health/ready"] {
        let reply = app.get(None, path).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let head = app.client.head(app.url(path)).send().await.expect("HEAD");
        assert_eq!(head.status(), 200, "HEAD {path}");
    }
}

on_both_databases!(
    the_list_shows_the_most_recent_activity_first,
    each_listed_conversation_has_its_last_message_and_the_caller_s_unread_count,
    the_list_limit_must_be_1_to_200,
    a_conversation_is_fetched_by_id,
    the_direct_conversation_is_404_until_a_message_then_the_same_both_ways,
    history_pages_back_and_forward_over_120_messages,
    bad_history_queries_are_400_naming_the_parameter,
    before_and_after_together_give_the_oldest_page_between,
    reading_with_no_body_reads_up_to_the_latest_message,
    reading_up_to_a_message_never_moves_the_pointer_backwards,
    reading_up_to_a_message_of_another_conversation_is_404,
    patching_a_message_as_read_moves_the_pointer_up_to_it,
    the_listed_unread_count_drops_after_reading_and_rises_with_new_messages,
    the_health_endpoints_answer_200,
);
