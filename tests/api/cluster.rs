//! Several real server processes sharing PostgreSQL and a real `redis-server`, with a real
//! nginx in front where a test needs a load balancer. Each test starts what it needs on
//! free ports and kills it afterwards.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::push_service::{PushService, answer};
use crate::webhook_receiver::{Answer as WebhookAnswer, Receiver, reply as webhook_reply};

const PREFIX: &str = "sbtest:";
/// Short, so a killed instance's users go offline within seconds.
const PRESENCE_TTL: u64 = 2;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Polls `check` until it holds or `within` passes.
async fn eventually<F: AsyncFnMut() -> bool>(within: Duration, what: &str, mut check: F) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let mut server = RedisServer { port: free_port(), child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see README)");
        self.child = Some(child);
        let url = self.url();
        eventually(Duration::from_secs(5), "redis answers", async || {
            let Ok(client) = redis::Client::open(url.as_str()) else { return false };
            client.get_multiplexed_async_connection().await.is_ok()
        })
        .await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `switchboard` process.
pub struct Instance {
    pub name: String,
    pub port: u16,
    child: Child,
    /// The working directory: empty, as a container's would be.
    _dir: tempfile::TempDir,
}

impl Instance {
    pub async fn start(name: &str, database_url: &str, redis_url: &str) -> Instance {
        Instance::start_with(name, database_url, redis_url, &[]).await
    }

