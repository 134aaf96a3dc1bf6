//! Delivered receipts. A client acks the last event it processed; the messages of the
//! events in between count as delivered to that user. The pointer is stored per member and
//! `message_delivered` goes to the senders of the newly delivered messages (in a direct
//! conversation, the other user; in a group, only those whose messages moved), never to
//! the whole group, so a 1,000-member group does not turn every ack into 1,000 frames.

use std::collections::HashMap;

use entity::{conversation, event, member, message};
use sea_orm::prelude::*;
use sea_orm::{IntoActiveModel, QuerySelect, Set};

use crate::db::Db;
use crate::domain::conversations::active_conversation_ids;
use crate::domain::events::writer::Writer;
use crate::error::AppResult;
use crate::realtime::{UserFrame, UserId};
use crate::wire::frames::ServerFrame;

/// `user_id`'s devices processed every event in `(after, up_to]`. `after` is 0 for a socket
/// that opened without `since`: its client loaded what it shows over HTTP, so acking the
/// hello's `last_event_id` says it has caught up with everything before.
pub async fn ack(db: &Db, writer: &Writer, user_id: i64, after: i64, up_to: i64) -> AppResult<()> {
    if up_to <= after {
        return Ok(());
    }
    let moves = if after == 0 {
        caught_up(&db.read, user_id, up_to).await?
    } else {
        let conversations = active_conversation_ids(&db.read, user_id).await?;
        newest_between(&db.read, conversations, after, up_to).await?
    };
    if moves.is_empty() {
        return Ok(());
    }
    writer
        .write(move |txn| {
            Box::pin(async move {
                let mut frames = Vec::new();
                for (conversation_id, delivered) in moves {
                    let Some(membership) =
                        member::Entity::find_by_id((conversation_id, user_id)).one(txn).await?.filter(
                            |row| row.left_event_id.is_none() && row.last_delivered_message_id < delivered,
                        )
                    else {
                        continue;
                    };
                    let previous = membership.last_delivered_message_id;
                    let mut active = membership.into_active_model();
                    active.last_delivered_message_id = Set(delivered);
                    active.update(txn).await?;
                    let senders: Vec<i64> = message::Entity::find()
                        .select_only()
                        .column(message::Column::SenderId)
                        .distinct()
                        .filter(message::Column::ConversationId.eq(conversation_id))
                        .filter(message::Column::Id.gt(previous))
                        .filter(message::Column::Id.lte(delivered))
                        .filter(message::Column::SenderId.ne(user_id))
                        // Former members hear nothing more from the conversation.
                        .filter(
                            message::Column::SenderId.in_subquery(
                                sea_orm::sea_query::Query::select()
                                    .column(member::Column::UserId)
                                    .from(member::Entity)
                                    .and_where(member::Column::ConversationId.eq(conversation_id))
                                    .and_where(member::Column::LeftEventId.is_null())
                                    .to_owned(),
                            ),
                        )
                        .into_tuple()
                        .all(txn)
                        .await?;
                    let frame = ServerFrame::MessageDelivered {
                        conversation_id,
                        user_id,
                        last_delivered_message_id: delivered,
                    }
                    .to_frame();
                    frames.extend(
                        senders.into_iter().map(|id| UserFrame { user_id: UserId(id), frame: frame.clone() }),
                    );
                }
                Ok(((), frames))
            })
        })
        .await
}

/// Each conversation's newest message among the events in `(after, up_to]`.
async fn newest_between(
    conn: &impl ConnectionTrait,
    conversations: Vec<i64>,
    after: i64,
    up_to: i64,
) -> Result<Vec<(i64, i64)>, DbErr> {
    if conversations.is_empty() {
        return Ok(Vec::new());
    }
    let newest: Vec<(i64, Option<i64>)> = event::Entity::find()
        .select_only()
        .column(event::Column::ConversationId)
        .column_as(event::Column::MessageId.max(), "newest")
        .filter(event::Column::Id.gt(after))
        .filter(event::Column::Id.lte(up_to))
        .filter(event::Column::MessageId.is_not_null())
        .filter(event::Column::ConversationId.is_in(conversations))
        .group_by(event::Column::ConversationId)
        .into_tuple()
        .all(conn)
        .await?;
    Ok(newest.into_iter().filter_map(|(conversation, newest)| Some((conversation, newest?))).collect())
}

/// Everything up to `up_to` delivered: each conversation's last message, read from the
/// conversation row rather than its whole event history. Only a conversation with activity
/// after `up_to` (a message that raced the ack) is looked up in the log.
async fn caught_up(conn: &impl ConnectionTrait, user_id: i64, up_to: i64) -> Result<Vec<(i64, i64)>, DbErr> {
    let delivered: HashMap<i64, i64> = member::Entity::find()
        .select_only()
        .column(member::Column::ConversationId)
        .column(member::Column::LastDeliveredMessageId)
        .filter(member::Column::UserId.eq(user_id))
        .filter(member::Column::LeftEventId.is_null())
        .into_tuple()
        .all(conn)
        .await?
        .into_iter()
        .collect();
    if delivered.is_empty() {
        return Ok(Vec::new());
    }
    let newest: Vec<(i64, Option<i64>, i64)> = conversation::Entity::find()
        .select_only()
        .column(conversation::Column::Id)
        .column(conversation::Column::LastMessageId)
        .column(conversation::Column::LastActivityId)
        .filter(conversation::Column::Id.is_in(delivered.keys().copied()))
        .into_tuple()
        .all(conn)
        .await?;
    let mut moves = Vec::new();
    let mut raced = Vec::new();
    for (id, last_message, last_activity) in newest {
        let Some(last_message) = last_message else { continue };
        if delivered.get(&id).is_some_and(|delivered| *delivered >= last_message) {
            continue;
        }
        if last_activity <= up_to {
            moves.push((id, last_message));
        } else {
            raced.push(id);
        }
    }
    moves.extend(newest_between(conn, raced, 0, up_to).await?);
    Ok(moves)
}
