//! `push`: Web Push from one server to a push service in this process. `users` recipients
//! each subscribe an endpoint here and never open a socket; `users` senders each write to
//! their own recipient (a first message: it opens the conversation). Reports the pushes per
//! second the server sends and the delay from each message's commit (its 201) to its push,
//! minus the server's `push.delay_seconds`.
//!
//! The server must run with `SWITCHBOARD__PUSH__ALLOW_INSECURE_ENDPOINTS=true` (this push
//! service is plain HTTP on loopback). The push service answers 201 without decrypting: the
//! integration tests check the encryption; here its cost would only be the receiver's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::arrivals::{self, Arrivals};
use crate::{percentile, register};

/// A valid `p256dh`: the P-256 generator point, uncompressed, base64url.
const P256DH: &str =
    "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKWT-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU";
const AUTH: &str = "AAECAwQFBgcICQoLDA0ODw";

pub struct Plan {
    pub users: usize,
    /// Messages per second; 0 sends them all at once (64 in flight) to find the ceiling.
    pub rate: u32,
    /// The server's `push.delay_seconds`.
    pub delay: u64,
    pub pid: Option<u32>,
}

pub async fn run(url: &str, plan: Plan) -> Result<(), String> {
    let arrivals: Arrivals = Arc::default();
    let port = arrivals::serve(arrivals.clone(), hyper::StatusCode::CREATED, topic_id).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?;
    eprintln!("registering {} users…", plan.users * 2);
    let accounts = register(&http, url, plan.users * 2).await?;
    let (senders, recipients) = accounts.split_at(plan.users);
    for (n, recipient) in recipients.iter().enumerate() {
        let body = serde_json::json!({
            "endpoint": format!("http://127.0.0.1:{port}/push/{n}"),
            "keys": {"p256dh": P256DH, "auth": AUTH},
        });
        let response = http
            .post(format!("{url}/api/push/subscriptions"))
            .bearer_auth(&recipient.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("subscribe: {} (is push.allow_insecure_endpoints on?)", response.status()));
        }
    }

    eprintln!("sending {} messages…", plan.users);
    let sends = senders
        .iter()
        .zip(recipients)
        .enumerate()
        .map(|(n, (sender, recipient))| arrivals::Outgoing {
            token: sender.token.clone(),
            recipient_id: recipient.id,
            text: format!("push {n}: are you there?"),
        })
        .collect();
    let cpu_before = plan.pid.and_then(crate::cpu_ticks);
    let started = Instant::now();
    let committed = arrivals::send_paced(&http, url, plan.rate, sends).await?;
    let sent = committed.len();
    eprintln!("waiting for the pushes…");
    arrivals::wait_all(&arrivals, sent).await;
    let cpu = plan.pid.and_then(crate::cpu_ticks).zip(cpu_before).map(|(after, before)| after - before);
    let wall = started.elapsed().as_secs_f64();

    let summary = arrivals::summarize(&arrivals, &committed, Duration::from_secs(plan.delay)).await;
    let late = &summary.waits;
    println!(
        "push users={} rate={} delay={}s: {} sent, {} pushed, {} missing, {} duplicates; \
         {:.0} pushes/s (first to last push, {:.2} s); beyond the delay p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        plan.users,
        plan.rate,
        plan.delay,
        sent,
        summary.arrived,
        sent.saturating_sub(summary.arrived),
        summary.duplicates,
        summary.per_second,
        summary.span_seconds,
        percentile(late, 0.50),
        percentile(late, 0.99),
        late.last().copied().unwrap_or(f64::NAN),
    );
    if let Some(ticks) = cpu {
        println!("server CPU: {:.2} cores over the run", ticks as f64 / crate::clock_ticks() / wall);
    }
    Ok(())
}

/// A push's message id, from its `Topic` (`m<id>`); the encrypted body is read, as a push
/// service must, and dropped.
fn topic_id(headers: &hyper::HeaderMap, _body: &[u8]) -> Option<i64> {
    headers.get("topic")?.to_str().ok()?.strip_prefix('m')?.parse().ok()
}
