//! Sending messages and moving read pointers.

use entity::member::{Notify, Role};
use entity::{conversation, member, message};
use sea_orm::prelude::*;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{ConnectionTrait, DatabaseTransaction, IntoActiveModel, Set};

use crate::config::MessagingSettings;
use crate::db::Db;
use crate::domain::conversations::{self, count_unread, visible};
use crate::domain::events::writer::Writer;
use crate::domain::events::{self, StoredEvent};
use crate::domain::files::attachments::StoredFile;
use crate::domain::messaging::send::PendingMessage;
use crate::domain::messaging::text::{self, Fault, Trimmed};
use crate::domain::messaging::{mentions, views};
use crate::domain::safety;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::realtime::{Frame, UserFrame};
use crate::time;
use crate::wire::views::{AutoReply, ConversationKind, MessageView, optional_id};
use crate::wire::{ConversationId, EventId, MessageId, UserId};

pub const MAX_MESSAGE_CHARS: usize = 2000;
const MAX_CLIENT_ID_LEN: usize = 64;

#[derive(Debug, Clone, Copy)]
pub enum Target {
    User(i64),
    Conversation(i64),
    /// A conversation that must be a group (`POST /api/groups/{id}/messages`).
    Group(i64),
}

pub struct NewMessage {
    pub target: Target,
    /// Validated; empty only when a file comes with it.
    pub body: String,
    pub client_id: Option<String>,
    pub attachment: Option<StoredFile>,
    pub reply_to_id: Option<i64>,
    pub auto_reply: Option<AutoReply>,
}

impl Target {
    /// Exactly one of a recipient and a conversation (422 otherwise).
    pub fn either(recipient_id: Option<i64>, conversation_id: Option<i64>) -> AppResult<Self> {
        match (recipient_id, conversation_id) {
            (Some(user), None) => Ok(Self::User(user)),
            (None, Some(conversation)) => Ok(Self::Conversation(conversation)),
            (Some(_), Some(_)) => {
                Err(AppError::validation("recipient_id", "give recipient_id or conversation_id, not both"))
            }
            (None, None) => {
                Err(AppError::validation("recipient_id", "recipient_id or conversation_id is required"))
            }
        }
    }
}

impl NewMessage {
    /// Checks the text (it may be empty only when a file comes with it) and the client id.
    pub fn new(
        target: Target,
        text: &str,
        client_id: Option<String>,
        attachment: Option<StoredFile>,
    ) -> AppResult<Self> {
        let body = if attachment.is_some() && text::looks_empty(text) {
            String::new()
        } else {
            validate_body(text)?
        };
        if let Some(client_id) = &client_id {
            validate_client_id(client_id)?;
        }
        Ok(Self { target, body, client_id, attachment, reply_to_id: None, auto_reply: None })
    }

    /// Quotes `reply_to_id`, a message of the same conversation (checked when it is stored).
    pub fn replying_to(self, reply_to_id: Option<i64>) -> Self {
        Self { reply_to_id, ..self }
    }

    /// Marks the message as posted by the sender's away setting.
    pub fn auto_reply(self, marker: AutoReply) -> Self {
        Self { auto_reply: Some(marker), ..self }
    }
}

/// Whether a send stored a new message or found the one this `client_id` already stored.
pub enum Sent {
    Created(MessageView),
    Existing(MessageView),
}

/// A message body: 1–2000 characters after trimming, some of them visible; no NUL
/// (PostgreSQL cannot store it in text, so it is refused on every database alike).
pub const BODY: Trimmed = Trimmed { min: 1, max: MAX_MESSAGE_CHARS, banned: text::NUL, visible: true };

/// Trims and checks a message body by [`BODY`].
pub fn validate_body(body: &str) -> AppResult<String> {
    match BODY.check(body) {
        Ok(body) => Ok(body.to_owned()),
        Err(fault) => Err(AppError::validation(
            "message",
            match fault {
                Fault::Length => "message must be 1-2000 characters after trimming",
                Fault::Banned => "message must not contain NUL characters",
                Fault::Invisible => "message must have a visible character",
            },
        )),
    }
}

/// 1–64 of `[A-Za-z0-9_-]`.
fn validate_client_id(client_id: &str) -> AppResult<()> {
    let valid = (1..=MAX_CLIENT_ID_LEN).contains(&client_id.len())
        && client_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(AppError::validation("client_id", "client_id must be 1-64 of [A-Za-z0-9_-]"))
    }
}

