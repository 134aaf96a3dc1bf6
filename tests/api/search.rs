//! Message search: matching, ranking, paging, its scope, deleted and edited messages, and
//! query syntax that must never break it.

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

/// The ids found for `q` (first page, up to 100), asserting 200 and a consistent page.
async fn found(app: &TestApp, user: &TestUser, q: &str) -> Vec<i64> {
    let reply = app.search_messages(user, &[("q", q), ("page_size", "100")]).await;
    assert_eq!(reply.status, 200, "{q:?}: {}", reply.body);
    let messages = reply.body["messages"].as_array().expect("messages");
    assert_eq!(reply.body["total"], messages.len(), "{q:?}: {}", reply.body);
    messages.iter().map(id_of).collect()
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

async fn search_matches_stemmed_words_all_of_them_and_a_prefix(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let run = id_of(&app.dm(&alice, &bob, "We run every morning").await);
    let running = id_of(&app.dm(&bob, &alice, "She was running late").await);
    let hello_world = id_of(&app.dm(&alice, &bob, "hello world").await);
    let hello_there = id_of(&app.dm(&alice, &bob, "Hello there").await);
    let helpful = id_of(&app.dm(&bob, &alice, "some helpful tips").await);

    assert_eq!(sorted(found(&app, &alice, "running").await), [run, running], "running finds run");
    assert_eq!(sorted(found(&app, &bob, "runs").await), [run, running], "runs finds both");
    assert_eq!(sorted(found(&app, &alice, "hello").await), [hello_world, hello_there]);
    assert_eq!(sorted(found(&app, &alice, "HELLO").await), [hello_world, hello_there], "any case");
    assert_eq!(found(&app, &alice, "hello world").await, [hello_world], "every word must match");
    assert_eq!(found(&app, &alice, "world hello").await, [hello_world], "in any order");
    assert_eq!(found(&app, &alice, "morning run").await, [run]);
    assert_eq!(found(&app, &alice, "late morning").await, Vec::<i64>::new(), "not in one message");
    assert_eq!(sorted(found(&app, &alice, "hel").await), [hello_world, hello_there, helpful], "prefix");
    assert_eq!(found(&app, &alice, "hello wor").await, [hello_world], "the last word is a prefix");
    assert_eq!(found(&app, &alice, "tips hel").await, [helpful]);
    assert_eq!(found(&app, &alice, "goodbye").await, Vec::<i64>::new());

    // The hits are whole messages, as history shows them.
    let reply = app.search_messages(&alice, &[("q", "world")]).await;
    assert_eq!(reply.body["page"], 1);
    assert_eq!(reply.body["page_size"], 20);
    let history = app.history_message(&alice, conversation_of(&reply.body["messages"][0]), hello_world).await;
    assert_eq!(reply.body["messages"], json!([history]));
}

async fn search_ranks_by_relevance_then_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let strong = id_of(&app.dm(&alice, &bob, "kiwi kiwi kiwi, I really love kiwi").await);
    let weak =
        id_of(&app.dm(&bob, &alice, "I ate one kiwi yesterday with some bread and cheese and tea").await);
    assert_eq!(found(&app, &alice, "kiwi").await, [strong, weak], "more relevant first, though older");

    let mut equal = Vec::new();
    for _ in 0..3 {
        equal.push(id_of(&app.dm(&alice, &bob, "apple pie").await));
    }
    equal.reverse();
    assert_eq!(found(&app, &bob, "apple pie").await, equal, "equals: newest first");
}

async fn search_pages_through_the_hits(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut ids = Vec::new();
    for n in 0..25 {
        ids.push(id_of(&app.dm(&alice, &bob, &format!("weekly report number {n}")).await));
        app.dm(&alice, &bob, &format!("unrelated chatter {n}")).await;
    }
    ids.reverse();

    let page = |params: Vec<(&'static str, &'static str)>| {
        let (app, bob) = (&app, &bob);
        async move {
            let mut all = vec![("q", "report")];
            all.extend(params);
            let reply = app.search_messages(bob, &all).await;
            assert_eq!(reply.status, 200, "{all:?}: {}", reply.body);
            assert_eq!(reply.body["total"], 25, "{all:?}");
            (reply.body["page"].clone(), reply.body["page_size"].clone(), reply.body["messages"].clone())
        }
    };
    let ids_of =
        |messages: &Value| messages.as_array().expect("messages").iter().map(id_of).collect::<Vec<_>>();

    let (number, size, messages) = page(vec![]).await;
    assert_eq!((number, size), (json!(1), json!(20)), "defaults");
    assert_eq!(ids_of(&messages), ids[..20]);
    let (number, _, messages) = page(vec![("page", "2")]).await;
    assert_eq!(number, 2);
    assert_eq!(ids_of(&messages), ids[20..]);
    let (_, size, messages) = page(vec![("page", "3"), ("page_size", "10")]).await;
    assert_eq!(size, 10);
    assert_eq!(ids_of(&messages), ids[20..]);
    let (_, _, messages) = page(vec![("page", "2"), ("page_size", "10")]).await;
    assert_eq!(ids_of(&messages), ids[10..20]);
    let (_, _, messages) = page(vec![("page", "4"), ("page_size", "10")]).await;
    assert_eq!(messages, json!([]), "past the end");
}

