//! Scenarios that time one operation rather than delivery: full-text search over a seeded
//! history, and uploads of large attachments.

use std::time::{Duration, Instant};

use rand::RngExt;
use serde::Deserialize;

use crate::{Account, percentile, register};

/// Pseudo-words built from syllables: a vocabulary of `n` distinct words.
fn vocabulary(n: usize) -> Vec<String> {
    const SYLLABLES: [&str; 20] = [
        "ka", "lo", "mi", "re", "tu", "sa", "ne", "po", "vi", "da", "ro", "fe", "gu", "li", "ma", "zo", "be",
        "chi", "nu", "ta",
    ];
    (0..n)
        .map(|i| {
            let (a, b, c) = (i % 20, (i / 20) % 20, (i / 400) % 20);
            format!("{}{}{}", SYLLABLES[a], SYLLABLES[b], SYLLABLES[c])
        })
        .collect()
}

/// A word drawn with a skew, so a few words are common and most are rare, as in chat.
fn pick<'a>(words: &'a [String], rng: &mut impl RngExt) -> &'a str {
    let u: f64 = rng.random();
    &words[((u * u * u) * words.len() as f64) as usize % words.len()]
}

pub async fn search(url: &str, messages: usize, senders: usize, queries: usize) -> Result<(), String> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().map_err(|e| e.to_string())?;
    let words = vocabulary(4000);
    eprintln!("registering {} users…", senders * 2);
    let accounts = register(&http, url, senders * 2).await?;
    let pairs: Vec<(String, i64)> =
        accounts.chunks(2).map(|pair| (pair[0].token.clone(), pair[1].id)).collect();
    eprintln!("seeding {messages} messages from {senders} senders…");
    let started = Instant::now();
    let per_sender = messages.div_ceil(senders);
    let mut tasks = Vec::new();
    let mut rng = rand::rng();
    for (token, recipient) in pairs {
        let texts: Vec<String> = (0..per_sender)
            .map(|_| (0..10).map(|_| pick(&words, &mut rng)).collect::<Vec<_>>().join(" "))
            .collect();
        let (http, url) = (http.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0usize;
            for text in texts {
                let body = serde_json::json!({"recipient_id": recipient, "message": text});
                let ok =
                    http.post(format!("{url}/api/messages")).bearer_auth(&token).json(&body).send().await;
                if !ok.is_ok_and(|r| r.status().is_success()) {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await.map_err(|e| e.to_string())?;
    }
    eprintln!("seeded in {:.1} s ({failed} failed)", started.elapsed().as_secs_f64());

    #[derive(Deserialize)]
    struct Page {
        total: i64,
    }
    let searcher: &Account = &accounts[0];
    let mut rng = rand::rng();
    let (mut latencies, mut totals) = (Vec::with_capacity(queries), 0i64);
    for n in 0..queries {
        let q = if n % 2 == 0 {
            pick(&words, &mut rng).to_owned()
        } else {
            format!("{} {}", pick(&words, &mut rng), &pick(&words, &mut rng)[..3])
        };
        let at = Instant::now();
        let response = http
            .get(format!("{url}/api/messages/search?q={}&page_size=20", q.replace(' ', "+")))
            .bearer_auth(&searcher.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("search: {}", response.status()));
        }
        let page: Page = response.json().await.map_err(|e| e.to_string())?;
        latencies.push(at.elapsed().as_secs_f64() * 1000.0);
        totals += page.total;
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "search messages={messages} (searcher sees {:.0}) queries={queries}: ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}; mean hits {:.1}",
        messages as f64 / senders as f64,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        totals as f64 / queries as f64,
    );
    Ok(())
}

pub async fn upload(url: &str, megabytes: usize, count: usize) -> Result<(), String> {
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(120)).build().map_err(|e| e.to_string())?;
    let accounts = register(&http, url, 2).await?;
    let (sender, recipient) = (&accounts[0], &accounts[1]);
    // A PDF by its header; the rest is filler.
    let size = megabytes * 1024 * 1024;
    let mut file = b"%PDF-1.7\n".to_vec();
    file.resize(size, b'x');
    let boundary = "switchboardloadboundary7d1";
    let mut body = Vec::with_capacity(size + 1024);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"recipient_id\"\r\n\r\n{}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"load.pdf\"\r\n\
             Content-Type: application/pdf\r\n\r\n",
            recipient.id
        )
        .as_bytes(),
    );
    body.extend_from_slice(&file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let at = Instant::now();
        let response = http
            .post(format!("{url}/api/messages/with-attachment"))
            .bearer_auth(&sender.token)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().as_u16() != 201 {
            return Err(format!(
                "upload: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ));
        }
        times.push(at.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = percentile(&times, 0.5);
    println!(
        "upload {megabytes} MB x {count}: median {:.1} ms ({:.0} MB/s), fastest {:.1} ms, slowest {:.1} ms",
        median * 1000.0,
        megabytes as f64 / median,
        times.first().copied().unwrap_or(f64::NAN) * 1000.0,
        times.last().copied().unwrap_or(f64::NAN) * 1000.0,
    );
    Ok(())
}
