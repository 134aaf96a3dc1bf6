//! "Nothing is lost": clients exchange messages while a fault strikes, reconnect with
//! `since` as the contract tells them, and in the end every message that got a 2xx has
//! reached every device of every member exactly once, in order within its conversation.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::cluster::{Instance, RedisServer};
use crate::helpers::*;
use crate::on_both_databases;

/// One device of one user: its socket, the last event it processed, and what it received.
struct Device {
    user: TestUser,
    socket: Option<WsClient>,
    last_event: i64,
    /// Message ids in the order this device received them (new_message and message_sent).
    received: Vec<i64>,
    conversation_of: HashMap<i64, i64>,
}

impl Device {
    fn new(user: &TestUser) -> Device {
        Device {
            user: user.clone(),
            socket: None,
            last_event: 0,
            received: Vec::new(),
            conversation_of: HashMap::new(),
        }
    }

    async fn connect(&mut self, app: &TestApp) {
        self.socket = Some(app.ws_since(&self.user, self.last_event).await);
    }

    fn record(&mut self, frame: &Value) {
        let Some(event_id) = frame["event_id"].as_i64() else { return };
        assert!(
            event_id > self.last_event,
            "{}: event {event_id} after {} (duplicate or out of order)",
            self.user.username,
            self.last_event
        );
        self.last_event = event_id;
        if matches!(frame["type"].as_str(), Some("new_message" | "message_sent")) {
            let id = frame["message"]["id"].as_i64().expect("message id");
            self.received.push(id);
            self.conversation_of
                .insert(id, frame["message"]["conversation_id"].as_i64().expect("conversation"));
        }
    }

    /// Reads until the socket is quiet for `quiet`; false if the socket closed.
    async fn pump(&mut self, quiet: Duration) -> bool {
        loop {
            let Some(socket) = self.socket.as_mut() else { return false };
            match tokio::time::timeout(quiet, socket.stream.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(WsMessage::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                    self.record(&frame);
                }
                Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => {}
                Ok(_) => {
                    self.socket = None;
                    return false;
                }
            }
        }
    }
}

/// Asserts exactly-once, in-order delivery to every device and returns (expected, received).
fn check(devices: &[Device], sent: &[(i64, i64, i64, i64)]) -> (usize, usize) {
    let mut expected_total = 0;
    let mut received_total = 0;
    for device in devices {
        let mine: Vec<i64> = sent
            .iter()
            .filter(|(_, from, to, _)| *from == device.user.id || *to == device.user.id)
            .map(|(id, ..)| *id)
            .collect();
        let got: HashSet<i64> = device.received.iter().copied().collect();
        assert_eq!(got.len(), device.received.len(), "{}: duplicates", device.user.username);
        let missing: Vec<&i64> = mine.iter().filter(|id| !got.contains(id)).collect();
        assert!(missing.is_empty(), "{}: lost {missing:?}", device.user.username);
        // In order within each conversation.
        let mut last_in: HashMap<i64, i64> = HashMap::new();
        for id in &device.received {
            let conversation = device.conversation_of[id];
            let previous = last_in.insert(conversation, *id).unwrap_or(0);
            assert!(*id > previous, "{}: message {id} after {previous}", device.user.username);
        }
        expected_total += mine.len();
        received_total += device.received.len();
    }
    (expected_total, received_total)
}

/// Lets the last frames arrive, then checks every device (see `check`).
async fn settle_and_check(
    devices: &mut [Device],
    sent: &[(i64, i64, i64, i64)],
    quiet: Duration,
) -> (usize, usize) {
    for device in devices.iter_mut() {
        device.pump(quiet).await;
    }
    check(devices, sent)
}

/// Users in a ring, each writing to the next; returns (message id, from, to, conversation).
async fn send_round(app: &TestApp, users: &[TestUser], round: usize) -> Vec<(i64, i64, i64, i64)> {
    let mut sent = Vec::new();
    for (n, from) in users.iter().enumerate() {
        let to = &users[(n + 1) % users.len()];
        let message = app.dm(from, to, &format!("round {round} from {}", from.username)).await;
        sent.push((
            message["id"].as_i64().expect("id"),
            from.id,
            to.id,
            message["conversation_id"].as_i64().expect("conversation"),
        ));
    }
    sent
}

