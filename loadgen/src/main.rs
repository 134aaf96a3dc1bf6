//! `switchboard-load`: drives a running Switchboard through its public API and reports
//! POST-to-frame latency, delivery (lost, duplicated) and throughput, plus the server's RSS
//! and CPU when given its pid.
//!
//! Scenarios:
//! - `dm`: open loop, direct messages at a fixed rate across many user pairs.
//! - `dm-max`: closed loop, N senders each sending as fast as their POSTs return.

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
    /// Closed loop: `senders` concurrent senders, each to its own receiver.
    DmMax {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 64)]
        senders: usize,
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

#[tokio::main]
async fn main() -> Result<(), String> {
    let cli = Cli::parse();
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
        Scenario::DmMax { common, senders } => ("dm-max", common, senders * 2, format!("senders={senders}")),
    };
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?;
    eprintln!("registering {users} users…");
    let accounts = register(&http, &common.url, users).await?;
    let (senders, receivers): (Vec<_>, Vec<_>) = accounts.chunks(2).map(|pair| (&pair[0], &pair[1])).unzip();

    let sent: Sent = Arc::new(Mutex::new(HashMap::new()));
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel::<(String, Instant)>();
    eprintln!("opening {} sockets…", receivers.len());
    for receiver in &receivers {
        open_socket(
            common.receiver_url.as_deref().unwrap_or(&common.url),
            &receiver.token,
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
    let pairs: Vec<(i64, String)> =
        senders.iter().zip(&receivers).map(|(s, r)| (r.id, s.token.clone())).collect();
    let pairs = Arc::new(pairs);
    let mut tasks = Vec::new();
    match &cli.scenario {
        Scenario::Dm { open, .. } | Scenario::Cross { open, .. } => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(open.rate)));
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
        Scenario::DmMax { .. } => {
            for (index, (recipient, token)) in pairs.iter().cloned().enumerate() {
                let (http, url, sent, errors) =
                    (http.clone(), common.url.clone(), sent.clone(), errors.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0usize;
                    while Instant::now() < deadline {
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
    let mut arrived: HashMap<String, Vec<Instant>> = HashMap::new();
    let grace = Instant::now() + Duration::from_secs(3);
    loop {
        let received: usize = arrived.values().map(Vec::len).sum();
        if received >= sent.len() && sent.keys().all(|id| arrived.contains_key(id)) {
            break;
        }
        match tokio::time::timeout_at(grace.into(), frames_rx.recv()).await {
            Ok(Some((client_id, at))) => arrived.entry(client_id).or_default().push(at),
            _ => break,
        }
    }
    while let Ok((client_id, at)) = frames_rx.try_recv() {
        arrived.entry(client_id).or_default().push(at);
    }

    let mut latencies: Vec<f64> = Vec::with_capacity(sent.len());
    let (mut lost, mut duplicated) = (0usize, 0usize);
    for (client_id, at) in &sent {
        match arrived.get(client_id) {
            Some(times) => {
                duplicated += times.len() - 1;
                latencies.push(times[0].saturating_duration_since(*at).as_secs_f64() * 1000.0);
            }
            None => lost += 1,
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
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
    if let Some(path) = &common.csv {
        let new = !path.exists();
        let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(|e| e.to_string())?;
        if new {
            writeln!(file, "scenario,label,params,sent,errors,delivered,lost,duplicated,msgs_per_s,p50_ms,p90_ms,p99_ms,max_ms,rss_kb,cpu_pct")
                .map_err(|e| e.to_string())?;
        }
        writeln!(
            file,
            "{name},{},{params},{},{errors},{delivered},{lost},{duplicated},{throughput:.1},{:.3},{:.3},{:.3},{:.3},{},{}",
            common.label,
            sent.len(),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            latencies.last().copied().unwrap_or(f64::NAN),
            rss_kb.map_or(String::new(), |kb| kb.to_string()),
            cpu.map_or(String::new(), |cpu| format!("{cpu:.1}")),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
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

/// Opens a socket and forwards `(client_id, arrival)` of every `new_message` frame.
async fn open_socket(
    url: &str,
    token: &str,
    frames: mpsc::UnboundedSender<(String, Instant)>,
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
                && frames.send((client_id, at)).is_err()
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
    recipient: i64,
    client_id: String,
    sent: Sent,
    errors: Arc<std::sync::atomic::AtomicU64>,
) {
    let body = serde_json::json!({"recipient_id": recipient, "message": "load test message", "client_id": client_id});
    let at = Instant::now();
    let result = http.post(format!("{url}/api/messages")).bearer_auth(token).json(&body).send().await;
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
