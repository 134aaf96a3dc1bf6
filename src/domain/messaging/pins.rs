//! Pinned messages: a timestamp on the message (it orders the pins, newest first) and an
//! event per change. In a group only owner and admins pin; in a direct conversation either user.

use entity::member::Role;
use entity::message;
use sea_orm::prelude::*;
use sea_orm::{DatabaseTransaction, IntoActiveModel, QueryOrder, QuerySelect, Set};

use crate::db::Db;
use crate::domain::conversations::visible;
use crate::domain::events::writer::Writer;
use crate::domain::events::{self, StoredEvent};
use crate::domain::messaging::messages::{current, deleted_conflict, event_to_members, readable};
use crate::domain::messaging::views;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::realtime::UserFrame;
use crate::time;
use crate::wire::views::{ConversationKind, MessageView};
use crate::wire::{ConversationId, MessageId, UserId};

/// Pins shown per conversation.
const MAX_PINS_SHOWN: u64 = 100;

/// Pins the message; `message_pinned` goes to every member. Pinning it again changes nothing.
pub async fn pin(db: &Db, writer: &Writer, user: UserId, message: MessageId) -> AppResult<MessageView> {
    may_pin(db, user, message).await?;
    writer.write(move |txn| Box::pin(change(txn, user, message, true))).await
}

/// Unpins the message; `message_unpinned` goes to every member. Unpinning one that is not
/// pinned changes nothing.
pub async fn unpin(db: &Db, writer: &Writer, user: UserId, message: MessageId) -> AppResult<()> {
    may_pin(db, user, message).await?;
    writer.write(move |txn| Box::pin(change(txn, user, message, false))).await.map(|_| ())
}

/// 404 unless the caller sees the message; 403 for a plain member of a group.
async fn may_pin(db: &Db, user: UserId, message: MessageId) -> AppResult<()> {
    let row = readable(db, user, message).await?;
    let (conversation, membership) = visible(&db.read, user, ConversationId(row.conversation_id)).await?;
    if conversation.kind == ConversationKind::Group && membership.role < Role::Admin {
        return Err(AppError::forbidden(
            ErrorCode::NotAllowed,
            "only the group's owner and admins pin messages",
        ));
    }
    Ok(())
}

async fn change(
    txn: &DatabaseTransaction,
    UserId(user_id): UserId,
    MessageId(message_id): MessageId,
    pinned: bool,
) -> AppResult<(MessageView, Vec<UserFrame>)> {
    let mut row = current(txn, message_id).await?;
    // Deleting unpinned it, so unpinning a deleted message changes nothing, like any unpin
    // of a message that is not pinned.
    if pinned && row.deleted_at.is_some() {
        return Err(deleted_conflict("a deleted message cannot be pinned"));
    }
    let mut frames = Vec::new();
    if row.pinned_at.is_some() != pinned {
        let conversation_id = row.conversation_id;
        let mut active = row.into_active_model();
        active.pinned_at = Set(pinned.then(time::now));
        row = active.update(txn).await?;
        let stored = if pinned {
            StoredEvent::MessagePinned { message_id, user_id }
        } else {
            StoredEvent::MessageUnpinned { message_id, user_id }
        };
        let event_id = events::append(txn, conversation_id, &stored).await?;
        frames = event_to_members(txn, conversation_id, event_id, &stored, user_id).await?;
    }
    let view =
        views::views(txn, vec![row]).await?.pop().ok_or_else(|| AppError::not_found("message not found"))?;
    Ok((view, frames))
}

/// The conversation's pinned messages, most recently pinned first.
pub async fn list(db: &Db, user: UserId, conversation: ConversationId) -> AppResult<Vec<MessageView>> {
    let (conversation, _) = visible(&db.read, user, conversation).await?;
    let rows = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation.id))
        .filter(message::Column::PinnedAt.is_not_null())
        .filter(message::Column::DeletedAt.is_null())
        .order_by_desc(message::Column::PinnedAt)
        .order_by_desc(message::Column::Id)
        .limit(MAX_PINS_SHOWN)
        .all(&db.read)
        .await?;
    Ok(views::views(&db.read, rows).await?)
}
