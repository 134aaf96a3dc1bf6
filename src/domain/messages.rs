//! Sending messages and moving read pointers.

use std::collections::HashMap;

use entity::{conversation, member, message, user};
use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, DatabaseTransaction, IntoActiveModel, Set};

use super::conversations::{self, direct_key, unread_counts, visible};
use super::events::{self, StoredEvent};
use super::views::{ConversationKind, ConversationView, MessageView, UserView, optional_id};
use super::writer::Writer;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::realtime::protocol::ServerFrame;
use crate::realtime::{Frame, UserFrame, UserId};
use crate::time;

pub const MAX_MESSAGE_CHARS: usize = 2000;
const MAX_CLIENT_ID_LEN: usize = 64;

#[derive(Debug, Clone, Copy)]
pub enum Target {
    User(i64),
    Conversation(i64),
}

pub struct NewMessage {
    pub target: Target,
    pub body: String,
    pub client_id: Option<String>,
}

/// Whether a send stored a new message or found the one this `client_id` already stored.
pub enum Sent {
    Created(MessageView),
    Existing(MessageView),
}

/// Trims and checks a message body (1–2000 characters after trimming).
pub fn validate_body(body: &str) -> AppResult<String> {
    let body = body.trim();
    if body.is_empty() {
        return Err(AppError::validation("message", "message must not be empty"));
    }
    // PostgreSQL cannot store NUL in text; refused on every database alike.
    if body.contains('\0') {
        return Err(AppError::validation("message", "message must not contain NUL characters"));
    }
    if body.chars().count() > MAX_MESSAGE_CHARS {
        return Err(AppError::validation(
            "message",
            format!("message must be at most {MAX_MESSAGE_CHARS} characters"),
        ));
    }
    Ok(body.to_owned())
}

/// 1–64 of `[A-Za-z0-9_-]`.
pub fn validate_client_id(client_id: &str) -> AppResult<()> {
    let valid = (1..=MAX_CLIENT_ID_LEN).contains(&client_id.len())
        && client_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(AppError::validation("client_id", "client_id must be 1-64 of [A-Za-z0-9_-]"))
    }
}

async fn find_by_client_id(
    conn: &impl ConnectionTrait,
    sender_id: i64,
    client_id: Option<&str>,
) -> Result<Option<message::Model>, DbErr> {
    let Some(client_id) = client_id else {
        return Ok(None);
    };
    message::Entity::find()
        .filter(message::Column::SenderId.eq(sender_id))
        .filter(message::Column::ClientId.eq(client_id))
        .one(conn)
        .await
}

/// Persists a message and its event in one transaction, then delivers it: `new_message` to
/// every other member's devices, `message_sent` to the sender's. A repeated `client_id`
/// returns the stored message and changes nothing.
pub async fn send(db: &Db, writer: &Writer, sender_id: i64, input: NewMessage) -> AppResult<Sent> {
    let NewMessage { target, body, client_id } = input;
    if let Some(existing) = find_by_client_id(&db.read, sender_id, client_id.as_deref()).await? {
        return Ok(Sent::Existing(existing.into()));
    }
    // Checks that need no transaction happen before the writer's queue.
    let wanted: Vec<i64> = match target {
        Target::User(recipient_id) if recipient_id == sender_id => {
            return Err(AppError::validation("recipient_id", "you cannot send a message to yourself"));
        }
        Target::User(recipient_id) => vec![sender_id, recipient_id],
        Target::Conversation(conversation_id) => {
            visible(&db.read, sender_id, conversation_id).await?;
            vec![sender_id]
        }
    };
    let users: HashMap<i64, UserView> = user::Entity::find()
        .filter(user::Column::Id.is_in(wanted))
        .all(&db.read)
        .await?
        .into_iter()
        .map(|row| (row.id, UserView::from(row)))
        .collect();
    if !users.contains_key(&sender_id) {
        return Err(AppError::unauthorized("invalid_token", "the token's user does not exist"));
    }
    if let Target::User(recipient_id) = target
        && !users.contains_key(&recipient_id)
    {
        return Err(AppError::not_found("recipient not found"));
    }
    let message = PendingMessage { sender_id, target, body, client_id, users };
    writer.write(move |txn| Box::pin(message.store(txn))).await
}

struct PendingMessage {
    sender_id: i64,
    target: Target,
    body: String,
    client_id: Option<String>,
    /// The sender and, for a direct target, the recipient.
    users: HashMap<i64, UserView>,
}

