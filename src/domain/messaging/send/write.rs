//! Stage 3: the batch's writes, SQL only, each a multi-row statement whatever the number of
//! sends: on PostgreSQL each statement is a round trip.

use std::collections::{HashMap, HashSet};

use entity::member::Role;
use entity::{conversation, member, message};
use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseTransaction, IntoActiveModel, Set};

use super::{Accepted, PendingMessage, ReadState};
use crate::db;
use crate::domain::events::{self, StoredEvent};
use crate::domain::files::attachments;
use crate::domain::messaging::mentions;
use crate::domain::messaging::messages::new_member;
use crate::time;
use crate::wire::views::{ConversationKind, MessageView};
use crate::wire::{ConversationId, EventId, MessageId, UserId};

/// Opens a direct conversation for each `(key, first sender, recipient)`: one multi-row
/// insert however many there are. Their `conversation_created` events go into the insert of
/// the sends' own events and their members follow it, in `messages`: a batch that opens
/// conversations runs two statements more than one that does not, where it ran three. The
/// row keeps `last_activity_id` 0 until then. The new members join `members`; each model
/// comes with `true`: its first send is still to announce it.
pub(super) async fn open_directs(
    txn: &DatabaseTransaction,
    pairs: &[(String, i64, i64)],
    members: &mut HashMap<i64, Vec<(i64, ReadState)>>,
) -> Result<HashMap<String, (conversation::Model, bool)>, DbErr> {
    if pairs.is_empty() {
        return Ok(HashMap::new());
    }
    let now = time::now();
    let mut models: Vec<conversation::Model> = pairs
        .iter()
        .map(|(key, sender_id, _)| conversation::Model {
            id: 0,
            kind: ConversationKind::Direct,
            name: None,
            direct_key: Some(key.clone()),
            created_by: *sender_id,
            created_at: now,
            last_message_id: None,
            last_activity_id: 0,
        })
        .collect();
    let mut ids = Vec::with_capacity(models.len());
    for chunk in models.chunks(db::MAX_ROWS_PER_STATEMENT) {
        let rows = chunk.iter().map(|model| conversation::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            ..model.clone().into_active_model()
        });
        ids.extend(db::insert_ids(txn, conversation::Entity::insert_many(rows), chunk.len()).await?);
    }
    let mut opened = HashMap::with_capacity(pairs.len());
    for ((model, (key, sender_id, recipient_id)), id) in models.iter_mut().zip(pairs).zip(ids) {
        model.id = id;
        let fresh = ReadState::default();
        members.insert(id, vec![(*sender_id, fresh), (*recipient_id, fresh)]);
        opened.insert(key.clone(), (model.clone(), true));
    }
    Ok(opened)
}

/// The stored messages, as the API shows them, their `message_created` event ids and, for
/// the sends that opened their conversation, its `conversation_created` event id.
pub(super) struct Written {
    pub views: Vec<MessageView>,
    pub event_ids: Vec<i64>,
    pub created: Vec<Option<i64>>,
}

