//! `hooks`: webhook deliveries from one server to a receiver in this process. `bots` bots
//! (each owned by its own user) have their webhook here; `bots` senders each write
//! `messages / bots` direct messages to their bot. Reports the deliveries per second and the
//! time from each message's commit (its 201) to its webhook request.
//!
//! The server must run with `SWITCHBOARD__BOTS__ALLOW_PRIVATE_URLS=true` (the receiver is on
//! loopback). The receiver answers 200 without a reply and does not check signatures (the
//! integration tests do).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore};

use crate::arrivals::{self, Arrivals};
use crate::{percentile, register};

pub struct Plan {
    pub bots: usize,
    pub messages: usize,
    /// Messages per second; 0 sends them all at once (64 in flight).
    pub rate: u32,
}

pub async fn run(url: &str, plan: Plan) -> Result<(), String> {
    let arrivals: Arrivals = Arc::default();
    let port = arrivals::serve(arrivals.clone(), hyper::StatusCode::OK, message_id).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?;
    eprintln!("registering {} owners and creating their bots…", plan.bots);
    let owners = register(&http, url, plan.bots).await?;
    let prefix: u32 = rand::random();
    let mut bots = Vec::with_capacity(plan.bots);
    for (n, owner) in owners.iter().enumerate() {
        let body = serde_json::json!({
            "username": format!("hk{prefix:08x}{n}"),
            "webhook_url": format!("http://127.0.0.1:{port}/hook/{n}"),
        });
        let response = http
            .post(format!("{url}/api/bots"))
            .bearer_auth(&owner.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("create bot: {} (is bots.allow_private_urls on?)", response.status()));
        }
        let created: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
        bots.push(created["bot"]["id"].as_i64().ok_or("no bot id")?);
    }

    eprintln!("sending {} messages to {} bots…", plan.messages, plan.bots);
    let committed: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(64));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for n in 0..plan.messages {
        if plan.rate > 0 {
            let due = started + Duration::from_secs_f64(n as f64 / f64::from(plan.rate));
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = in_flight.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let (http, url, committed) = (http.clone(), url.to_owned(), committed.clone());
        let body = serde_json::json!({"recipient_id": bots[n % bots.len()], "message": format!("hook {n}")});
        let token = owners[n % owners.len()].token.clone();
        tasks.push(tokio::spawn(async move {
            let response =
                http.post(format!("{url}/api/messages")).bearer_auth(token).json(&body).send().await;
            let at = Instant::now();
            drop(permit);
            let message: serde_json::Value = match response {
                Ok(response) if response.status().is_success() => response.json().await.unwrap_or_default(),
                _ => return false,
            };
            let Some(id) = message["id"].as_i64() else { return false };
            committed.lock().await.insert(id, at);
            true
        }));
    }
    let mut failed = 0;
    for task in tasks {
        if !task.await.unwrap_or(false) {
            failed += 1;
        }
    }
    let sent = committed.lock().await.len();
    eprintln!(
        "{sent} sent ({failed} failed) in {:.2} s; waiting for the deliveries…",
        started.elapsed().as_secs_f64()
    );
    arrivals::wait_all(&arrivals, sent).await;
    let committed = committed.lock().await;
    let summary = arrivals::summarize(&arrivals, &committed, Duration::ZERO).await;
    println!(
        "hooks bots={} messages={} rate={}: {} sent, {} delivered, {} missing, {} duplicates; \
         {:.0} deliveries/s (first to last, {:.2} s); commit to webhook request p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        plan.bots,
        plan.messages,
        plan.rate,
        sent,
        summary.arrived,
        sent.saturating_sub(summary.arrived),
        summary.duplicates,
        summary.per_second,
        summary.span_seconds,
        percentile(&summary.waits, 0.50),
        percentile(&summary.waits, 0.99),
        summary.waits.last().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}

/// A delivery's message id, from its body.
fn message_id(_headers: &hyper::HeaderMap, body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<serde_json::Value>(body).ok()?["message"]["id"].as_i64()
}