    /// With extra `SWITCHBOARD__…` settings.
    pub async fn start_with(
        name: &str,
        database_url: &str,
        redis_url: &str,
        settings: &[(&str, &str)],
    ) -> Instance {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        // Configured from the environment alone, as containers and process managers do.
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .current_dir(dir.path())
            .envs(settings.iter().copied())
            .env("SWITCHBOARD__SERVER__PORT", port.to_string())
            .env("SWITCHBOARD__SERVER__INSTANCE_ID", name)
            .env("SWITCHBOARD__SERVER__DEV_MODE", "false")
            .env("SWITCHBOARD__SERVER__WORKERS", "2")
            .env("SWITCHBOARD__SERVER__SHUTDOWN_TIMEOUT_SECONDS", "1")
            .env("SWITCHBOARD__DATABASE__URL", database_url)
            .env("SWITCHBOARD__DATABASE__MAX_CONNECTIONS", "4")
            .env("SWITCHBOARD__REDIS__URL", redis_url)
            .env("SWITCHBOARD__REDIS__PREFIX", PREFIX)
            .env("SWITCHBOARD__LIMITS__ENABLED", "false")
            // Shared by the instances, as a shared volume would be in a deployment.
            .env("SWITCHBOARD__ATTACHMENTS__DIR", std::env::temp_dir().join("switchboard-test-attachments"))
            .env("SWITCHBOARD__PRESENCE__TTL_SECONDS", PRESENCE_TTL.to_string())
            .env("SWITCHBOARD__AUTH__JWT_SECRET", TEST_SECRET)
            .env("SWITCHBOARD__LOG__LEVEL", if std::env::var("TEST_LOG").is_ok() { "info" } else { "error" })
            .spawn()
            .expect("start switchboard");
        let instance = Instance { name: name.to_owned(), port, child, _dir: dir };
        let app = instance.app();
        eventually(Duration::from_secs(20), "instance ready", async || {
            matches!(app.client.get(app.url("/health/ready")).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        instance
    }

    pub fn app(&self) -> TestApp {
        TestApp::at(self.port)
    }

    /// Descriptors the process holds open.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |dir| dir.count())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx round-robin in front of the instances, with WebSocket upgrades.
pub struct Nginx {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub async fn start(upstreams: &[u16]) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let template = std::fs::read_to_string("deploy/nginx.conf").expect("deploy/nginx.conf");
        let mut config = String::new();
        for line in template.lines() {
            if line.trim_start().starts_with("server 127.0.0.1:") {
                // The shipped upstream list, swapped for this test's instances.
                if !config.contains("server 127.0.0.1:") {
                    for upstream in upstreams {
                        config.push_str(&format!(
                            "        server 127.0.0.1:{upstream} max_fails=1 fail_timeout=5s;\n"
                        ));
                    }
                }
                continue;
            }
            let line = line.replace("listen 8000;", &format!("listen 127.0.0.1:{port};"));
            config.push_str(&line.replace("/tmp/switchboard-nginx", &dir.path().display().to_string()));
            config.push('\n');
        }
        let path: PathBuf = dir.path().join("nginx.conf");
        std::fs::write(&path, config).expect("write nginx.conf");
        let child = Command::new(nginx_binary())
            .args([
                "-c",
                &path.display().to_string(),
                "-p",
                &dir.path().display().to_string(),
                "-e",
                "stderr",
            ])
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx must be installed (see README)");
        let app = TestApp::at(port);
        eventually(Duration::from_secs(10), "nginx answers", async || {
            matches!(app.client.get(app.url("/health/live")).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        Nginx { port, child, _dir: dir }
    }

    pub fn app(&self) -> TestApp {
        TestApp::at(self.port)
    }
}

fn nginx_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL would leave them orphaned.
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        for _ in 0..40 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    redis: RedisServer,
    database_url: String,
    instances: Vec<Instance>,
}

async fn cluster(names: &[&str]) -> Cluster {
    let redis = RedisServer::start().await;
    let database_url = fresh_postgres_database().await;
    let mut instances = Vec::new();
    for name in names {
        instances.push(Instance::start(name, &database_url, &redis.url()).await);
    }
    Cluster { redis, database_url, instances }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_every_device_on_every_instance() {
    let cluster = cluster(&["a", "b"]).await;
    let (a, b) = (cluster.instances[0].app(), cluster.instances[1].app());
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    let mut alice_on_b = b.ws(&alice).await;
    let mut alice_on_a = a.ws(&alice).await;
    let mut bob_on_a = a.ws(&bob).await;
    let mut bob_on_b = b.ws(&bob).await;
    assert_eq!(alice_on_b.hello["instance_id"], "b");
    assert_eq!(bob_on_a.hello["instance_id"], "a");

    for round in 0..3 {
        let sent = a.dm(&alice, &bob, &format!("round {round}")).await;
        for device in [&mut bob_on_a, &mut bob_on_b] {
            assert_eq!(device.next_of("new_message").await["message"]["id"], sent["id"]);
        }
        for device in [&mut alice_on_a, &mut alice_on_b] {
            assert_eq!(device.next_of("message_sent").await["message"]["id"], sent["id"]);
        }
        let reply = b.dm(&bob, &alice, &format!("reply {round}")).await;
        for device in [&mut alice_on_a, &mut alice_on_b] {
            assert_eq!(device.next_of("new_message").await["message"]["id"], reply["id"]);
        }
        for device in [&mut bob_on_a, &mut bob_on_b] {
            assert_eq!(device.next_of("message_sent").await["message"]["id"], reply["id"]);
        }
    }
    assert!(cluster.database_url.starts_with("postgres://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_chat_through_nginx_and_redis_shows_where_they_are_online() {
    let mut cluster = cluster(&["east", "west"]).await;
    let nginx = Nginx::start(&[cluster.instances[0].port, cluster.instances[1].port]).await;
    let lb = nginx.app();
    let alice = lb.user("alice").await;
    let bob = lb.user("bob").await;

    // Round robin without stickiness: open sockets through nginx until each user is on an
    // instance of their own.
    let mut alice_socket = lb.ws(&alice).await;
    let mut bob_socket = lb.ws(&bob).await;
    let mut tries = 0;
    while bob_socket.hello["instance_id"] == alice_socket.hello["instance_id"] {
        tries += 1;
        assert!(tries < 10, "nginx keeps sending both users to one instance");
        bob_socket = lb.ws(&bob).await;
    }
    let alice_instance = alice_socket.hello["instance_id"].as_str().expect("instance").to_owned();
    let bob_instance = bob_socket.hello["instance_id"].as_str().expect("instance").to_owned();

    let sent = lb.dm(&alice, &bob, "hello across instances").await;
    let frame = bob_socket.next_of("new_message").await;
    assert_eq!(frame["message"]["id"], sent["id"]);
    let reply = lb.dm(&bob, &alice, "hello back").await;
    assert_eq!(alice_socket.next_of("new_message").await["message"]["id"], reply["id"]);

    // Redis shows each user online on their instance.
    let mut conn = cluster.redis.connection().await;
    let alice_key: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("{PREFIX}presence:{}", alice.id))
        .query_async(&mut conn)
        .await
        .expect("alice's presence hash");
    assert_eq!(alice_key.get(&alice_instance), Some(&1), "{alice_key:?}");
    let bob_key: HashMap<String, i64> = redis::cmd("HGETALL")
        .arg(format!("{PREFIX}presence:{}", bob.id))
        .query_async(&mut conn)
        .await
        .expect("hash");
    assert!(bob_key.get(&bob_instance).is_some_and(|n| *n >= 1), "{bob_key:?}");
    for instance in [&alice_instance, &bob_instance] {
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("{PREFIX}instance:{instance}"))
            .query_async(&mut conn)
            .await
            .expect("ttl");
        assert!(ttl > 0 && ttl <= PRESENCE_TTL as i64, "heartbeat key with a TTL: {ttl}");
    }

    // The admin command reads the same keys.
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--config", "config.toml", "presence"])
        .env("SWITCHBOARD__REDIS__URL", cluster.redis.url())
        .env("SWITCHBOARD__REDIS__PREFIX", PREFIX)
        .env("SWITCHBOARD__DATABASE__URL", &cluster.database_url)
        .env("SWITCHBOARD__AUTH__JWT_SECRET", TEST_SECRET)
        .env("SWITCHBOARD__SERVER__DEV_MODE", "false")
        .output()
        .expect("switchboard presence");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report} {}", String::from_utf8_lossy(&output.stderr));
    assert!(report.contains("instances alive: 2"), "{report}");
    assert!(report.contains(&format!("{} {}  on {alice_instance}", alice.id, alice.username)), "{report}");
    assert!(report.contains(&format!("{} {}  on {bob_instance}", bob.id, bob.username)), "{report}");

    // Killing Bob's instance: nginx sends his reconnect to the other one, and he catches up.
    let seen = frame["event_id"].as_i64().expect("event id");
    let bob_index = cluster.instances.iter().position(|i| i.name == bob_instance).expect("bob's instance");
    cluster.instances[bob_index].kill();
    let missed = lb.dm(&alice, &bob, "while you were away").await;
    let mut bob_again = lb.ws_since(&bob, seen).await;
    assert_eq!(bob_again.hello["instance_id"], alice_instance.as_str());
    assert_eq!(bob_again.next_of("new_message").await["message"]["id"], missed["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_pushed_and_a_killed_instance_s_users_go_offline_in_time() {
    let mut cluster = cluster(&["a", "b"]).await;
    let (a, b) = (cluster.instances[0].app(), cluster.instances[1].app());
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    a.dm(&alice, &bob, "we share a conversation").await;
    let dave = a.user("dave").await;
    let group = a.create_group(&alice, "g", &[&bob, &dave]).await;
    let mut alice_socket = a.ws(&alice).await;
    // The members list reads presence from Redis too: everyone's, across instances.
    let listed = async |who: &TestUser| {
        let reply = a.get(Some(&alice.token), &format!("/api/groups/{group}/members")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let members = reply.body["members"].as_array().expect("members").clone();
        let entry = members.into_iter().find(|entry| entry["user"]["id"] == who.id).expect("listed");
        entry["presence"]["status"].as_str().expect("status").to_owned()
    };

    let bob_socket = b.ws(&bob).await;
    let online = alice_socket.next_of("presence").await;
    assert_eq!(online["user_id"], bob.id);
    assert_eq!(online["status"], "online");
    assert_eq!(a.presence(&alice, &bob).await["status"], "online");

    drop(bob_socket);
    let offline = alice_socket.next_of("presence").await;
    assert_eq!((offline["user_id"].clone(), offline["status"].clone()), (json!(bob.id), json!("offline")));
    let view = a.presence(&alice, &bob).await;
    assert_eq!(view["status"], "offline");
    assert!(view["last_seen"].as_str().is_some_and(|at| at.ends_with('Z')), "{view}");

    // SIGKILL: no cleanup runs on b, yet Bob reads offline within two TTLs.
    let _bob_socket = b.ws(&bob).await;
    assert_eq!(alice_socket.next_of("presence").await["status"], "online");
    assert_eq!(
        (listed(&bob).await, listed(&alice).await, listed(&dave).await),
        ("online".into(), "online".into(), "offline".into())
    );
    cluster.instances[1].kill();
    let killed = Instant::now();
    eventually(Duration::from_secs(2 * PRESENCE_TTL), "bob reads offline", async || {
        a.presence(&alice, &bob).await["status"] == "offline"
    })
    .await;
    let offline_after = killed.elapsed();
    assert_eq!(listed(&bob).await, "offline", "a dead instance's user, in the members list");
    // The janitor on a tells Bob's contacts.
    let frame = alice_socket.next_of("presence").await;
    assert_eq!((frame["user_id"].clone(), frame["status"].clone()), (json!(bob.id), json!("offline")));
    eprintln!("offline {:?} after SIGKILL (ttl {PRESENCE_TTL} s)", offline_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_loses_nothing_and_live_relay_resumes() {
    let mut cluster = cluster(&["a", "b"]).await;
    let (a, b) = (cluster.instances[0].app(), cluster.instances[1].app());
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    let mut bob_socket = b.ws(&bob).await;
    let mut expected = Vec::new();
    let mut received = Vec::new();
    let receive = async |socket: &mut WsClient, received: &mut Vec<Value>| {
        let frame = socket.next_of("new_message").await;
        received.push(frame["message"]["id"].clone());
    };
    expected.push(a.dm(&alice, &bob, "before").await["id"].clone());
    receive(&mut bob_socket, &mut received).await;

    cluster.redis.kill();
    // Sends still succeed, and Bob's instance reads them from the database meanwhile.
    for n in 0..3 {
        expected.push(a.dm(&alice, &bob, &format!("during {n}")).await["id"].clone());
    }
    for _ in 0..3 {
        receive(&mut bob_socket, &mut received).await;
    }
    let ready = a.client.get(a.url("/health/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 503, "readiness reports redis");
    assert_eq!(a.get(None, "/health/live").await.status, 200);

    cluster.redis.restart().await;
    eventually(Duration::from_secs(10), "relay up again", async || {
        let metrics =
            a.client.get(a.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
        metrics.contains("switchboard_relay_up 1")
    })
    .await;
    eventually(Duration::from_secs(10), "b relays again", async || {
        let metrics =
            b.client.get(b.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
        metrics.contains("switchboard_relay_up 1")
    })
    .await;
    for n in 0..3 {
        expected.push(a.dm(&alice, &bob, &format!("after {n}")).await["id"].clone());
        receive(&mut bob_socket, &mut received).await;
    }
    assert_eq!(received, expected, "every message once, in order");
    bob_socket.expect_silence(Duration::from_millis(500)).await;
    let metrics = a.client.get(a.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("switchboard_relay_publish_errors_total"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1012_and_exits_within_the_deadline() {
    let mut cluster = cluster(&["draining", "staying"]).await;
    let (a, b) = (cluster.instances[0].app(), cluster.instances[1].app());
    let alice = a.user("alice").await;
    let bob = a.user("bob").await;
    let first = a.dm(&alice, &bob, "before the restart").await;
    let mut bob_socket = a.ws(&bob).await;
    let seen = bob_socket.hello["last_event_id"].as_i64().expect("last_event_id");

    let started = Instant::now();
    let status = tokio::task::block_in_place(|| cluster.instances[0].terminate(Duration::from_secs(5)));
    let status = status.expect("the draining instance exits within its deadline");
    assert!(status.success(), "clean exit: {status:?}");
    assert_eq!(bob_socket.close_code().await, 1012);
    eprintln!("drained and exited {:?} after SIGTERM", started.elapsed());

    // Its heartbeat is gone at once, not after a TTL.
    let mut conn = cluster.redis.connection().await;
    let alive: bool = redis::cmd("EXISTS")
        .arg(format!("{PREFIX}instance:draining"))
        .query_async(&mut conn)
        .await
        .expect("exists");
    assert!(!alive);

    // Bob reconnects elsewhere with `since` and loses nothing.
    let missed = b.dm(&alice, &bob, "after the restart").await;
    let mut bob_again = b.ws_since(&bob, seen).await;
    assert_eq!(bob_again.next_of("new_message").await["message"]["id"], missed["id"]);
    assert_ne!(first["id"], missed["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ws_ticket_issued_on_one_instance_opens_a_socket_on_another_once() {
    let cluster = cluster(&["a", "b"]).await;
    let (a, b) = (cluster.instances[0].app(), cluster.instances[1].app());
    let alice = a.user("alice").await;
    let reply = a.post(Some(&alice.token), "/api/ws-ticket", &json!({})).await;
    let ticket = reply.body["ticket"].as_str().expect("ticket").to_owned();
    let socket = b.ws_at(&format!("/ws?ticket={ticket}")).await;
    assert_eq!(socket.hello["user_id"], alice.id);
    assert_eq!(a.get(None, &format!("/ws?ticket={ticket}")).await.status, 401, "used once, cluster-wide");
}

/// Three instances behind nginx share the push work. Pushes pending in every state (in a
/// retry's backoff after a 503, or not yet planned) when an instance is killed still arrive,
/// each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_pending_when_an_instance_is_killed_arrive_once() {
    let redis = RedisServer::start().await;
    let database_url = fresh_postgres_database().await;
    let push =
        [("SWITCHBOARD__PUSH__DELAY_SECONDS", "1"), ("SWITCHBOARD__PUSH__ALLOW_INSECURE_ENDPOINTS", "true")];
    let mut instances = Vec::new();
    for name in ["a", "b", "c"] {
        instances.push(Instance::start_with(name, &database_url, &redis.url(), &push).await);
    }
    let ports: Vec<u16> = instances.iter().map(|instance| instance.port).collect();
    let nginx = Nginx::start(&ports).await;
    let app = nginx.app();
    let sender = app.user("sender").await;
    let key = app.get(Some(&sender.token), "/api/push/vapid-public-key").await.body;
    let service = PushService::start(key["public_key"].as_str().expect("key")).await;
    let mut recipients = Vec::new();
    for _ in 0..24 {
        let user = app.user("away").await;
        let subscription = service.browser(&user.username);
        let reply = app.post(Some(&user.token), "/api/push/subscriptions", &subscription.body).await;
        assert_eq!(reply.status, 201, "{}", reply.body);
        recipients.push(user);
    }
    let (first, second) = recipients.split_at(12);

    // Every push of the first round is refused once, so all of them are waiting to be
    // retried when instance a dies.
    for user in first {
        service.script(&user.username, &[answer(503)]);
    }
    let mut expected = HashMap::new();
    for user in first {
        expected.insert(user.username.clone(), id_of(&app.dm(&sender, user, "first round").await));
    }
    eventually(Duration::from_secs(15), "every first-round push tried once", async || {
        first.iter().all(|user| service.requests(&user.username) >= 1)
    })
    .await;
    instances[0].kill();

    // The second round is sent and instance b killed before its delay has passed.
    for user in second {
        expected.insert(user.username.clone(), id_of(&app.dm(&sender, user, "second round").await));
    }
    instances[1].kill();

    eventually(Duration::from_secs(45), "every push delivered", async || {
        recipients.iter().all(|user| !service.received_by(&user.username).is_empty())
    })
    .await;
    // Time for a duplicate to show, had anything been sent twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for user in &recipients {
        let pushed: Vec<i64> = service
            .received_by(&user.username)
            .iter()
            .map(|push| push.payload["message_id"].as_i64().expect("message_id"))
            .collect();
        assert_eq!(pushed, vec![expected[&user.username]], "{}: exactly one push", user.username);
    }
    service.assert_all_verified();
}

/// Webhook deliveries are kept in the database: an instance killed with a request in flight
/// (and more queued behind it) is replaced, and every event reaches the hook, in order, with
/// each reply posted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_survive_a_killed_instance_in_order_with_each_reply_once() {
    let redis = RedisServer::start().await;
    let database_url = fresh_postgres_database().await;
    let hooks = [
        ("SWITCHBOARD__BOTS__ALLOW_PRIVATE_URLS", "true"),
        ("SWITCHBOARD__BOTS__WEBHOOK_TIMEOUT_SECONDS", "1"),
    ];
    let mut first = Instance::start_with("a", &database_url, &redis.url(), &hooks).await;
    let app = first.app();
    let receiver = Receiver::start().await;
    let alice = app.user("alice").await;
    let created = app
        .post(
            Some(&alice.token),
            "/api/bots",
            &json!({"username": "steady_bot", "webhook_url": receiver.url("steady")}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    receiver.trust("steady", created.body["webhook_secret"].as_str().unwrap());
    let bot = TestUser {
        id: created.body["bot"]["id"].as_i64().unwrap(),
        username: "steady_bot".into(),
        token: created.body["token"].as_str().unwrap().into(),
    };
    // The first request hangs past the timeout: the instance is killed while it waits.
    receiver.script(
        "steady",
        vec![
            WebhookAnswer { status: 200, body: String::new(), delay: Duration::from_secs(3) },
            webhook_reply("one"),
            webhook_reply("two"),
            webhook_reply("three"),
        ],
    );
    let sent: Vec<Value> = vec![
        app.dm(&alice, &bot, "first").await,
        app.dm(&alice, &bot, "second").await,
        app.dm(&alice, &bot, "third").await,
    ];
    receiver.wait_for("steady", 1, Duration::from_secs(10)).await;
    first.kill();

    let second = Instance::start_with("b", &database_url, &redis.url(), &hooks).await;
    let calls = receiver.wait_for("steady", 4, Duration::from_secs(30)).await;
    let events: Vec<i64> = calls.iter().map(|call| call.event_id).collect();
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[0], events[1], "the request in flight is made again");
    assert!(events[1] < events[2] && events[2] < events[3], "in event order: {events:?}");
    let messages: Vec<i64> = calls.iter().map(|call| call.body["message"]["id"].as_i64().unwrap()).collect();
    assert_eq!(&messages[1..], &sent.iter().map(id_of).collect::<Vec<_>>()[..]);

    let app = second.app();
    let conversation = conversation_of(&sent[0]);
    eventually(Duration::from_secs(10), "three replies", async || {
        app.all_messages(&alice, conversation).await.len() >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let history = app.all_messages(&alice, conversation).await;
    let replies: Vec<(String, i64)> = history
        .iter()
        .filter(|m| m["sender_id"] == bot.id)
        .map(|m| (m["message"].as_str().unwrap().to_owned(), m["reply_to"]["id"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        replies,
        vec![
            ("one".to_owned(), id_of(&sent[0])),
            ("two".to_owned(), id_of(&sent[1])),
            ("three".to_owned(), id_of(&sent[2]))
        ],
        "each reply once, to its message"
    );
    receiver.assert_all_verified();
}

/// Away replies with two instances planning: still one per sender and period; a socket on the
/// other instance counts as online; its close there starts a new period seen from here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn away_replies_are_once_per_period_across_instances() {
    let redis = RedisServer::start().await;
    let database_url = fresh_postgres_database().await;
    let away = [("SWITCHBOARD__AWAY__DELAY_SECONDS", "1")];
    let a = Instance::start_with("a", &database_url, &redis.url(), &away).await;
    let b = Instance::start_with("b", &database_url, &redis.url(), &away).await;
    let (on_a, on_b) = (a.app(), b.app());
    let alice = on_a.user("alice").await;
    let bob = on_a.user("bob").await;
    let set = on_a
        .send_json(
            reqwest::Method::PUT,
            Some(&bob.token),
            "/api/users/me/away",
            &json!({"enabled": true, "message": "On leave."}),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let auto_replies = async |app: &TestApp, conversation: i64| -> usize {
        let messages = app.all_messages(&alice, conversation).await;
        messages.iter().filter(|m| !m["auto_reply"].is_null()).count()
    };

    let first = on_a.dm(&alice, &bob, "one").await;
    let conversation = conversation_of(&first);
    on_b.dm(&alice, &bob, "two").await;
    on_a.dm(&alice, &bob, "three").await;
    eventually(Duration::from_secs(10), "an away reply", async || {
        auto_replies(&on_b, conversation).await >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(auto_replies(&on_a, conversation).await, 1, "once, whichever instance planned");

    let mut socket = on_b.ws(&bob).await;
    on_a.dm(&alice, &bob, "online on b").await;
    socket.next_of("new_message").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(auto_replies(&on_a, conversation).await, 1, "a socket on the other instance is online");
    drop(socket);
    eventually(Duration::from_secs(10), "bob offline", async || {
        on_a.presence(&alice, &bob).await["status"] == "offline"
    })
    .await;
    on_a.dm(&alice, &bob, "left again").await;
    eventually(Duration::from_secs(10), "a second away reply", async || {
        auto_replies(&on_a, conversation).await >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(auto_replies(&on_b, conversation).await, 2, "one per period");
}