/// Stores the accepted sends: messages (one multi-row insert; rows get ascending ids in the
/// order listed), their attachments, their events (after the `conversation_created` events
/// of the conversations they open, in one insert), the members of those conversations, the
/// unread counters and each conversation's latest message.
pub(super) async fn messages(
    txn: &DatabaseTransaction,
    jobs: &[PendingMessage],
    accepted: &[Accepted],
) -> Result<Written, DbErr> {
    let now = time::now();
    let mut views: Vec<MessageView> = accepted
        .iter()
        .map(|sent| {
            let job = &jobs[sent.job];
            let direct = sent.conversation.kind == ConversationKind::Direct;
            MessageView {
                id: 0,
                conversation_id: sent.conversation.id,
                sender_id: job.sender_id,
                recipient_id: if direct { sent.recipients.first().map(|(id, _)| *id) } else { None },
                message: sent.body.clone(),
                client_id: job.client_id.clone(),
                created_at: now,
                edited_at: None,
                deleted: false,
                attachments: Vec::new(),
                reply_to: sent.reply_to.clone(),
                mentions: sent.mentions.clone(),
                reactions: Vec::new(),
                pinned: false,
                auto_reply: job.auto_reply,
            }
        })
        .collect();
    let mut ids = Vec::with_capacity(views.len());
    for chunk in views.chunks(db::MAX_ROWS_PER_STATEMENT) {
        let rows = chunk.iter().map(|view| message::ActiveModel {
            conversation_id: Set(view.conversation_id),
            sender_id: Set(view.sender_id),
            recipient_id: Set(view.recipient_id),
            body: Set(view.message.clone()),
            client_id: Set(view.client_id.clone()),
            created_at: Set(now),
            edited_at: Set(None),
            deleted_at: Set(None),
            reply_to_id: Set(view.reply_to.as_ref().map(|quoted| quoted.id)),
            pinned_at: Set(None),
            auto_reply: Set(view.auto_reply.is_some()),
            auto_reply_bot_id: Set(view.auto_reply.and_then(|marker| marker.bot_id)),
            ..Default::default()
        });
        ids.extend(db::insert_ids(txn, message::Entity::insert_many(rows), chunk.len()).await?);
    }
    for ((view, id), sent) in views.iter_mut().zip(ids).zip(accepted) {
        view.id = id;
        if let Some(file) = &jobs[sent.job].attachment {
            view.attachments.push(attachments::link(txn, MessageId(id), UserId(view.sender_id), file).await?);
        }
    }
    // Opened conversations first: every reader's log announces a conversation before its
    // first message.
    let openers: Vec<&Accepted> = accepted.iter().filter(|sent| sent.opened).collect();
    let stored: Vec<(i64, StoredEvent)> = openers
        .iter()
        .map(|sent| (sent.conversation.id, StoredEvent::ConversationCreated {}))
        .chain(
            views
                .iter()
                .map(|view| (view.conversation_id, StoredEvent::MessageCreated { message: view.clone() })),
        )
        .collect();
    let mut event_ids = events::append_many(txn, &stored).await?;
    let created_ids: Vec<i64> = event_ids.drain(..openers.len()).collect();
    new_members(txn, jobs, &openers, &created_ids).await?;
    let mut created_ids = created_ids.into_iter();
    let created = accepted.iter().map(|sent| if sent.opened { created_ids.next() } else { None }).collect();
    counters(txn, jobs, accepted).await?;
    mentioned(txn, &views).await?;
    let latest: HashMap<i64, (i64, i64)> = views
        .iter()
        .zip(&event_ids)
        .map(|(view, event_id)| (view.conversation_id, (view.id, *event_id)))
        .collect();
    latest_messages(txn, &latest).await?;
    Ok(Written { views, event_ids, created })
}

/// The two members of each conversation a send opened, joined at its `conversation_created`
/// event (`created`, in `openers`' order), before the counters move.
async fn new_members(
    txn: &DatabaseTransaction,
    jobs: &[PendingMessage],
    openers: &[&Accepted],
    created: &[i64],
) -> Result<(), DbErr> {
    let mut rows = Vec::with_capacity(openers.len() * 2);
    for (sent, event_id) in openers.iter().zip(created) {
        let Some((recipient, _)) = sent.recipients.first() else {
            return Err(DbErr::Custom("an opened conversation without its recipient".into()));
        };
        for user_id in [jobs[sent.job].sender_id, *recipient] {
            rows.push(new_member(
                ConversationId(sent.conversation.id),
                UserId(user_id),
                Role::Member,
                EventId(*event_id),
                MessageId(0),
            ));
        }
    }
    for chunk in rows.chunks(db::MAX_ROWS_PER_STATEMENT) {
        // No `RETURNING`: from SQLite, sqlx hands each returned row over on its own.
        member::Entity::insert_many(chunk.iter().cloned()).exec_without_returning(txn).await?;
    }
    Ok(())
}