/// Four users in a ring, each with two devices; device `n` connects to `apps[n % len]`.
async fn ring_with_devices(apps: &[&TestApp]) -> (Vec<TestUser>, Vec<Device>) {
    let mut users = Vec::new();
    for _ in 0..4 {
        users.push(apps[0].user("ring").await);
    }
    let mut devices: Vec<Device> = users.iter().flat_map(|u| [Device::new(u), Device::new(u)]).collect();
    for (n, device) in devices.iter_mut().enumerate() {
        device.connect(apps[n % apps.len()]).await;
    }
    (users, devices)
}

on_both_databases!(
    a_cut_socket_reconnects_with_since_and_misses_nothing,
    a_reader_polling_sync_during_concurrent_writes_never_skips_an_event,
);

/// The late-commit race: a reader that moves its cursor while writers commit concurrently
/// must still see every event, because ids are committed in id order.
async fn a_reader_polling_sync_during_concurrent_writes_never_skips_an_event(backend: Backend) {
    const SENDERS: usize = 6;
    const EACH: usize = 15;
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let bob = app.user("bob").await;
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        senders.push(app.user("writer").await);
    }
    let writers: Vec<_> = senders
        .into_iter()
        .map(|sender| {
            let (app, bob) = (app.clone(), bob.clone());
            tokio::spawn(async move {
                for n in 0..EACH {
                    app.dm(&sender, &bob, &format!("concurrent {n}")).await;
                }
            })
        })
        .collect();
    let mut cursor = 0;
    let mut polled = Vec::new();
    let poll = async |cursor: &mut i64, polled: &mut Vec<i64>| {
        let page = app.get(Some(&bob.token), &format!("/api/sync?since={cursor}&limit=7")).await;
        for event in page.body["events"].as_array().expect("events") {
            polled.push(event["event_id"].as_i64().expect("event id"));
        }
        *cursor = page.body["last_event_id"].as_i64().expect("cursor");
        page.body["has_more"] == true
    };
    while !writers.iter().all(|w| w.is_finished()) {
        poll(&mut cursor, &mut polled).await;
    }
    while poll(&mut cursor, &mut polled).await {}
    for writer in writers {
        writer.await.expect("writer");
    }
    while poll(&mut cursor, &mut polled).await {}

    let mut all = Vec::new();
    let mut since = 0;
    loop {
        let page = app.get(Some(&bob.token), &format!("/api/sync?since={since}&limit=1000")).await;
        all.extend(
            page.body["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["event_id"].as_i64().expect("id")),
        );
        since = page.body["last_event_id"].as_i64().expect("cursor");
        if page.body["has_more"] != true {
            break;
        }
    }
    assert_eq!(all.len(), SENDERS * (EACH + 1), "a conversation_created and {EACH} messages per sender");
    assert_eq!(polled, all, "the moving cursor saw every event exactly once");
}

