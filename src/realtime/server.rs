//! `ChatServer`: the one supervisor per process. It knows which users have sessions here
//! and routes each delivery to their rooms. It is started once, outside the `HttpServer`
//! factory, so every worker thread shares it.
//!
//! Mailbox policy: `Connect` is awaited (a session must be registered, and its user's relay
//! channel subscribed, before it reads the log); `Disconnect`, `Deliver` and `CatchUp` use
//! `do_send`, because dropping one would leak a session or lose a live frame, and none may
//! make an HTTP handler wait on a slow socket.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{mpsc, oneshot};

use super::presence::SessionCount;
use super::relay::SubscriberCommand;
use super::room::{Join, Leave, Prune, UserRoom};
use super::session::WsSession;
use super::{SessionId, SharedQueue, UserFrame, UserId};

/// A socket waits at most this long for its user's channel subscription before it falls back
/// to polling.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);
/// How often rooms look for sessions whose actor died without saying so.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

struct RoomEntry {
    addr: Addr<UserRoom>,
    /// A user has a few sockets: a `Vec` costs less than a set.
    sessions: Vec<SessionId>,
}

pub struct ChatServer {
    rooms: HashMap<UserId, RoomEntry>,
    /// Bytes one socket may have queued before it is closed with 4008.
    queue_limit: usize,
    /// The Redis subscriber, when there is one.
    subscriber: Option<mpsc::UnboundedSender<SubscriberCommand>>,
    /// Where session counts go for presence.
    presence: mpsc::UnboundedSender<SessionCount>,
    /// False while live relay is down and sessions poll the database instead.
    relay_up: bool,
}

impl ChatServer {
    pub fn new(
        queue_limit: usize,
        subscriber: Option<mpsc::UnboundedSender<SubscriberCommand>>,
        presence: mpsc::UnboundedSender<SessionCount>,
    ) -> Self {
        let relay_up = subscriber.is_none();
        Self { rooms: HashMap::new(), queue_limit, subscriber, presence, relay_up }
    }

    fn report(&self, user_id: UserId) {
        let sessions = self.rooms.get(&user_id).map_or(0, |entry| entry.sessions.len());
        let _ = self.presence.send(SessionCount { user_id, sessions });
    }
}

impl Actor for ChatServer {
    type Context = Context<Self>;

    /// One timer for every room, rather than one per room.
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(PRUNE_INTERVAL, |server, _| {
            for entry in server.rooms.values() {
                entry.addr.do_send(Prune);
            }
        });
    }
}

/// A socket opened: add it to its user's room, starting the room if it is the first.
/// Answers whether live relay is up (otherwise the session polls).
#[derive(Message)]
#[rtype(result = "bool")]
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

/// Frames for users, in commit order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub frames: Vec<UserFrame>,
}

/// These users' sessions (all, when `None`) re-read the log from where they are.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CatchUp {
    pub users: Option<Vec<UserId>>,
}

/// Live relay went down (sessions poll) or came back (sessions catch up once, then go live).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RelayState {
    pub up: bool,
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
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: Connect, ctx: &mut Context<Self>) -> Self::Result {
        let queue_limit = self.queue_limit;
        let entry = self.rooms.entry(msg.user_id).or_insert_with(|| RoomEntry {
            addr: UserRoom::new(msg.user_id, queue_limit, ctx.address()).start(),
            sessions: Vec::new(),
        });
        if !entry.sessions.contains(&msg.session_id) {
            entry.sessions.push(msg.session_id);
        }
        entry.addr.do_send(Join { session_id: msg.session_id, session: msg.session, queue: msg.queue });
        self.report(msg.user_id);

        let Some(subscriber) = &self.subscriber else { return Box::pin(async { true }) };
        // Subscribing is idempotent; waiting for each confirmation means no event published
        // after this session reads the log can pass it by.
        let (subscribed, confirmed) = oneshot::channel();
        let sent = subscriber.send(SubscriberCommand::Subscribe { user_id: msg.user_id, subscribed }).is_ok();
        let relay_up = self.relay_up;
        Box::pin(async move {
            let confirmed =
                sent && matches!(tokio::time::timeout(SUBSCRIBE_WAIT, confirmed).await, Ok(Ok(true)));
            relay_up && confirmed
        })
    }
}

impl Handler<Disconnect> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        let Some(entry) = self.rooms.get_mut(&msg.user_id) else { return };
        let Some(at) = entry.sessions.iter().position(|id| *id == msg.session_id) else { return };
        entry.sessions.swap_remove(at);
        if entry.sessions.is_empty() {
            // The room stops itself after its last `Leave`; nothing else can reach it now.
            if let Some(entry) = self.rooms.remove(&msg.user_id) {
                entry.addr.do_send(Leave { session_id: msg.session_id, last: true });
            }
            if let Some(subscriber) = &self.subscriber {
                let _ = subscriber.send(SubscriberCommand::Unsubscribe { user_id: msg.user_id });
            }
        } else {
            entry.addr.do_send(Leave { session_id: msg.session_id, last: false });
        }
        self.report(msg.user_id);
    }
}

/// How many sockets `user_id` has open on this instance.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct OpenSessions {
    pub user_id: UserId,
}

impl Handler<OpenSessions> for ChatServer {
    type Result = usize;

    fn handle(&mut self, msg: OpenSessions, _: &mut Context<Self>) -> usize {
        self.rooms.get(&msg.user_id).map_or(0, |entry| entry.sessions.len())
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

impl Handler<CatchUp> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: CatchUp, _: &mut Context<Self>) {
        match msg.users {
            Some(users) => {
                for user_id in users {
                    if let Some(entry) = self.rooms.get(&user_id) {
                        entry.addr.do_send(super::room::CatchUpAll);
                    }
                }
            }
            None => {
                for entry in self.rooms.values() {
                    entry.addr.do_send(super::room::CatchUpAll);
                }
            }
        }
    }
}

impl Handler<RelayState> for ChatServer {
    type Result = ();

    fn handle(&mut self, msg: RelayState, _: &mut Context<Self>) {
        self.relay_up = msg.up;
        for entry in self.rooms.values() {
            entry.addr.do_send(super::room::Polling { on: !msg.up });
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

/// The instance is draining: close every socket with 1012 so clients reconnect elsewhere.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct CloseAll;

impl Handler<CloseAll> for ChatServer {
    type Result = usize;

    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) -> usize {
        for entry in self.rooms.values() {
            entry.addr.do_send(super::room::CloseAll);
        }
        self.rooms.values().map(|entry| entry.sessions.len()).sum()
    }
}
