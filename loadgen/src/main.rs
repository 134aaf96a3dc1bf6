//! `switchboard-load`: drives a running Switchboard through its public API and reports
//! POST-to-frame latency, delivery (lost, duplicated) and throughput, plus the server's RSS
//! and CPU when given its pid.
//!
//! Scenarios:
//! - `dm`: open loop, direct messages at a fixed rate across many user pairs.
//! - `dm-max`: closed loop, N senders each sending as fast as their POSTs return.
//! - `cross`: as `dm`, with receivers on another instance.
//! - `fanout`: open loop, one sender to a group of G members, each with a socket; latency is
//!   reported per recipient and per message (until its last recipient has it).
//! - `search`: seeds a history, then times full-text searches.
//! - `upload`: times large attachment uploads.
//! - `idle`: the server's memory per open, quiet socket, from worker processes.
//! - `reconnect`: sockets opened and closed in a loop by users with a history: connects/s
//!   and connect→hello latency.
//! - `push`: Web Push to a push service in this process: pushes/s and commit→push delay.
//! - `hooks`: bots' webhooks called on a receiver in this process: deliveries/s and
//!   commit→request time.
//!
//! `--csv FILE` appends each result as a row; `plot` draws the README's SVG plots from them.

mod arrivals;
mod bench;
mod hooks;
mod idle;
mod plot;
mod push;
mod reconnect;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[derive(Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Open loop: `rate` direct messages per second over `users / 2` sender→receiver pairs.
    Dm {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        open: OpenLoop,
    },
    /// Open loop across instances: senders POST to `--url`, receivers listen on
    /// `--receiver-url` (another instance sharing Redis and the database).
    Cross {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        open: OpenLoop,
    },
    /// Closed loop: `senders` concurrent senders, each to its own receiver (`--pairs
    /// fixed`), or each message to a random one of `receivers` (`--pairs random`: most
    /// messages open a conversation, as in `../shared/bench`). One socket per receiver.
    DmMax {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 64)]
        senders: usize,
        /// Receivers with random pairs (fixed pairs: one per sender).
        #[arg(long, default_value_t = 1000)]
        receivers: usize,
        #[arg(long, value_enum, default_value_t = Pairs::Fixed)]
        pairs: Pairs,
    },
    /// Seeds `messages` direct messages from `senders` senders, then times `queries` searches
    /// by one user.
    Search {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
        #[arg(long, default_value_t = 32)]
        senders: usize,
        #[arg(long, default_value_t = 500)]
        queries: usize,
    },
    /// Opens `sockets` idle sockets, `step` more per worker process, and prints the server's
    /// RSS after each step.
    Idle {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long)]
        pid: u32,
        #[arg(long, default_value_t = 18_000)]
        sockets: usize,
        #[arg(long, default_value_t = 2_000)]
        step: usize,
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Append one row per step to this CSV file.
        #[arg(long)]
        csv: Option<PathBuf>,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Draws SVG plots (latency against rate, memory against sockets, fan-out time against
    /// group size) from the rows in `csv`.
    Plot {
        #[arg(long)]
        csv: PathBuf,
        /// The shared bench's results.tsv: also draws the plots against the Socket.IO peer.
        #[arg(long)]
        versus: Option<PathBuf>,
        #[arg(long, default_value = "docs/plots")]
        out: PathBuf,
    },
    /// One `idle` worker (started by `idle`).
    #[command(hide = true)]
    IdleWorker {
        #[arg(long)]
        url: String,
        #[arg(long)]
        source: std::net::Ipv4Addr,
        #[arg(long)]
        count: usize,
    },
    /// Uploads a file of `megabytes` MB `count` times.
    Upload {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, default_value_t = 10)]
        megabytes: usize,
        #[arg(long, default_value_t = 10)]
        count: usize,
    },
    /// Open loop: one member sends `rate` messages per second to a group of `members`.
    /// Reconnect churn: sockets opened (until `hello`) and closed in a loop by users who
    /// share `groups` groups of `history` messages each
    Reconnect {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, default_value_t = 50)]
        users: usize,
        #[arg(long, default_value_t = 49)]
        groups: usize,
        #[arg(long, default_value_t = 100)]
        history: usize,
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// Web Push: `users` offline recipients with a subscription each on a push service in
    /// this process, one message each; pushes/s and the delay beyond `push.delay_seconds`.
    Push {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, default_value_t = 2000)]
        users: usize,
        /// Messages per second; 0 sends them all at once.
        #[arg(long, default_value_t = 0)]
        rate: u32,
        /// The server's `push.delay_seconds`.
        #[arg(long, default_value_t = 5)]
        delay: u64,
        #[arg(long)]
        pid: Option<u32>,
    },
    /// Webhooks: `bots` bots with their hook on a receiver in this process; `messages`
    /// direct messages to them; deliveries/s and commit→request time.
    Hooks {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[arg(long, default_value_t = 50)]
        bots: usize,
        #[arg(long, default_value_t = 5000)]
        messages: usize,
        /// Messages per second; 0 sends them all at once.
        #[arg(long, default_value_t = 0)]
        rate: u32,
    },
    Fanout {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 500)]
        members: usize,
        #[arg(long, default_value_t = 20)]
        rate: u32,
    },
}

