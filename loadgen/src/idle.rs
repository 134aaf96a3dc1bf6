//! Idle sockets: how much server memory each open, quiet socket costs. One process may open
//! at most 20,000 files here, so the sockets are held by worker processes (this binary run as
//! `idle-worker`), each connecting from its own loopback source address so no address runs
//! out of ephemeral ports.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::{append_csv, register, rss_kb};

/// Reads one token a line from stdin up to an empty line (thousands of tokens are more than
/// one command-line argument may hold), opens `count` sockets from `source` with them (round
/// robin), waits for each `hello`, prints `ready`, then holds them until stdin closes.
pub async fn worker(url: &str, source: Ipv4Addr, count: usize) -> Result<(), String> {
    let host: SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .map_err(|err| format!("--url must be http://IP:PORT for idle: {err}"))?;
    let tokens: Vec<String> =
        std::io::stdin().lock().lines().map_while(Result::ok).take_while(|line| !line.is_empty()).collect();
    if tokens.is_empty() {
        return Err("no tokens on stdin".into());
    }
    let mut held = Vec::with_capacity(count);
    for n in 0..count {
        let token = &tokens[n % tokens.len()];
        let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).map_err(|e| e.to_string())?;
        let stream = socket.connect(host).await.map_err(|e| format!("connect #{n}: {e}"))?;
        let request = format!("ws://{host}/ws?token={token}");
        let (mut ws, _) =
            tokio_tungstenite::client_async(request, stream).await.map_err(|e| e.to_string())?;
        match ws.next().await {
            Some(Ok(WsMessage::Text(text))) if text.contains("\"hello\"") => {}
            other => return Err(format!("expected hello, got {other:?}")),
        }
        // Reading keeps answering the server's pings; nothing else arrives.
        held.push(tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} }));
    }
    println!("ready {count}");
    let _ = std::io::stdout().flush();
    // Hold until the parent closes our stdin.
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await
    .map_err(|e| e.to_string())?;
    drop(held);
    Ok(())
}

pub async fn run(
    url: &str,
    pid: u32,
    sockets: usize,
    step: usize,
    users: usize,
    csv: Option<(&std::path::Path, &str)>,
) -> Result<(), String> {
    let http = reqwest::Client::new();
    eprintln!("registering {users} users…");
    let tokens: Vec<String> = register(&http, url, users).await?.into_iter().map(|a| a.token).collect();
    let baseline = rss_kb(pid).ok_or("cannot read the server's RSS (--pid)")?;
    println!("sockets,rss_kb,kb_per_socket_since_0");
    println!("0,{baseline},");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut workers: Vec<Child> = Vec::new();
    let mut open = 0usize;
    let mut k = 0u8;
    while open < sockets {
        let count = step.min(sockets - open);
        k += 1;
        let mut child = Command::new(&exe)
            .args(["idle-worker", "--url", url, "--source", &format!("127.0.0.{}", k + 1)])
            .args(["--count", &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        // This worker's sockets continue the round robin over users where the last one
        // stopped, so `--users` equal to `--sockets` is one socket per user.
        let mut handoff: String =
            (open..open + count).map(|n| format!("{}\n", tokens[n % tokens.len()])).collect();
        handoff.push('\n');
        child
            .stdin
            .as_mut()
            .ok_or("worker stdin")?
            .write_all(handoff.as_bytes())
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("worker stdout")?;
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            line
        })
        .await
        .map_err(|e| e.to_string())?;
        workers.push(child);
        if !line.starts_with("ready") {
            return Err(format!("worker {k} failed (see its stderr)"));
        }
        open += count;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = rss_kb(pid).ok_or("server gone")?;
        let per_socket = (rss.saturating_sub(baseline)) as f64 / open as f64;
        println!("{open},{rss},{per_socket:.2}");
        if let Some((path, label)) = csv {
            append_csv(
                path,
                &[
                    ("scenario", "idle".to_string()),
                    ("label", label.to_string()),
                    ("params", format!("sockets={open}")),
                    ("rss_kb", rss.to_string()),
                    ("kb_per_socket", format!("{per_socket:.2}")),
                ],
            )?;
        }
    }
    for mut worker in workers {
        drop(worker.stdin.take());
        let _ = worker.wait();
    }
    Ok(())
}
