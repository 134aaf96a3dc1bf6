//! `@username` mentions: parsed once when a group message is sent or edited, stored one row
//! per named member, and counted into that member's `unread_mentions` by the writer.

use std::collections::{BTreeSet, HashMap};

use entity::{member, mention, user};
use sea_orm::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ConnectionTrait, DatabaseTransaction, QuerySelect};

use crate::db;

/// Username length bounds (the register rules): shorter or longer tokens name no one.
const NAME_CHARS: std::ops::RangeInclusive<usize> = 3..=32;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// The lowercase usernames `text` may name. An `@` inside a word (`bob@example.com`) is an
/// address, not a mention. A name may end in `.` or `-`, so "@bob." also offers "bob": the
/// lookup keeps whichever exists.
pub fn candidates(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut previous: Option<char> = None;
    for (at, c) in text.char_indices() {
        if c == '@' && !previous.is_some_and(is_name_char) {
            let rest = &text[at + 1..];
            let end = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
            let token = rest[..end].to_ascii_lowercase();
            let trimmed = token.trim_end_matches(['.', '-']);
            for name in [token.as_str(), trimmed] {
                if NAME_CHARS.contains(&name.len()) {
                    names.insert(name.to_owned());
                }
            }
        }
        previous = Some(c);
    }
    names
}

/// User ids by username, for every candidate of `texts` that is a registered user.
pub async fn users_named(
    conn: &impl ConnectionTrait,
    names: BTreeSet<String>,
) -> Result<HashMap<String, i64>, DbErr> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let names: Vec<String> = names.into_iter().collect();
    let mut found = HashMap::new();
    for chunk in names.chunks(db::MAX_ROWS_PER_STATEMENT) {
        let rows: Vec<(i64, String)> = user::Entity::find()
            .select_only()
            .columns([user::Column::Id, user::Column::Username])
            .filter(user::Column::Username.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(conn)
            .await?;
        found.extend(rows.into_iter().map(|(id, name)| (name, id)));
    }
    Ok(found)
}

/// The members `text` names, ascending, without `sender`.
pub fn resolve(
    text: &str,
    users: &HashMap<String, i64>,
    is_member: impl Fn(i64) -> bool,
    sender: i64,
) -> Vec<i64> {
    let ids: BTreeSet<i64> = candidates(text)
        .iter()
        .filter_map(|name| users.get(name).copied())
        .filter(|id| *id != sender && is_member(*id))
        .collect();
    ids.into_iter().collect()
}

