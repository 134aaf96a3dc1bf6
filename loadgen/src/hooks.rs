//! `hooks`: webhook deliveries from one server to a receiver in this process. `bots` bots
//! (each owned by its own user) have their webhook here; `bots` senders each write
//! `messages / bots` direct messages to their bot. Reports the deliveries per second and the
//! time from each message's commit (its 201) to its webhook request.
//!
//! The server must run with `SWITCHBOARD__BOTS__ALLOW_PRIVATE_URLS=true` (the receiver is on
//! loopback). The receiver answers 200 without a reply and does not check signatures (the
//! integration tests do).

use std::sync::Arc;
use std::time::Duration;

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
    let sends = (0..plan.messages)
        .map(|n| arrivals::Outgoing {
            token: owners[n % owners.len()].token.clone(),
            recipient_id: bots[n % bots.len()],
            text: format!("hook {n}"),
        })
        .collect();
    let committed = arrivals::send_paced(&http, url, plan.rate, sends).await?;
    let sent = committed.len();
    eprintln!("waiting for the deliveries…");
    arrivals::wait_all(&arrivals, sent).await;
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
