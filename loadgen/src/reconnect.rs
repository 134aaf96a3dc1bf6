//! `reconnect`: what a socket's start costs with a history behind it. `users` users share
//! `groups` groups of `history` messages each; then `clients` concurrent loops each pick a
//! user, open a socket, wait for `hello` and close, for `duration` seconds (mobile clients
//! and page reloads do this all day). Reports connects per second and connect→hello latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::{Account, create_group, percentile, register};

pub struct Plan {
    pub users: usize,
    pub groups: usize,
    pub history: usize,
    pub clients: usize,
    pub duration: u64,
}

pub async fn run(url: &str, plan: Plan) -> Result<(), String> {
    let http = reqwest::Client::new();
    println!("registering {} users…", plan.users);
    let accounts = register(&http, url, plan.users.max(2)).await?;
    let members: Vec<i64> = accounts[1..].iter().map(|account| account.id).collect();
    println!("creating {} groups of {} messages…", plan.groups, plan.history);
    for _ in 0..plan.groups {
        let group = create_group(&http, url, &accounts[0].token, &members).await?;
        seed(&http, url, &accounts, group, plan.history).await?;
    }
    let accounts = Arc::new(accounts);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut loops = Vec::with_capacity(plan.clients);
    for client in 0..plan.clients {
        let (url, accounts, stop) = (url.to_owned(), accounts.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut n = client;
            while !stop.load(Ordering::Relaxed) {
                let account = &accounts[n % accounts.len()];
                n += plan.clients;
                match connect(&url, account).await {
                    Ok(latency) => latencies.push(latency),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(plan.duration)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut errors = 0;
    for handle in loops {
        let (mine, failed) = handle.await.map_err(|e| e.to_string())?;
        latencies.extend(mine);
        errors += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    println!(
        "reconnect users={} groups={} history={} clients={}: {} connects ({} errors), {:.1} connects/s; connect→hello ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        plan.users,
        plan.groups,
        plan.history,
        plan.clients,
        latencies.len(),
        errors,
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0),
    );
    Ok(())
}

/// `count` messages into `group`, from its members in turn, 32 at a time.
async fn seed(
    http: &reqwest::Client,
    url: &str,
    accounts: &[Account],
    group: i64,
    count: usize,
) -> Result<(), String> {
    let mut sent = 0;
    while sent < count {
        let batch = (count - sent).min(32);
        let posts = (0..batch).map(|i| {
            let account = &accounts[(sent + i) % accounts.len()];
            http.post(format!("{url}/api/groups/{group}/messages"))
                .bearer_auth(&account.token)
                .json(&serde_json::json!({"message": "history"}))
                .send()
        });
        for response in futures_util::future::join_all(posts).await {
            let response = response.map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("seed: {}", response.status()));
            }
        }
        sent += batch;
    }
    Ok(())
}

/// Opens a socket, waits for `hello`, closes; the time to `hello` in ms.
async fn connect(url: &str, account: &Account) -> Result<f64, String> {
    let ws_url = format!("{}/ws?token={}", url.replacen("http", "ws", 1), account.token);
    let at = Instant::now();
    let (mut stream, _) = tokio_tungstenite::connect_async(ws_url).await.map_err(|e| e.to_string())?;
    match stream.next().await {
        Some(Ok(WsMessage::Text(text))) if text.contains("\"hello\"") => {}
        other => return Err(format!("expected hello, got {other:?}")),
    }
    let latency = at.elapsed().as_secs_f64() * 1000.0;
    let _ = stream.send(WsMessage::Close(None)).await;
    while let Some(Ok(_)) = stream.next().await {}
    Ok(latency)
}