/// Stores the mentions of new messages: `(message, conversation, members named)`.
pub async fn insert(txn: &DatabaseTransaction, named: &[(i64, i64, Vec<i64>)]) -> Result<(), DbErr> {
    let rows: Vec<mention::ActiveModel> = named
        .iter()
        .flat_map(|(message_id, conversation_id, users)| {
            users.iter().map(|user_id| mention::ActiveModel {
                message_id: sea_orm::Set(*message_id),
                user_id: sea_orm::Set(*user_id),
                conversation_id: sea_orm::Set(*conversation_id),
            })
        })
        .collect();
    for chunk in rows.chunks(db::MAX_ROWS_PER_STATEMENT) {
        mention::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// The members each of `message_ids` mentions, ascending.
pub async fn of_messages(
    conn: &impl ConnectionTrait,
    message_ids: Vec<i64>,
) -> Result<HashMap<i64, Vec<i64>>, DbErr> {
    let mut found: HashMap<i64, Vec<i64>> = HashMap::new();
    if message_ids.is_empty() {
        return Ok(found);
    }
    let rows: Vec<(i64, i64)> = mention::Entity::find()
        .select_only()
        .columns([mention::Column::MessageId, mention::Column::UserId])
        .filter(mention::Column::MessageId.is_in(message_ids))
        .into_tuple()
        .all(conn)
        .await?;
    for (message_id, user_id) in rows {
        found.entry(message_id).or_default().push(user_id);
    }
    for users in found.values_mut() {
        users.sort_unstable();
    }
    Ok(found)
}

/// Moves `unread_mentions` by `delta` for those of `users` who have not read `message_id`.
pub async fn shift_unread(
    txn: &DatabaseTransaction,
    conversation_id: i64,
    message_id: i64,
    users: Vec<i64>,
    delta: i64,
) -> Result<(), DbErr> {
    if users.is_empty() {
        return Ok(());
    }
    let mut update = member::Entity::update_many()
        .col_expr(member::Column::UnreadMentions, Expr::col(member::Column::UnreadMentions).add(delta))
        .filter(member::Column::ConversationId.eq(conversation_id))
        .filter(member::Column::UserId.is_in(users))
        .filter(member::Column::LeftEventId.is_null())
        .filter(member::Column::LastReadMessageId.lt(message_id));
    if delta < 0 {
        update = update.filter(member::Column::UnreadMentions.gte(-delta));
    }
    update.exec(txn).await?;
    Ok(())
}

/// Re-parses an edited group message: its mention rows become `now`, and members who have
/// not read it gain or lose the difference.
pub async fn replace(
    txn: &DatabaseTransaction,
    message: &entity::message::Model,
    now: Vec<i64>,
) -> Result<(), DbErr> {
    let before: BTreeSet<i64> = of_messages(txn, vec![message.id])
        .await?
        .remove(&message.id)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let after: BTreeSet<i64> = now.iter().copied().collect();
    let gone: Vec<i64> = before.difference(&after).copied().collect();
    let new: Vec<i64> = after.difference(&before).copied().collect();
    if !gone.is_empty() {
        mention::Entity::delete_many()
            .filter(mention::Column::MessageId.eq(message.id))
            .filter(mention::Column::UserId.is_in(gone.clone()))
            .exec(txn)
            .await?;
        shift_unread(txn, message.conversation_id, message.id, gone, -1).await?;
    }
    if !new.is_empty() {
        insert(txn, &[(message.id, message.conversation_id, new.clone())]).await?;
        shift_unread(txn, message.conversation_id, message.id, new, 1).await?;
    }
    Ok(())
}

/// A member's unread mentions after reading up to `last_read`: mentions of later messages
/// that are not deleted.
pub async fn unread_after(
    conn: &impl ConnectionTrait,
    conversation_id: i64,
    user_id: i64,
    last_read: i64,
) -> Result<i64, DbErr> {
    let backend = conn.get_database_backend();
    let sql = "SELECT COUNT(*) AS n FROM mentions m JOIN messages g ON g.id = m.message_id \
               WHERE m.user_id = $1 AND m.conversation_id = $2 AND m.message_id > $3 AND g.deleted_at IS NULL";
    let row = conn
        .query_one_raw(db::statement(
            backend,
            sql,
            vec![user_id.into(), conversation_id.into(), last_read.into()],
        ))
        .await?;
    Ok(row.map(|row| row.try_get::<i64>("", "n")).transpose()?.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        candidates(text).into_iter().collect()
    }

    #[test]
    fn mentions_are_words_starting_with_at_and_addresses_are_not() {
        assert_eq!(names("hi @Bob and @carol_1, mail bob@example.com"), ["bob", "carol_1"]);
        assert_eq!(names("@al @x.y-z: see @dave."), ["dave", "dave.", "x.y-z"]);
        assert_eq!(names("@@eve (@frank) @"), ["eve", "frank"]);
        assert!(names("@ab @").is_empty(), "shorter than a username");
        assert!(names(&format!("@{}", "a".repeat(33))).is_empty(), "longer than a username");
    }

    #[test]
    fn resolving_keeps_members_other_than_the_sender_once_each() {
        let users = HashMap::from([("bob".to_owned(), 2), ("carol".to_owned(), 3), ("al1".to_owned(), 1)]);
        let members = [1, 2, 3];
        let named = resolve("@carol @bob @BOB @al1 @nobody", &users, |id| members.contains(&id), 1);
        assert_eq!(named, [2, 3]);
        assert!(resolve("@carol", &users, |id| id != 3, 1).is_empty(), "not a member");
    }
}
