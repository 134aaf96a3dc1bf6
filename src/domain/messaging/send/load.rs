//! Stage 1: what a batch's checks read, one query per kind for all of its sends.

use std::collections::{HashMap, HashSet};

use entity::{conversation, member, message, user};
use sea_orm::prelude::*;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{Condition, ConnectionTrait, DatabaseBackend, DatabaseTransaction, FromQueryResult};

use super::{PendingMessage, ReadState, Results};
use crate::db;
use crate::domain::conversations::direct_key;
use crate::domain::messaging::messages::{Sent, Target};
use crate::domain::messaging::{mentions, views};
use crate::wire::views::UserView;

/// Users the writer keeps; beyond this the cache starts over.
const CACHED_USERS: usize = 100_000;

/// The users the writer has seen. Users never change once registered (no endpoint renames
/// or deletes one), so an entry never goes stale; were profile edits added, they would have
/// to reach this cache.
#[derive(Default)]
pub struct UserCache {
    users: HashMap<i64, UserView>,
}

impl UserCache {
    /// Makes sure the given users that exist are cached: one query for those missing.
    pub(super) async fn load(&mut self, txn: &DatabaseTransaction, ids: HashSet<i64>) -> Result<(), DbErr> {
        let missing: Vec<i64> = ids.into_iter().filter(|id| !self.users.contains_key(id)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if self.users.len() + missing.len() > CACHED_USERS {
            self.users.clear();
        }
        let rows = user::Entity::find().filter(user::Column::Id.is_in(db::padded(missing))).all(txn).await?;
        self.users.extend(rows.into_iter().map(|row| (row.id, UserView::from(row))));
        Ok(())
    }

    pub(super) fn get(&self, id: i64) -> Option<&UserView> {
        self.users.get(&id)
    }

    #[cfg(test)]
    pub(super) fn with(users: impl IntoIterator<Item = UserView>) -> Self {
        Self { users: users.into_iter().map(|user| (user.id, user)).collect() }
    }
}

/// Sends whose `client_id` the sender already used in an earlier batch: they answer with
/// the stored message.
pub(super) async fn repeats(
    txn: &DatabaseTransaction,
    jobs: &[PendingMessage],
    results: &mut Results,
) -> Result<(), DbErr> {
    let keyed: HashMap<(i64, &str), Vec<usize>> =
        jobs.iter().enumerate().fold(HashMap::new(), |mut keyed, (i, job)| {
            if let Some(client_id) = job.client_id.as_deref() {
                keyed.entry((job.sender_id, client_id)).or_default().push(i);
            }
            keyed
        });
    if keyed.is_empty() {
        return Ok(());
    }
    // One index seek per pair (`sender IN … AND client_id IN …` would try every combination).
    let pairs = db::padded(keyed.keys().copied().collect::<Vec<_>>());
    let wanted = pairs.into_iter().fold(Condition::any(), |any, (sender, client_id)| {
        any.add(message::Column::SenderId.eq(sender).and(message::Column::ClientId.eq(client_id)))
    });
    let rows: Vec<message::Model> = message::Entity::find().filter(wanted).all(txn).await?;
    for view in views::views(txn, rows).await? {
        let Some(client_id) = view.client_id.as_deref() else { continue };
        for &i in keyed.get(&(view.sender_id, client_id)).into_iter().flatten() {
            results[i] = Some(Ok(Sent::Existing(view.clone())));
        }
    }
    Ok(())
}

/// The conversations the batch's sends name, by direct key or id, with their current
/// members; the messages they quote and the users their `@names` may name.
#[derive(Default)]
pub(super) struct Loaded {
    pub by_key: HashMap<String, conversation::Model>,
    pub by_id: HashMap<i64, conversation::Model>,
    pub members: HashMap<i64, Vec<(i64, ReadState)>>,
    pub quoted: HashMap<i64, message::Model>,
    pub named: HashMap<String, i64>,
}

/// The quoted messages and the `@names` of sends to a conversation (a first message is
/// direct, so it names no one): one query each, none when no send needs it.
pub(super) async fn quoted_and_named(
    txn: &DatabaseTransaction,
    jobs: &[PendingMessage],
    results: &Results,
    loaded: &mut Loaded,
) -> Result<(), DbErr> {
    let pending = || jobs.iter().zip(results).filter(|(_, result)| result.is_none()).map(|(job, _)| job);
    let quoted: Vec<i64> = pending().filter_map(|job| job.reply_to_id).collect();
    if !quoted.is_empty() {
        let rows =
            message::Entity::find().filter(message::Column::Id.is_in(db::padded(quoted))).all(txn).await?;
        loaded.quoted = rows.into_iter().map(|row| (row.id, row)).collect();
    }
    let names = pending()
        .filter(|job| !matches!(job.target, Target::User(_)) && job.body.contains('@'))
        .flat_map(|job| mentions::candidates(&job.body))
        .collect();
    loaded.named = mentions::users_named(txn, names).await?;
    Ok(())
}

pub(super) async fn conversations(
    txn: &DatabaseTransaction,
    jobs: &[PendingMessage],
    results: &Results,
) -> Result<Loaded, DbErr> {
    let mut keys = Vec::new();
    let mut ids = Vec::new();
    for (job, _) in jobs.iter().zip(results).filter(|(_, result)| result.is_none()) {
        match job.target {
            Target::User(recipient) => keys.push(direct_key(job.sender_id, recipient)),
            Target::Conversation(id) | Target::Group(id) => ids.push(id),
        }
    }
    let mut loaded = Loaded::default();
    if keys.is_empty() && ids.is_empty() {
        return Ok(loaded);
    }
    // Only the lists that have entries: an empty `IN ()` renders as `? = ?`, which the
    // planner cannot see is false, so `key IN … OR ? = ?` scanned the whole table (4.7 of a
    // batch's 8.1 ms with 57,000 conversations).
    let mut wanted = Condition::any();
    if !keys.is_empty() {
        wanted = wanted.add(conversation::Column::DirectKey.is_in(db::padded(keys)));
    }
    if !ids.is_empty() {
        wanted = wanted.add(conversation::Column::Id.is_in(db::padded(ids)));
    }
    let found = conversation::Entity::find().filter(wanted).all(txn).await?;
    for row in found {
        if let Some(key) = &row.direct_key {
            loaded.by_key.insert(key.clone(), row.clone());
        }
        loaded.by_id.insert(row.id, row);
    }
    if !loaded.by_id.is_empty() {
        loaded.members = current_members(txn, loaded.by_id.keys().copied().collect()).await?;
    }
    Ok(loaded)
}

/// The current members of `conversations` with their read state. Each conversation's members
/// come back as one row holding a JSON array: sqlx hands SQLite rows from its connection
/// thread one at a time, and a 500-member group's rows took 2.3 of the 4.2 ms its send spent
/// in the writer. Notification settings, rarely changed, come from a second query of the
/// members who changed them, run only when the first says there are some (one statement
/// fewer per batch: a round trip on PostgreSQL, a thread hop on SQLite).
async fn current_members(
    txn: &DatabaseTransaction,
    conversations: Vec<i64>,
) -> Result<HashMap<i64, Vec<(i64, ReadState)>>, DbErr> {
    #[derive(FromQueryResult)]
    struct Members {
        conversation_id: i64,
        members: String,
    }
    let backend = txn.get_database_backend();
    let conversations = db::padded(conversations);
    let list = db::placeholders(1, conversations.len());
    // The last element is 1 if the member changed their notification settings.
    let members = match backend {
        DatabaseBackend::Postgres => {
            "json_agg(json_build_array(user_id, unread_count, unread_mentions, last_read_message_id, \
             (notify <> 'all' OR muted_until IS NOT NULL)::int))::text"
        }
        _ => {
            "json_group_array(json_array(user_id, unread_count, unread_mentions, last_read_message_id, \
             notify <> 'all' OR muted_until IS NOT NULL))"
        }
    };
    let sql = format!(
        "SELECT conversation_id, {members} AS members FROM conversation_members \
         WHERE conversation_id IN ({list}) AND left_event_id IS NULL GROUP BY conversation_id"
    );
    let values = conversations.iter().cloned().map(Into::into).collect();
    let rows = Members::find_by_statement(db::statement(backend, &sql, values)).all(txn).await?;
    let mut lists = Vec::with_capacity(rows.len());
    for row in rows {
        let list: Vec<(i64, i64, i64, i64, i64)> = serde_json::from_str(&row.members)
            .map_err(|err| DbErr::Custom(format!("conversation members as JSON: {err}")))?;
        lists.push((row.conversation_id, list));
    }
    let changed: Vec<i64> = lists
        .iter()
        .filter(|(_, list)| list.iter().any(|member| member.4 != 0))
        .map(|(conversation_id, _)| *conversation_id)
        .collect();
    let mut settings: HashMap<(i64, i64), member::Model> = HashMap::new();
    if !changed.is_empty() {
        settings = member::Entity::find()
            .filter(member::Column::ConversationId.is_in(db::padded(changed)))
            .filter(member::Column::LeftEventId.is_null())
            // Written as idx_members_settings' condition, literal included, so that both
            // databases read the partial index (a bound parameter would not match it).
            .filter(Expr::cust("(notify <> 'all' OR muted_until IS NOT NULL)"))
            .all(txn)
            .await?
            .into_iter()
            .map(|row| ((row.conversation_id, row.user_id), row))
            .collect();
    }
    let mut found = HashMap::new();
    for (conversation_id, list) in lists {
        let list = list
            .into_iter()
            .map(|(user_id, unread_count, unread_mentions, last_read_message_id, _)| {
                let mut state =
                    ReadState { unread_count, unread_mentions, last_read_message_id, ..Default::default() };
                if let Some(changed) = settings.remove(&(conversation_id, user_id)) {
                    state.notify = changed.notify;
                    state.muted_until = changed.muted_until;
                }
                (user_id, state)
            })
            .collect();
        found.insert(conversation_id, list);
    }
    Ok(found)
}
