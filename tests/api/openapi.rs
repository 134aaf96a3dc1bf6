//! The OpenAPI document is generated from the handlers; it must describe the contract.

use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app};

/// Every route of the contract, as (method, path template).
const CONTRACT: &[(&str, &str)] = &[
    ("post", "/api/auth/register"),
    ("post", "/api/auth/login"),
    ("get", "/api/users/me"),
    ("get", "/api/users/{id}"),
    ("get", "/api/users/search"),
    ("get", "/api/users/{id}/presence"),
    ("get", "/api/conversations"),
    ("get", "/api/conversations/{id}"),
    ("get", "/api/conversations/direct/{other_user_id}"),
    ("post", "/api/messages"),
    ("post", "/api/groups/{id}/messages"),
    ("get", "/api/conversations/{id}/messages"),
    ("patch", "/api/messages/{id}"),
    ("delete", "/api/messages/{id}"),
    ("post", "/api/conversations/{id}/read"),
    ("patch", "/api/messages/{id}/read"),
    ("get", "/api/messages/search"),
    ("post", "/api/groups"),
    ("get", "/api/groups/{id}/members"),
    ("post", "/api/groups/{id}/members"),
    ("delete", "/api/groups/{id}/members/{user_id}"),
    ("post", "/api/blocks"),
    ("delete", "/api/blocks/{user_id}"),
    ("get", "/api/blocks"),
    ("post", "/api/contacts/requests"),
    ("post", "/api/contacts/requests/{id}/accept"),
    ("get", "/api/contacts"),
    ("get", "/api/contacts/requests"),
    ("post", "/api/messages/with-attachment"),
    ("get", "/api/attachments/{id}/download"),
    ("get", "/api/sync"),
    ("get", "/ws"),
    ("post", "/api/ws-ticket"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
];

fn properties(document: &Value, schema: &str) -> Vec<String> {
    let mut names: Vec<String> = document["components"]["schemas"][schema]["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("schema {schema} is described"))
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_contract_route_and_shape() {
    let app = spawn_app(Backend::Sqlite).await;
    let reply = app.get(None, "/api/openapi.json").await;
    assert_eq!(reply.status, 200);
    let document = reply.body;
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", document["openapi"]);
    for (method, path) in CONTRACT {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert!(
            operation["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} responses"
        );
    }
    // Protected routes say so; register and login do not.
    assert!(document["paths"]["/api/messages"]["post"]["security"].is_array());
    assert!(document["paths"]["/api/auth/login"]["post"]["security"].is_null());
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    // The shapes are the contract's.
    assert_eq!(properties(&document, "MessageView"), sorted(&crate::messages::CONTRACT_FIELDS));
    assert_eq!(
        properties(&document, "ConversationView"),
        sorted(&[
            "id",
            "kind",
            "name",
            "other_user",
            "members_count",
            "created_at",
            "last_message",
            "unread_count",
            "last_read_message_id",
            "unread_mentions",
            "notify",
            "muted_until"
        ])
    );
    assert_eq!(
        properties(&document, "UserView"),
        sorted(&["id", "username", "display_name", "created_at", "is_bot"])
    );
    assert_eq!(properties(&document, "AttachmentView"), sorted(&["id", "filename", "mime_type", "size"]));
    assert_eq!(properties(&document, "ErrorDetail"), sorted(&["code", "message", "field"]));
    let created = &document["paths"]["/api/messages"]["post"]["responses"]["201"];
    assert!(created.to_string().contains("#/components/schemas/MessageView"), "{created}");
    for status in ["400", "401", "403", "404", "422", "429"] {
        let error = &document["paths"]["/api/messages"]["post"]["responses"][status];
        assert!(error.to_string().contains("ErrorBody"), "{status}: {error}");
    }
    let upload = &document["paths"]["/api/messages/with-attachment"]["post"]["requestBody"]["content"];
    assert!(upload["multipart/form-data"].is_object(), "{upload}");
}

/// A documented path with a method it does not serve is 405 with `Allow` and the contract's
/// body; only a path that does not exist is 404. GET routes answer HEAD too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_on_a_route_are_405_with_allow_and_get_routes_answer_head() {
    let app = spawn_app(Backend::Sqlite).await;
    let user = app.user("methods").await;
    let cases = [
        ("TRACE", "/api/users/me", "GET, HEAD"),
        ("PUT", "/api/messages", "POST"),
        ("GET", "/api/messages", "POST"),
        ("POST", "/api/messages/7", "PATCH, DELETE"),
        ("PUT", "/api/groups/1/members", "GET, HEAD, POST"),
        ("OPTIONS", "/health/live", "GET, HEAD"),
        ("DELETE", "/metrics", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        let request = app
            .client
            .request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), app.url(path))
            .bearer_auth(&user.token);
        let reply = app.send_request(request).await;
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        assert_eq!(reply.error_code(), "method_not_allowed", "{method} {path}");
        let header = reply.headers.get("allow").and_then(|value| value.to_str().ok());
        assert_eq!(header, Some(allow), "{method} {path}");
    }
    let unknown =
        app.send_request(app.client.request(reqwest::Method::TRACE, app.url("/api/nothing-here"))).await;
    assert_eq!(unknown.status, 404);
    for path in ["/health/live", "/health/ready", "/api/users/me"] {
        let response =
            app.client.head(app.url(path)).bearer_auth(&user.token).send().await.expect("HEAD request");
        assert_eq!(response.status(), 200, "HEAD {path}");
        assert!(response.bytes().await.expect("body").is_empty(), "HEAD {path} has no body");
    }
}

/// Text fields are trimmed, then judged: each field's documented pattern accepts exactly the
/// strings the server accepts, tried at the edges (white space that `trim` removes or keeps,
/// invisible and control characters, NUL, lengths one past the limit once padded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_patterns_accept_exactly_what_the_server_accepts() {
    let app = spawn_app(Backend::Sqlite).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let document = app.get(None, "/api/openapi.json").await.body;
    let schemas = &document["components"]["schemas"];
    let query = |path: &str| {
        let parameters = document["paths"][path]["get"]["parameters"].as_array().expect("parameters");
        parameters.iter().find(|p| p["name"] == "q").expect("q")["schema"]["pattern"].clone()
    };
    let fields = [
        ("message", schemas["SendBody"]["allOf"][0]["properties"]["message"]["pattern"].clone(), 2000),
        ("name", schemas["CreateBody"]["properties"]["name"]["pattern"].clone(), 100),
        ("display_name", schemas["RegisterBody"]["properties"]["display_name"]["pattern"].clone(), 64),
        ("messages q", query("/api/messages/search"), 200),
        ("users q", query("/api/users/search"), 0),
    ];
    let mut registered = 0;
    for (field, pattern, limit) in fields {
        let pattern = pattern.as_str().unwrap_or_else(|| panic!("{field} has a pattern"));
        let pattern = fancy_regex::Regex::new(pattern).unwrap_or_else(|err| panic!("{field}: {err}"));
        let long = "é".repeat(limit);
        let samples = [
            "x".to_owned(),
            "xy".to_owned(),
            " \t xy \u{3000}\u{85}".to_owned(),
            String::new(),
            " \n ".to_owned(),
            "\u{1C}\u{1C}".to_owned(),
            "a\tb".to_owned(),
            "\u{200B}\u{FEFF}".to_owned(),
            "\u{E0001}\u{E0002} ".to_owned(),
            "\u{200B}ab".to_owned(),
            "ab\0".to_owned(),
            "\u{7F}ab".to_owned(),
            format!("\n {long}\t"),
            format!("{long}x"),
            format!(" {long}x "),
        ];
        for text in samples {
            let documented = pattern.is_match(&text).expect("pattern runs");
            let status = match field {
                "message" => {
                    app.send_message(&alice, &json!({"recipient_id": bob.id, "message": text})).await.status
                }
                "name" => {
                    app.post(
                        Some(&alice.token),
                        "/api/groups",
                        &json!({"name": text, "member_ids": [bob.id]}),
                    )
                    .await
                    .status
                }
                "display_name" => {
                    registered += 1;
                    let body = json!({"username": format!("edge{registered}"), "password": "password123", "display_name": text});
                    app.post(None, "/api/auth/register", &body).await.status
                }
                _ => {
                    let path = if field == "users q" { "/api/users/search" } else { "/api/messages/search" };
                    let url = reqwest::Url::parse_with_params(&app.url(path), [("q", &text)]).expect("url");
                    let request = app.client.get(url).bearer_auth(&alice.token);
                    app.send_request(request).await.status
                }
            };
            assert!(
                matches!(status, 200 | 201 | 400 | 422),
                "{field} {text:?}: {status} is neither accepted nor refused"
            );
            assert_eq!(
                documented,
                status < 300,
                "{field} {:?}: documented {documented}, server {status}",
                text.chars().take(12).collect::<String>()
            );
        }
    }
}

/// The document is exact: schemathesis, driven by it against the real binary, finds no
/// server error, no schema-valid request refused, no invalid one accepted, and no status or
/// shape the document does not list. Bounded by time; `/ws` is left out, as an HTTP fuzzer
/// cannot upgrade. Needs `schemathesis` on the PATH or in `SCHEMATHESIS` (see README).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_server_answering_exactly_as_documented() {
    let schemathesis = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("fuzz.db").display());
    let instance = crate::cluster::Instance::start_with("fuzz", &database, "", &[]).await;
    let app = instance.app();
    // The caller is not user 1, 2 or 3, which generators favour: a request naming oneself
    // (a self-send, blocking oneself) is refused by a rule no schema can state.
    let mut users = Vec::new();
    for n in 0..12 {
        users.push(app.register(&format!("fuzz{n}")).await);
    }
    let caller = users.pop().expect("caller");
    app.dm(&caller, &users[0], "so that conversation 1 and message 1 exist").await;
    let group = app
        .post(
            Some(&caller.token),
            "/api/groups",
            &serde_json::json!({"name": "g", "member_ids": [users[1].id]}),
        )
        .await;
    assert_eq!(group.status, 201);
    let url = app.address.clone();
    let output = tokio::task::spawn_blocking(move || {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
        std::process::Command::new(&schemathesis)
            .current_dir(dir.path())
            .args(["--config-file", config, "run", &format!("{url}/api/openapi.json"), "--url", &url])
            .args(["-H", &format!("Authorization: Bearer {}", caller.token)])
            .args(["--checks", "all", "--phases", "examples,coverage,fuzzing"])
            .args(["--max-examples", "25", "--max-time", "150", "--seed", "7", "--workers", "2"])
            .args(["--exclude-path", "/ws", "--no-color"])
            .output()
            .unwrap_or_else(|err| {
                panic!("{schemathesis} not found ({err}): install it with `pipx install schemathesis` (see README)")
            })
    })
    .await
    .expect("join");
    let report =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    // Judged by what it found, not its exit code: a crash inside the tool itself (Hypothesis
    // has raised "AST constructor recursion depth mismatch" in one operation's coverage
    // phase) is the tool's error, and that operation is still fuzzed.
    assert!(report.contains("Test cases:"), "schemathesis did not run:\n{report}");
    assert!(!report.contains("Failures:"), "schemathesis found failures:\n{report}");
    assert!(report.contains("Tested: 54"), "every operation but /ws was tested:\n{report}");
    drop(instance);
}
