//! Sending messages and moving read pointers.

use entity::{conversation, member, message, user};
use sea_orm::prelude::*;
use sea_orm::{ConnectionTrait, IntoActiveModel, Set};

use super::conversations::{self, build_views, direct_key, unread_counts, visible};
use super::events::{self, StoredEvent};
use super::views::{MessageView, optional_id};
use super::writer::Writer;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::realtime::{Frame, UserFrame, UserId};
use crate::time;

pub const MAX_MESSAGE_CHARS: usize = 2000;
const MAX_CLIENT_ID_LEN: usize = 64;

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
    // Checks that need no lock happen before taking it.
    match target {
        Target::User(recipient_id) => {
            if recipient_id == sender_id {
                return Err(AppError::validation("recipient_id", "you cannot send a message to yourself"));
            }
            let found = user::Entity::find()
                .filter(user::Column::Id.is_in([sender_id, recipient_id]))
                .count(&db.read)
                .await?;
            if found < 2 {
                if user::Entity::find_by_id(sender_id).one(&db.read).await?.is_none() {
                    return Err(AppError::unauthorized("invalid_token", "the token's user does not exist"));
                }
                return Err(AppError::not_found("recipient not found"));
            }
        }
        Target::Conversation(conversation_id) => {
            visible(&db.read, sender_id, conversation_id).await?;
        }
    }

    let write = writer.begin().await?;
    let txn = write.txn();
    // Checked again under the lock: two concurrent retries store one message.
    if let Some(existing) = find_by_client_id(txn, sender_id, client_id.as_deref()).await? {
        write.finish().await?;
        return Ok(Sent::Existing(existing.into()));
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
                    let (conversation, event_id) = create_direct(txn, key, sender_id, recipient_id).await?;
                    created_event = Some(event_id);
                    conversation
                }
            }
        }
        Target::Conversation(conversation_id) => visible(txn, sender_id, conversation_id).await?.0,
    };
    let members: Vec<i64> = member::Entity::find()
        .filter(member::Column::ConversationId.eq(conversation.id))
        .filter(member::Column::LeftEventId.is_null())
        .all(txn)
        .await?
        .into_iter()
        .map(|row| row.user_id)
        .collect();
    let recipient_id = match conversation.kind.as_str() {
        "direct" => members.iter().copied().find(|id| *id != sender_id),
        _ => None,
    };

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
    let event_id =
        events::append(txn, conversation.id, &StoredEvent::MessageCreated { message: view.clone() }).await?;
    let mut active = conversation.clone().into_active_model();
    active.last_message_id = Set(Some(view.id));
    active.last_activity_id = Set(event_id);
    let conversation = active.update(txn).await?;

    let mut frames = Vec::with_capacity(members.len() * 2);
    let sent = Frame::new(
        Some(event_id),
        &crate::realtime::protocol::ServerFrame::MessageSent { event_id, message: &view },
    );
    for &member_id in &members {
        let needs_view = member_id != sender_id || created_event.is_some();
        let member_view = if needs_view {
            build_views(txn, member_id, vec![conversation.clone()]).await?.pop()
        } else {
            None
        };
        if let (Some(created), Some(member_view)) = (created_event, member_view.as_ref()) {
            let stored = StoredEvent::ConversationCreated {};
            if let Some(frame) =
                events::render(created, conversation.id, &stored, member_id, Some(member_view))
            {
                frames.push(UserFrame { user_id: UserId(member_id), frame });
            }
        }
        let frame = if member_id == sender_id {
            Some(sent.clone())
        } else {
            let stored = StoredEvent::MessageCreated { message: view.clone() };
            events::render(event_id, conversation.id, &stored, member_id, member_view.as_ref())
        };
        if let Some(frame) = frame {
            frames.push(UserFrame { user_id: UserId(member_id), frame });
        }
    }
    write.commit_and_deliver(frames).await?;
    Ok(Sent::Created(view))
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

    let write = writer.begin().await?;
    let txn = write.txn();
    let (_, membership) = visible(txn, user_id, conversation_id).await?;
    if target <= membership.last_read_message_id {
        let last_read = membership.last_read_message_id;
        let unread = unread_counts(txn, user_id, std::iter::once((conversation_id, last_read))).await?;
        write.finish().await?;
        return Ok(ReadState {
            conversation_id,
            last_read_message_id: optional_id(last_read),
            unread_count: unread.get(&conversation_id).copied().unwrap_or(0),
        });
    }
    let mut active = membership.into_active_model();
    active.last_read_message_id = Set(target);
    active.update(txn).await?;
    let stored =
        StoredEvent::MessageRead { reader_id: user_id, last_read_message_id: target, read_at: time::now() };
    let event_id = events::append(txn, conversation_id, &stored).await?;
    let unread = unread_counts(txn, user_id, std::iter::once((conversation_id, target))).await?;
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
    write.commit_and_deliver(frames).await?;
    Ok(ReadState {
        conversation_id,
        last_read_message_id: Some(target),
        unread_count: unread.get(&conversation_id).copied().unwrap_or(0),
    })
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