async fn a_cut_socket_reconnects_with_since_and_misses_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (users, mut devices) = ring_with_devices(&[&app]).await;
    let mut sent = Vec::new();
    let mut recovery = Duration::ZERO;
    for round in 0..6 {
        if round == 2 {
            // Cut every other device's socket mid-burst, without a close handshake.
            for device in devices.iter_mut().step_by(2) {
                device.socket = None;
            }
        }
        sent.extend(send_round(&app, &users, round).await);
        if round == 3 {
            let started = Instant::now();
            for device in devices.iter_mut().filter(|d| d.socket.is_none()) {
                device.connect(&app).await;
            }
            recovery = started.elapsed();
        }
        for device in &mut devices {
            device.pump(Duration::from_millis(50)).await;
        }
    }
    let (expected, received) = settle_and_check(&mut devices, &sent, Duration::from_millis(300)).await;
    eprintln!(
        "socket cut ({backend:?}): sent {}, deliveries expected {expected}, delivered {received}, duplicated 0, lost 0, reconnect+replay {recovery:?}",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_burst_loses_nothing_for_clients_that_move() {
    let redis = RedisServer::start().await;
    let database_url = fresh_postgres_database().await;
    let mut doomed = Instance::start("doomed", &database_url, &redis.url()).await;
    let survivor = Instance::start("survivor", &database_url, &redis.url()).await;
    let (a, b) = (doomed.app(), survivor.app());
    // One device of each user on each instance.
    let (users, mut devices) = ring_with_devices(&[&a, &b]).await;
    let mut sent = Vec::new();
    let mut recovery = Duration::ZERO;
    for round in 0..6 {
        if round == 2 {
            doomed.kill();
        }
        // Senders use whichever instance is up, as a load balancer would.
        sent.extend(send_round(&b, &users, round).await);
        for device in &mut devices {
            if !device.pump(Duration::from_millis(50)).await {
                let started = Instant::now();
                device.connect(&b).await;
                recovery = recovery.max(started.elapsed());
            }
        }
    }
    for device in &mut devices {
        if !device.pump(Duration::from_millis(300)).await {
            device.connect(&b).await;
            device.pump(Duration::from_millis(300)).await;
        }
    }
    let (expected, received) = check(&devices, &sent);
    eprintln!(
        "SIGKILL mid-burst: sent {}, deliveries expected {expected}, delivered {received}, duplicated 0, lost 0, reconnect+replay {recovery:?}",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_burst_loses_nothing() {
    let mut redis = RedisServer::start().await;
    let database_url = fresh_postgres_database().await;
    let one = Instance::start("one", &database_url, &redis.url()).await;
    let two = Instance::start("two", &database_url, &redis.url()).await;
    let (a, b) = (one.app(), two.app());
    let (users, mut devices) = ring_with_devices(&[&a, &b]).await;
    let mut sent = Vec::new();
    let mut outage = Duration::ZERO;
    let mut down_since = None;
    for round in 0..8 {
        if round == 2 {
            redis.kill();
            down_since = Some(Instant::now());
        }
        if round == 4 {
            redis.restart().await;
            outage = down_since.map(|at| at.elapsed()).unwrap_or_default();
            let restarted = Instant::now();
            for app in [&a, &b] {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let metrics = app.client.get(app.url("/metrics")).send().await.expect("metrics");
                    if metrics.text().await.expect("text").contains("switchboard_relay_up 1") {
                        break;
                    }
                    assert!(Instant::now() < deadline, "live relay resumes");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            eprintln!("live relay resumed on both instances {:?} after redis came back", restarted.elapsed());
        }
        let app = if round % 2 == 0 { &a } else { &b };
        sent.extend(send_round(app, &users, round).await);
        for device in &mut devices {
            // Sessions poll the database while Redis is down: frames still arrive.
            assert!(
                device.pump(Duration::from_millis(700)).await,
                "sockets stay open through a Redis outage"
            );
        }
    }
    let (expected, received) = settle_and_check(&mut devices, &sent, Duration::from_millis(500)).await;
    eprintln!(
        "Redis killed mid-burst ({outage:?} down): sent {}, deliveries expected {expected}, delivered {received}, duplicated 0, lost 0",
        sent.len()
    );
}

/// (a) and (d) across instances: sockets cut or stalled on one instance recover on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_instances_cut_and_stalled_sockets_recover_elsewhere() {
    let redis = RedisServer::start().await;
    let database_url = fresh_postgres_database().await;
    let budget = [
        ("SWITCHBOARD__WEBSOCKET__MAX_FRAME_BYTES", "16384"),
        ("SWITCHBOARD__WEBSOCKET__OUTBOUND_QUEUE_BYTES", "65536"),
    ];
    let one = Instance::start_with("one", &database_url, &redis.url(), &budget).await;
    let two = Instance::start_with("two", &database_url, &redis.url(), &budget).await;
    let (a, b) = (one.app(), two.app());

    let (users, mut devices) = ring_with_devices(&[&a, &b]).await;
    let mut sent = Vec::new();
    for round in 0..6 {
        if round == 2 {
            for device in devices.iter_mut().step_by(2) {
                device.socket = None;
            }
        }
        sent.extend(send_round(if round % 2 == 0 { &b } else { &a }, &users, round).await);
        if round == 3 {
            // Cut sockets were on `one`; they come back on `two`.
            for device in devices.iter_mut().filter(|d| d.socket.is_none()) {
                device.connect(&b).await;
            }
        }
        for device in &mut devices {
            device.pump(Duration::from_millis(50)).await;
        }
    }
    let (expected, received) = settle_and_check(&mut devices, &sent, Duration::from_millis(300)).await;
    eprintln!(
        "socket cut across instances: sent {}, deliveries expected {expected}, delivered {received}, duplicated 0, lost 0",
        sent.len()
    );

    // (d): Bob's socket on `two` stalls while Alice sends through `one`; he recovers on `one`.
    crate::websocket::stop_reading_then_recover(&a, &b, &a).await;
}

/// The late-commit race across instances: two instances commit concurrently while a reader
/// moves its cursor through a third view of the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_reader_never_skips_events_committed_by_two_instances() {
    const EACH: usize = 12;
    let redis = RedisServer::start().await;
    let database_url = fresh_postgres_database().await;
    let one = Instance::start("one", &database_url, &redis.url()).await;
    let two = Instance::start("two", &database_url, &redis.url()).await;
    let apps = std::sync::Arc::new([one.app(), two.app()]);
    let bob = apps[0].user("bob").await;
    let mut writers = Vec::new();
    for n in 0..6 {
        let sender = apps[n % 2].user("writer").await;
        let (apps, bob) = (apps.clone(), bob.clone());
        writers.push(tokio::spawn(async move {
            for m in 0..EACH {
                apps[(n + m) % 2].dm(&sender, &bob, &format!("concurrent {m}")).await;
            }
        }));
    }
    let reader = &apps[0];
    let mut cursor = 0;
    let mut polled = Vec::new();
    let poll = async |cursor: &mut i64, polled: &mut Vec<i64>| {
        let page = reader.get(Some(&bob.token), &format!("/api/sync?since={cursor}&limit=5")).await;
        for event in page.body["events"].as_array().expect("events") {
            polled.push(event["event_id"].as_i64().expect("event id"));
        }
        *cursor = page.body["last_event_id"].as_i64().expect("cursor");
        page.body["has_more"] == true
    };
    while !writers.iter().all(|w| w.is_finished()) {
        poll(&mut cursor, &mut polled).await;
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    while poll(&mut cursor, &mut polled).await {}
    let page = reader.get(Some(&bob.token), "/api/sync?since=0&limit=1000").await;
    let all: Vec<i64> = page.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["event_id"].as_i64().expect("id"))
        .collect();
    assert_eq!(all.len(), 6 * (EACH + 1));
    assert_eq!(polled, all, "the moving cursor saw every event exactly once");
}

/// (b) with SQLite and one instance: the instance is killed mid-burst and restarted on the
/// same database file; its clients reconnect with `since` and miss nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_instance_killed_and_restarted_mid_burst_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}?mode=rwc", dir.path().join("killed.db").display());
    let mut instance = Instance::start("solo", &database_url, "").await;
    let app = instance.app();
    let (users, mut devices) = ring_with_devices(&[&app]).await;
    let mut sent = Vec::new();
    let mut app = app;
    let mut recovery = Duration::ZERO;
    for round in 0..6 {
        if round == 2 {
            instance.kill();
            let started = Instant::now();
            instance = Instance::start("solo", &database_url, "").await;
            app = instance.app();
            for device in &mut devices {
                device.pump(Duration::from_millis(50)).await;
                device.connect(&app).await;
            }
            recovery = started.elapsed();
        }
        sent.extend(send_round(&app, &users, round).await);
        for device in &mut devices {
            device.pump(Duration::from_millis(50)).await;
        }
    }
    let (expected, received) = settle_and_check(&mut devices, &sent, Duration::from_millis(300)).await;
    eprintln!(
        "SIGKILL + restart (SQLite): sent {}, deliveries expected {expected}, delivered {received}, duplicated 0, lost 0, restart+reconnect {recovery:?}",
        sent.len()
    );
}

/// SQLite's WAL is copied back into the database file in the background, not only when the
/// writer crosses its (raised) threshold: shortly after a burst, the database file on its
/// own, without its WAL, already holds every message. Without the checkpointer these few
/// pages would stay in the WAL until the last connection closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_commits_reach_the_database_file_without_waiting_for_the_writer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("checkpointed.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let app = spawn_app_with(Backend::Sqlite, |settings| settings.database.url = url).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    for n in 0..20 {
        app.dm(&alice, &bob, &format!("checkpointed {n}")).await;
    }
    let copy = dir.path().join("copy.db");
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The file alone: whatever is only in the WAL is not in the copy.
        for stale in ["copy.db-wal", "copy.db-shm"] {
            let _ = std::fs::remove_file(dir.path().join(stale));
        }
        std::fs::copy(&file, &copy).expect("copy the database file");
        found = count_checkpointed(&copy).await.unwrap_or(0);
        if found == 20 {
            break;
        }
    }
    assert_eq!(found, 20, "every committed message is in the database file itself");
}

