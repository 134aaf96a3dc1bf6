//! Attachments: `POST /api/messages/with-attachment` (multipart, built by hand here so the
//! tests choose every byte: hostile filenames, wrong declared types), the type judged from the
//! bytes, the size limits enforced while streaming, signed download links, and what a crash
//! mid-upload leaves behind.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::on_both_databases;

const UPLOAD: &str = "/api/messages/with-attachment";
const BOUNDARY: &str = "----switchboard-test-boundary-7MA4YWxkTrZu0gW";
const DOCX_MIME: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

// ---------------------------------------------------------------------------------------------
// Multipart, built by hand.

/// One part of a multipart/form-data body.
enum Part<'a> {
    Text(&'a str, &'a str),
    File { name: &'a str, filename: &'a str, content_type: &'a str, bytes: &'a [u8] },
}

fn multipart_content_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// The body: each part opens with the boundary, its Content-Disposition (and Content-Type for
/// files) and a blank line; the filename is written as given, without escaping.
fn multipart(parts: &[Part<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match part {
            Part::Text(name, value) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(value.as_bytes());
            }
            Part::File { name, filename, content_type, bytes } => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
                         Content-Type: {content_type}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(bytes);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn file_part<'a>(filename: &'a str, content_type: &'a str, bytes: &'a [u8]) -> Part<'a> {
    Part::File { name: "file", filename, content_type, bytes }
}

async fn upload(app: &TestApp, user: &TestUser, parts: &[Part<'_>]) -> Reply {
    app.post_raw(Some(&user.token), UPLOAD, &multipart_content_type(), multipart(parts)).await
}

/// A direct message to `to` carrying one file declared as application/octet-stream.
async fn send_file(app: &TestApp, from: &TestUser, to: &TestUser, filename: &str, bytes: &[u8]) -> Reply {
    let to = to.id.to_string();
    upload(
        app,
        from,
        &[Part::Text("recipient_id", &to), file_part(filename, "application/octet-stream", bytes)],
    )
    .await
}

/// Like `send_file`, asserting 201; returns the message.
async fn sent_file(app: &TestApp, from: &TestUser, to: &TestUser, filename: &str, bytes: &[u8]) -> Value {
    let reply = send_file(app, from, to, filename, bytes).await;
    assert_eq!(reply.status, 201, "upload {filename}: {}", reply.body);
    reply.body
}

/// The message's only attachment.
fn attachment_of(message: &Value) -> Value {
    let attachments = message["attachments"].as_array().unwrap_or_else(|| panic!("attachments: {message}"));
    assert_eq!(attachments.len(), 1, "one attachment: {message}");
    attachments[0].clone()
}

// ---------------------------------------------------------------------------------------------
// Files with real headers.

/// A 1×1 transparent PNG: signature, IHDR, IDAT, IEND.
const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\
\x1f\x15\xc4\x89\x00\x00\x00\x0aIDATx\x9cc\x00\x01\x00\x00\x05\x00\x01\x0d\x0a\x2d\xb4\
\x00\x00\x00\x00IEND\xaeB\x60\x82";
/// JFIF APP0, a comment, end of image.
const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\
\xff\xfe\x00\x06test\xff\xd9";
/// A 1×1 GIF89a.
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00\
,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
/// RIFF container, WEBP form, a lossy VP8 chunk.
const WEBP: &[u8] = b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x000\x01\x00\x9d\x01\x2a\x01\x00\x01\x00\
\x02\x004\x25\xa4\x00\x03p\x00\xfe\xfb\x94\x00\x00";
const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n\
2 0 obj\n<< /Type /Pages /Kids [] /Count 0 >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
const TEXT: &[u8] = b"Meeting notes\n- ship it\n- tabs\tand\tlines\r\n";
const CSV: &[u8] = b"name,city\nAda,London\nJ\xc3\xbcrgen,K\xc3\xb6ln\n";

/// A zip local file header and its stored (uncompressed) data.
fn zip_entry(name: &str, data: &[u8]) -> Vec<u8> {
    let mut entry = b"PK\x03\x04".to_vec();
    entry.extend_from_slice(&20u16.to_le_bytes()); // version needed
    entry.extend_from_slice(&0u16.to_le_bytes()); // flags
    entry.extend_from_slice(&0u16.to_le_bytes()); // stored
    entry.extend_from_slice(&[0; 8]); // time, date, crc
    entry.extend_from_slice(&(data.len() as u32).to_le_bytes());
    entry.extend_from_slice(&(data.len() as u32).to_le_bytes());
    entry.extend_from_slice(&(name.len() as u16).to_le_bytes());
    entry.extend_from_slice(&0u16.to_le_bytes()); // extra
    entry.extend_from_slice(name.as_bytes());
    entry.extend_from_slice(data);
    entry
}

fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut bytes: Vec<u8> = entries.iter().flat_map(|(name, data)| zip_entry(name, data)).collect();
    // An empty end-of-central-directory record closes it.
    bytes.extend_from_slice(b"PK\x05\x06");
    bytes.extend_from_slice(&[0; 18]);
    bytes
}

/// A tiny DOCX: `word/document.xml` first, then the content types.
fn docx() -> Vec<u8> {
    zip(&[
        (
            "word/document.xml",
            b"<?xml version=\"1.0\"?><w:document xmlns:w=\"http://schemas.openxmlformats.org/\
              wordprocessingml/2006/main\"><w:body><w:p><w:r><w:t>Hi</w:t></w:r></w:p></w:body></w:document>",
        ),
        ("[Content_Types].xml", b"<?xml version=\"1.0\"?><Types/>"),
    ])
}

/// A valid PNG padded with zeros to exactly `len` bytes.
fn png_of(len: usize) -> Vec<u8> {
    let mut bytes = PNG.to_vec();
    bytes.resize(len, 0);
    bytes
}

/// Plain text of exactly `len` bytes.
fn text_of(len: usize) -> Vec<u8> {
    b"all work and no play\n".iter().copied().cycle().take(len).collect()
}

// ---------------------------------------------------------------------------------------------
// The attachments directory.

/// An app whose attachments live in a directory the test owns.
async fn spawn_with_dir(
    backend: Backend,
    customize: impl FnOnce(&mut switchboard::config::Settings),
) -> (TestApp, tempfile::TempDir, PathBuf) {
    let owned = tempfile::tempdir().expect("temp dir");
    let dir = owned.path().join("attachments");
    let dir_setting = dir.display().to_string();
    let app = spawn_app_with(backend, |settings| {
        settings.attachments.dir = dir_setting;
        customize(settings);
    })
    .await;
    (app, owned, dir)
}