async fn search_covers_only_the_callers_current_conversations(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let dave = app.user("dave").await;
    let ours = app.dm(&alice, &bob, "pineapple for alice and bob").await;
    let theirs = app.dm(&carol, &dave, "pineapple for carol and dave").await;
    let group_id = app.create_group(&alice, "the group", &[&carol]).await;
    let in_group = app.group_send(&alice, group_id, "pineapple for the group").await;

    assert_eq!(sorted(found(&app, &alice, "pineapple").await), [id_of(&ours), id_of(&in_group)]);
    assert_eq!(found(&app, &bob, "pineapple").await, [id_of(&ours)]);
    assert_eq!(sorted(found(&app, &carol, "pineapple").await), [id_of(&theirs), id_of(&in_group)]);

    // Filtered to one conversation.
    let only = |conversation_id: i64| conversation_id.to_string();
    let filter = only(conversation_of(&ours));
    let reply = app.search_messages(&alice, &[("q", "pineapple"), ("conversation_id", &filter)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["total"], 1);
    assert_eq!(reply.body["messages"][0]["id"], ours["id"]);
    let reply =
        app.search_messages(&alice, &[("q", "pineapple"), ("conversation_id", &only(group_id))]).await;
    assert_eq!(reply.body["messages"][0]["id"], in_group["id"]);
    for hidden in [conversation_of(&theirs), group_id + 1000] {
        let reply =
            app.search_messages(&alice, &[("q", "pineapple"), ("conversation_id", &only(hidden))]).await;
        assert_error(&reply, 404, "not_found", "an invisible conversation");
    }

    // A group carol left no longer shows.
    app.remove_member(&carol, group_id, carol.id).await;
    app.group_send(&alice, group_id, "pineapple again after carol left").await;
    assert_eq!(found(&app, &carol, "pineapple").await, [id_of(&theirs)]);
    let reply =
        app.search_messages(&carol, &[("q", "pineapple"), ("conversation_id", &only(group_id))]).await;
    assert_error(&reply, 404, "not_found", "a group carol left");
    assert_eq!(found(&app, &alice, "pineapple").await.len(), 3);
}

async fn search_skips_deleted_messages_and_follows_edits(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let smoothie = app.dm(&alice, &bob, "mango smoothie").await;
    let salsa = app.dm(&alice, &bob, "mango salsa").await;
    assert_eq!(found(&app, &bob, "mango").await, [id_of(&salsa), id_of(&smoothie)]);

    assert_eq!(app.delete_message(&alice, id_of(&salsa)).await.status, 204);
    assert_eq!(found(&app, &bob, "mango").await, [id_of(&smoothie)]);
    assert_eq!(found(&app, &bob, "salsa").await, Vec::<i64>::new());

    let reply = app.edit_message(&alice, id_of(&smoothie), "papaya smoothie").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(found(&app, &bob, "mango").await, Vec::<i64>::new(), "the old word is gone");
    let hits = app.search_messages(&bob, &[("q", "papaya")]).await;
    assert_eq!(hits.body["messages"], json!([reply.body]), "the edited message");
    assert_eq!(found(&app, &alice, "smoothie").await, [id_of(&smoothie)]);

    // A deleted message that had been edited stays out too.
    assert_eq!(app.delete_message(&alice, id_of(&smoothie)).await.status, 204);
    assert_eq!(found(&app, &bob, "papaya").await, Vec::<i64>::new());
}

async fn search_refuses_bad_parameters_with_400(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    app.dm(&alice, &bob, "hello world").await;
    let long = "a".repeat(201);
    let longest = "b".repeat(200);
    let bad: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "q"),
        (vec![("q", "")], "q"),
        (vec![("q", "a")], "q"),
        (vec![("q", "  a   ")], "q"),
        (vec![("q", "é")], "q"),
        (vec![("q", &long)], "q"),
        (vec![("q", "hello"), ("page", "0")], "page"),
        (vec![("q", "hello"), ("page", "-1")], "page"),
        (vec![("q", "hello"), ("page", "abc")], "page"),
        (vec![("q", "hello"), ("page_size", "0")], "page_size"),
        (vec![("q", "hello"), ("page_size", "101")], "page_size"),
        (vec![("q", "hello"), ("page_size", "ten")], "page_size"),
        (vec![("q", "hello"), ("conversation_id", "abc")], "conversation_id"),
        (vec![("q", "hello"), ("conversation_id", "0")], "conversation_id"),
    ];
    for (params, field) in bad {
        let reply = app.search_messages(&alice, &params).await;
        assert_error(&reply, 400, "bad_query", &format!("{params:?}"));
        assert_eq!(reply.error_field(), Some(field), "{params:?}: {}", reply.body);
    }
    for params in [
        vec![("q", longest.as_str())],
        vec![("q", "he")],
        vec![("q", "  hello  ")],
        vec![("q", "hello"), ("page_size", "100")],
        vec![("q", "hello"), ("page_size", "1"), ("page", "1")],
        vec![("q", "hello"), ("page", "9999"), ("page_size", "100")],
    ] {
        let reply = app.search_messages(&alice, &params).await;
        assert_eq!(reply.status, 200, "{params:?}: {}", reply.body);
    }
    assert_eq!(found(&app, &alice, "  hello  ").await.len(), 1, "q is trimmed");
    let reply = app.get(None, "/api/messages/search?q=hello").await;
    assert_eq!(reply.status, 401, "needs a token");
}

