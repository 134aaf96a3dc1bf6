//! Integration tests: each builds the real `Application` on a free port with its own
//! database (a SQLite file, or a fresh PostgreSQL database) and drives it over HTTP and
//! WebSocket. `TEST_LOG=1` shows the server's logs.

// Tests state their expectations with `expect`; a failed one is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod attachments;
mod auth;
mod away;
mod blocks;
mod bots;
mod browser;
mod cluster;
mod config;
mod connections;
mod contacts;
mod conversations;
mod edits;
mod faults;
mod groups;
mod limits;
mod masking;
mod mentions;
mod messages;
mod notify_settings;
mod observability;
mod openapi;
mod pins;
mod push;
mod push_service;
mod reactions;
mod replies;
mod search;
mod webhook_receiver;
pub mod websocket;