/// An open loop: `rate` messages per second over `users / 2` sender→receiver pairs.
#[derive(Args, Clone, Copy)]
struct OpenLoop {
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value_t = 500)]
    rate: u32,
}

#[derive(Args, Clone)]
struct Common {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Where receivers open their sockets (default: `--url`).
    #[arg(long)]
    receiver_url: Option<String>,
    /// Seconds of sending.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// The server's pid, to report its RSS and CPU.
    #[arg(long)]
    pid: Option<u32>,
    /// Append one result row to this CSV file.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// A free-form label for the CSV row (e.g. sqlite, postgres).
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Deserialize)]
struct Session {
    token: String,
    user: User,
}

#[derive(Deserialize)]
struct User {
    id: i64,
}

struct Account {
    id: i64,
    token: String,
}

type Sent = Arc<Mutex<HashMap<String, Instant>>>;
/// `(client_id, receiving socket, arrival)` of one `new_message` frame.
type Arrival = (String, usize, Instant);

/// Where one send goes: a user (direct) or a group.
#[derive(Clone, Copy)]
enum To {
    User(i64),
    Group(i64),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Pairs {
    /// Each sender writes to one receiver: steady-state chat.
    Fixed,
    /// Each message goes to a random receiver: first contact, the common case on a
    /// marketplace.
    Random,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let cli = Cli::parse();
    match &cli.scenario {
        Scenario::Search { url, messages, senders, queries } => {
            return bench::search(url, *messages, (*senders).max(1), *queries).await;
        }
        Scenario::Upload { url, megabytes, count } => return bench::upload(url, *megabytes, *count).await,
        Scenario::Hooks { url, bots, messages, rate } => {
            let plan = hooks::Plan { bots: (*bots).max(1), messages: *messages, rate: *rate };
            return hooks::run(url, plan).await;
        }
        Scenario::Push { url, users, rate, delay, pid } => {
            let plan = push::Plan { users: (*users).max(1), rate: *rate, delay: *delay, pid: *pid };
            return push::run(url, plan).await;
        }
        Scenario::Idle { url, pid, sockets, step, users, csv, label } => {
            let csv = csv.as_deref().map(|path| (path, label.as_str()));
            return idle::run(url, *pid, *sockets, (*step).max(1), (*users).max(1), csv).await;
        }
        Scenario::Plot { csv, versus, out } => return plot::run(csv, versus.as_deref(), out),
        Scenario::Reconnect { url, users, groups, history, clients, duration } => {
            let plan = reconnect::Plan {
                users: *users,
                groups: *groups,
                history: *history,
                clients: (*clients).max(1),
                duration: *duration,
            };
            return reconnect::run(url, plan).await;
        }
        Scenario::IdleWorker { url, source, count } => {
            return idle::worker(url, *source, *count).await;
        }
        _ => {}
    }
    let (name, common, users, params) = match &cli.scenario {
        Scenario::Dm { common, open } => {
            ("dm", common, open.users, format!("users={} rate={}", open.users, open.rate))
        }
        Scenario::Cross { common, open } => {
            if common.receiver_url.is_none() {
                return Err("cross needs --receiver-url (another instance)".into());
            }
            ("cross", common, open.users, format!("users={} rate={}", open.users, open.rate))
        }
        Scenario::DmMax { common, senders, receivers, pairs } => match pairs {
            Pairs::Fixed => ("dm-max", common, senders * 2, format!("senders={senders} pairs=fixed")),
            Pairs::Random => (
                "dm-max",
                common,
                senders + receivers,
                format!("senders={senders} receivers={receivers} pairs=random"),
            ),
        },
        Scenario::Fanout { common, members, rate } => {
            if *members < 2 {
                return Err("fanout needs at least 2 members".into());
            }
            ("fanout", common, *members, format!("members={members} rate={rate}"))
        }
        Scenario::Search { .. }
        | Scenario::Reconnect { .. }
        | Scenario::Upload { .. }
        | Scenario::Push { .. }
        | Scenario::Hooks { .. }
        | Scenario::Idle { .. }
        | Scenario::IdleWorker { .. }
        | Scenario::Plot { .. } => {
            return Ok(());
        }
    };
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?;
    eprintln!("registering {users} users…");
    let accounts = register(&http, &common.url, users).await?;
    let (senders, receivers): (Vec<&Account>, Vec<&Account>) = match &cli.scenario {
        // The first member sends; every other member receives.
        Scenario::Fanout { .. } => (vec![&accounts[0]], accounts[1..].iter().collect()),
        Scenario::DmMax { senders, pairs: Pairs::Random, .. } => {
            (accounts[..*senders].iter().collect(), accounts[*senders..].iter().collect())
        }
        _ => accounts.chunks(2).map(|pair| (&pair[0], &pair[1])).unzip(),
    };
    let receiver_ids: Arc<Vec<i64>> = Arc::new(receivers.iter().map(|account| account.id).collect());
    let group = match &cli.scenario {
        Scenario::Fanout { .. } => {
            let ids: Vec<i64> = receivers.iter().map(|account| account.id).collect();
            Some(create_group(&http, &common.url, &senders[0].token, &ids).await?)
        }
        _ => None,
    };
    // Each message is expected once on this many sockets.
    let fan = if group.is_some() { receivers.len() } else { 1 };

    let sent: Sent = Arc::new(Mutex::new(HashMap::new()));
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel::<Arrival>();
    eprintln!("opening {} sockets…", receivers.len());
    for (index, receiver) in receivers.iter().enumerate() {
        open_socket(
            common.receiver_url.as_deref().unwrap_or(&common.url),
            &receiver.token,
            index,
            frames_tx.clone(),
        )
        .await?;
    }
    drop(frames_tx);

    let cpu_before = common.pid.and_then(cpu_ticks);
    let started = Instant::now();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let run_id: u32 = rand::random();
    let deadline = started + Duration::from_secs(common.duration);
    let pairs: Vec<(To, String)> = match group {
        Some(group) => vec![(To::Group(group), senders[0].token.clone())],
        None => senders.iter().zip(&receivers).map(|(s, r)| (To::User(r.id), s.token.clone())).collect(),
    };
    let pairs = Arc::new(pairs);
    let mut tasks = Vec::new();
    match &cli.scenario {
        Scenario::Dm { open: OpenLoop { rate, .. }, .. }
        | Scenario::Cross { open: OpenLoop { rate, .. }, .. }
        | Scenario::Fanout { rate, .. } => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(*rate)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0usize;
            while Instant::now() < deadline {
                tick.tick().await;
                let (recipient, token) = pairs[n % pairs.len()].clone();
                let client_id = format!("lg{run_id:x}-{n}");
                tasks.push(tokio::spawn(send(
                    http.clone(),
                    common.url.clone(),
                    token,
                    recipient,
                    client_id,
                    sent.clone(),
                    errors.clone(),
                )));
                n += 1;
            }
        }
        Scenario::Search { .. }
        | Scenario::Reconnect { .. }
        | Scenario::Upload { .. }
        | Scenario::Push { .. }
        | Scenario::Hooks { .. }
        | Scenario::Idle { .. }
        | Scenario::IdleWorker { .. }
        | Scenario::Plot { .. } => {}
        Scenario::DmMax { pairs: mode, .. } => {
            let random = *mode == Pairs::Random;
            // Closed loop: each sender waits for its POST before the next.
            for (index, (fixed, token)) in pairs.iter().cloned().enumerate() {
                let (http, url, sent, errors) =
                    (http.clone(), common.url.clone(), sent.clone(), errors.clone());
                let receiver_ids = receiver_ids.clone();
                tasks.push(tokio::spawn(async move {
                    let mut n = 0usize;
                    while Instant::now() < deadline {
                        let recipient = if random {
                            To::User(receiver_ids[rand::random_range(0..receiver_ids.len())])
                        } else {
                            fixed
                        };
                        let client_id = format!("lg{run_id:x}-{index}-{n}");
                        send(
                            http.clone(),
                            url.clone(),
                            token.clone(),
                            recipient,
                            client_id,
                            sent.clone(),
                            errors.clone(),
                        )
                        .await;
                        n += 1;
                    }
                }));
            }
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let send_time = started.elapsed();
    let cpu_after = common.pid.and_then(cpu_ticks);

    // Frames still in flight get a grace period.
    let sent = sent.lock().await.clone();
    let expected = sent.len() * fan;
    // A direct message has one receiving socket, whichever it is; a group message one per member.
    let slot = |socket: usize| if fan > 1 { socket } else { 0 };
    let mut arrived: HashMap<(String, usize), Vec<Instant>> = HashMap::new();
    let mut received = 0usize;
    let grace = Instant::now() + Duration::from_secs(3);
    while received < expected {
        match tokio::time::timeout_at(grace.into(), frames_rx.recv()).await {
            Ok(Some((client_id, socket, at))) => {
                received += 1;
                arrived.entry((client_id, slot(socket))).or_default().push(at);
            }
            _ => break,
        }
    }
    while let Ok((client_id, socket, at)) = frames_rx.try_recv() {
        arrived.entry((client_id, slot(socket))).or_default().push(at);
    }

    let mut latencies: Vec<f64> = Vec::with_capacity(expected);
    // Per message: until its last recipient had it.
    let mut completions: Vec<f64> = Vec::with_capacity(sent.len());
    let (mut lost, mut duplicated) = (0usize, 0usize);
    for (client_id, at) in &sent {
        let mut last = 0.0f64;
        for socket in 0..fan {
            match arrived.get(&(client_id.clone(), socket)) {
                Some(times) => {
                    duplicated += times.len() - 1;
                    let ms = times[0].saturating_duration_since(*at).as_secs_f64() * 1000.0;
                    latencies.push(ms);
                    last = last.max(ms);
                }
                None => lost += 1,
            }
        }
        completions.push(last);
    }
    latencies.sort_by(f64::total_cmp);
    completions.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&latencies, p);
    let delivered = latencies.len();
    let throughput = delivered as f64 / send_time.as_secs_f64();
    let rss_kb = common.pid.and_then(rss_kb);
    let cpu = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => {
            Some((after - before) as f64 / clock_ticks() / send_time.as_secs_f64() * 100.0)
        }
        _ => None,
    };
    let errors = errors.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "{name} {params}: sent {} (errors {errors}), delivered {delivered}, lost {lost}, duplicated {duplicated}; \
         {throughput:.0} delivered msgs/s; POST→frame ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}; server RSS {} CPU {}",
        sent.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        rss_kb.map_or("n/a".into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0)),
        cpu.map_or("n/a".into(), |cpu| format!("{cpu:.0}%")),
    );
    if fan > 1 {
        println!(
            "  per message, until all {fan} recipients had it: p50 {:.2} p99 {:.2} max {:.2} ms",
            percentile(&completions, 0.50),
            percentile(&completions, 0.99),
            completions.last().copied().unwrap_or(f64::NAN),
        );
    }
    if let Some(path) = &common.csv {
        let fanout = fan > 1;
        let optional = |value: f64| if fanout { format!("{value:.3}") } else { String::new() };
        append_csv(
            path,
            &[
                ("scenario", name.to_string()),
                ("label", common.label.clone()),
                ("params", params.clone()),
                ("sent", sent.len().to_string()),
                ("errors", errors.to_string()),
                ("delivered", delivered.to_string()),
                ("lost", lost.to_string()),
                ("duplicated", duplicated.to_string()),
                ("msgs_per_s", format!("{throughput:.1}")),
                ("p50_ms", format!("{:.3}", pct(0.50))),
                ("p90_ms", format!("{:.3}", pct(0.90))),
                ("p99_ms", format!("{:.3}", pct(0.99))),
                ("max_ms", format!("{:.3}", latencies.last().copied().unwrap_or(f64::NAN))),
                ("rss_kb", rss_kb.map_or(String::new(), |kb| kb.to_string())),
                ("cpu_pct", cpu.map_or(String::new(), |cpu| format!("{cpu:.1}"))),
                ("all_p50_ms", optional(percentile(&completions, 0.50))),
                ("all_p99_ms", optional(percentile(&completions, 0.99))),
            ],
        )?;
    }
    Ok(())
}

