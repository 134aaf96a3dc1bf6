//! The live side's one dependency on the rest of the server: what a socket or presence needs
//! to read or record, behind a narrow trait. The domain implements it and hands it in at
//! start-up, so the actors hold no database handle and no business rule, and `realtime`
//! imports nothing from `domain`.

use std::fmt;

use futures_util::future::BoxFuture;

use super::{Frame, UserId};

/// A page of one user's events, rendered for them, oldest first.
pub struct Page {
    pub frames: Vec<Frame>,
    /// The id of the last event in `frames`, or the `after` asked for when there were none.
    pub last_event_id: i64,
    pub has_more: bool,
}

/// The store could not answer (database unavailable or failing); the caller retries later
/// or closes the socket.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type Answer<T> = BoxFuture<'static, Result<T, Unavailable>>;

pub trait Domain: Send + Sync + 'static {
    /// The newest event `user` can see, or 0.
    fn newest_event(&self, user: UserId) -> Answer<i64>;

    /// `user`'s events in `(after, up_to]`, at most `limit`.
    fn events_after(&self, user: UserId, after: i64, up_to: i64, limit: u64) -> Answer<Page>;

    /// Records that `user`'s device received the events in `(after, up_to]`.
    fn ack(&self, user: UserId, after: i64, up_to: i64) -> Answer<()>;

    /// Who should see `user` typing in `conversation_id`: the other current members, none if
    /// `user` is not one or types too often.
    fn typing_targets(&self, user: UserId, conversation_id: i64) -> Answer<Vec<UserId>>;

    /// Who hears `user`'s presence: users who share with them a direct conversation or a
    /// group small enough for presence (current members only).
    fn peers(&self, user: UserId) -> Answer<Vec<UserId>>;
}