/// Names of the stored files (regular files directly under `dir`).
fn stored_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("attachments dir exists")
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The files under `dir/tmp/<instance>/` (half-written uploads).
fn temporary_files(dir: &Path) -> Vec<String> {
    uploads_in_progress(dir).map(|entry| entry.file_name().to_string_lossy().into_owned()).collect()
}

/// The entries of every instance's folder under `dir/tmp`.
fn uploads_in_progress(dir: &Path) -> impl Iterator<Item = std::fs::DirEntry> {
    std::fs::read_dir(dir.join("tmp"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|folder| std::fs::read_dir(folder.path()).into_iter().flatten().flatten())
}

fn assert_nothing_stored(dir: &Path, what: &str) {
    assert_eq!(stored_files(dir), BTreeSet::new(), "{what}: a file was left in the attachments dir");
    assert_eq!(temporary_files(dir), Vec::<String>::new(), "{what}: a temporary file was left");
}

/// Every file under `root`, recursively.
fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Download links.

/// `GET /api/attachments/{id}/download` as `user`.
async fn link(app: &TestApp, user: &TestUser, attachment_id: i64) -> Reply {
    app.get(Some(&user.token), &format!("/api/attachments/{attachment_id}/download")).await
}

/// The signed URL of an attachment; asserts 200.
async fn download_url(app: &TestApp, user: &TestUser, attachment_id: i64) -> String {
    let reply = link(app, user, attachment_id).await;
    assert_eq!(reply.status, 200, "download link: {}", reply.body);
    reply.body["download_url"].as_str().expect("download_url").to_owned()
}

/// Fetches a path WITHOUT any token; returns status, headers and raw bytes.
async fn fetch(app: &TestApp, path: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = reqwest::Client::new().get(app.url(path)).send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body").to_vec();
    assert!(status < 500, "server error {status}: {}", String::from_utf8_lossy(&bytes));
    (status, headers, bytes)
}

/// Fetches a path without a token and returns the JSON error code, asserting `status`.
async fn fetch_error(app: &TestApp, path: &str, status: u16) -> String {
    let (got, _, bytes) = fetch(app, path).await;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    assert_eq!(got, status, "GET {path}: {body}");
    let reply = Reply { status: got, body, headers: Default::default() };
    reply.error_code().to_owned()
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap_or_else(|| panic!("{name} header missing: {headers:?}")).to_str().expect("ascii")
}

/// A media type without its parameters ("text/plain; charset=utf-8" → "text/plain").
fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or_default().trim()
}

/// A download URL's parts.
struct UrlParts {
    id: i64,
    user: i64,
    expires: i64,
    signature: String,
}

fn url_parts(url: &str) -> UrlParts {
    let rest = url.strip_prefix("/api/attachments/").unwrap_or_else(|| panic!("url shape: {url}"));
    let (id, query) = rest.split_once("/content?").unwrap_or_else(|| panic!("url shape: {url}"));
    let (mut user, mut expires, mut signature) = (None, None, None);
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("user", value)) => user = value.parse::<i64>().ok(),
            Some(("expires", value)) => expires = value.parse::<i64>().ok(),
            Some(("signature", value)) => signature = Some(value.to_owned()),
            _ => {}
        }
    }
    UrlParts {
        id: id.parse().unwrap_or_else(|_| panic!("id in {url}")),
        user: user.unwrap_or_else(|| panic!("user in {url}")),
        expires: expires.unwrap_or_else(|| panic!("expires in {url}")),
        signature: signature.unwrap_or_else(|| panic!("signature in {url}")),
    }
}

fn content_path(id: i64, user: i64, expires: i64, signature: &str) -> String {
    format!("/api/attachments/{id}/content?user={user}&expires={expires}&signature={signature}")
}

// ---------------------------------------------------------------------------------------------
// Accepted and refused types.

async fn every_accepted_type_is_stored_with_the_type_judged_from_its_bytes(backend: Backend) {
    let (app, _owned, dir) = spawn_with_dir(backend, |_| {}).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let docx = docx();
    // (filename, declared type, bytes, judged type)
    let cases: [(&str, &str, &[u8], &str); 10] = [
        ("photo.png", "image/png", PNG, "image/png"),
        ("photo.jpg", "image/jpeg", JPEG, "image/jpeg"),
        ("anim.gif", "image/gif", GIF, "image/gif"),
        ("pic.webp", "image/webp", WEBP, "image/webp"),
        ("report.pdf", "application/pdf", PDF, "application/pdf"),
        ("letter.docx", "application/octet-stream", &docx, DOCX_MIME),
        ("notes.txt", "text/plain", TEXT, "text/plain"),
        ("people.csv", "text/csv", CSV, "text/csv"),
        // The bytes decide, not the name nor the declared type.
        ("x.txt", "text/plain", PNG, "image/png"),
        ("scan.pdf", "application/pdf", JPEG, "image/jpeg"),
    ];
    let bob_id = bob.id.to_string();
    let mut keys = Vec::new();
    for (filename, declared, bytes, judged) in cases {
        let reply = upload(
            &app,
            &alice,
            &[Part::Text("recipient_id", &bob_id), file_part(filename, declared, bytes)],
        )
        .await;
        assert_eq!(reply.status, 201, "{filename}: {}", reply.body);
        let message = &reply.body;
        assert_eq!(message["sender_id"], alice.id);
        assert_eq!(message["recipient_id"], bob.id);
        assert_eq!(message["message"], "", "{filename}: no text was sent");
        assert_eq!(message["deleted"], false);
        let attachment = attachment_of(message);
        let id = id_of(&attachment);
        assert!(id > 0);
        assert_eq!(
            attachment,
            json!({"id": id, "filename": filename, "mime_type": judged, "size": bytes.len()}),
            "{filename}"
        );
        // The stored bytes are the sent ones, served as the judged type.
        let url = download_url(&app, &bob, id).await;
        let (status, headers, served) = fetch(&app, &url).await;
        assert_eq!(status, 200, "{filename}");
        assert_eq!(served, bytes, "{filename}: the exact bytes");
        assert_eq!(essence(header(&headers, "content-type")), judged, "{filename}");
        keys.push(id);
    }
    assert_eq!(stored_files(&dir).len(), cases.len(), "one stored file per upload");
    assert_eq!(temporary_files(&dir), Vec::<String>::new());
    // Every attachment is distinct.
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), keys.len());
}

