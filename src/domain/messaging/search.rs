//! Full-text message search: SQLite FTS5 (`messages_fts`, porter stemming) or PostgreSQL
//! `tsvector` with a GIN index, both kept in step with edits and deletes by the database.
//! Results are ranked by relevance, then recency, and limited to the caller's current
//! conversations; deleted messages never match.

use entity::message;
use sea_orm::prelude::*;
use sea_orm::{DatabaseBackend, FromQueryResult};

use crate::db::{self, Db};
use crate::domain::conversations::visible;
use crate::domain::messaging::text::Trimmed;
use crate::domain::messaging::views;
use crate::error::AppResult;
use crate::wire::views::MessageView;
use crate::wire::{ConversationId, UserId};

/// Words to find: 2–200 characters after trimming.
pub const QUERY: Trimmed = Trimmed { min: 2, max: 200, banned: &[], visible: false };

pub struct Hits {
    pub messages: Vec<MessageView>,
    pub total: i64,
}

#[derive(FromQueryResult)]
struct Id {
    id: i64,
}

#[derive(FromQueryResult)]
struct Total {
    total: i64,
}

/// The words of `q`: letters and digits only, so user input can never form query syntax.
fn terms(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .take(16)
        .collect()
}

pub async fn messages(
    db: &Db,
    user_id: i64,
    q: &str,
    conversation_id: Option<i64>,
    page: u64,
    page_size: u64,
) -> AppResult<Hits> {
    if let Some(conversation_id) = conversation_id {
        visible(&db.read, UserId(user_id), ConversationId(conversation_id)).await?;
    }
    let terms = terms(q);
    if terms.is_empty() {
        return Ok(Hits { messages: Vec::new(), total: 0 });
    }
    let backend = db.backend;
    // Every word must match; the last may be a prefix (search as you type).
    let (from, rank, query) = match backend {
        DatabaseBackend::Postgres => {
            let mut query: Vec<String> = terms.iter().map(|t| format!("'{t}'")).collect();
            if let Some(last) = query.last_mut() {
                last.push_str(":*");
            }
            (
                "messages m WHERE m.search @@ to_tsquery('english', $2)",
                "ts_rank(m.search, to_tsquery('english', $2)) DESC",
                query.join(" & "),
            )
        }
        _ => {
            let mut query: Vec<String> = terms.iter().map(|t| format!("\"{t}\"")).collect();
            if let Some(last) = query.last_mut() {
                last.push('*');
            }
            // The full-text table drives the join, so bm25 is computed once per match.
            (
                "messages_fts f JOIN messages m ON m.id = f.rowid WHERE messages_fts MATCH $2",
                "bm25(messages_fts)",
                query.join(" "),
            )
        }
    };
    let scope = "m.conversation_id IN (SELECT conversation_id FROM conversation_members \
                 WHERE user_id = $1 AND left_event_id IS NULL) AND m.deleted_at IS NULL";
    let only = if conversation_id.is_some() { " AND m.conversation_id = $3" } else { "" };
    let mut values: Vec<sea_orm::Value> = vec![user_id.into(), query.into()];
    if let Some(conversation_id) = conversation_id {
        values.push(conversation_id.into());
    }
    let total_sql = format!("SELECT COUNT(*) AS total FROM {from} AND {scope}{only}");
    let total = Total::find_by_statement(db::statement(backend, &total_sql, values.clone()))
        .one(&db.read)
        .await?
        .map_or(0, |row| row.total);
    let offset = (page - 1) * page_size;
    let ids_sql = format!(
        "SELECT m.id AS id FROM {from} AND {scope}{only} ORDER BY {rank}, m.id DESC LIMIT {page_size} OFFSET {offset}"
    );
    let ids: Vec<i64> = Id::find_by_statement(db::statement(backend, &ids_sql, values))
        .all(&db.read)
        .await?
        .into_iter()
        .map(|row| row.id)
        .collect();
    let mut rows =
        message::Entity::find().filter(message::Column::Id.is_in(ids.clone())).all(&db.read).await?;
    rows.sort_by_key(|row| ids.iter().position(|id| *id == row.id));
    Ok(Hits { messages: views::views(&db.read, rows).await?, total })
}

#[cfg(test)]
mod tests {
    use super::terms;

    #[test]
    fn query_syntax_never_reaches_the_database() {
        assert_eq!(terms("\"drop\" OR x* AND (y) NEAR:z"), ["drop", "or", "x", "and", "y", "near", "z"]);
        assert_eq!(terms("Café-au-lait"), ["café", "au", "lait"]);
        assert!(terms("*** ()").is_empty());
    }
}
