//! A request body must keep arriving. actix bounds the time to read a request's head, not
//! its body: a client that declares `Content-Length: 60000` and sends a few bytes would hold
//! its connection, descriptor and worker slot for ever. Every body gets a deadline of
//! `server.client_body_timeout_seconds`, pushed back by one second for each
//! `server.client_body_min_bytes_per_second` that arrives, so a large upload on a slow line
//! finishes while a trickle does not. Past it the body fails with a timeout, the handler
//! answers 408, and the connection is closed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use crate::config::ServerSettings;
use crate::error::AppError;
use crate::startup::AppState;

/// Wraps the body of every request that has one; WebSocket upgrades (whose "body" is the
/// socket) are left alone.
pub async fn limit_body_time(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req.headers().get(header::CONTENT_LENGTH).is_some_and(|value| value.as_bytes() != b"0");
    if has_body && !req.head().upgrade() {
        let settings =
            req.app_data::<web::Data<AppState>>().map(|state| BodyTime::from(&state.settings.server));
        if let Some(rule) = settings {
            let (_, payload) = req.parts_mut();
            let inner = payload.take();
            req.set_payload(Payload::from(Box::pin(Deadline::new(inner, rule)) as Pin<Box<_>>));
        }
    }
    next.call(req).await
}

#[derive(Clone, Copy)]
struct BodyTime {
    grace: Duration,
    min_bytes_per_second: u64,
}

impl From<&ServerSettings> for BodyTime {
    fn from(settings: &ServerSettings) -> Self {
        Self {
            grace: Duration::from_secs(settings.client_body_timeout_seconds),
            min_bytes_per_second: settings.client_body_min_bytes_per_second.max(1),
        }
    }
}

struct Deadline {
    inner: Payload,
    rule: BodyTime,
    started: Instant,
    received: u64,
    timer: Pin<Box<Sleep>>,
    done: bool,
}

impl Deadline {
    fn new(inner: Payload, rule: BodyTime) -> Self {
        let started = Instant::now();
        Self {
            inner,
            rule,
            started,
            received: 0,
            timer: Box::pin(tokio::time::sleep(rule.grace)),
            done: false,
        }
    }

    fn deadline(&self) -> Instant {
        let earned = Duration::from_secs_f64(self.received as f64 / self.rule.min_bytes_per_second as f64);
        self.started + self.rule.grace + earned
    }
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                let deadline = self.deadline();
                self.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(end) => {
                self.done = true;
                Poll::Ready(end)
            }
            Poll::Pending => {
                if self.timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.done = true;
                crate::metrics::record(|m| m.body_timeouts.inc());
                let err = io::Error::new(io::ErrorKind::TimedOut, "the request body did not arrive in time");
                Poll::Ready(Some(Err(PayloadError::Io(err))))
            }
        }
    }
}

/// The error for a body that failed to arrive: 408 when it was too slow, else `otherwise`.
pub fn body_error(err: &PayloadError, otherwise: impl FnOnce() -> AppError) -> AppError {
    match err {
        PayloadError::Io(io) if io.kind() == io::ErrorKind::TimedOut => {
            AppError::RequestTimeout { message: "the request body did not arrive in time".into() }
        }
        _ => otherwise(),
    }
}
