//! The event log. Every change a user must see is stored with the change and gets its
//! `event_id` from the `events` table's primary key, in the same transaction.
//!
//! Ids are handed out and committed in the same order: every transaction that writes events
//! goes through `Writer`, which serializes them (on PostgreSQL also across instances, with a
//! transaction-scoped advisory lock taken before the first insert). So when a reader sees
//! event N, every event below N is already committed, and a cursor never skips one that
//! committed late.
//!
//! Which events a user sees: those of conversations they are a member of, from the event
//! that added them up to the one that removed them, plus events addressed to them alone.
//! Frames are rendered per reader from the stored payload, so sync, replay and live
//! delivery produce the same shapes.

pub mod live;
pub mod queue;
pub mod writer;

use std::collections::{HashMap, HashSet};

use entity::{event, member};
use sea_orm::prelude::*;
use sea_orm::{
    AccessMode, Condition, ConnectionTrait, DatabaseTransaction, FromQueryResult, IsolationLevel, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::domain::conversations;
use crate::realtime::Frame;
use crate::realtime::port::Page;
use crate::time::{self, Timestamp};
use crate::wire::frames::ServerFrame;
use crate::wire::views::{ConversationView, MessageView, Notify, UserView};
use crate::wire::{ConversationId, EventId, UserId};

/// What an event row stores. The serde tag is also written to the `kind` column.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoredEvent {
    ConversationCreated {},
    MessageCreated {
        message: MessageView,
    },
    MessageEdited {
        message: MessageView,
    },
    MessageDeleted {
        message_id: i64,
    },
    MessageRead {
        reader_id: i64,
        last_read_message_id: i64,
        read_at: Timestamp,
    },
    MemberAdded {
        user: UserView,
    },
    MemberRemoved {
        user: UserView,
    },
    ReactionAdded {
        message_id: i64,
        user_id: i64,
        emoji: String,
    },
    ReactionRemoved {
        message_id: i64,
        user_id: i64,
        emoji: String,
    },
    MessagePinned {
        message_id: i64,
        user_id: i64,
    },
    MessageUnpinned {
        message_id: i64,
        user_id: i64,
    },
    /// The member's own notification settings (an event of theirs alone).
    SettingsChanged {
        notify: Notify,
        muted_until: Option<Timestamp>,
    },
}

impl StoredEvent {
    fn kind(&self) -> &'static str {
        match self {
            Self::ConversationCreated {} => "conversation_created",
            Self::MessageCreated { .. } => "message_created",
            Self::MessageEdited { .. } => "message_edited",
            Self::MessageDeleted { .. } => "message_deleted",
            Self::MessageRead { .. } => "message_read",
            Self::MemberAdded { .. } => "member_added",
            Self::MemberRemoved { .. } => "member_removed",
            Self::ReactionAdded { .. } => "reaction_added",
            Self::ReactionRemoved { .. } => "reaction_removed",
            Self::MessagePinned { .. } => "message_pinned",
            Self::MessageUnpinned { .. } => "message_unpinned",
            Self::SettingsChanged { .. } => "settings_changed",
        }
    }

    /// The message whose content the event carries, if any.
    fn message_id(&self) -> Option<i64> {
        match self {
            Self::MessageCreated { message } | Self::MessageEdited { message } => Some(message.id),
            _ => None,
        }
    }

    /// The message the carried message quotes, if any.
    fn quoted_id(&self) -> Option<i64> {
        match self {
            Self::MessageCreated { message } | Self::MessageEdited { message } => {
                message.reply_to.as_ref().map(|quote| quote.id)
            }
            _ => None,
        }
    }

    /// The message a `message_created` event stores (the `message_id` column).
    fn created_message_id(&self) -> Option<i64> {
        match self {
            Self::MessageCreated { message } => Some(message.id),
            _ => None,
        }
    }
}

/// Appends an event for every member of `conversation_id`; returns its id.
pub async fn append(
    conn: &impl ConnectionTrait,
    conversation_id: i64,
    stored: &StoredEvent,
) -> Result<i64, DbErr> {
    insert(conn, conversation_id, None, stored).await
}

/// Appends an event of `conversation_id` that only `user_id` sees (e.g. the
/// `conversation_created` of a member added to a group).
pub async fn append_for_user(
    conn: &impl ConnectionTrait,
    ConversationId(conversation_id): ConversationId,
    UserId(user_id): UserId,
    stored: &StoredEvent,
) -> Result<i64, DbErr> {
    insert(conn, conversation_id, Some(user_id), stored).await
}

/// Appends one event per `(conversation_id, event)` in as few statements as the databases'
/// limits allow; returns their ids, in the order given.
pub async fn append_many(
    conn: &impl ConnectionTrait,
    stored: &[(i64, StoredEvent)],
) -> Result<Vec<i64>, DbErr> {
    let now = time::now();
    let mut ids = Vec::with_capacity(stored.len());
    for chunk in stored.chunks(crate::db::MAX_ROWS_PER_STATEMENT) {
        let rows = chunk
            .iter()
            .map(|(conversation_id, event)| row(*conversation_id, None, event, now))
            .collect::<Result<Vec<_>, _>>()?;
        ids.extend(crate::db::insert_ids(conn, event::Entity::insert_many(rows), chunk.len()).await?);
    }
    crate::metrics::record(|m| m.events.inc_by(ids.len() as u64));
    Ok(ids)
}

