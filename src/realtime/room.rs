//! `UserRoom`: all the sessions (devices) of one user on this process. It exists while the
//! user has at least one session here and stops after the last one leaves.

use actix::prelude::*;

use super::server::{ChatServer, Disconnect};
use super::session::{self, CatchUp, Overflowed, WsSession};
use super::{Frame, SessionId, SharedQueue, UserId};

struct Device {
    addr: Addr<WsSession>,
    queue: SharedQueue,
}

/// A room per connected user is most of what a user costs beyond their socket, so it is kept
/// small: devices in a `Vec` (a user has a few), no timer of its own (`ChatServer` sends
/// `Prune`).
pub struct UserRoom {
    user_id: UserId,
    devices: Vec<(SessionId, Device)>,
    queue_limit: usize,
    server: Addr<ChatServer>,
}

impl UserRoom {
    pub fn new(user_id: UserId, queue_limit: usize, server: Addr<ChatServer>) -> Self {
        Self { user_id, devices: Vec::new(), queue_limit, server }
    }

    /// Tells every device's session the same thing.
    fn tell_all<M>(&self, msg: M)
    where
        M: Message<Result = ()> + Clone + Send + 'static,
        WsSession: Handler<M>,
    {
        for (_, device) in &self.devices {
            device.addr.do_send(msg.clone());
        }
    }

    /// Sessions are removed when they stop; this catches any whose actor vanished without
    /// running its `stopping` hook, so a room can never leak.
    fn prune(&mut self) {
        let user_id = self.user_id;
        let server = &self.server;
        self.devices.retain(|(session_id, device)| {
            let alive = device.addr.connected();
            if !alive {
                server.do_send(Disconnect { user_id, session_id: *session_id });
            }
            alive
        });
    }
}

impl Actor for UserRoom {
    type Context = Context<Self>;
}

/// Look for sessions whose actor died without leaving.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Prune;

impl Handler<Prune> for UserRoom {
    type Result = ();

    fn handle(&mut self, _: Prune, _: &mut Context<Self>) {
        self.prune();
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Join {
    pub session_id: SessionId,
    pub session: Addr<WsSession>,
    pub queue: SharedQueue,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub session_id: SessionId,
    /// The server has forgotten this room: stop once the session is gone.
    pub last: bool,
}

impl Handler<Join> for UserRoom {
    type Result = ();

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) {
        self.devices.retain(|(session_id, _)| *session_id != msg.session_id);
        self.devices.push((msg.session_id, Device { addr: msg.session, queue: msg.queue }));
    }
}

impl Handler<Leave> for UserRoom {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        self.devices.retain(|(session_id, _)| *session_id != msg.session_id);
        if msg.last {
            ctx.stop();
        }
    }
}

impl Handler<Frame> for UserRoom {
    type Result = ();

    /// Never waits for a socket: a session that cannot keep up is told it overflowed and
    /// gets nothing more.
    fn handle(&mut self, frame: Frame, _: &mut Context<Self>) {
        let mut dead = false;
        for (_, device) in &self.devices {
            if device.queue.overflowed() {
                continue;
            }
            if !device.addr.connected() {
                dead = true;
                continue;
            }
            if device.queue.push(frame.text.len(), self.queue_limit) {
                device.addr.do_send(frame.clone());
            } else {
                device.addr.do_send(Overflowed);
            }
        }
        if dead {
            self.prune();
        }
    }
}

/// Every session of this user re-reads the log from where it is.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CatchUpAll;

impl Handler<CatchUpAll> for UserRoom {
    type Result = ();

    fn handle(&mut self, _: CatchUpAll, _: &mut Context<Self>) {
        self.tell_all(CatchUp);
    }
}

/// Live relay is down (`on`) or back: sessions poll the log, or stop polling.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Polling {
    pub on: bool,
}

impl Handler<Polling> for UserRoom {
    type Result = ();

    fn handle(&mut self, msg: Polling, _: &mut Context<Self>) {
        self.tell_all(session::Polling { on: msg.on });
    }
}

/// Close every session of this user (the instance is draining).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAll;

impl Handler<CloseAll> for UserRoom {
    type Result = ();

    fn handle(&mut self, _: CloseAll, _: &mut Context<Self>) {
        self.tell_all(session::Restart);
    }
}
