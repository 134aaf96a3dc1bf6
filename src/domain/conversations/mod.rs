//! Reading conversations as one member sees them: the list, one conversation, history.

pub mod groups;
pub mod settings;

use std::collections::{HashMap, HashSet};

use entity::{conversation, event, member, message, user};
use sea_orm::prelude::*;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ConnectionTrait, PaginatorTrait, QueryOrder, QuerySelect};

use crate::db::Db;
use crate::domain::events::StoredEvent;
use crate::domain::messaging::views;
use crate::error::{AppError, AppResult};
use crate::wire::views::{ConversationKind, ConversationView, MessageView, UserView, optional_id};
use crate::wire::{ConversationId, UserId};

/// `"{low}:{high}"`: the key that keeps one direct conversation per pair.
pub fn direct_key(a: i64, b: i64) -> String {
    format!("{}:{}", Ord::min(a, b), Ord::max(a, b))
}

/// The conversation, if `user_id` is a current member; otherwise 404, whether or not it exists.
pub async fn visible(
    conn: &impl ConnectionTrait,
    UserId(user_id): UserId,
    ConversationId(conversation_id): ConversationId,
) -> AppResult<(conversation::Model, member::Model)> {
    let membership = member::Entity::find_by_id((conversation_id, user_id))
        .one(conn)
        .await?
        .filter(|membership| membership.left_event_id.is_none());
    let conversation = match membership {
        Some(_) => conversation::Entity::find_by_id(conversation_id).one(conn).await?,
        None => None,
    };
    match (conversation, membership) {
        (Some(conversation), Some(membership)) => Ok((conversation, membership)),
        _ => Err(AppError::not_found("conversation not found")),
    }
}

/// Views of the given conversations for `user_id`, keyed by id. Conversations the user was
/// never a member of are skipped.
pub async fn views_by_id(
    conn: &impl ConnectionTrait,
    user_id: i64,
    ids: Vec<i64>,
) -> Result<HashMap<i64, ConversationView>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = conversation::Entity::find().filter(conversation::Column::Id.is_in(ids)).all(conn).await?;
    let views = build_views(conn, user_id, rows).await?;
    Ok(views.into_iter().map(|view| (view.id, view)).collect())
}

/// Builds views in the order given, with a fixed number of queries whatever the count.
pub async fn build_views(
    conn: &impl ConnectionTrait,
    user_id: i64,
    rows: Vec<conversation::Model>,
) -> Result<Vec<ConversationView>, DbErr> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = rows.iter().map(|row| row.id).collect();

    let mine: HashMap<i64, member::Model> = member::Entity::find()
        .filter(member::Column::UserId.eq(user_id))
        .filter(member::Column::ConversationId.is_in(ids.clone()))
        .all(conn)
        .await?
        .into_iter()
        .map(|row| (row.conversation_id, row))
        .collect();

    let counts = member_counts(conn, ids).await?;
    let other_users = other_users(conn, user_id, &rows).await?;
    let last_messages = last_messages(conn, &rows).await?;

    // A former member (replaying their log) sees the conversation as it was when they left.
    let mut as_left: HashMap<i64, (i64, Option<MessageView>)> = HashMap::new();
    for membership in mine.values() {
        if let Some(left) = membership.left_event_id {
            as_left.insert(membership.conversation_id, as_of(conn, membership.conversation_id, left).await?);
        }
    }

    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let membership = mine.get(&row.id)?;
            let (members_count, last_message) = match as_left.remove(&row.id) {
                Some(then) => then,
                None => (
                    counts.get(&row.id).copied().unwrap_or(0),
                    row.last_message_id.and_then(|id| last_messages.get(&id)).cloned(),
                ),
            };
            Some(ConversationView {
                id: row.id,
                kind: row.kind,
                name: row.name,
                other_user: other_users.get(&row.id).cloned(),
                members_count,
                created_at: row.created_at,
                last_message,
                unread_count: membership.unread_count,
                unread_mentions: membership.unread_mentions,
                last_read_message_id: optional_id(membership.last_read_message_id),
                notify: membership.notify,
                muted_until: membership.muted_until,
            })
        })
        .collect())
}

/// Current members per conversation.
async fn member_counts(conn: &impl ConnectionTrait, ids: Vec<i64>) -> Result<HashMap<i64, i64>, DbErr> {
    Ok(member::Entity::find()
        .select_only()
        .column(member::Column::ConversationId)
        .column_as(member::Column::UserId.count(), "n")
        .filter(member::Column::ConversationId.is_in(ids))
        .filter(member::Column::LeftEventId.is_null())
        .group_by(member::Column::ConversationId)
        .into_tuple::<(i64, i64)>()
        .all(conn)
        .await?
        .into_iter()
        .collect())
}

