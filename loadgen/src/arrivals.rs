//! What the `push` and `hooks` scenarios share: requests the server makes to a receiver in
//! this process, matched by message id to the sends that caused them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, Semaphore};

/// Each message id's first arrival, and how many times it came.
pub type Arrivals = Arc<Mutex<HashMap<i64, (Instant, usize)>>>;

pub async fn record(arrivals: &Arrivals, message_id: i64, at: Instant) {
    arrivals.lock().await.entry(message_id).and_modify(|entry| entry.1 += 1).or_insert((at, 1));
}

/// One direct message to send: the sender's token, the recipient, the text.
pub struct Outgoing {
    pub token: String,
    pub recipient_id: i64,
    pub text: String,
}

/// POSTs `sends` at `rate` a second (0: all at once), 64 in flight; returns when each stored
/// message was committed (its 201).
pub async fn send_paced(
    http: &reqwest::Client,
    url: &str,
    rate: u32,
    sends: Vec<Outgoing>,
) -> Result<HashMap<i64, Instant>, String> {
    let committed: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let in_flight = Arc::new(Semaphore::new(64));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, send) in sends.into_iter().enumerate() {
        if rate > 0 {
            let due = started + Duration::from_secs_f64(n as f64 / f64::from(rate));
            tokio::time::sleep_until(due.into()).await;
        }
        let permit = in_flight.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let (http, url, committed) = (http.clone(), url.to_owned(), committed.clone());
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({"recipient_id": send.recipient_id, "message": send.text});
            let response =
                http.post(format!("{url}/api/messages")).bearer_auth(send.token).json(&body).send().await;
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
    let committed = std::mem::take(&mut *committed.lock().await);
    eprintln!("{} sent ({failed} failed) in {:.2} s", committed.len(), started.elapsed().as_secs_f64());
    Ok(committed)
}

/// Waits for `expected` arrivals, or 30 s without a new one.
pub async fn wait_all(arrivals: &Arrivals, expected: usize) {
    let mut last_count = 0;
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let count = arrivals.lock().await.len();
        if count >= expected {
            return;
        }
        if count != last_count {
            (last_count, quiet_since) = (count, Instant::now());
        } else if quiet_since.elapsed() > Duration::from_secs(30) {
            return;
        }
    }
}

pub struct Summary {
    pub arrived: usize,
    pub duplicates: usize,
    /// Arrivals per second from the first to the last.
    pub per_second: f64,
    pub span_seconds: f64,
    /// Milliseconds from each send's commit to its arrival, less `minus`, sorted.
    pub waits: Vec<f64>,
}

pub async fn summarize(arrivals: &Arrivals, committed: &HashMap<i64, Instant>, minus: Duration) -> Summary {
    let arrivals = arrivals.lock().await;
    let mut waits = Vec::with_capacity(arrivals.len());
    let (mut first, mut last) = (None::<Instant>, None::<Instant>);
    let mut duplicates = 0;
    for (id, (at, count)) in arrivals.iter() {
        duplicates += count - 1;
        first = Some(first.map_or(*at, |f| f.min(*at)));
        last = Some(last.map_or(*at, |l| l.max(*at)));
        if let Some(commit) = committed.get(id) {
            waits.push((at.saturating_duration_since(*commit).as_secs_f64() - minus.as_secs_f64()) * 1000.0);
        }
    }
    waits.sort_by(f64::total_cmp);
    let span_seconds = match (first, last) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64(),
        _ => 0.0,
    };
    let per_second = if span_seconds > 0.0 { arrivals.len() as f64 / span_seconds } else { f64::NAN };
    Summary { arrived: arrivals.len(), duplicates, per_second, span_seconds, waits }
}

/// A receiver on a free loopback port: reads each request whole, records the message id
/// `message_id` finds in its headers or body, and answers `status`.
pub async fn serve(
    arrivals: Arrivals,
    status: StatusCode,
    message_id: fn(&HeaderMap, &[u8]) -> Option<i64>,
) -> Result<u16, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let arrivals = arrivals.clone();
                    async move {
                        let at = Instant::now();
                        let headers = request.headers().clone();
                        let body =
                            request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        if let Some(id) = message_id(&headers, &body) {
                            record(&arrivals, id, at).await;
                        }
                        let mut response = Response::new(Empty::<Bytes>::new());
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(port)
}
