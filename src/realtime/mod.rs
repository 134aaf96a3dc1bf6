//! The live side: one `WsSession` actor per socket, one `UserRoom` per connected user
//! holding all of that user's sessions, and one `ChatServer` per process routing persisted
//! events to the rooms. The actors hold no database handle and no business rules; they move
//! frames that were serialized once per user.

pub mod presence;
pub mod protocol;
pub mod relay;
pub mod room;
pub mod server;
pub mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use actix::Message;
use bytestring::ByteString;
use serde::Serialize;

/// A user id on the live path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

/// A socket's id, unique within this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

/// A frame ready for the wire: serialized once, shared by every device that receives it.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Frame {
    /// Set for stored events; sessions use it to drop what a replay already sent.
    pub event_id: Option<i64>,
    /// Over Redis: the event published before this one on the same user's channel, so a
    /// session can tell it missed one.
    pub prev_event_id: Option<i64>,
    /// When the event's transaction committed (Unix microseconds), for the delivery latency
    /// histogram; it travels through Redis too.
    pub committed_us: Option<u64>,
    pub text: ByteString,
}

impl Frame {
    pub fn new(event_id: Option<i64>, frame: &impl Serialize) -> Self {
        // Our frame types serialize infallibly (string keys, no maps with non-string keys).
        let text = serde_json::to_string(frame).unwrap_or_default();
        Self { event_id, prev_event_id: None, committed_us: None, text: ByteString::from(text) }
    }
}

/// Now, in Unix microseconds.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
}

/// One frame for every device of one user.
#[derive(Debug, Clone)]
pub struct UserFrame {
    pub user_id: UserId,
    pub frame: Frame,
}

/// Shared between a session and its room: the bytes handed to the session and not yet
/// written, so the room can stop feeding a socket that does not drain.
#[derive(Debug, Default)]
pub struct OutboundQueue {
    queued: AtomicUsize,
    overflowed: AtomicBool,
}

impl OutboundQueue {
    /// Accounts for `bytes` more; false once the socket is over `limit` (from then on, always).
    pub fn push(&self, bytes: usize, limit: usize) -> bool {
        if self.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        if self.queued.fetch_add(bytes, Ordering::Relaxed) + bytes > limit {
            self.overflowed.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn written(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

pub type SharedQueue = Arc<OutboundQueue>;
