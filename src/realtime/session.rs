//! `WsSession`: one WebSocket. On start it registers with `ChatServer`, sends `hello`, replays
//! the events after `since`, then goes live. Event frames reach it in id order, so it keeps
//! one number, the last event id it sent: anything at or below it is dropped (no duplicate at
//! the seam), and a frame whose relay predecessor is above it means a publish was missed, so
//! the session reads the log from that number before going on (no gap).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};

use super::server::{Connect, Disconnect};
use super::{Frame, Live, OutboundQueue, SessionId, SharedQueue, UserFrame, UserId};
use crate::wire::frames::{ClientFrame, ServerFrame};

/// Close code for a client whose outbound queue overflowed; it should reconnect with `since`.
pub const CLOSE_OVERFLOW: u16 = 4008;
/// A user's typing reaches others at most this often per conversation.
const TYPING_INTERVAL: Duration = Duration::from_secs(2);
/// Conversations one socket may be typing into within `TYPING_INTERVAL`.
const MAX_TYPING_CONVERSATIONS: usize = 8;
/// How often a session reads the log while live relay is down.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

pub struct WsSession {
    id: SessionId,
    user_id: UserId,
    live: Arc<Live>,
    since: Option<i64>,
    /// The newest event this socket has been given (by `hello`, replay or live).
    last_sent: i64,
    /// Acks move delivered receipts for the events after this one: the `since` the socket
    /// opened with, or 0.
    acked: i64,
    /// Set while live relay is down: the session reads the log on a timer instead.
    polling: Option<SpawnHandle>,
    last_heard: Instant,
    queue: SharedQueue,
    /// A fragmented text message being reassembled.
    fragments: Option<Vec<u8>>,
    /// When this socket last relayed `typing`, per conversation (the rate limit).
    typing_sent: HashMap<i64, Instant>,
}

type Ctx = ws::WebsocketContext<WsSession>;

impl WsSession {
    pub fn new(user_id: i64, since: Option<i64>, live: Arc<Live>) -> Self {
        Self {
            id: SessionId(NEXT_SESSION.fetch_add(1, Ordering::Relaxed)),
            user_id: UserId(user_id),
            live,
            since,
            last_sent: 0,
            acked: 0,
            polling: None,
            last_heard: Instant::now(),
            queue: SharedQueue::new(OutboundQueue::default()),
            fragments: None,
            typing_sent: HashMap::new(),
        }
    }

    fn close(&mut self, ctx: &mut Ctx, code: CloseCode, description: &str) {
        ctx.close(Some(CloseReason { code, description: Some(description.to_owned()) }));
        ctx.stop();
    }

    fn send_error(&self, ctx: &mut Ctx, code: &str, message: &str) {
        ctx.text(ServerFrame::Error { code, message }.to_frame().text);
    }

    fn heartbeat(&self, ctx: &mut Ctx) {
        let settings = &self.live.settings;
        let timeout = Duration::from_secs(settings.client_timeout_seconds);
        ctx.run_interval(Duration::from_secs(settings.ping_interval_seconds), move |session, ctx| {
            if session.last_heard.elapsed() > timeout {
                tracing::debug!(session = session.id.0, "closing a silent socket");
                session.close(ctx, CloseCode::Away, "no traffic within the client timeout");
            } else {
                ctx.ping(b"");
            }
        });
    }

    /// Registers with the server, then sends `hello` with the newest event this user can see.
    fn open(&mut self, ctx: &mut Ctx) {
        let live = self.live.clone();
        let connect = Connect {
            user_id: self.user_id,
            session_id: self.id,
            session: ctx.address(),
            queue: self.queue.clone(),
        };
        let user_id = self.user_id;
        let opened = async move {
            // Registered (and subscribed) before reading the log: anything committed after
            // this read arrives live.
            let relay_up = live.chat.send(connect).await.map_err(|err| err.to_string())?;
            let newest = live.domain.newest_event(user_id).await.map_err(|err| err.to_string())?;
            Ok::<_, String>((relay_up, newest))
        };
        ctx.wait(opened.into_actor(self).map(|result, session, ctx| match result {
            Ok((relay_up, last_event_id)) => {
                let hello = ServerFrame::Hello {
                    user_id: session.user_id.0,
                    session_id: session.id.0,
                    instance_id: &session.live.instance_id,
                    last_event_id,
                };
                ctx.text(hello.to_frame().text);
                match session.since.filter(|since| *since < last_event_id) {
                    Some(since) => {
                        session.last_sent = since;
                        session.replay(ctx, last_event_id);
                    }
                    None => session.last_sent = last_event_id,
                }
                // A socket without `since` was given nothing before the hello; its client
                // loads what it shows over HTTP, so its first ack covers all before it.
                session.acked = session.since.map_or(0, |since| since.min(last_event_id));
                session.set_polling(ctx, !relay_up);
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not open a session");
                session.close(ctx, CloseCode::Error, "temporarily unavailable");
            }
        }));
    }