async fn insert(
    conn: &impl ConnectionTrait,
    conversation_id: i64,
    user_id: Option<i64>,
    stored: &StoredEvent,
) -> Result<i64, DbErr> {
    let row = row(conversation_id, user_id, stored, time::now())?.insert(conn).await?;
    crate::metrics::record(|m| m.events.inc());
    Ok(row.id)
}

fn row(
    conversation_id: i64,
    user_id: Option<i64>,
    stored: &StoredEvent,
    now: Timestamp,
) -> Result<event::ActiveModel, DbErr> {
    let payload = serde_json::to_string(stored).map_err(|err| DbErr::Custom(err.to_string()))?;
    Ok(event::ActiveModel {
        conversation_id: Set(Some(conversation_id)),
        user_id: Set(user_id),
        kind: Set(stored.kind().to_owned()),
        payload: Set(payload),
        created_at: Set(now),
        message_id: Set(stored.created_message_id()),
        ..Default::default()
    })
}

/// Renders one event as `reader` sees it. `conversation` is the reader's view of the
/// event's conversation (needed by `new_message` and `conversation_created`).
pub fn render(
    EventId(event_id): EventId,
    ConversationId(conversation_id): ConversationId,
    stored: &StoredEvent,
    reader: i64,
    conversation: Option<&ConversationView>,
) -> Option<Frame> {
    let frame = match stored {
        StoredEvent::ConversationCreated {} => {
            ServerFrame::ConversationCreated { event_id, conversation: conversation? }
        }
        StoredEvent::MessageCreated { message } if message.sender_id == reader => {
            ServerFrame::MessageSent { event_id, message }
        }
        StoredEvent::MessageCreated { message } => {
            ServerFrame::NewMessage { event_id, message, conversation: conversation? }
        }
        StoredEvent::MessageEdited { message } => ServerFrame::MessageEdited { event_id, message },
        StoredEvent::MessageDeleted { message_id } => {
            ServerFrame::MessageDeleted { event_id, conversation_id, message_id: *message_id }
        }
        StoredEvent::MemberAdded { user } => ServerFrame::MemberAdded { event_id, conversation_id, user },
        StoredEvent::MemberRemoved { user } => ServerFrame::MemberRemoved { event_id, conversation_id, user },
        StoredEvent::MessageRead { reader_id, last_read_message_id, read_at } => ServerFrame::MessageRead {
            event_id,
            conversation_id,
            reader_id: *reader_id,
            last_read_message_id: *last_read_message_id,
            read_at: *read_at,
        },
        StoredEvent::ReactionAdded { message_id, user_id, emoji } => ServerFrame::ReactionAdded {
            event_id,
            conversation_id,
            message_id: *message_id,
            user_id: *user_id,
            emoji,
        },
        StoredEvent::ReactionRemoved { message_id, user_id, emoji } => ServerFrame::ReactionRemoved {
            event_id,
            conversation_id,
            message_id: *message_id,
            user_id: *user_id,
            emoji,
        },
        StoredEvent::MessagePinned { message_id, user_id } => ServerFrame::MessagePinned {
            event_id,
            conversation_id,
            message_id: *message_id,
            user_id: *user_id,
        },
        StoredEvent::MessageUnpinned { message_id, user_id } => ServerFrame::MessageUnpinned {
            event_id,
            conversation_id,
            message_id: *message_id,
            user_id: *user_id,
        },
        StoredEvent::SettingsChanged { notify, muted_until } => ServerFrame::SettingsChanged {
            event_id,
            conversation_id,
            notify: *notify,
            muted_until: *muted_until,
        },
    };
    Some(frame.to_frame())
}

/// Events `user_id` may see: their conversations within their membership, and their own.
/// A read-only transaction with one snapshot for all its statements. Reading memberships and
/// then events in separate snapshots would let a conversation created in between hide its
/// first events behind newer ones, and a cursor would skip them.
async fn snapshot(db: &Db) -> Result<DatabaseTransaction, DbErr> {
    if db.is_postgres() {
        db.read.begin_with_config(Some(IsolationLevel::RepeatableRead), Some(AccessMode::ReadOnly)).await
    } else {
        // SQLite in WAL mode: a transaction reads one snapshot from its first statement on.
        db.read.begin().await
    }
}

async fn visibility(txn: &DatabaseTransaction, user_id: i64) -> Result<Condition, DbErr> {
    let memberships = member::Entity::find().filter(member::Column::UserId.eq(user_id)).all(txn).await?;
    let mut visible = Condition::any().add(event::Column::UserId.eq(user_id));
    for membership in memberships {
        let mut window = Condition::all()
            .add(event::Column::ConversationId.eq(membership.conversation_id))
            .add(event::Column::UserId.is_null())
            .add(event::Column::Id.gte(membership.joined_event_id));
        if let Some(left) = membership.left_event_id {
            window = window.add(event::Column::Id.lte(left));
        }
        visible = visible.add(window);
    }
    Ok(visible)
}