/// Persists a message and its event in one transaction, then delivers it: `new_message` to
/// every other member's devices, `message_sent` to the sender's. A repeated `client_id`
/// returns the stored message and changes nothing. Every check that needs the database
/// runs in the writer's batch (`send::store`), so a send costs no query of its own.
pub async fn send(writer: &Writer, sender_id: i64, input: NewMessage) -> AppResult<Sent> {
    let NewMessage { target, body, client_id, attachment, reply_to_id, auto_reply } = input;
    if let Target::User(recipient_id) = target
        && recipient_id == sender_id
    {
        return Err(AppError::validation("recipient_id", "you cannot send a message to yourself"));
    }
    let sent = writer
        .send(PendingMessage { sender_id, target, body, client_id, attachment, reply_to_id, auto_reply })
        .await?;
    if let Sent::Created(_) = &sent {
        crate::metrics::record(|m| m.messages.inc());
    }
    Ok(sent)
}

/// Creates a conversation and its `conversation_created` event (members join at it).
pub async fn open_conversation(
    txn: &impl ConnectionTrait,
    kind: ConversationKind,
    name: Option<String>,
    direct_key: Option<String>,
    created_by: i64,
) -> Result<(conversation::Model, i64), DbErr> {
    let conversation = conversation::ActiveModel {
        kind: Set(kind),
        name: Set(name),
        direct_key: Set(direct_key),
        created_by: Set(created_by),
        created_at: Set(time::now()),
        last_message_id: Set(None),
        last_activity_id: Set(0),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    let event_id = events::append(txn, conversation.id, &StoredEvent::ConversationCreated {}).await?;
    let mut active = conversation.into_active_model();
    active.last_activity_id = Set(event_id);
    Ok((active.update(txn).await?, event_id))
}

/// A membership row starting at `joined_event_id`, read up to `last_read_message_id`.
pub fn new_member(
    ConversationId(conversation_id): ConversationId,
    UserId(user_id): UserId,
    role: Role,
    EventId(joined_event_id): EventId,
    MessageId(last_read_message_id): MessageId,
) -> member::ActiveModel {
    member::ActiveModel {
        conversation_id: Set(conversation_id),
        user_id: Set(user_id),
        role: Set(role),
        joined_at: Set(time::now()),
        joined_event_id: Set(joined_event_id),
        left_event_id: Set(None),
        last_read_message_id: Set(last_read_message_id),
        last_delivered_message_id: Set(last_read_message_id),
        unread_count: Set(0),
        unread_mentions: Set(0),
        notify: Set(Notify::All),
        muted_until: Set(None),
    }
}

/// The caller's read state in one conversation.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ReadState {
    pub conversation_id: i64,
    pub last_read_message_id: Option<i64>,
    pub unread_count: i64,
    pub unread_mentions: i64,
}

/// Marks `conversation_id` read up to `message_id` (default: its latest message), never
/// backwards; a move emits `message_read` to every member's devices.
pub async fn mark_read(
    db: &Db,
    writer: &Writer,
    UserId(user_id): UserId,
    ConversationId(conversation_id): ConversationId,
    message_id: Option<i64>,
) -> AppResult<ReadState> {
    let (conversation, _) = visible(&db.read, UserId(user_id), ConversationId(conversation_id)).await?;
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

    writer
        .write(move |txn| {
            Box::pin(move_read_pointer(txn, UserId(user_id), ConversationId(conversation_id), target))
        })
        .await
}

async fn move_read_pointer(
    txn: &DatabaseTransaction,
    UserId(user_id): UserId,
    ConversationId(conversation_id): ConversationId,
    target: i64,
) -> AppResult<(ReadState, Vec<UserFrame>)> {
    let (_, membership) = visible(txn, UserId(user_id), ConversationId(conversation_id)).await?;
    if target <= membership.last_read_message_id {
        let state = ReadState {
            conversation_id,
            last_read_message_id: optional_id(membership.last_read_message_id),
            unread_count: membership.unread_count,
            unread_mentions: membership.unread_mentions,
        };
        return Ok((state, Vec::new()));
    }
    let unread = count_unread(txn, UserId(user_id), ConversationId(conversation_id), target).await?;
    let unread_mentions = mentions::unread_after(txn, conversation_id, user_id, target).await?;
    let mut active = membership.into_active_model();
    active.last_read_message_id = Set(target);
    active.unread_count = Set(unread);
    active.unread_mentions = Set(unread_mentions);
    active.update(txn).await?;
    let stored =
        StoredEvent::MessageRead { reader_id: user_id, last_read_message_id: target, read_at: time::now() };
    let event_id = events::append(txn, conversation_id, &stored).await?;
    let frames = event_to_members(txn, conversation_id, event_id, &stored, user_id).await?;
    let state = ReadState {
        conversation_id,
        last_read_message_id: Some(target),
        unread_count: unread,
        unread_mentions,
    };
    Ok((state, frames))
}