async fn count_checkpointed(copy: &std::path::Path) -> Result<i64, sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(format!("sqlite://{}?mode=rw", copy.display())).await?;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "SELECT COUNT(*) FROM messages WHERE body LIKE 'checkpointed %'",
        ))
        .await?;
    let count = row.map(|row| row.try_get_by_index::<i64>(0)).transpose()?.unwrap_or(0);
    db.close().await?;
    Ok(count)
}

/// A TCP proxy to PostgreSQL that the test can cut: every open connection is dropped and new
/// ones are closed at once, as when the database stops; `restore` lets them through again.
struct CuttableProxy {
    port: u16,
    up: tokio::sync::watch::Sender<bool>,
}

impl CuttableProxy {
    async fn start(upstream: u16) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let (up, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if !*watch.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = watch.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        CuttableProxy { port, up }
    }

    fn cut(&self) {
        self.up.send_replace(false);
    }

    fn restore(&self) {
        self.up.send_replace(true);
    }
}

/// A send answered while the database is away, as the client sees it.
async fn send_during_outage(
    app: &TestApp,
    from: &TestUser,
    to: i64,
    client_id: &str,
) -> (u16, Option<String>) {
    let response = app
        .client
        .post(app.url("/api/messages"))
        .bearer_auth(&from.token)
        .json(&serde_json::json!({"recipient_id": to, "message": client_id, "client_id": client_id}))
        .send()
        .await
        .expect("response");
    let retry_after =
        response.headers().get("retry-after").and_then(|value| value.to_str().ok()).map(str::to_owned);
    (response.status().as_u16(), retry_after)
}