async fn other_types_are_refused_with_415_even_when_declared_as_png(backend: Backend) {
    let (app, _owned, dir) = spawn_with_dir(backend, |_| {}).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut elf = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00".to_vec();
    elf.resize(256, 0);
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00\xb8\x00".to_vec();
    exe.resize(64, 0);
    exe.extend_from_slice(b"PE\x00\x00This program cannot be run in DOS mode.\r\r\n$");
    exe.resize(512, 0);
    let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"1\" height=\"1\">\
                <script>alert(document.cookie)</script></svg>";
    let svg_with_prolog =
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
    let html = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>";
    let plain_zip = zip(&[("hello.txt", b"hello"), ("notes/a.txt", b"a")]);
    let xlsx = zip(&[("[Content_Types].xml", b"<Types/>"), ("xl/workbook.xml", b"<workbook/>")]);
    let cases: [(&str, &[u8]); 7] = [
        ("ELF binary", &elf),
        ("MZ executable", &exe),
        ("SVG", svg),
        ("SVG with XML prolog", svg_with_prolog),
        ("HTML", html),
        ("plain zip", &plain_zip),
        ("xlsx", &xlsx),
    ];
    let bob_id = bob.id.to_string();
    for (what, bytes) in cases {
        let reply = upload(
            &app,
            &alice,
            &[
                Part::Text("recipient_id", &bob_id),
                Part::Text("message", "totally a cat picture"),
                file_part("cat.png", "image/png", bytes),
            ],
        )
        .await;
        assert_eq!(reply.status, 415, "{what}: {}", reply.body);
        assert_eq!(reply.error_code(), "unsupported_media_type", "{what}");
        assert_nothing_stored(&dir, what);
    }
    // No message was stored, so no conversation exists.
    assert_eq!(app.conversations(&alice).await, Vec::<Value>::new());
    assert_eq!(app.conversations(&bob).await, Vec::<Value>::new());
}

// ---------------------------------------------------------------------------------------------
// Size limits.

async fn files_over_their_limit_are_refused_with_413(backend: Backend) {
    let (app, _owned, dir) = spawn_with_dir(backend, |settings| {
        settings.attachments.max_image_bytes = 64 * 1024;
        settings.attachments.max_document_bytes = 128 * 1024;
    })
    .await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;

    // Exactly at each limit: accepted.
    let image = sent_file(&app, &alice, &bob, "full.png", &png_of(64 * 1024)).await;
    assert_eq!(attachment_of(&image)["size"], 64 * 1024);
    let text = sent_file(&app, &alice, &bob, "full.txt", &text_of(128 * 1024)).await;
    assert_eq!(attachment_of(&text)["size"], 128 * 1024);
    let stored = stored_files(&dir);
    assert_eq!(stored.len(), 2);

    // A document may be larger than the image limit.
    let over_image_limit = text_of(64 * 1024 + 1);
    let document = sent_file(&app, &alice, &bob, "doc.txt", &over_image_limit).await;
    assert_eq!(attachment_of(&document)["mime_type"], "text/plain");
    let stored = stored_files(&dir);
    assert_eq!(stored.len(), 3);

    // One byte over: refused, and nothing more is stored.
    for (what, bytes) in [
        ("image one byte over", png_of(64 * 1024 + 1)),
        ("document one byte over", text_of(128 * 1024 + 1)),
        ("image named .txt one byte over", png_of(64 * 1024 + 1)),
    ] {
        let reply = send_file(&app, &alice, &bob, "big.txt", &bytes).await;
        assert_eq!(reply.status, 413, "{what}: {}", reply.body);
        assert_eq!(reply.error_code(), "payload_too_large", "{what}");
        assert_eq!(stored_files(&dir), stored, "{what}: nothing new is stored");
        assert_eq!(temporary_files(&dir), Vec::<String>::new(), "{what}");
    }
    let conversation_id = image["conversation_id"].as_i64().expect("conversation");
    let page = app.history(&bob, conversation_id, "").await;
    assert_eq!(page["messages"].as_array().expect("messages").len(), 3, "only the accepted uploads");
}

async fn a_huge_upload_is_refused_with_413_and_leaves_nothing(backend: Backend) {
    let (app, _owned, dir) = spawn_with_dir(backend, |settings| {
        settings.attachments.max_image_bytes = 64 * 1024;
    })
    .await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let bob_id = bob.id.to_string();
    let body = multipart(&[
        Part::Text("recipient_id", &bob_id),
        file_part("huge.png", "image/png", &png_of(3 * 1024 * 1024)),
    ]);
    let response = reqwest::Client::new()
        .post(app.url(UPLOAD))
        .bearer_auth(&alice.token)
        .header("content-type", multipart_content_type())
        .body(body)
        .send()
        .await;
    // The client must get the answer, not a reset, even though the server stops reading early.
    let response = response.expect("a response to a 3 MB upload over a 64 KiB limit");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_nothing_stored(&dir, "3 MB image over a 64 KiB limit");
    assert_eq!(app.conversations(&alice).await, Vec::<Value>::new(), "no message stored");
}

/// Reads one HTTP/1.1 response (head and Content-Length body) from `stream`, within `wait`.
fn read_response(stream: &mut TcpStream, wait: Duration) -> Result<(u16, String), String> {
    stream.set_read_timeout(Some(wait)).expect("read timeout");
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).into_owned();
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse::<u16>().ok())
                .ok_or_else(|| format!("no status line in {head:?}"))?;
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&received[end + 4..end + 4 + length]).into_owned();
                return Ok((status, body));
            }
        }
        match stream.read(&mut buffer) {
            Ok(0) => return Err(format!("connection closed after {} bytes", received.len())),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(err) => return Err(format!("no complete response within {wait:?}: {err}")),
        }
    }
}

/// The request head for an upload of `length` body bytes.
fn upload_head(port: u16, token: &str, length: usize) -> String {
    format!(
        "POST {UPLOAD} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {}\r\nContent-Length: {length}\r\n\r\n",
        multipart_content_type()
    )
}