impl PendingMessage {
    async fn store(self, txn: &DatabaseTransaction) -> AppResult<(Sent, Vec<UserFrame>)> {
        let PendingMessage { sender_id, target, body, client_id, users } = self;
        // Checked again in the writer: two concurrent retries store one message.
        if let Some(existing) = find_by_client_id(txn, sender_id, client_id.as_deref()).await? {
            return Ok((Sent::Existing(existing.into()), Vec::new()));
        }
        let mut created_event = None;
        let conversation = match target {
            Target::User(recipient_id) => {
                let key = direct_key(sender_id, recipient_id);
                match conversation::Entity::find()
                    .filter(conversation::Column::DirectKey.eq(&key))
                    .one(txn)
                    .await?
                {
                    Some(conversation) => conversation,
                    None => {
                        let (conversation, event_id) =
                            create_direct(txn, key, sender_id, recipient_id).await?;
                        created_event = Some(event_id);
                        conversation
                    }
                }
            }
            Target::Conversation(conversation_id) => visible(txn, sender_id, conversation_id).await?.0,
        };
        let members = member::Entity::find()
            .filter(member::Column::ConversationId.eq(conversation.id))
            .filter(member::Column::LeftEventId.is_null())
            .all(txn)
            .await?;
        let direct = conversation.kind == "direct";
        let recipient_id =
            if direct { members.iter().map(|m| m.user_id).find(|id| *id != sender_id) } else { None };

        let row = message::ActiveModel {
            conversation_id: Set(conversation.id),
            sender_id: Set(sender_id),
            recipient_id: Set(recipient_id),
            body: Set(body),
            client_id: Set(client_id),
            created_at: Set(time::now()),
            edited_at: Set(None),
            deleted_at: Set(None),
            ..Default::default()
        }
        .insert(txn)
        .await?;
        let view = MessageView::from(row);
        let stored = StoredEvent::MessageCreated { message: view.clone() };
        let event_id = events::append(txn, conversation.id, &stored).await?;
        conversation::Entity::update_many()
            .col_expr(conversation::Column::LastMessageId, Expr::value(view.id))
            .col_expr(conversation::Column::LastActivityId, Expr::value(event_id))
            .filter(conversation::Column::Id.eq(conversation.id))
            .exec(txn)
            .await?;

        // Each member's view of the conversation, built from what is at hand: one unread
        // count per recipient is the only query.
        let members_count = members.len() as i64;
        let mut frames = Vec::with_capacity(members.len() * 2);
        let sent = Frame::new(Some(event_id), &ServerFrame::MessageSent { event_id, message: &view });
        for membership in &members {
            let member_id = membership.user_id;
            let is_sender = member_id == sender_id;
            if is_sender && created_event.is_none() {
                frames.push(UserFrame { user_id: UserId(member_id), frame: sent.clone() });
                continue;
            }
            let unread = if is_sender {
                0
            } else {
                let pointer = std::iter::once((conversation.id, membership.last_read_message_id));
                unread_counts(txn, member_id, pointer).await?.get(&conversation.id).copied().unwrap_or(0)
            };
            let other_user = if direct {
                members.iter().find(|m| m.user_id != member_id).and_then(|m| users.get(&m.user_id)).cloned()
            } else {
                None
            };
            let member_view = ConversationView {
                id: conversation.id,
                kind: ConversationKind::parse(&conversation.kind),
                name: conversation.name.clone(),
                other_user,
                members_count,
                created_at: conversation.created_at,
                last_message: Some(view.clone()),
                unread_count: unread,
                last_read_message_id: optional_id(membership.last_read_message_id),
            };
            if let Some(created) = created_event {
                let frame =
                    ServerFrame::ConversationCreated { event_id: created, conversation: &member_view };
                frames.push(UserFrame { user_id: UserId(member_id), frame: frame.to_frame() });
            }
            let frame = if is_sender {
                sent.clone()
            } else {
                ServerFrame::NewMessage { event_id, message: &view, conversation: &member_view }.to_frame()
            };
            frames.push(UserFrame { user_id: UserId(member_id), frame });
        }
        Ok((Sent::Created(view), frames))
    }
}