/// A database outage is a 503 with `Retry-After`, never a 500; a client that retries with
/// the same `client_id`, as the README tells it to, ends with each message stored once,
/// whether or not the server managed to commit it before the connection went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_503_with_retry_after_and_retries_with_the_client_id_store_once() {
    let database = fresh_postgres_database().await;
    let (base, name) = database.rsplit_once('/').expect("database url");
    let upstream: u16 = base.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).expect("port");
    let proxy = CuttableProxy::start(upstream).await;
    let proxied = format!("postgres://postgres@127.0.0.1:{}/{name}", proxy.port);
    let app = spawn_app_with(Backend::Postgres, |settings| settings.database.url = proxied).await;
    let (alice, bob) = (app.user("alice").await, app.user("bob").await);
    let conversation = conversation_of(&app.dm(&alice, &bob, "before the outage").await);

    proxy.cut();
    let sends = (0..6).map(|n| {
        let (app, alice) = (&app, &alice);
        async move { send_during_outage(app, alice, bob.id, &format!("outage-{n}")).await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let read =
        app.client.get(app.url("/api/conversations")).bearer_auth(&bob.token).send().await.expect("list");
    assert_eq!(read.status().as_u16(), 503, "a read during the outage");
    assert!(read.headers().contains_key("retry-after"), "a read's 503 says when to retry");
    for (n, (status, retry_after)) in answers.iter().enumerate() {
        assert!(matches!(status, 201 | 503), "send {n} during the outage answered {status}");
        if *status == 503 {
            assert!(retry_after.is_some(), "send {n}: 503 without Retry-After");
        }
    }
    assert!(answers.iter().any(|(status, _)| *status == 503), "the outage was seen: {answers:?}");

    proxy.restore();
    for (n, (status, _)) in answers.iter().enumerate() {
        if *status == 201 {
            continue;
        }
        let client_id = format!("outage-{n}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _) = send_during_outage(&app, &alice, bob.id, &client_id).await;
            if matches!(status, 200 | 201) {
                break;
            }
            assert_eq!(status, 503, "retry of {client_id}");
            assert!(Instant::now() < deadline, "{client_id} still refused 30 s after the database came back");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let texts = app.history_texts(&bob, conversation, "limit=100").await;
    for n in 0..6 {
        let client_id = format!("outage-{n}");
        let copies = texts.iter().filter(|text| **text == client_id).count();
        assert_eq!(copies, 1, "{client_id} stored exactly once: {texts:?}");
    }
}
