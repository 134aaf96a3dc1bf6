//! `ChatServer`: the one supervisor per process. It knows which users have sessions here
//! and routes each persisted event to their rooms. It is started once, outside the
//! `HttpServer` factory, so every worker thread shares it.
//!
//! Mailbox policy: `Connect` is awaited (a session must be registered before it replays);
//! `Disconnect` and `Deliver` use `do_send`, because dropping either would leak a session or
//! lose a live frame, and neither may make an HTTP handler wait on a slow socket.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;

use super::room::{Join, Leave, UserRoom};
use super::session::WsSession;
use super::{SessionId, SharedQueue, UserFrame, UserId};

struct RoomEntry {
    addr: Addr<UserRoom>,
    sessions: HashSet<SessionId>,
}

pub struct ChatServer {
    rooms: HashMap<UserId, RoomEntry>,
    /// Bytes one socket may have queued before it is closed with 4008.
    queue_limit: usize,
}

impl ChatServer {
    pub fn new(queue_limit: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            queue_limit,
        }
    }
}

impl Actor for ChatServer {
    type Context = Context<Self>;
}

/// A socket opened: add it to its user's room, starting the room if it is the first.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub session: Addr<WsSession>,
    /// The session's outbound byte counter, shared with the room.
    pub queue: SharedQueue,
}

/// A socket closed (or its room found it dead); idempotent.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub user_id: UserId,
    pub session_id: SessionId,
}

/// Persisted events, one frame per receiving user, in commit order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub frames: Vec<UserFrame>,
}

/// How many rooms and sessions this process holds (for metrics and leak tests).
#[derive(Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

#[derive(Debug, Clone, Copy, MessageResponse)]
pub struct Stats {
    pub rooms: usize,
    pub sessions: usize,
}

impl Handler<Connect> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: Connect, ctx: &mut Context<Self>) {
        let queue_limit = self.queue_limit;
        let entry = self.rooms.entry(msg.user_id).or_insert_with(|| RoomEntry {
            addr: UserRoom::new(msg.user_id, queue_limit, ctx.address()).start(),
            sessions: HashSet::new(),
        });
        entry.sessions.insert(msg.session_id);
        entry.addr.do_send(Join {
            session_id: msg.session_id,
            session: msg.session,
            queue: msg.queue,
        });
    }
}

impl Handler<Disconnect> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        let Some(entry) = self.rooms.get_mut(&msg.user_id) else {
            return;
        };
        if !entry.sessions.remove(&msg.session_id) {
            return;
        }
        if entry.sessions.is_empty() {
            // The room stops itself after its last `Leave`; nothing else can reach it now.
            if let Some(entry) = self.rooms.remove(&msg.user_id) {
                entry.addr.do_send(Leave {
                    session_id: msg.session_id,
                    last: true,
                });
            }
        } else {
            entry.addr.do_send(Leave {
                session_id: msg.session_id,
                last: false,
            });
        }
    }
}

impl Handler<Deliver> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
        for UserFrame { user_id, frame } in msg.frames {
            if let Some(entry) = self.rooms.get(&user_id) {
                entry.addr.do_send(frame);
            }
        }
    }
}

impl Handler<GetStats> for ChatServer {
    type Result = Stats;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Stats {
        Stats {
            rooms: self.rooms.len(),
            sessions: self.rooms.values().map(|entry| entry.sessions.len()).sum(),
        }
    }
}