    /// Sends the user's events in `(last_sent, up_to]`, one page at a time; live frames wait
    /// in the mailbox meanwhile.
    fn replay(&mut self, ctx: &mut Ctx, up_to: i64) {
        let page = self.live.domain.events_after(
            self.user_id,
            self.last_sent,
            up_to,
            self.live.settings.replay_page_size,
        );
        ctx.wait(page.into_actor(self).map(move |result, session, ctx| match result {
            Ok(page) => {
                for frame in &page.frames {
                    ctx.text(frame.text.clone());
                }
                session.last_sent = session.last_sent.max(page.last_event_id);
                if page.has_more {
                    session.replay(ctx, up_to);
                } else {
                    session.last_sent = session.last_sent.max(up_to);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "replay failed");
                session.close(ctx, CloseCode::Error, "temporarily unavailable");
            }
        }));
    }

    /// Reads the log from `last_sent` to its current end; live frames wait meanwhile.
    fn catch_up(&mut self, ctx: &mut Ctx) {
        let newest = self.live.domain.newest_event(self.user_id);
        ctx.wait(newest.into_actor(self).map(|result, session, ctx| match result {
            Ok(newest) if newest > session.last_sent => session.replay(ctx, newest),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "catch-up failed; the next one retries"),
        }));
    }

    fn set_polling(&mut self, ctx: &mut Ctx, on: bool) {
        match (on, self.polling.take()) {
            (true, None) => {
                self.polling = Some(ctx.run_interval(POLL_INTERVAL, |session, ctx| session.catch_up(ctx)));
            }
            (true, Some(handle)) => self.polling = Some(handle),
            (false, Some(handle)) => {
                ctx.cancel_future(handle);
                // What was committed while relay was down comes from the log first.
                self.catch_up(ctx);
            }
            (false, None) => {}
        }
    }

    fn on_text(&mut self, text: &str, ctx: &mut Ctx) {
        match serde_json::from_str::<ClientFrame>(text) {
            Ok(ClientFrame::Ping) => ctx.text(ServerFrame::Pong.to_frame().text),
            Ok(ClientFrame::Typing { conversation_id }) => self.typing(conversation_id.0, ctx),
            Ok(ClientFrame::Ack { event_id }) => self.ack(event_id.0, ctx),
            Err(err) => self.send_error(ctx, "bad_frame", &err.to_string()),
        }
    }

    /// Moves delivered receipts for the events this socket was given up to `event_id`.
    fn ack(&mut self, event_id: i64, ctx: &mut Ctx) {
        // Only what this socket was sent can be acked through it.
        let up_to = event_id.min(self.last_sent);
        if up_to <= self.acked {
            return;
        }
        let after = std::mem::replace(&mut self.acked, up_to);
        let acked = self.live.domain.ack(self.user_id, after, up_to);
        ctx.spawn(
            async move {
                if let Err(err) = acked.await {
                    tracing::debug!(error = %err, "delivered receipt failed");
                }
            }
            .into_actor(self),
        );
    }

    /// Relays `typing` to the conversation's other members, at most once per
    /// `TYPING_INTERVAL` per conversation; from a non-member it is ignored.
    fn typing(&mut self, conversation_id: i64, ctx: &mut Ctx) {
        let now = Instant::now();
        self.typing_sent.retain(|_, at| now.duration_since(*at) < TYPING_INTERVAL);
        if self.typing_sent.contains_key(&conversation_id)
            || self.typing_sent.len() >= MAX_TYPING_CONVERSATIONS
        {
            return;
        }
        self.typing_sent.insert(conversation_id, now);
        let (live, user_id) = (self.live.clone(), self.user_id);
        ctx.spawn(
            async move {
                let members = match live.domain.typing_targets(user_id, conversation_id).await {
                    Ok(members) if !members.is_empty() => members,
                    Ok(_) => return,
                    Err(err) => return tracing::debug!(error = %err, "typing: membership lookup failed"),
                };
                let frame = ServerFrame::Typing { conversation_id, user_id: user_id.0 }.to_frame();
                let frames =
                    members.into_iter().map(|member| UserFrame { user_id: member, frame: frame.clone() });
                live.relay.publish(frames.collect()).await;
            }
            .into_actor(self),
        );
    }

    fn on_fragment(&mut self, item: Item, ctx: &mut Ctx) {
        let max = self.live.settings.max_frame_bytes;
        let (bytes, last) = match item {
            Item::FirstText(bytes) => {
                self.fragments = Some(Vec::new());
                (bytes, false)
            }
            Item::FirstBinary(_) => {
                return self.close(ctx, CloseCode::Unsupported, "binary frames are not supported");
            }
            Item::Continue(bytes) => (bytes, false),
            Item::Last(bytes) => (bytes, true),
        };
        let Some(buffer) = self.fragments.as_mut() else {
            return self.close(ctx, CloseCode::Protocol, "continuation without a first frame");
        };
        if buffer.len() + bytes.len() > max {
            return self.close(ctx, CloseCode::Size, "message too large");
        }
        buffer.extend_from_slice(&bytes);
        if last && let Some(buffer) = self.fragments.take() {
            match String::from_utf8(buffer) {
                Ok(text) => self.on_text(&text, ctx),
                Err(_) => self.close(ctx, CloseCode::Invalid, "text frames must be UTF-8"),
            }
        }
    }
}

