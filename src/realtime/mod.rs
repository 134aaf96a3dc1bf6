//! The live side: one `WsSession` actor per socket, one `UserRoom` per connected user
//! holding all of that user's sessions, and one `ChatServer` per process routing persisted
//! events to the rooms. The actors hold no database handle and no business rules; they move
//! frames that were serialized once per user.

pub mod port;
pub mod presence;
pub mod relay;
pub mod room;
pub mod server;
pub mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde::Serialize;

pub use crate::wire::{Frame, UserFrame, UserId};

/// What every session shares: the way to the domain, the routing actors and settings.
pub struct Live {
    pub domain: Arc<dyn port::Domain>,
    pub chat: actix::Addr<server::ChatServer>,
    pub relay: Arc<relay::Relay>,
    pub settings: crate::config::WebSocketSettings,
    pub instance_id: String,
}

/// A socket's id, unique within this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

/// Now, in Unix microseconds.
pub fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
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