/// The other member of each direct conversation among `rows`, by conversation id.
async fn other_users(
    conn: &impl ConnectionTrait,
    user_id: i64,
    rows: &[conversation::Model],
) -> Result<HashMap<i64, UserView>, DbErr> {
    let direct_ids: Vec<i64> =
        rows.iter().filter(|row| row.kind == ConversationKind::Direct).map(|row| row.id).collect();
    if direct_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let other_of: HashMap<i64, i64> = member::Entity::find()
        .filter(member::Column::ConversationId.is_in(direct_ids))
        .filter(member::Column::UserId.ne(user_id))
        .all(conn)
        .await?
        .into_iter()
        .map(|row| (row.conversation_id, row.user_id))
        .collect();
    let other_ids: HashSet<i64> = other_of.values().copied().collect();
    if other_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let users: HashMap<i64, UserView> = user::Entity::find()
        .filter(user::Column::Id.is_in(other_ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|row| (row.id, UserView::from(row)))
        .collect();
    Ok(other_of
        .into_iter()
        .filter_map(|(conversation, other)| Some((conversation, users.get(&other)?.clone())))
        .collect())
}

/// The last message of each of `rows`, by message id.
async fn last_messages(
    conn: &impl ConnectionTrait,
    rows: &[conversation::Model],
) -> Result<HashMap<i64, MessageView>, DbErr> {
    let last_ids: Vec<i64> = rows.iter().filter_map(|row| row.last_message_id).collect();
    if last_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = message::Entity::find().filter(message::Column::Id.is_in(last_ids)).all(conn).await?;
    Ok(views::views(conn, rows).await?.into_iter().map(|view| (view.id, view)).collect())
}

/// A conversation's member count and last message as of event `at`, from the log (so later
/// messages and edits stay unseen); a message deleted since shows as deleted.
async fn as_of(
    conn: &impl ConnectionTrait,
    conversation_id: i64,
    at: i64,
) -> Result<(i64, Option<MessageView>), DbErr> {
    let members = member::Entity::find()
        .filter(member::Column::ConversationId.eq(conversation_id))
        .filter(member::Column::JoinedEventId.lte(at))
        .filter(member::Column::LeftEventId.is_null().or(member::Column::LeftEventId.gte(at)))
        .count(conn)
        .await?;
    let last = event::Entity::find()
        .filter(event::Column::ConversationId.eq(conversation_id))
        .filter(event::Column::Id.lte(at))
        .filter(event::Column::MessageId.is_not_null())
        .order_by_desc(event::Column::Id)
        .one(conn)
        .await?;
    let mut message = match last.map(|row| serde_json::from_str::<StoredEvent>(&row.payload)) {
        Some(Ok(StoredEvent::MessageCreated { message })) => Some(message),
        _ => None,
    };
    if let Some(message) = &mut message {
        let deleted = message::Entity::find_by_id(message.id)
            .one(conn)
            .await?
            .is_none_or(|row| row.deleted_at.is_some());
        if deleted {
            message.redact();
        }
    }
    Ok((i64::try_from(members).unwrap_or(i64::MAX), message))
}

/// Messages from others after `last_read` in one conversation, deleted ones not counted.
pub async fn count_unread(
    conn: &impl ConnectionTrait,
    UserId(user_id): UserId,
    ConversationId(conversation_id): ConversationId,
    last_read: i64,
) -> Result<i64, DbErr> {
    let count = message::Entity::find()
        .filter(message::Column::ConversationId.eq(conversation_id))
        .filter(message::Column::Id.gt(last_read))
        .filter(message::Column::SenderId.ne(user_id))
        .filter(message::Column::DeletedAt.is_null())
        .count(conn)
        .await?;
    Ok(i64::try_from(count).unwrap_or(i64::MAX))
}

/// The other current members of `conversation_id`, or `None` if `user_id` is not one.
pub async fn other_members(
    db: &Db,
    UserId(user_id): UserId,
    ConversationId(conversation_id): ConversationId,
) -> Result<Option<Vec<i64>>, DbErr> {
    let members = member_ids(&db.read, conversation_id).await?;
    if !members.contains(&user_id) {
        return Ok(None);
    }
    Ok(Some(members.into_iter().filter(|member| *member != user_id).collect()))
}

/// The current members of `conversation_id`.
pub async fn member_ids(conn: &impl ConnectionTrait, conversation_id: i64) -> Result<Vec<i64>, DbErr> {
    member::Entity::find()
        .select_only()
        .column(member::Column::UserId)
        .filter(member::Column::ConversationId.eq(conversation_id))
        .filter(member::Column::LeftEventId.is_null())
        .into_tuple()
        .all(conn)
        .await
}

/// The other user of a direct conversation, from its `"{low}:{high}"` key.
pub fn direct_partner(conversation: &conversation::Model, user_id: i64) -> Option<i64> {
    let (low, high) = conversation.direct_key.as_deref()?.split_once(':')?;
    let (low, high) = (low.parse::<i64>().ok()?, high.parse::<i64>().ok()?);
    if low == user_id { Some(high) } else { Some(low) }
}

/// Whether `a` and `b` are both current members of at least one conversation: who may see
/// whose presence.
pub async fn share_a_conversation(db: &Db, a: i64, b: i64) -> Result<bool, DbErr> {
    let shared = member::Entity::find()
        .filter(member::Column::UserId.eq(b))
        .filter(member::Column::LeftEventId.is_null())
        .filter(member::Column::ConversationId.in_subquery(conversations_of(a)))
        .count(&db.read)
        .await?;
    Ok(shared > 0)
}

/// Users who share with `user_id` a conversation of at most `max_members` current members
/// (direct conversations always have two). Presence goes to them: in a group of n members
/// every connect would otherwise cost n - 1 frames, n² for a morning's connects.
pub async fn peers_of(db: &Db, user_id: i64, max_members: u64) -> Result<Vec<i64>, DbErr> {
    use sea_orm::sea_query::{Expr, Func, Query};
    let small = Query::select()
        .column(member::Column::ConversationId)
        .from(member::Entity)
        .and_where(member::Column::ConversationId.in_subquery(conversations_of(user_id)))
        .and_where(member::Column::LeftEventId.is_null())
        .group_by_col(member::Column::ConversationId)
        .and_having(Expr::expr(Func::count(Expr::col(member::Column::UserId))).lte(max_members))
        .to_owned();
    member::Entity::find()
        .select_only()
        .column(member::Column::UserId)
        .distinct()
        .filter(member::Column::ConversationId.in_subquery(small))
        .filter(member::Column::UserId.ne(user_id))
        .filter(member::Column::LeftEventId.is_null())
        .into_tuple()
        .all(&db.read)
        .await
}

/// The conversations `user_id` is a current member of, as a subquery.
fn conversations_of(user_id: i64) -> sea_orm::sea_query::SelectStatement {
    sea_orm::sea_query::Query::select()
        .column(member::Column::ConversationId)
        .from(member::Entity)
        .and_where(member::Column::UserId.eq(user_id))
        .and_where(member::Column::LeftEventId.is_null())
        .to_owned()
}

/// The conversations `user_id` is a current member of.
pub async fn active_conversation_ids(conn: &impl ConnectionTrait, user_id: i64) -> Result<Vec<i64>, DbErr> {
    member::Entity::find()
        .select_only()
        .column(member::Column::ConversationId)
        .filter(member::Column::UserId.eq(user_id))
        .filter(member::Column::LeftEventId.is_null())
        .into_tuple()
        .all(conn)
        .await
}

/// The caller's conversations, most recent activity first.
pub async fn list(db: &Db, user_id: i64, limit: u64) -> AppResult<Vec<ConversationView>> {
    let ids = active_conversation_ids(&db.read, user_id).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = conversation::Entity::find()
        .filter(conversation::Column::Id.is_in(ids))
        .order_by_desc(conversation::Column::LastActivityId)
        .limit(limit)
        .all(&db.read)
        .await?;
    Ok(build_views(&db.read, user_id, rows).await?)
}

pub async fn get(
    db: &Db,
    UserId(user_id): UserId,
    ConversationId(conversation_id): ConversationId,
) -> AppResult<ConversationView> {
    let (conversation, _) = visible(&db.read, UserId(user_id), ConversationId(conversation_id)).await?;
    build_views(&db.read, user_id, vec![conversation])
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("conversation not found"))
}