async fn query_syntax_never_breaks_search(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let hello = id_of(&app.dm(&alice, &bob, "hello world").await);
    app.dm(&alice, &bob, "C++ and C# are languages; 100% sure").await;

    // Only words count: these all find the hello message.
    for q in [
        "\"hello",
        "hello\"",
        "\"hello\"",
        "hello*",
        "(hello)",
        "^hello",
        "hello:",
        "'hello'",
        "[hello]",
        "hello:*",
    ] {
        assert_eq!(found(&app, &alice, q).await, [hello], "{q:?}");
    }
    // None of these may fail.
    for q in [
        "\"\"",
        "''",
        "**",
        "()",
        "::",
        "^^",
        "--",
        "&&",
        "||",
        "!!",
        "\\\\",
        "%%",
        "__",
        "{}",
        "hello OR world",
        "OR hello",
        "hello OR",
        "NOT hello",
        "hello AND NOT world",
        "AND OR",
        "NEAR(hello world)",
        "NEAR(hello world, 2)",
        "hello NEAR world",
        "hello NEAR/2 world",
        "message:hello",
        "body:hello",
        "{body}: hello",
        "-hello",
        "+hello",
        "hello -world",
        "hello & world",
        "hello | world",
        "!hello",
        "hello <-> world",
        "hello <2> world",
        ":* hello",
        "hello'; DROP TABLE messages; --",
        "%hello%",
        "hello_",
        "hello\\",
        "\\hello",
        "a'b\"c",
        "C++",
        "C#",
        "100%",
        "café au lait",
        "日本語 テキスト",
        "hello\u{0}world",
        "\u{0}\u{0}",
        "the and of",
        "* *",
        "\" OR \"",
        "hello*world*",
        "(((((hello",
        "hello)))))",
        "x² ½",
        "ǅemal ǈ",
        "Ⅻ century",
        "٣٤٥ ١٢",
        "ｈｅｌｌｏ",
        "İstanbul",
        "e\u{301}te",
        "ß straße",
        "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    ] {
        let reply = app.search_messages(&alice, &[("q", q)]).await;
        assert_eq!(reply.status, 200, "{q:?}: {}", reply.body);
        assert!(reply.body["messages"].is_array(), "{q:?}: {}", reply.body);
        assert!(reply.body["total"].is_i64(), "{q:?}: {}", reply.body);
    }
}

on_both_databases!(
    search_matches_stemmed_words_all_of_them_and_a_prefix,
    search_ranks_by_relevance_then_newest_first,
    search_pages_through_the_hits,
    search_covers_only_the_callers_current_conversations,
    search_skips_deleted_messages_and_follows_edits,
    search_refuses_bad_parameters_with_400,
    query_syntax_never_breaks_search,
);
