//! Messages as the API shows them now: with their attachments, the message each quotes,
//! the members each mentions and their reactions, a few queries for a whole page.

use std::collections::HashMap;

use entity::message;
use sea_orm::ConnectionTrait;
use sea_orm::prelude::*;

use crate::domain::files::attachments;
use crate::domain::messaging::{mentions, reactions};
use crate::wire::views::{MessageView, ReplyView};

pub async fn views(
    conn: &impl ConnectionTrait,
    rows: Vec<message::Model>,
) -> Result<Vec<MessageView>, DbErr> {
    let live: Vec<i64> = rows.iter().filter(|row| row.deleted_at.is_none()).map(|row| row.id).collect();
    let quoted = quoted(conn, &rows).await?;
    let mut mentioned = mentions::of_messages(conn, live.clone()).await?;
    let mut reacted = reactions::of_messages(conn, live).await?;
    let reply_to: Vec<Option<i64>> = rows.iter().map(|row| row.reply_to_id).collect();
    let mut views = attachments::views(conn, rows).await?;
    for (view, reply_to) in views.iter_mut().zip(reply_to) {
        if !view.deleted {
            view.reply_to = reply_to.and_then(|id| quoted.get(&id)).map(ReplyView::from);
            view.mentions = mentioned.remove(&view.id).unwrap_or_default();
            view.reactions = reacted.remove(&view.id).unwrap_or_default();
        }
    }
    Ok(views)
}

/// The messages `rows` reply to, by id.
async fn quoted(
    conn: &impl ConnectionTrait,
    rows: &[message::Model],
) -> Result<HashMap<i64, message::Model>, DbErr> {
    let mut ids: Vec<i64> = rows.iter().filter_map(|row| row.reply_to_id).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    ids.sort_unstable();
    ids.dedup();
    let found = message::Entity::find().filter(message::Column::Id.is_in(ids)).all(conn).await?;
    Ok(found.into_iter().map(|row| (row.id, row)).collect())
}