/// The direct conversation between the caller and `other_user_id`; 404 until one exists.
pub async fn get_direct(
    db: &Db,
    UserId(user_id): UserId,
    UserId(other_user_id): UserId,
) -> AppResult<ConversationView> {
    let conversation = conversation::Entity::find()
        .filter(conversation::Column::DirectKey.eq(direct_key(user_id, other_user_id)))
        .one(&db.read)
        .await?
        .ok_or_else(|| AppError::not_found("conversation not found"))?;
    get(db, UserId(user_id), ConversationId(conversation.id)).await
}

pub enum Window {
    Latest,
    Before(i64),
    After(i64),
    /// The oldest page after the first id and before the second: a gap a client fills.
    Between(i64, i64),
}

/// One page of history, ascending by id, and whether more lie beyond it.
pub async fn history(
    db: &Db,
    UserId(user_id): UserId,
    ConversationId(conversation_id): ConversationId,
    window: Window,
    limit: u64,
) -> AppResult<(Vec<MessageView>, bool)> {
    visible(&db.read, UserId(user_id), ConversationId(conversation_id)).await?;
    let query =
        message::Entity::find().filter(message::Column::ConversationId.eq(conversation_id)).limit(limit + 1);
    let query = match window {
        Window::Latest => query.order_by_desc(message::Column::Id),
        Window::Before(id) => query.filter(message::Column::Id.lt(id)).order_by_desc(message::Column::Id),
        Window::After(id) => query.filter(message::Column::Id.gt(id)).order_by_asc(message::Column::Id),
        Window::Between(after, before) => query
            .filter(message::Column::Id.gt(after))
            .filter(message::Column::Id.lt(before))
            .order_by_asc(message::Column::Id),
    };
    let ascending = matches!(window, Window::After(_) | Window::Between(..));
    let mut rows = query.all(&db.read).await?;
    let has_more = rows.len() as u64 > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    if !ascending {
        rows.reverse();
    }
    Ok((views::views(&db.read, rows).await?, has_more))
}