async fn the_limit_is_enforced_while_the_body_streams_in(backend: Backend) {
    let (app, _owned, dir) = spawn_with_dir(backend, |settings| {
        settings.attachments.max_image_bytes = 64 * 1024;
    })
    .await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let bob_id = bob.id.to_string();
    let body = multipart(&[
        Part::Text("recipient_id", &bob_id),
        file_part("huge.png", "image/png", &png_of(3 * 1024 * 1024)),
    ]);
    // Send the head announcing 3 MB and only the first 256 KiB, then stop writing (the socket
    // stays open). A server that waited for the whole body before judging it would never answer.
    let port = app.port;
    let token = alice.token.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.write_all(upload_head(port, &token, body.len()).as_bytes()).expect("write head");
        stream.write_all(&body[..256 * 1024]).expect("write the first 256 KiB");
        stream.flush().expect("flush");
        let outcome = read_response(&mut stream, Duration::from_secs(5));
        drop(stream);
        outcome
    })
    .await
    .expect("client thread");
    let (status, body) = outcome.unwrap_or_else(|err| {
        panic!("no answer while 2.75 MB of a 3 MB upload over a 64 KiB limit were still unsent: {err}")
    });
    assert_eq!(status, 413, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert_nothing_stored(&dir, "upload cut off by the limit");
    assert_eq!(app.conversations(&alice).await, Vec::<Value>::new(), "no message stored");
}

// ---------------------------------------------------------------------------------------------
// Malformed uploads.

async fn malformed_uploads_are_refused_and_leave_nothing(backend: Backend) {
    let (app, _owned, dir) = spawn_with_dir(backend, |_| {}).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let bob_id = bob.id.to_string();

    // Not multipart.
    let reply = app
        .post(Some(&alice.token), UPLOAD, &json!({"recipient_id": bob.id, "message": "hi", "file": "AAAA"}))
        .await;
    assert_eq!(reply.status, 415, "JSON body: {}", reply.body);
    assert_eq!(reply.error_code(), "unsupported_media_type");
    let reply = app.post_raw(Some(&alice.token), UPLOAD, "application/octet-stream", PNG.to_vec()).await;
    assert_eq!(reply.status, 415, "raw PNG body: {}", reply.body);
    assert_eq!(reply.error_code(), "unsupported_media_type");

    // No file part.
    let reply =
        upload(&app, &alice, &[Part::Text("recipient_id", &bob_id), Part::Text("message", "hi")]).await;
    assert_eq!(reply.status, 422, "no file: {}", reply.body);
    assert_eq!(reply.error_code(), "validation_failed");
    assert_eq!(reply.error_field(), Some("file"), "{}", reply.body);

    // An empty file.
    let reply = upload(
        &app,
        &alice,
        &[Part::Text("recipient_id", &bob_id), file_part("empty.png", "image/png", b"")],
    )
    .await;
    assert_eq!(reply.status, 422, "empty file: {}", reply.body);
    assert_eq!(reply.error_code(), "validation_failed");
    assert_eq!(reply.error_field(), Some("file"), "{}", reply.body);

    // A valid file with text over the message limit: refused, and the file is not kept.
    let long = "x".repeat(2001);
    let reply = upload(
        &app,
        &alice,
        &[
            Part::Text("recipient_id", &bob_id),
            Part::Text("message", &long),
            file_part("photo.png", "image/png", PNG),
        ],
    )
    .await;
    assert_eq!(reply.status, 422, "2001-char message: {}", reply.body);
    assert_eq!(reply.error_field(), Some("message"), "{}", reply.body);

    // No target, and a file to an unknown recipient.
    let reply = upload(&app, &alice, &[file_part("photo.png", "image/png", PNG)]).await;
    assert_eq!(reply.status, 422, "no target: {}", reply.body);
    let reply = upload(
        &app,
        &alice,
        &[Part::Text("recipient_id", "999999999"), file_part("photo.png", "image/png", PNG)],
    )
    .await;
    assert_eq!(reply.status, 404, "unknown recipient: {}", reply.body);
    assert_eq!(reply.error_code(), "not_found");

    // To a conversation the sender does not belong to.
    let carol = app.user("carol").await;
    let theirs = app.dm(&bob, &carol, "private").await;
    let reply = upload(
        &app,
        &alice,
        &[
            Part::Text("conversation_id", &theirs["conversation_id"].to_string()),
            file_part("photo.png", "image/png", PNG),
        ],
    )
    .await;
    assert_eq!(reply.status, 404, "someone else's conversation: {}", reply.body);
    assert_eq!(reply.error_code(), "not_found");

    // Without a token.
    let reply = app
        .post_raw(
            None,
            UPLOAD,
            &multipart_content_type(),
            multipart(&[Part::Text("recipient_id", &bob_id), file_part("photo.png", "image/png", PNG)]),
        )
        .await;
    assert_eq!(reply.status, 401, "no token: {}", reply.body);

    assert_nothing_stored(&dir, "refused uploads");
    assert_eq!(app.conversations(&alice).await, Vec::<Value>::new(), "no message stored");
}

// ---------------------------------------------------------------------------------------------
// Filenames and text.

async fn filenames_lose_path_parts_control_and_bidi_characters(backend: Backend) {
    let owned = tempfile::tempdir().expect("temp dir");
    // Deep enough that "../../" from the attachments dir still lands inside the temp dir.
    let dir = owned.path().join("a").join("b").join("attachments");
    let dir_setting = dir.display().to_string();
    let app = spawn_app_with(backend, |settings| settings.attachments.dir = dir_setting).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let cases = [
        ("../../etc/passwd.txt", "passwd.txt"),
        ("/var/tmp/a b.txt", "a b.txt"),
        ("notes\t2024.txt", "notes2024.txt"),
        ("\u{202E}txt.exe.txt", "txt.exe.txt"),
        ("x\u{2066}y\u{2069}\u{200f}\u{85}.txt", "xy.txt"),
        ("  spaced name.txt  ", "spaced name.txt"),
        ("résumé 2024.txt", "résumé 2024.txt"),
    ];
    for (raw, clean) in cases {
        let message = sent_file(&app, &alice, &bob, raw, TEXT).await;
        let attachment = attachment_of(&message);
        assert_eq!(attachment["filename"], clean, "{raw:?}");
        let id = id_of(&attachment);
        let reply = link(&app, &bob, id).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.body["filename"], clean, "{raw:?}");
        let conversation_id = message["conversation_id"].as_i64().expect("conversation");
        let page = app.history(&bob, conversation_id, "limit=1").await;
        assert_eq!(page["messages"][0]["attachments"][0]["filename"], clean, "{raw:?}");
    }
    // Names that are only dots never become a path.
    for raw in ["..", "."] {
        let message = sent_file(&app, &alice, &bob, raw, TEXT).await;
        let name = attachment_of(&message)["filename"].as_str().expect("filename").to_owned();
        assert!(!name.is_empty() && name.chars().any(|c| c != '.'), "{raw:?} became {name:?}");
    }
    // The client's name never reaches the disk: files are stored under generated names, inside dir.
    let files = all_files(owned.path());
    for path in &files {
        assert!(path.starts_with(&dir), "a file outside the attachments dir: {}", path.display());
        let name = path.file_name().expect("name").to_string_lossy();
        assert!(
            !name.contains("passwd") && !name.ends_with(".txt"),
            "stored under the client's name: {name}"
        );
    }
    assert_eq!(stored_files(&dir).len(), cases.len() + 2);
}