/// Event `event_id` (`stored`, by `actor`) rendered once for every current member.
pub async fn event_to_members(
    conn: &impl ConnectionTrait,
    conversation_id: i64,
    event_id: i64,
    stored: &StoredEvent,
    actor: i64,
) -> Result<Vec<UserFrame>, DbErr> {
    let frame = events::render(EventId(event_id), ConversationId(conversation_id), stored, actor, None);
    to_members(conn, conversation_id, frame).await
}

/// One frame, the same for every current member (serialized once, shared by all).
pub async fn to_members(
    conn: &impl ConnectionTrait,
    conversation_id: i64,
    frame: Option<Frame>,
) -> Result<Vec<UserFrame>, DbErr> {
    let Some(frame) = frame else { return Ok(Vec::new()) };
    let members = conversations::member_ids(conn, conversation_id).await?;
    Ok(members.into_iter().map(|id| UserFrame { user_id: UserId(id), frame: frame.clone() }).collect())
}

/// `PATCH /api/messages/{id}/read`: the message's conversation, read up to it.
pub async fn mark_read_up_to(
    db: &Db,
    writer: &Writer,
    UserId(user_id): UserId,
    MessageId(message_id): MessageId,
) -> AppResult<ReadState> {
    let message = readable(db, UserId(user_id), MessageId(message_id)).await?;
    mark_read(db, writer, UserId(user_id), ConversationId(message.conversation_id), Some(message_id)).await
}

/// The message if the caller is a current member of its conversation; 404 otherwise, the
/// same as for a message that does not exist.
pub async fn readable(
    db: &Db,
    UserId(user_id): UserId,
    MessageId(message_id): MessageId,
) -> AppResult<message::Model> {
    let message = message::Entity::find_by_id(message_id)
        .one(&db.read)
        .await?
        .ok_or_else(|| AppError::not_found("message not found"))?;
    conversations::visible(&db.read, UserId(user_id), ConversationId(message.conversation_id))
        .await
        .map_err(|_| AppError::not_found("message not found"))?;
    Ok(message)
}

/// The caller's own message, for editing or deleting it.
async fn own(
    db: &Db,
    UserId(user_id): UserId,
    MessageId(message_id): MessageId,
) -> AppResult<message::Model> {
    let message = readable(db, UserId(user_id), MessageId(message_id)).await?;
    if message.sender_id != user_id {
        return Err(AppError::forbidden(ErrorCode::NotOwner, "only the sender may change a message"));
    }
    Ok(message)
}

/// The message as the writer's transaction sees it.
pub async fn current(txn: &DatabaseTransaction, message_id: i64) -> AppResult<message::Model> {
    message::Entity::find_by_id(message_id)
        .one(txn)
        .await?
        .ok_or_else(|| AppError::not_found("message not found"))
}

/// The message as the writer's transaction sees it, 409 `message_deleted` once deleted.
pub async fn current_live(
    txn: &DatabaseTransaction,
    message_id: i64,
    refusal: &'static str,
) -> AppResult<message::Model> {
    let row = current(txn, message_id).await?;
    if row.deleted_at.is_some() {
        return Err(deleted_conflict(refusal));
    }
    Ok(row)
}

/// 409 `message_deleted`.
pub fn deleted_conflict(refusal: &'static str) -> AppError {
    AppError::Conflict { code: ErrorCode::MessageDeleted, message: refusal.into(), field: None }
}

