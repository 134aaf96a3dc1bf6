//! Integration tests: each builds the real `Application` on a free port with its own
//! database (a SQLite file, or a fresh PostgreSQL database) and drives it over HTTP and
//! WebSocket. `TEST_LOG=1` shows the server's logs.

mod helpers;

mod auth;
mod config;
mod conversations;
mod messages;
mod websocket;