async fn a_file_may_come_with_text_or_with_none(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let bob_id = bob.id.to_string();
    for (text, stored) in
        [(Some("  look at this \n"), "look at this"), (Some(""), ""), (Some("   \n "), ""), (None, "")]
    {
        let mut parts = vec![Part::Text("recipient_id", &bob_id)];
        if let Some(text) = text {
            parts.push(Part::Text("message", text));
        }
        parts.push(file_part("photo.png", "image/png", PNG));
        let reply = upload(&app, &alice, &parts).await;
        assert_eq!(reply.status, 201, "{text:?}: {}", reply.body);
        assert_eq!(reply.body["message"], stored, "{text:?}");
        assert_eq!(attachment_of(&reply.body)["mime_type"], "image/png");
        let conversation_id = reply.body["conversation_id"].as_i64().expect("conversation");
        let page = app.history(&bob, conversation_id, "limit=1").await;
        assert_eq!(page["messages"][0], reply.body, "{text:?}: history shows what the send returned");
    }
    // Fields may come in any order: the file before the target and the text.
    let reply = upload(
        &app,
        &alice,
        &[
            file_part("first.gif", "image/gif", GIF),
            Part::Text("message", "file first"),
            Part::Text("recipient_id", &bob_id),
        ],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["message"], "file first");
    assert_eq!(attachment_of(&reply.body)["filename"], "first.gif");
}

async fn the_same_client_id_returns_the_original_message_and_keeps_one_file(backend: Backend) {
    let (app, _owned, dir) = spawn_with_dir(backend, |_| {}).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let mut bob_socket = app.ws(&bob).await;
    let bob_id = bob.id.to_string();
    let send = |bytes: &'static [u8], filename: &'static str| {
        let bob_id = bob_id.clone();
        let app = &app;
        let alice = &alice;
        async move {
            upload(
                app,
                alice,
                &[
                    Part::Text("recipient_id", &bob_id),
                    Part::Text("message", "the photo"),
                    Part::Text("client_id", "upload-1"),
                    file_part(filename, "image/png", bytes),
                ],
            )
            .await
        }
    };
    let first = send(PNG, "photo.png").await;
    assert_eq!(first.status, 201, "{}", first.body);
    let frame = bob_socket.next_of("new_message").await;
    assert_eq!(frame["message"], first.body);

    // A retry (here even with different bytes) gets the original message, not a second one.
    let again = send(PNG, "photo.png").await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body, first.body);
    let other_bytes = send(GIF, "other.gif").await;
    assert_eq!(other_bytes.status, 200, "{}", other_bytes.body);
    assert_eq!(other_bytes.body, first.body);

    assert_eq!(stored_files(&dir).len(), 1, "one file on disk");
    assert_eq!(temporary_files(&dir), Vec::<String>::new());
    bob_socket.expect_none_of("new_message", Duration::from_millis(500)).await;
    let conversation_id = first.body["conversation_id"].as_i64().expect("conversation");
    let page = app.history(&bob, conversation_id, "").await;
    assert_eq!(page["messages"], json!([first.body]));

    // Four copies of a new upload at once: one message, one file, the others get it with 200.
    let parts = [
        Part::Text("recipient_id", &bob_id),
        Part::Text("client_id", "upload-2"),
        file_part("race.jpg", "image/jpeg", JPEG),
    ];
    let replies = futures_util::future::join_all((0..4).map(|_| upload(&app, &alice, &parts))).await;
    let created: Vec<&Reply> = replies.iter().filter(|reply| reply.status == 201).collect();
    assert_eq!(
        created.len(),
        1,
        "exactly one 201: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for reply in &replies {
        assert!(reply.status == 201 || reply.status == 200, "{} {}", reply.status, reply.body);
        assert_eq!(reply.body, created[0].body, "every copy gets the same message");
    }
    let frame = bob_socket.next_of("new_message").await;
    assert_eq!(frame["message"], created[0].body);
    bob_socket.expect_none_of("new_message", Duration::from_millis(500)).await;
    assert_eq!(stored_files(&dir).len(), 2, "one more file on disk");
    assert_eq!(temporary_files(&dir), Vec::<String>::new());
    let page = app.history(&bob, conversation_id, "").await;
    assert_eq!(page["messages"], json!([first.body, created[0].body]));
}

