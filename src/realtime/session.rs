//! `WsSession`: one WebSocket. On start it registers with `ChatServer`, sends `hello`, replays
//! the events after `since`, then goes live; live frames that the replay already covered are
//! dropped by event id, so there is no gap and no duplicate at the seam.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web::web;
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};

use super::protocol::{ClientFrame, ServerFrame};
use super::server::{Connect, Disconnect};
use super::{Frame, OutboundQueue, SessionId, SharedQueue, UserId};
use crate::domain::events;
use crate::startup::AppState;

/// Close code for a client whose outbound queue overflowed; it should reconnect with `since`.
pub const CLOSE_OVERFLOW: u16 = 4008;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

pub struct WsSession {
    id: SessionId,
    user_id: UserId,
    state: web::Data<AppState>,
    since: Option<i64>,
    /// Live event frames up to this id were covered by `hello`/replay and are dropped.
    covered_up_to: i64,
    last_heard: Instant,
    queue: SharedQueue,
    /// A fragmented text message being reassembled.
    fragments: Option<Vec<u8>>,
}

impl WsSession {
    pub fn new(user_id: i64, since: Option<i64>, state: web::Data<AppState>) -> Self {
        Self {
            id: SessionId(NEXT_SESSION.fetch_add(1, Ordering::Relaxed)),
            user_id: UserId(user_id),
            state,
            since,
            covered_up_to: 0,
            last_heard: Instant::now(),
            queue: SharedQueue::new(OutboundQueue::default()),
            fragments: None,
        }
    }

    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: CloseCode, description: &str) {
        ctx.close(Some(CloseReason {
            code,
            description: Some(description.to_owned()),
        }));
        ctx.stop();
    }

    fn send_error(&self, ctx: &mut ws::WebsocketContext<Self>, code: &str, message: &str) {
        ctx.text(ServerFrame::Error { code, message }.to_frame().text);
    }

    fn heartbeat(&self, ctx: &mut ws::WebsocketContext<Self>) {
        let settings = &self.state.settings.websocket;
        let timeout = Duration::from_secs(settings.client_timeout_seconds);
        ctx.run_interval(
            Duration::from_secs(settings.ping_interval_seconds),
            move |session, ctx| {
                if session.last_heard.elapsed() > timeout {
                    tracing::debug!(session = session.id.0, "closing a silent socket");
                    session.close(ctx, CloseCode::Away, "no traffic within the client timeout");
                } else {
                    ctx.ping(b"");
                }
            },
        );
    }

    /// Registers with the server, then sends `hello` with the newest event this user can see.
    fn open(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let state = self.state.clone();
        let connect = Connect {
            user_id: self.user_id,
            session_id: self.id,
            session: ctx.address(),
            queue: self.queue.clone(),
        };
        let user_id = self.user_id.0;
        let opened = async move {
            // Registered before reading the log: anything committed after this read arrives live.
            state
                .chat
                .send(connect)
                .await
                .map_err(|err| err.to_string())?;
            events::last_visible_event(&state.db, user_id)
                .await
                .map_err(|err| err.to_string())
        };
        ctx.wait(
            opened
                .into_actor(self)
                .map(|result, session, ctx| match result {
                    Ok(last_event_id) => {
                        let hello = ServerFrame::Hello {
                            user_id: session.user_id.0,
                            session_id: session.id.0,
                            instance_id: &session.state.instance_id,
                            last_event_id,
                        };
                        ctx.text(hello.to_frame().text);
                        session.covered_up_to = last_event_id;
                        if let Some(since) = session.since.filter(|since| *since < last_event_id) {
                            session.replay(ctx, since, last_event_id);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "could not open a session");
                        session.close(ctx, CloseCode::Error, "temporarily unavailable");
                    }
                }),
        );
    }

    /// Sends the user's events in `(after, up_to]`, one page at a time; live frames wait in
    /// the mailbox meanwhile.
    fn replay(&mut self, ctx: &mut ws::WebsocketContext<Self>, after: i64, up_to: i64) {
        let state = self.state.clone();
        let user_id = self.user_id.0;
        let limit = state.settings.websocket.replay_page_size;
        let page = async move {
            events::frames_for_user(&state.db, user_id, after, Some(up_to), limit).await
        };
        ctx.wait(
            page.into_actor(self)
                .map(move |result, session, ctx| match result {
                    Ok(page) => {
                        for frame in &page.frames {
                            ctx.text(frame.text.clone());
                        }
                        if page.has_more {
                            session.replay(ctx, page.last_event_id, up_to);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "replay failed");
                        session.close(ctx, CloseCode::Error, "temporarily unavailable");
                    }
                }),
        );
    }

    fn on_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        match serde_json::from_str::<ClientFrame>(text) {
            Ok(ClientFrame::Ping) => ctx.text(ServerFrame::Pong.to_frame().text),
            // Typing and delivery receipts are accepted and arrive with their features.
            Ok(ClientFrame::Typing { .. } | ClientFrame::Ack { .. }) => {}
            Err(err) => self.send_error(ctx, "bad_frame", &err.to_string()),
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.heartbeat(ctx);
        self.open(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.state.chat.do_send(Disconnect {
            user_id: self.user_id,
            session_id: self.id,
        });
        Running::Stop
    }
}

impl Handler<Frame> for WsSession {
    type Result = ();

    fn handle(&mut self, frame: Frame, ctx: &mut Self::Context) {
        self.queue.written(frame.text.len());
        if self.queue.overflowed() {
            return self.close(
                ctx,
                CloseCode::Other(CLOSE_OVERFLOW),
                "outbound queue overflow; reconnect with since",
            );
        }
        if frame.event_id.is_some_and(|id| id <= self.covered_up_to) {
            return;
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

    fn handle(&mut self, _: Overflowed, ctx: &mut Self::Context) {
        self.close(
            ctx,
            CloseCode::Other(CLOSE_OVERFLOW),
            "outbound queue overflow; reconnect with since",
        );
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        let message = match item {
            Ok(message) => message,
            Err(ProtocolError::Overflow) => {
                return self.close(ctx, CloseCode::Size, "frame too large");
            }
            Err(err) => {
                tracing::debug!(error = %err, "websocket protocol error");
                return self.close(ctx, CloseCode::Protocol, "protocol error");
            }
        };
        match message {
            ws::Message::Text(text) => self.on_text(&text, ctx),
            ws::Message::Binary(_) => self.close(
                ctx,
                CloseCode::Unsupported,
                "binary frames are not supported",
            ),
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

impl WsSession {
    fn on_fragment(&mut self, item: Item, ctx: &mut ws::WebsocketContext<Self>) {
        let max = self.state.settings.websocket.max_frame_bytes;
        let (bytes, last) = match item {
            Item::FirstText(bytes) => {
                self.fragments = Some(Vec::new());
                (bytes, false)
            }
            Item::FirstBinary(_) => {
                return self.close(
                    ctx,
                    CloseCode::Unsupported,
                    "binary frames are not supported",
                );
            }
            Item::Continue(bytes) => (bytes, false),
            Item::Last(bytes) => (bytes, true),
        };
        let Some(buffer) = self.fragments.as_mut() else {
            return self.close(
                ctx,
                CloseCode::Protocol,
                "continuation without a first frame",
            );
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
