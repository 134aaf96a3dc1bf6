//! Emoji reactions: one row per (message, emoji, user), an event per change, never a change
//! to unread counts.

use std::collections::HashMap;

use entity::reaction;
use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseTransaction, FromQueryResult, QuerySelect, Set};

use crate::db::{self, Db};
use crate::domain::events::writer::Writer;
use crate::domain::events::{self, StoredEvent};
use crate::domain::messaging::messages::{current_live, event_to_members, readable};
use crate::error::{AppError, AppResult};
use crate::realtime::UserFrame;
use crate::time;
use crate::wire::views::ReactionView;
use crate::wire::{MessageId, UserId};

const MAX_EMOJI_BYTES: usize = 32;
/// Distinct emoji one message may carry.
const MAX_DISTINCT: usize = 20;
/// Reactors listed per emoji; `count` has them all.
const SHOWN_REACTORS: i64 = 50;

/// A message's reactions after a change.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Reactions {
    pub message_id: i64,
    pub reactions: Vec<ReactionView>,
}

/// 1–32 bytes, no whitespace or control characters.
pub fn validate_emoji(emoji: &str) -> AppResult<()> {
    let fits = (1..=MAX_EMOJI_BYTES).contains(&emoji.len());
    if fits && !emoji.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(())
    } else {
        Err(AppError::validation(
            "emoji",
            "emoji must be 1-32 bytes without whitespace or control characters",
        ))
    }
}

/// Adds (`add`) or removes the caller's `emoji`; `reaction_added` or `reaction_removed` goes
/// to every member. Adding one twice or removing one that is not there changes nothing.
pub async fn set(
    db: &Db,
    writer: &Writer,
    user: UserId,
    message: MessageId,
    emoji: String,
    add: bool,
) -> AppResult<Reactions> {
    // What the caller cannot see is 404 whatever the emoji.
    readable(db, user, message).await?;
    validate_emoji(&emoji)?;
    writer.write(move |txn| Box::pin(change(txn, user, message, emoji, add))).await
}

async fn change(
    txn: &DatabaseTransaction,
    UserId(user_id): UserId,
    MessageId(message_id): MessageId,
    emoji: String,
    add: bool,
) -> AppResult<(Reactions, Vec<UserFrame>)> {
    let row = current_live(txn, message_id, "a deleted message cannot take reactions").await?;
    let mine = reaction::Entity::find()
        .filter(reaction::Column::MessageId.eq(message_id))
        .filter(reaction::Column::Emoji.eq(emoji.as_str()))
        .filter(reaction::Column::UserId.eq(user_id))
        .one(txn)
        .await?;
    let stored = match (add, mine) {
        (true, None) => {
            let present = distinct_emoji(txn, message_id).await?;
            if !present.contains(&emoji) && present.len() >= MAX_DISTINCT {
                return Err(AppError::validation("emoji", "a message takes at most 20 different emoji"));
            }
            reaction::ActiveModel {
                message_id: Set(message_id),
                user_id: Set(user_id),
                emoji: Set(emoji.clone()),
                created_at: Set(time::now()),
                ..Default::default()
            }
            .insert(txn)
            .await?;
            Some(StoredEvent::ReactionAdded { message_id, user_id, emoji })
        }
        (false, Some(mine)) => {
            reaction::Entity::delete_by_id(mine.id).exec(txn).await?;
            Some(StoredEvent::ReactionRemoved { message_id, user_id, emoji })
        }
        _ => None,
    };
    let mut frames = Vec::new();
    if let Some(stored) = stored {
        let event_id = events::append(txn, row.conversation_id, &stored).await?;
        frames = event_to_members(txn, row.conversation_id, event_id, &stored, user_id).await?;
    }
    let reactions = of_messages(txn, vec![message_id]).await?.remove(&message_id).unwrap_or_default();
    Ok((Reactions { message_id, reactions }, frames))
}

/// The different emoji on a message.
async fn distinct_emoji(txn: &DatabaseTransaction, message_id: i64) -> Result<Vec<String>, DbErr> {
    reaction::Entity::find()
        .select_only()
        .column(reaction::Column::Emoji)
        .distinct()
        .filter(reaction::Column::MessageId.eq(message_id))
        .into_tuple()
        .all(txn)
        .await
}

/// Each message's reactions in first-reaction order, with the first 50 reactors of each
/// emoji: one query for a whole page of messages.
pub async fn of_messages(
    conn: &impl ConnectionTrait,
    message_ids: Vec<i64>,
) -> Result<HashMap<i64, Vec<ReactionView>>, DbErr> {
    #[derive(FromQueryResult)]
    struct Reactor {
        message_id: i64,
        emoji: String,
        user_id: i64,
        n: i64,
    }
    let mut found: HashMap<i64, Vec<ReactionView>> = HashMap::new();
    if message_ids.is_empty() {
        return Ok(found);
    }
    let ids = db::padded(message_ids);
    let list = db::placeholders(1, ids.len());
    let limit = ids.len() + 1;
    let sql = format!(
        "SELECT message_id, emoji, user_id, n FROM (SELECT message_id, emoji, user_id, id, \
         ROW_NUMBER() OVER (PARTITION BY message_id, emoji ORDER BY id) AS rn, \
         COUNT(*) OVER (PARTITION BY message_id, emoji) AS n, \
         MIN(id) OVER (PARTITION BY message_id, emoji) AS first \
         FROM reactions WHERE message_id IN ({list})) r WHERE rn <= ${limit} ORDER BY first, id"
    );
    let mut values: Vec<sea_orm::Value> = ids.into_iter().map(Into::into).collect();
    values.push(SHOWN_REACTORS.into());
    let backend = conn.get_database_backend();
    for row in Reactor::find_by_statement(db::statement(backend, &sql, values)).all(conn).await? {
        let list = found.entry(row.message_id).or_default();
        match list.last_mut() {
            Some(last) if last.emoji == row.emoji => last.user_ids.push(row.user_id),
            _ => list.push(ReactionView { emoji: row.emoji, count: row.n, user_ids: vec![row.user_id] }),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_short_and_have_no_whitespace_or_control_characters() {
        for good in ["👍", "🎉", "+1", "👩‍👩‍👧‍👦", &"x".repeat(32)] {
            assert!(validate_emoji(good).is_ok(), "{good:?}");
        }
        for bad in ["", " ", "a b", "\u{1}", "\u{a0}", &"x".repeat(33), "\n👍"] {
            assert!(validate_emoji(bad).is_err(), "{bad:?}");
        }
    }
}