/// Adds each recipient's new messages to their unread counter. A group's members who sent
/// nothing in this batch all gain the same number: one ranged update per group (its 500
/// rows listed one by one cost 1 ms a message). The senders, and direct conversations, go
/// row by row, a few thousand rows per statement.
async fn counters(
    txn: &DatabaseTransaction,
    jobs: &[PendingMessage],
    accepted: &[Accepted],
) -> Result<(), DbErr> {
    let mut added: HashMap<(i64, i64), i64> = HashMap::new();
    // Per group: its messages in this batch, and who sent them.
    let mut groups: HashMap<i64, (i64, HashSet<i64>)> = HashMap::new();
    for sent in accepted {
        if sent.conversation.kind == ConversationKind::Group {
            let (messages, senders) = groups.entry(sent.conversation.id).or_default();
            *messages += 1;
            senders.insert(jobs[sent.job].sender_id);
        }
    }
    for sent in accepted {
        let group = groups.get(&sent.conversation.id);
        for (user_id, _) in &sent.recipients {
            if group.is_none_or(|(_, senders)| senders.contains(user_id)) {
                *added.entry((sent.conversation.id, *user_id)).or_default() += 1;
            }
        }
    }
    for (conversation_id, (messages, senders)) in groups {
        let senders = db::padded(senders.into_iter().collect());
        let list = db::placeholders(3, senders.len());
        let sql = format!(
            "UPDATE conversation_members SET unread_count = unread_count + $1 \
             WHERE conversation_id = $2 AND left_event_id IS NULL AND user_id NOT IN ({list})"
        );
        let mut values: Vec<sea_orm::Value> = vec![messages.into(), conversation_id.into()];
        values.extend(senders.into_iter().map(Into::into));
        txn.execute_raw(db::statement(txn.get_database_backend(), &sql, values)).await?;
    }
    add_to_members(txn, "unread_count", added).await
}

/// Adds each `n` to `counter` (`unread_count` or `unread_mentions`) of its
/// `(conversation, user)`, in as few statements as the row limit allows.
async fn add_to_members(
    txn: &DatabaseTransaction,
    counter: &'static str,
    added: HashMap<(i64, i64), i64>,
) -> Result<(), DbErr> {
    let rows: Vec<[i64; 3]> = added.into_iter().map(|((c, u), n)| [c, u, n]).collect();
    for chunk in rows.chunks(db::MAX_ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE conversation_members SET {counter} = {counter} + d.column3 \
             FROM (VALUES {}) AS d \
             WHERE conversation_members.conversation_id = d.column1 AND conversation_members.user_id = d.column2",
            values(chunk.len())
        );
        execute(txn, &sql, chunk).await?;
    }
    Ok(())
}

/// Stores the mentions and adds them to the named members' `unread_mentions`.
async fn mentioned(txn: &DatabaseTransaction, views: &[MessageView]) -> Result<(), DbErr> {
    let named: Vec<(i64, i64, Vec<i64>)> = views
        .iter()
        .filter(|view| !view.mentions.is_empty())
        .map(|view| (view.id, view.conversation_id, view.mentions.clone()))
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    mentions::insert(txn, &named).await?;
    let mut added: HashMap<(i64, i64), i64> = HashMap::new();
    for (_, conversation_id, users) in &named {
        for user_id in users {
            *added.entry((*conversation_id, *user_id)).or_default() += 1;
        }
    }
    add_to_members(txn, "unread_mentions", added).await
}

/// Points each conversation at its latest message and event.
async fn latest_messages(txn: &DatabaseTransaction, latest: &HashMap<i64, (i64, i64)>) -> Result<(), DbErr> {
    let rows: Vec<[i64; 3]> = latest.iter().map(|(c, (m, e))| [*c, *m, *e]).collect();
    for chunk in rows.chunks(db::MAX_ROWS_PER_STATEMENT) {
        let sql = format!(
            "UPDATE conversations SET last_message_id = d.column2, last_activity_id = d.column3 \
             FROM (VALUES {}) AS d WHERE conversations.id = d.column1",
            values(chunk.len())
        );
        execute(txn, &sql, chunk).await?;
    }
    Ok(())
}

/// `($1, $2, $3), ($4, $5, $6), …` for `rows` rows.
fn values(rows: usize) -> String {
    (0..rows)
        .map(|row| format!("(${}, ${}, ${})", row * 3 + 1, row * 3 + 2, row * 3 + 3))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn execute(txn: &DatabaseTransaction, sql: &str, rows: &[[i64; 3]]) -> Result<(), DbErr> {
    let values = rows.iter().flatten().map(|value| (*value).into()).collect();
    txn.execute_raw(db::statement(txn.get_database_backend(), sql, values)).await?;
    Ok(())
}
