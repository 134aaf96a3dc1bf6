//! The transport under the API: kept-alive HTTP/1.1 connections and the end of a WebSocket.
//! Raw TCP where a client library would hide what the server does.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::*;

/// Reads one HTTP/1.1 response (headers and a `Content-Length` body); `None` when the
/// server closes or resets the connection before a whole response arrives.
async fn read_response(stream: &mut TcpStream) -> Option<u16> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(Some(0), |value| value.trim().parse().ok())?;
            while buffer.len() < end + 4 + length {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            return Some(status);
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// One kept-alive connection as a pooled client uses it: a run of requests back to back,
/// an idle gap, then a POST whose body follows its head in a separate packet. Returns
/// whether that POST got a response.
async fn pooled_client(port: u16, n: usize, gap: Duration) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    for _ in 0..17 {
        stream
            .write_all(b"GET /health/live HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .expect("write request");
        assert_eq!(read_response(&mut stream).await, Some(200), "back-to-back request answered");
    }
    tokio::time::sleep(gap).await;
    let body = format!(r#"{{"username":"pooled{n}_{}","password":"{PASSWORD}"}}"#, std::process::id());
    let head = format!(
        "POST /api/auth/register HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    if stream.write_all(body.as_bytes()).await.is_err() {
        return false;
    }
    // Bounded: a dropped request must end the connection, not leave it silent.
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(10), read_response(&mut stream)).await;
    let answered = matches!(status, Ok(Some(201)));
    assert!(answered || started.elapsed() < Duration::from_secs(1), "client {n} hung: {status:?}");
    answered
}

/// "Server disconnected without sending a response": pooled clients (httpx, Node's agent)
/// keep idle connections up to 5 s, so the server must keep them longer, or a request sent
/// just as the server gives up on the connection is lost. Gaps from 4 to 6 s cover both
/// sides of that deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_answer_requests_sent_after_a_pooled_client_s_idle_gap() {
    let app = spawn_app(Backend::Sqlite).await;
    let clients = 40;
    let runs: Vec<_> = (0..clients)
        .map(|n| {
            let gap = Duration::from_millis(4000 + 2000 * n as u64 / (clients as u64 - 1));
            tokio::spawn(pooled_client(app.port, n, gap))
        })
        .collect();
    let mut lost = Vec::new();
    for (n, run) in runs.into_iter().enumerate() {
        if !run.await.expect("client task") {
            lost.push(n);
        }
    }
    assert!(lost.is_empty(), "{} of {clients} requests got no response (clients {lost:?})", lost.len());
}

/// The idle timeout is the configured one: a connection idle longer is closed by the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_server_keep_alive_seconds() {
    let app = spawn_app_with(Backend::Sqlite, |settings| settings.server.keep_alive_seconds = 1).await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).await.expect("connect");
    stream.write_all(b"GET /health/live HTTP/1.1\r\nhost: localhost\r\n\r\n").await.expect("write");
    assert_eq!(read_response(&mut stream).await, Some(200));
    let started = Instant::now();
    let mut rest = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut rest))
        .await
        .expect("closed within 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "closed without more bytes: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
}

/// RFC 6455 §7.1.1: after the closing handshake the server ends the TCP connection at once,
/// so a closed socket holds no descriptor or session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polite_websocket_close_ends_the_connection_at_once() {
    let app = spawn_app(Backend::Sqlite).await;
    let user = app.user("closer").await;
    let mut times = Vec::new();
    for _ in 0..5 {
        let mut socket = app.ws(&user).await;
        let started = Instant::now();
        socket
            .stream
            .send(WsMessage::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })))
            .await
            .expect("send close");
        // The client waits for the server's close frame and then for the end of the stream.
        loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.stream.next()).await {
                Ok(None | Some(Err(_))) => break,
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("the server did not end the connection within 10 s"),
            }
        }
        times.push(started.elapsed());
        assert_eq!(app.live_counts().await, (0, 0), "session and room gone right after the close");
    }
    times.sort();
    // The median, so one scheduling hiccup on a busy machine does not decide.
    assert!(times[2] < Duration::from_millis(100), "close took {times:?}");
}

/// Bodies that trickle cannot hold descriptors: 500 logins that declare 60,000 bytes and
/// send 13 are answered 408 and closed once `server.client_body_timeout_seconds` passes,
/// while other clients are served throughout, and the descriptors come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_408_and_its_connection_closed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}?mode=rwc", dir.path().join("slow.db").display());
    let instance = crate::cluster::Instance::start_with(
        "slow-bodies",
        &database,
        "",
        &[("SWITCHBOARD__SERVER__CLIENT_BODY_TIMEOUT_SECONDS", "2")],
    )
    .await;
    let app = instance.app();
    // Warmed first: the database pools open their connections as requests and the push and
    // webhook senders' polls need them, which is no leak.
    let user = app.user("patient").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = instance.open_files();
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut stream = TcpStream::connect(("127.0.0.1", instance.port)).await.expect("connect");
        stream
            .write_all(b"POST /api/auth/login HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 60000\r\n\r\n{\"username\":\"")
            .await
            .expect("write");
        slow.push(stream);
    }
    let started = Instant::now();
    // Others are served while the slow bodies are held.
    assert_eq!(app.get(None, "/health/live").await.status, 200);
    assert_eq!(app.get(Some(&user.token), "/api/users/me").await.status, 200);

    let answers = futures_util::future::join_all(slow.iter_mut().map(|stream| async move {
        let status =
            tokio::time::timeout(Duration::from_secs(20), read_response(stream)).await.ok().flatten();
        let mut rest = [0u8; 256];
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut rest)).await {
                Ok(Ok(0) | Err(_)) => break true,
                Ok(Ok(_)) => continue,
                Err(_) => break false,
            }
        };
        (status, closed)
    }))
    .await;
    let answered = answers.iter().filter(|(status, _)| *status == Some(408)).count();
    let closed = answers.iter().filter(|(_, closed)| *closed).count();
    assert_eq!(answered, 500, "every slow body is answered 408");
    assert_eq!(closed, 500, "every slow connection is closed by the server");
    assert!(started.elapsed() < Duration::from_secs(15), "closed after {:?}", started.elapsed());
    drop(slow);
    let deadline = Instant::now() + Duration::from_secs(5);
    // Slack for the database pools (a SQLite connection holds three files), not for sockets:
    // a leak here would be hundreds.
    while instance.open_files() > before + 20 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        instance.open_files() <= before + 20,
        "descriptors came back: {before} → {}",
        instance.open_files()
    );
    let metrics =
        app.client.get(app.url("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("switchboard_request_body_timeouts_total 500"), "counted in /metrics");
}