async fn create_direct(
    txn: &impl ConnectionTrait,
    key: String,
    sender_id: i64,
    recipient_id: i64,
) -> Result<(conversation::Model, i64), DbErr> {
    let now = time::now();
    let conversation = conversation::ActiveModel {
        kind: Set("direct".to_owned()),
        name: Set(None),
        direct_key: Set(Some(key)),
        created_by: Set(sender_id),
        created_at: Set(now),
        last_message_id: Set(None),
        last_activity_id: Set(0),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    let event_id = events::append(txn, conversation.id, &StoredEvent::ConversationCreated {}).await?;
    for user_id in [sender_id, recipient_id] {
        member::ActiveModel {
            conversation_id: Set(conversation.id),
            user_id: Set(user_id),
            role: Set("member".to_owned()),
            joined_at: Set(now),
            joined_event_id: Set(event_id),
            left_event_id: Set(None),
            last_read_message_id: Set(0),
            last_delivered_message_id: Set(0),
        }
        .insert(txn)
        .await?;
    }
    let mut active = conversation.into_active_model();
    active.last_activity_id = Set(event_id);
    Ok((active.update(txn).await?, event_id))
}

/// The caller's read state in one conversation.
#[derive(Debug, serde::Serialize)]
pub struct ReadState {
    pub conversation_id: i64,
    pub last_read_message_id: Option<i64>,
    pub unread_count: i64,
}

/// Marks `conversation_id` read up to `message_id` (default: its latest message), never
/// backwards; a move emits `message_read` to every member's devices.
pub async fn mark_read(
    db: &Db,
    writer: &Writer,
    user_id: i64,
    conversation_id: i64,
    message_id: Option<i64>,
) -> AppResult<ReadState> {
    let (conversation, _) = visible(&db.read, user_id, conversation_id).await?;
    let target = match message_id {
        Some(id) => {
            message::Entity::find_by_id(id)
                .one(&db.read)
                .await?
                .filter(|row| row.conversation_id == conversation_id)
                .ok_or_else(|| AppError::not_found("message not found in this conversation"))?
                .id
        }
        None => conversation.last_message_id.unwrap_or(0),
    };

    writer.write(move |txn| Box::pin(move_read_pointer(txn, user_id, conversation_id, target))).await
}

async fn move_read_pointer(
    txn: &DatabaseTransaction,
    user_id: i64,
    conversation_id: i64,
    target: i64,
) -> AppResult<(ReadState, Vec<UserFrame>)> {
    let (_, membership) = visible(txn, user_id, conversation_id).await?;
    let last_read = membership.last_read_message_id.max(target);
    let unread_of = async |last_read: i64| -> AppResult<i64> {
        let pointer = std::iter::once((conversation_id, last_read));
        Ok(unread_counts(txn, user_id, pointer).await?.get(&conversation_id).copied().unwrap_or(0))
    };
    if target <= membership.last_read_message_id {
        let state = ReadState {
            conversation_id,
            last_read_message_id: optional_id(last_read),
            unread_count: unread_of(last_read).await?,
        };
        return Ok((state, Vec::new()));
    }
    let mut active = membership.into_active_model();
    active.last_read_message_id = Set(target);
    active.update(txn).await?;
    let stored =
        StoredEvent::MessageRead { reader_id: user_id, last_read_message_id: target, read_at: time::now() };
    let event_id = events::append(txn, conversation_id, &stored).await?;
    let members = member::Entity::find()
        .filter(member::Column::ConversationId.eq(conversation_id))
        .filter(member::Column::LeftEventId.is_null())
        .all(txn)
        .await?;
    // The receipt reads the same for every member: serialized once, shared by all.
    let frames = match events::render(event_id, conversation_id, &stored, user_id, None) {
        Some(frame) => members
            .iter()
            .map(|row| UserFrame { user_id: UserId(row.user_id), frame: frame.clone() })
            .collect(),
        None => Vec::new(),
    };
    let state = ReadState {
        conversation_id,
        last_read_message_id: Some(target),
        unread_count: unread_of(target).await?,
    };
    Ok((state, frames))
}

/// `PATCH /api/messages/{id}/read`: the message's conversation, read up to it.
pub async fn mark_read_up_to(
    db: &Db,
    writer: &Writer,
    user_id: i64,
    message_id: i64,
) -> AppResult<ReadState> {
    let message = message::Entity::find_by_id(message_id)
        .one(&db.read)
        .await?
        .ok_or_else(|| AppError::not_found("message not found"))?;
    // Not a member: the same 404 as a message that does not exist.
    conversations::visible(&db.read, user_id, message.conversation_id)
        .await
        .map_err(|_| AppError::not_found("message not found"))?;
    mark_read(db, writer, user_id, message.conversation_id, Some(message_id)).await
}