/// Replaces a message's text within the edit window; `message_edited` goes to every member.
pub async fn edit(
    db: &Db,
    writer: &Writer,
    rules: &MessagingSettings,
    UserId(user_id): UserId,
    MessageId(message_id): MessageId,
    body: String,
) -> AppResult<MessageView> {
    let message = own(db, UserId(user_id), MessageId(message_id)).await?;
    if message.deleted_at.is_some() {
        return Err(AppError::Conflict {
            code: ErrorCode::MessageDeleted,
            message: "a deleted message cannot be edited".into(),
            field: None,
        });
    }
    let window = chrono::Duration::seconds(i64::try_from(rules.edit_window_seconds).unwrap_or(i64::MAX));
    if time::now() > message.created_at + window {
        return Err(AppError::forbidden(
            ErrorCode::EditWindowPassed,
            "the time to edit this message has passed",
        ));
    }
    let mut body = body;
    if let Some(other) = message.recipient_id {
        body = safety::pair(&db.read, user_id, other).await?.mask(rules, body);
    }
    writer.write(move |txn| Box::pin(replace_text(txn, UserId(user_id), MessageId(message_id), body))).await
}

/// The edit in the writer's transaction: new text, re-parsed mentions in a group, and a
/// `message_edited` for every member; the same text again changes nothing.
async fn replace_text(
    txn: &DatabaseTransaction,
    UserId(user_id): UserId,
    MessageId(message_id): MessageId,
    body: String,
) -> AppResult<(MessageView, Vec<UserFrame>)> {
    let row = current_live(txn, message_id, "a deleted message cannot be edited").await?;
    if row.body == body {
        let view = views::views(txn, vec![row]).await?.pop();
        return Ok((view.ok_or_else(|| AppError::not_found("message not found"))?, Vec::new()));
    }
    if row.recipient_id.is_none() {
        let named = mentions::users_named(txn, mentions::candidates(&body)).await?;
        let members = conversations::member_ids(txn, row.conversation_id).await?;
        let now = mentions::resolve(&body, &named, |id| members.contains(&id), row.sender_id);
        mentions::replace(txn, &row, now).await?;
    }
    let conversation_id = row.conversation_id;
    let mut active = row.into_active_model();
    active.body = Set(body);
    active.edited_at = Set(Some(time::now()));
    let row = active.update(txn).await?;
    let view =
        views::views(txn, vec![row]).await?.pop().ok_or_else(|| AppError::not_found("message not found"))?;
    let stored = StoredEvent::MessageEdited { message: view.clone() };
    let event_id = events::append(txn, conversation_id, &stored).await?;
    Ok((view, event_to_members(txn, conversation_id, event_id, &stored, user_id).await?))
}

/// Soft-deletes a message: the row stays for audit, everyone sees it as deleted, and
/// `message_deleted` goes to every member. Deleting it again changes nothing.
pub async fn delete(
    db: &Db,
    writer: &Writer,
    UserId(user_id): UserId,
    MessageId(message_id): MessageId,
) -> AppResult<()> {
    own(db, UserId(user_id), MessageId(message_id)).await?;
    writer
        .write(move |txn| {
            Box::pin(async move {
                let row = current(txn, message_id).await?;
                if row.deleted_at.is_some() {
                    return Ok(((), Vec::new()));
                }
                let (conversation_id, sender_id) = (row.conversation_id, row.sender_id);
                let mut active = row.into_active_model();
                active.deleted_at = Set(Some(time::now()));
                // A deleted message leaves the pins; its unread mentions no longer count.
                active.pinned_at = Set(None);
                active.update(txn).await?;
                let mentioned = mentions::of_messages(txn, vec![message_id]).await?.remove(&message_id);
                mentions::shift_unread(txn, conversation_id, message_id, mentioned.unwrap_or_default(), -1)
                    .await?;
                // Whoever had not read it yet has one unread message fewer.
                member::Entity::update_many()
                    .col_expr(member::Column::UnreadCount, Expr::col(member::Column::UnreadCount).sub(1))
                    .filter(member::Column::ConversationId.eq(conversation_id))
                    .filter(member::Column::LeftEventId.is_null())
                    .filter(member::Column::UserId.ne(sender_id))
                    .filter(member::Column::LastReadMessageId.lt(message_id))
                    .filter(member::Column::UnreadCount.gt(0))
                    .exec(txn)
                    .await?;
                let stored = StoredEvent::MessageDeleted { message_id };
                let event_id = events::append(txn, conversation_id, &stored).await?;
                Ok(((), event_to_members(txn, conversation_id, event_id, &stored, user_id).await?))
            })
        })
        .await
}