impl Actor for WsSession {
    type Context = Ctx;

    fn started(&mut self, ctx: &mut Ctx) {
        self.heartbeat(ctx);
        self.open(ctx);
    }

    fn stopping(&mut self, _: &mut Ctx) -> Running {
        self.live.chat.do_send(Disconnect { user_id: self.user_id, session_id: self.id });
        Running::Stop
    }
}

impl Handler<Frame> for WsSession {
    type Result = ();

    fn handle(&mut self, frame: Frame, ctx: &mut Ctx) {
        self.queue.written(frame.text.len());
        if self.queue.overflowed() {
            return self.close(
                ctx,
                CloseCode::Other(CLOSE_OVERFLOW),
                "outbound queue overflow; reconnect with since",
            );
        }
        let Some(event_id) = frame.event_id else {
            // Typing and presence: live only, never stored.
            return ctx.text(frame.text);
        };
        if event_id <= self.last_sent {
            return;
        }
        // A predecessor this socket never got, or no live relay: the log has this event and
        // everything before it, in order.
        if self.polling.is_some() || frame.prev_event_id.is_some_and(|prev| prev > self.last_sent) {
            return self.catch_up(ctx);
        }
        self.last_sent = event_id;
        if let Some(committed) = frame.committed_us {
            let seconds = crate::realtime::unix_micros().saturating_sub(committed) as f64 / 1e6;
            crate::metrics::record(|m| m.delivery_seconds.observe(seconds));
        }
        ctx.text(frame.text);
    }
}

/// The room stopped feeding this session because its queue overflowed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Overflowed;

impl Handler<Overflowed> for WsSession {
    type Result = ();

    fn handle(&mut self, _: Overflowed, ctx: &mut Ctx) {
        crate::metrics::record(|m| m.slow_clients_dropped.inc());
        self.close(ctx, CloseCode::Other(CLOSE_OVERFLOW), "outbound queue overflow; reconnect with since");
    }
}

/// The instance is draining: close with 1012 so the client reconnects (with `since`) to
/// another instance.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Restart;

impl Handler<Restart> for WsSession {
    type Result = ();

    fn handle(&mut self, _: Restart, ctx: &mut Ctx) {
        self.close(ctx, CloseCode::Restart, "server restarting; reconnect with since");
    }
}

/// Re-read the log from where this session is (after a relay gap or a failed publish).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct CatchUp;

impl Handler<CatchUp> for WsSession {
    type Result = ();

    fn handle(&mut self, _: CatchUp, ctx: &mut Ctx) {
        self.catch_up(ctx);
    }
}

/// Live relay is down (poll the log) or back (catch up once, then live).
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Polling {
    pub on: bool,
}

impl Handler<Polling> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Polling, ctx: &mut Ctx) {
        self.set_polling(ctx, msg.on);
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Ctx) {
        self.last_heard = Instant::now();
        let message = match item {
            Ok(message) => message,
            Err(ProtocolError::Overflow) => return self.close(ctx, CloseCode::Size, "frame too large"),
            Err(err) => {
                tracing::debug!(error = %err, "websocket protocol error");
                return self.close(ctx, CloseCode::Protocol, "protocol error");
            }
        };
        match message {
            ws::Message::Text(text) => self.on_text(&text, ctx),
            ws::Message::Binary(_) => {
                self.close(ctx, CloseCode::Unsupported, "binary frames are not supported")
            }
            ws::Message::Continuation(item) => self.on_fragment(item, ctx),
            ws::Message::Ping(payload) => ctx.pong(&payload),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
        }
    }
}