/// Every scenario's CSV columns; a row leaves out what its scenario does not measure.
const CSV_COLUMNS: [&str; 18] = [
    "scenario",
    "label",
    "params",
    "sent",
    "errors",
    "delivered",
    "lost",
    "duplicated",
    "msgs_per_s",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "rss_kb",
    "cpu_pct",
    "all_p50_ms",
    "all_p99_ms",
    "kb_per_socket",
];

/// Appends one row (writing the header first into a new file).
fn append_csv(path: &std::path::Path, values: &[(&str, String)]) -> Result<(), String> {
    let new = !path.exists();
    let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| e.to_string())?;
    if new {
        writeln!(file, "{}", CSV_COLUMNS.join(",")).map_err(|e| e.to_string())?;
    }
    let row: Vec<&str> = CSV_COLUMNS
        .iter()
        .map(|column| values.iter().find(|(name, _)| name == column).map_or("", |(_, value)| value.as_str()))
        .collect();
    writeln!(file, "{}", row.join(",")).map_err(|e| e.to_string())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// Creates a group owned by `token`'s user with `members`; returns its id.
async fn create_group(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    members: &[i64],
) -> Result<i64, String> {
    #[derive(Deserialize)]
    struct Group {
        id: i64,
    }
    let body = serde_json::json!({"name": "load test group", "member_ids": members});
    let response = http
        .post(format!("{url}/api/groups"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("create group: {}", response.status()));
    }
    Ok(response.json::<Group>().await.map_err(|e| e.to_string())?.id)
}