async fn a_client_that_hangs_up_mid_upload_leaves_nothing(backend: Backend) {
    let (app, _owned, dir) = spawn_with_dir(backend, |_| {}).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let bob_id = bob.id.to_string();
    let body = multipart(&[
        Part::Text("recipient_id", &bob_id),
        Part::Text("client_id", "cut-1"),
        file_part("big.png", "image/png", &png_of(2 * 1024 * 1024)),
    ]);
    let mut stream = TcpStream::connect(("127.0.0.1", app.port)).expect("connect");
    stream.write_all(upload_head(app.port, &alice.token, body.len()).as_bytes()).expect("head");
    stream.write_all(&body[..512 * 1024]).expect("first 512 KiB");
    stream.flush().expect("flush");
    // The upload is being written to a temporary file...
    let deadline = Instant::now() + Duration::from_secs(5);
    while !part_files(&dir).iter().any(|(_, size)| *size > 0) {
        assert!(Instant::now() < deadline, "no .part file with data appeared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...when the client goes away.
    stream.shutdown(std::net::Shutdown::Both).expect("shutdown");
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !temporary_files(&dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the half-written upload was not removed after the client hung up: {:?}",
            temporary_files(&dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_nothing_stored(&dir, "abandoned upload");
    assert_eq!(app.conversations(&alice).await, Vec::<Value>::new(), "no message stored");
    // The client_id is free: sending it again creates the message.
    let reply = upload(
        &app,
        &alice,
        &[
            Part::Text("recipient_id", &bob_id),
            Part::Text("client_id", "cut-1"),
            file_part("b.png", "image/png", PNG),
        ],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
}

// ---------------------------------------------------------------------------------------------
// Where the attachment shows up.

async fn recipients_history_and_the_list_carry_the_attachment(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let mut alice_socket = app.ws(&alice).await;
    let mut bob_socket = app.ws(&bob).await;

    let bob_id = bob.id.to_string();
    let reply = upload(
        &app,
        &alice,
        &[
            Part::Text("recipient_id", &bob_id),
            Part::Text("message", "the report"),
            Part::Text("client_id", "rep-1"),
            file_part("report.pdf", "application/pdf", PDF),
        ],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let message = reply.body.clone();
    assert_eq!(message["client_id"], "rep-1");
    let attachment = attachment_of(&message);
    assert_eq!(attachment["mime_type"], "application/pdf");

    let frame = bob_socket.next_of("new_message").await;
    assert_eq!(frame["message"], message, "the recipient's frame carries the attachment");
    assert_eq!(frame["conversation"]["last_message"]["attachments"], json!([attachment]));
    let frame = alice_socket.next_of("message_sent").await;
    assert_eq!(frame["message"], message);

    let conversation_id = message["conversation_id"].as_i64().expect("conversation");
    for user in [&alice, &bob] {
        let page = app.history(user, conversation_id, "").await;
        assert_eq!(page["messages"], json!([message]), "{}", user.username);
        let list = app.conversations(user).await;
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["last_message"], message, "{}'s list", user.username);
        let one = app.get(Some(&user.token), &format!("/api/conversations/{conversation_id}")).await;
        assert_eq!(one.status, 200, "{}", one.body);
        assert_eq!(one.body["last_message"]["attachments"], json!([attachment]));
    }
    // /api/sync replays the same frame.
    let sync = app.get(Some(&bob.token), "/api/sync?since=0").await;
    assert_eq!(sync.status, 200, "{}", sync.body);
    let replayed = sync.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|event| event["type"] == "new_message")
        .cloned()
        .unwrap_or_else(|| panic!("no new_message in sync: {}", sync.body));
    assert_eq!(replayed["message"]["attachments"], json!([attachment]));

    // In a group, sent by conversation_id: every other member's frame has it.
    let group = app.create_group_reply(&alice, "files", &[bob.id, carol.id]).await;
    assert_eq!(group.status, 201, "{}", group.body);
    let group_id = id_of(&group.body).to_string();
    let mut carol_socket = app.ws(&carol).await;
    let reply = upload(
        &app,
        &alice,
        &[Part::Text("conversation_id", &group_id), file_part("sheet.csv", "text/csv", CSV)],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["recipient_id"], Value::Null);
    assert_eq!(attachment_of(&reply.body)["mime_type"], "text/csv");
    for socket in [&mut bob_socket, &mut carol_socket] {
        let frame = socket.next_of("new_message").await;
        assert_eq!(frame["message"], reply.body);
    }
    let list = app.conversations(&carol).await;
    assert_eq!(list[0]["last_message"], reply.body);
    // A member downloads it.
    let url = download_url(&app, &carol, id_of(&attachment_of(&reply.body))).await;
    let (status, _, bytes) = fetch(&app, &url).await;
    assert_eq!((status, bytes.as_slice()), (200, CSV));
}

// ---------------------------------------------------------------------------------------------
// Download links and signed URLs.

async fn download_links_are_for_members_of_a_live_message_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let carol = app.user("carol").await;
    let message = sent_file(&app, &alice, &bob, "photo.png", PNG).await;
    let attachment = attachment_of(&message);
    let id = id_of(&attachment);

    for user in [&alice, &bob] {
        let reply = link(&app, user, id).await;
        assert_eq!(reply.status, 200, "{}: {}", user.username, reply.body);
        let body = &reply.body;
        let url = body["download_url"].as_str().expect("download_url");
        let UrlParts { id: url_id, user: url_user, expires, signature } = url_parts(url);
        assert_eq!(url_id, id);
        assert_eq!(url_user, user.id, "the link names the member it was issued to");
        assert!(!signature.is_empty());
        let now = chrono::Utc::now().timestamp();
        assert!((now + 3590..=now + 3610).contains(&expires), "expires {expires} is not ~1 h from {now}");
        assert_eq!(
            body,
            &json!({
                "download_url": url,
                "filename": "photo.png",
                "size": PNG.len(),
                "mime_type": "image/png",
                "expires_in_seconds": 3600,
            })
        );
    }
    // Not a member, unknown, no token.
    let reply = link(&app, &carol, id).await;
    assert_eq!(reply.status, 404, "non-member: {}", reply.body);
    assert_eq!(reply.error_code(), "not_found");
    let reply = link(&app, &alice, id + 1_000_000).await;
    assert_eq!(reply.status, 404, "unknown: {}", reply.body);
    assert_eq!(reply.error_code(), "not_found");
    let reply = app.get(None, &format!("/api/attachments/{id}/download")).await;
    assert_eq!(reply.status, 401, "no token: {}", reply.body);

    // A link handed out before the message is deleted stops working with it.
    let url = download_url(&app, &bob, id).await;
    let reply = app.delete_message(&alice, id_of(&message)).await;
    assert_eq!(reply.status, 204, "delete: {}", reply.body);
    for user in [&alice, &bob] {
        let reply = link(&app, user, id).await;
        assert_eq!(reply.status, 404, "deleted message, {}: {}", user.username, reply.body);
        assert_eq!(reply.error_code(), "not_found");
    }
    assert_eq!(fetch_error(&app, &url, 404).await, "not_found", "a deleted message's file is not served");
    let conversation_id = message["conversation_id"].as_i64().expect("conversation");
    let page = app.history(&bob, conversation_id, "").await;
    assert_eq!(page["messages"][0]["attachments"], json!([]));
    assert_eq!(page["messages"][0]["deleted"], true);

    // In a group: a member gets a link until removed; a member who never was gets 404.
    let group = app.create_group_reply(&alice, "files", &[bob.id]).await;
    assert_eq!(group.status, 201, "{}", group.body);
    let group_id = id_of(&group.body);
    let reply = upload(
        &app,
        &alice,
        &[Part::Text("conversation_id", &group_id.to_string()), file_part("g.png", "image/png", PNG)],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let id = id_of(&attachment_of(&reply.body));
    assert_eq!(link(&app, &bob, id).await.status, 200);
    // A link bob fetched while a member; it works until he is removed.
    let bobs_url = download_url(&app, &bob, id).await;
    assert_eq!(fetch(&app, &bobs_url).await.0, 200, "bob's link while he is a member");
    let reply = link(&app, &carol, id).await;
    assert_eq!(reply.status, 404, "never a member: {}", reply.body);
    let reply = app.remove_member_reply(&alice, group_id, bob.id).await;
    assert_eq!(reply.status, 204, "remove bob: {}", reply.body);
    let reply = link(&app, &bob, id).await;
    assert_eq!(reply.status, 404, "removed member: {}", reply.body);
    assert_eq!(reply.error_code(), "not_found");
    // The link he already had stops working at once, not when it expires.
    assert_eq!(fetch_error(&app, &bobs_url, 404).await, "not_found", "a removed member's old link");
    assert_eq!(link(&app, &alice, id).await.status, 200, "the owner still may");
}

/// Whether a Content-Disposition value names `filename`: as a quoted string (with `"` and `\`
/// escaped), as a bare token, or as RFC 5987 `filename*=UTF-8''…`.
fn disposition_names(disposition: &str, filename: &str) -> bool {
    let quoted = filename.replace('\\', "\\\\").replace('"', "\\\"");
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    disposition.contains(&format!("filename=\"{quoted}\""))
        || disposition.split(';').any(|param| param.trim() == format!("filename={filename}"))
        || disposition
            .to_ascii_lowercase()
            .contains(&format!("filename*=utf-8''{}", encoded.to_ascii_lowercase()))
}

async fn the_signed_url_serves_the_exact_bytes_as_a_download(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let text = sent_file(&app, &alice, &bob, "../../etc/passwd.txt", TEXT).await;
    let png = sent_file(&app, &alice, &bob, "x.txt", &png_of(20_000)).await;
    let accented = sent_file(&app, &alice, &bob, "résumé 2024.txt", TEXT).await;
    // A quote in the name, escaped as a quoted-pair in the part's header.
    let quote = sent_file(&app, &alice, &bob, "say \\\"hi\\\".txt", TEXT).await;
    assert_eq!(attachment_of(&quote)["filename"], "say \"hi\".txt");
    for (message, bytes, mime, filename) in [
        (&text, TEXT.to_vec(), "text/plain", "passwd.txt"),
        (&png, png_of(20_000), "image/png", "x.txt"),
        (&accented, TEXT.to_vec(), "text/plain", "résumé 2024.txt"),
        (&quote, TEXT.to_vec(), "text/plain", "say \"hi\".txt"),
    ] {
        let id = id_of(&attachment_of(message));
        let url = download_url(&app, &bob, id).await;
        let (status, headers, served) = fetch(&app, &url).await;
        assert_eq!(status, 200, "{filename}");
        assert_eq!(served, bytes, "{filename}: exact bytes");
        assert_eq!(essence(header(&headers, "content-type")), mime, "{filename}");
        let disposition = headers.get("content-disposition").expect("content-disposition").as_bytes();
        let disposition = String::from_utf8(disposition.to_vec()).expect("UTF-8 header");
        assert!(disposition.starts_with("attachment;"), "{filename}: {disposition}");
        assert!(disposition_names(&disposition, filename), "{filename}: {disposition}");
        assert!(!disposition.contains(".."), "{disposition}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        if let Some(length) = headers.get("content-length") {
            assert_eq!(length.to_str().expect("ascii"), bytes.len().to_string());
        }
    }
}

async fn tampered_links_are_refused_with_403_invalid_signature(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let first = id_of(&attachment_of(&sent_file(&app, &alice, &bob, "a.png", PNG).await));
    let second = id_of(&attachment_of(&sent_file(&app, &alice, &bob, "b.gif", GIF).await));
    let url = download_url(&app, &bob, first).await;
    let UrlParts { id, user, expires, signature } = url_parts(&url);
    assert_eq!(fetch(&app, &url).await.0, 200, "the untouched link works");

    let flipped_last = {
        let mut chars: Vec<char> = signature.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == '0' { '1' } else { '0' };
        chars.into_iter().collect::<String>()
    };
    let cases = [
        ("last signature digit changed", content_path(id, user, expires, &flipped_last)),
        ("signature truncated", content_path(id, user, expires, &signature[..signature.len() - 2])),
        ("signature not hex", content_path(id, user, expires, &"zz".repeat(32))),
        ("signature empty", content_path(id, user, expires, "")),
        ("expires pushed later", content_path(id, user, expires + 3600, &signature)),
        ("expires moved earlier", content_path(id, user, expires - 1, &signature)),
        ("another attachment's id", content_path(second, user, expires, &signature)),
        ("an unknown id", content_path(id + 1_000_000, user, expires, &signature)),
        ("another member's id", content_path(id, alice.id, expires, &signature)),
    ];
    for (what, path) in cases {
        assert_eq!(fetch_error(&app, &path, 403).await, "invalid_signature", "{what}");
    }
    // The second attachment's own link still works and serves its own bytes.
    let url = download_url(&app, &alice, second).await;
    let (status, _, bytes) = fetch(&app, &url).await;
    assert_eq!((status, bytes.as_slice()), (200, GIF));
}

async fn an_expired_link_is_refused_with_403_link_expired(backend: Backend) {
    let app = spawn_app_with(backend, |settings| settings.attachments.url_ttl_seconds = 1).await;
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;
    let id = id_of(&attachment_of(&sent_file(&app, &alice, &bob, "a.png", PNG).await));
    let reply = link(&app, &bob, id).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["expires_in_seconds"], 1);
    let url = reply.body["download_url"].as_str().expect("download_url").to_owned();
    let (status, _, bytes) = fetch(&app, &url).await;
    assert_eq!((status, bytes.as_slice()), (200, PNG), "fresh link works");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fetch_error(&app, &url, 403).await, "link_expired");
    // A new link works again.
    let url = download_url(&app, &bob, id).await;
    assert_eq!(fetch(&app, &url).await.0, 200);
}

on_both_databases!(
    every_accepted_type_is_stored_with_the_type_judged_from_its_bytes,
    other_types_are_refused_with_415_even_when_declared_as_png,
    files_over_their_limit_are_refused_with_413,
    a_huge_upload_is_refused_with_413_and_leaves_nothing,
    the_limit_is_enforced_while_the_body_streams_in,
    malformed_uploads_are_refused_and_leave_nothing,
    filenames_lose_path_parts_control_and_bidi_characters,
    a_file_may_come_with_text_or_with_none,
    the_same_client_id_returns_the_original_message_and_keeps_one_file,
    a_client_that_hangs_up_mid_upload_leaves_nothing,
    recipients_history_and_the_list_carry_the_attachment,
    download_links_are_for_members_of_a_live_message_only,
    the_signed_url_serves_the_exact_bytes_as_a_download,
    tampered_links_are_refused_with_403_invalid_signature,
    an_expired_link_is_refused_with_403_link_expired,
);

// ---------------------------------------------------------------------------------------------
// A crash mid-upload: the real binary, SIGKILLed while a file streams in.

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One `switchboard` process on a SQLite file and an attachments dir.
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    async fn start(database_url: &str, dir: &Path) -> Server {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["--config", "config.toml"])
            .env("SWITCHBOARD__SERVER__PORT", port.to_string())
            .env("SWITCHBOARD__SERVER__INSTANCE_ID", "attachments-crash")
            .env("SWITCHBOARD__SERVER__DEV_MODE", "false")
            .env("SWITCHBOARD__SERVER__WORKERS", "2")
            .env("SWITCHBOARD__SERVER__SHUTDOWN_TIMEOUT_SECONDS", "1")
            .env("SWITCHBOARD__DATABASE__URL", database_url)
            .env("SWITCHBOARD__DATABASE__MAX_CONNECTIONS", "4")
            .env("SWITCHBOARD__REDIS__URL", "")
            .env("SWITCHBOARD__ATTACHMENTS__DIR", dir)
            .env("SWITCHBOARD__AUTH__JWT_SECRET", TEST_SECRET)
            .env("SWITCHBOARD__LOG__LEVEL", if std::env::var("TEST_LOG").is_ok() { "info" } else { "error" })
            .stdout(Stdio::null())
            .spawn()
            .expect("start switchboard");
        let server = Server { port, child };
        let app = server.app();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if matches!(app.client.get(app.url("/health/ready")).send().await, Ok(r) if r.status() == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    fn app(&self) -> TestApp {
        TestApp::at(self.port)
    }

    /// SIGKILL: no handler runs, nothing is cleaned up.
    fn kill_hard(&mut self) {
        let status = Command::new("kill").args(["-KILL", &self.child.id().to_string()]).status();
        assert!(status.is_ok_and(|status| status.success()), "kill -KILL");
        let status = self.child.wait().expect("wait");
        assert!(!status.success(), "killed, not exited: {status:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The storage keys of every attachment row.
async fn storage_keys(database_url: &str) -> BTreeSet<String> {
    use sea_orm::{ConnectionTrait, Database};
    let db = Database::connect(database_url).await.expect("open the database");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT storage_key FROM attachments",
        ))
        .await
        .expect("query attachments");
    let keys =
        rows.iter().map(|row| row.try_get::<String>("", "storage_key").expect("storage_key")).collect();
    db.close().await.expect("close");
    keys
}

/// `.part` files under `dir/tmp` with their sizes.
fn part_files(dir: &Path) -> Vec<(String, u64)> {
    uploads_in_progress(dir)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "part"))
        .map(|entry| {
            let size = entry.metadata().map(|meta| meta.len()).unwrap_or(0);
            (entry.file_name().to_string_lossy().into_owned(), size)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_upload_leaves_no_partial_file_no_orphan_and_no_message() {
    let owned = tempfile::tempdir().expect("temp dir");
    let database_url = format!("sqlite://{}?mode=rwc", owned.path().join("crash.db").display());
    let dir = owned.path().join("attachments");
    let mut server = Server::start(&database_url, &dir).await;
    let app = server.app();
    let alice = app.user("alice").await;
    let bob = app.user("bob").await;

    // One upload that completes, so there is a real file and row to keep.
    let kept = sent_file(&app, &alice, &bob, "kept.png", PNG).await;
    let kept_id = id_of(&attachment_of(&kept));
    let conversation_id = kept["conversation_id"].as_i64().expect("conversation");

    // A 4 MB image: headers and the first 1 MiB of the body, then the server dies.
    let bob_id = bob.id.to_string();
    let body = multipart(&[
        Part::Text("recipient_id", &bob_id),
        Part::Text("message", "this never arrives"),
        Part::Text("client_id", "crash-1"),
        file_part("big.png", "image/png", &png_of(4 * 1024 * 1024)),
    ]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream.write_all(upload_head(server.port, &alice.token, body.len()).as_bytes()).expect("head");
    stream.write_all(&body[..1024 * 1024]).expect("first MiB");
    stream.flush().expect("flush");

    // The upload is being written: a .part file with data in it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if part_files(&dir).iter().any(|(_, size)| *size > 0) {
            break;
        }
        assert!(Instant::now() < deadline, "no .part file with data appeared in {}/tmp", dir.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill_hard();
    drop(stream);
    let left = part_files(&dir);
    assert_eq!(left.len(), 1, "SIGKILL leaves the half-written upload: {left:?}");

    // Restart on the same database and directory.
    let server = Server::start(&database_url, &dir).await;
    let app = server.app();
    assert_eq!(part_files(&dir), Vec::<(String, u64)>::new(), "the .part file is removed at start");
    assert_eq!(temporary_files(&dir), Vec::<String>::new());
    // Every stored file has its row and every row its file.
    let keys = storage_keys(&database_url).await;
    assert_eq!(keys.len(), 1, "one attachment row: {keys:?}");
    assert_eq!(stored_files(&dir), keys, "stored files and attachment rows match");

    // No message was stored for the cut upload.
    let page = app.history(&bob, conversation_id, "").await;
    assert_eq!(page["messages"], json!([kept]), "only the completed upload's message");
    let list = app.conversations(&bob).await;
    assert_eq!(list[0]["last_message"], kept);
    // Its client_id was never used: the retry is a new message, not a replay.
    let retry = upload(
        &app,
        &alice,
        &[
            Part::Text("recipient_id", &bob_id),
            Part::Text("message", "this never arrives"),
            Part::Text("client_id", "crash-1"),
            file_part("big.png", "image/png", PNG),
        ],
    )
    .await;
    assert_eq!(retry.status, 201, "the retry is stored anew: {}", retry.body);

    // The kept file still downloads, byte for byte.
    let url = download_url(&app, &bob, kept_id).await;
    let (status, _, bytes) = fetch(&app, &url).await;
    assert_eq!((status, bytes.as_slice()), (200, PNG));
}
