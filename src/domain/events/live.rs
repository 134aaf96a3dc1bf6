//! The domain as the live side sees it: `realtime::port::Domain`, answered from the
//! database and the writer. Built once at start-up and handed to the actors.

use std::sync::Arc;

use futures_util::FutureExt;

use crate::db::Db;
use crate::domain::events::writer::Writer;
use crate::domain::{conversations, events, messaging::receipts};
use crate::limits::Limits;
use crate::realtime::UserId;
use crate::realtime::port::{Answer, Domain, Page, Unavailable};
use crate::wire::ConversationId;

pub struct LiveDomain {
    db: Db,
    writer: Writer,
    limits: Arc<Limits>,
    /// `presence.max_group_members`: larger groups carry no presence frames.
    presence_group_limit: u64,
}

impl LiveDomain {
    pub fn new(db: Db, writer: Writer, limits: Arc<Limits>, presence_group_limit: u64) -> Self {
        Self { db, writer, limits, presence_group_limit }
    }
}

fn unavailable(err: impl std::fmt::Display) -> Unavailable {
    Unavailable(err.to_string())
}

impl Domain for LiveDomain {
    fn newest_event(&self, user: UserId) -> Answer<i64> {
        let db = self.db.clone();
        async move { events::last_visible_event(&db, user.0).await.map_err(unavailable) }.boxed()
    }

    fn events_after(&self, user: UserId, after: i64, up_to: i64, limit: u64) -> Answer<Page> {
        let db = self.db.clone();
        async move { events::frames_for_user(&db, user.0, after, Some(up_to), limit).await.map_err(unavailable) }
            .boxed()
    }

    fn ack(&self, user: UserId, after: i64, up_to: i64) -> Answer<()> {
        let (db, writer) = (self.db.clone(), self.writer.clone());
        async move { receipts::ack(&db, &writer, user.0, after, up_to).await.map_err(unavailable) }.boxed()
    }

    fn typing_targets(&self, user: UserId, conversation_id: i64) -> Answer<Vec<UserId>> {
        if !self.limits.typing(user.0) {
            return async { Ok(Vec::new()) }.boxed();
        }
        let db = self.db.clone();
        async move {
            let members = conversations::other_members(&db, user, ConversationId(conversation_id))
                .await
                .map_err(unavailable)?;
            Ok(members.unwrap_or_default().into_iter().map(UserId).collect())
        }
        .boxed()
    }

    fn peers(&self, user: UserId) -> Answer<Vec<UserId>> {
        let (db, limit) = (self.db.clone(), self.presence_group_limit);
        async move {
            let peers = conversations::peers_of(&db, user.0, limit).await.map_err(unavailable)?;
            Ok(peers.into_iter().map(UserId).collect())
        }
        .boxed()
    }
}