/// Registers `count` users with fresh names, 16 at a time (Argon2 dominates).
async fn register(http: &reqwest::Client, url: &str, count: usize) -> Result<Vec<Account>, String> {
    let prefix: u32 = rand::random();
    let limit = Arc::new(Semaphore::new(16));
    let mut tasks = Vec::with_capacity(count);
    for n in 0..count {
        let (http, url, limit) = (http.clone(), url.to_owned(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.map_err(|e| e.to_string())?;
            let body = serde_json::json!({"username": format!("lg{prefix:08x}{n}"), "password": "load-test-password"});
            let response = http.post(format!("{url}/api/auth/register")).json(&body).send().await.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("register: {}", response.status()));
            }
            let session: Session = response.json().await.map_err(|e| e.to_string())?;
            Ok(Account { id: session.user.id, token: session.token })
        }));
    }
    let mut accounts = Vec::with_capacity(count);
    for task in tasks {
        accounts.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok(accounts)
}

/// Opens a socket and forwards `(client_id, socket, arrival)` of every `new_message` frame.
async fn open_socket(
    url: &str,
    token: &str,
    socket: usize,
    frames: mpsc::UnboundedSender<Arrival>,
) -> Result<(), String> {
    let ws_url = format!("{}/ws?token={token}", url.replacen("http", "ws", 1));
    let (mut stream, _) = tokio_tungstenite::connect_async(ws_url).await.map_err(|e| e.to_string())?;
    // Messages committed before `hello` belong to the client's sync, not to this socket:
    // sending starts only once every socket is live.
    match stream.next().await {
        Some(Ok(WsMessage::Text(text))) if text.contains("\"hello\"") => {}
        other => return Err(format!("expected hello, got {other:?}")),
    }
    tokio::spawn(async move {
        #[derive(Deserialize)]
        struct Frame {
            #[serde(rename = "type")]
            kind: String,
            message: Option<FrameMessage>,
        }
        #[derive(Deserialize)]
        struct FrameMessage {
            client_id: Option<String>,
        }
        while let Some(Ok(message)) = stream.next().await {
            let at = Instant::now();
            if let WsMessage::Text(text) = message
                && let Ok(frame) = serde_json::from_str::<Frame>(&text)
                && frame.kind == "new_message"
                && let Some(client_id) = frame.message.and_then(|m| m.client_id)
                && frames.send((client_id, socket, at)).is_err()
            {
                break;
            }
        }
    });
    Ok(())
}

async fn send(
    http: reqwest::Client,
    url: String,
    token: String,
    to: To,
    client_id: String,
    sent: Sent,
    errors: Arc<std::sync::atomic::AtomicU64>,
) {
    let (path, body) = match to {
        To::User(recipient) => (
            format!("{url}/api/messages"),
            serde_json::json!({"recipient_id": recipient, "message": "load test message", "client_id": client_id}),
        ),
        To::Group(group) => (
            format!("{url}/api/groups/{group}/messages"),
            serde_json::json!({"message": "load test message", "client_id": client_id}),
        ),
    };
    let at = Instant::now();
    let result = http.post(path).bearer_auth(token).json(&body).send().await;
    match result {
        Ok(response) if response.status().is_success() => {
            sent.lock().await.insert(client_id, at);
        }
        _ => {
            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

fn proc_field(pid: u32, file: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = proc_field(pid, "stat")?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn rss_kb(pid: u32) -> Option<u64> {
    proc_field(pid, "status")?
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Linux reports CPU time in clock ticks of 1/100 s on every platform we run.
fn clock_ticks() -> f64 {
    100.0
}