/// The newest event `user_id` can see, or 0. Each conversation's newest event within the
/// membership is one backward seek on `idx_events_conversation`, however long its history:
/// a membership always contains the event that started it, so the newest event at or below
/// `left_event_id` is inside the window. (A `MAX(id)` over the OR of the windows read every
/// event of every window: ~5,000 rows and 68 ms for a user in 49 conversations, on each
/// socket's `hello`.) `COALESCE(e.user_id, 0) = 0` stands for `e.user_id IS NULL` so that
/// `idx_events_user` cannot serve it: PostgreSQL without statistics (a fresh database) took
/// that index's whole `user_id IS NULL` range instead, 35 ms for 49 conversations.
pub async fn last_visible_event(db: &Db, user_id: i64) -> Result<i64, DbErr> {
    #[derive(FromQueryResult)]
    struct Newest {
        newest: Option<i64>,
    }
    const NEWEST: &str = "SELECT MAX(newest) AS newest FROM ( \
         SELECT (SELECT e.id FROM events e WHERE e.conversation_id = m.conversation_id \
                 AND COALESCE(e.user_id, 0) = 0 AND e.id <= COALESCE(m.left_event_id, 9223372036854775807) \
                 ORDER BY e.id DESC LIMIT 1) AS newest \
         FROM conversation_members m WHERE m.user_id = $1 \
         UNION ALL \
         SELECT (SELECT e.id FROM events e WHERE e.user_id = $1 ORDER BY e.id DESC LIMIT 1) AS newest \
         ) AS windows";
    let backend = db.read.get_database_backend();
    let statement = crate::db::statement(backend, NEWEST, vec![user_id.into()]);
    let newest = Newest::find_by_statement(statement).one(&db.read).await?;
    Ok(newest.and_then(|row| row.newest).unwrap_or(0))
}

/// `user_id`'s events after `after` (and up to `up_to`), oldest first, rendered for them.
pub async fn frames_for_user(
    db: &Db,
    user_id: i64,
    after: i64,
    up_to: Option<i64>,
    limit: u64,
) -> Result<Page, DbErr> {
    let txn = snapshot(db).await?;
    let mut query = event::Entity::find()
        .filter(visibility(&txn, user_id).await?)
        .filter(event::Column::Id.gt(after))
        .order_by_asc(event::Column::Id)
        .limit(limit + 1);
    if let Some(up_to) = up_to {
        query = query.filter(event::Column::Id.lte(up_to));
    }
    let mut rows = query.all(&txn).await?;
    let has_more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let last_event_id = rows.last().map_or(after, |row| row.id);

    let mut decoded: Vec<(event::Model, StoredEvent)> = rows
        .into_iter()
        .filter_map(|row| match serde_json::from_str::<StoredEvent>(&row.payload) {
            Ok(stored) => Some((row, stored)),
            Err(err) => {
                tracing::error!(event_id = row.id, error = %err, "unreadable event payload");
                None
            }
        })
        .collect();
    let conversation_ids: HashSet<i64> = decoded.iter().filter_map(|(row, _)| row.conversation_id).collect();
    let views: HashMap<i64, ConversationView> =
        conversations::views_by_id(&txn, user_id, conversation_ids.into_iter().collect()).await?;
    // A message deleted since its event was stored is replayed as deleted, and so is a quote
    // of one: the log must not hand out content the sender removed.
    let carried: Vec<i64> =
        decoded.iter().flat_map(|(_, stored)| [stored.message_id(), stored.quoted_id()]).flatten().collect();
    let deleted: HashSet<i64> = if carried.is_empty() {
        HashSet::new()
    } else {
        entity::message::Entity::find()
            .select_only()
            .column(entity::message::Column::Id)
            .filter(entity::message::Column::Id.is_in(carried))
            .filter(entity::message::Column::DeletedAt.is_not_null())
            .into_tuple::<i64>()
            .all(&txn)
            .await?
            .into_iter()
            .collect()
    };
    txn.commit().await?;
    for (_, stored) in &mut decoded {
        if let StoredEvent::MessageCreated { message } | StoredEvent::MessageEdited { message } = stored {
            if deleted.contains(&message.id) {
                message.redact();
            } else if let Some(quote) = message.reply_to.as_mut().filter(|quote| deleted.contains(&quote.id))
            {
                quote.redact();
            }
        }
    }

    let frames = decoded
        .iter()
        .filter_map(|(row, stored)| {
            let conversation_id = row.conversation_id.unwrap_or_default();
            render(
                EventId(row.id),
                ConversationId(conversation_id),
                stored,
                user_id,
                views.get(&conversation_id),
            )
        })
        .collect();
    Ok(Page { frames, last_event_id, has_more })
}
