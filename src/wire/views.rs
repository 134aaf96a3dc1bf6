//! The contract's JSON shapes, built from rows.

pub use entity::conversation::ConversationKind;
pub use entity::member::Notify;
use entity::{message, user};
use serde::Serialize;

use crate::time::{self, Timestamp};

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// v1.1; defaults when absent, so events stored before it still read.
    #[serde(default)]
    pub is_bot: bool,
}

impl From<user::Model> for UserView {
    fn from(row: user::Model) -> Self {
        Self {
            id: row.id,
            username: row.username,
            display_name: row.display_name,
            created_at: row.created_at,
            is_bot: row.is_bot,
        }
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AttachmentView {
    pub id: i64,
    pub filename: String,
    pub mime_type: String,
    pub size: i64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: i64,
    pub conversation_id: i64,
    pub sender_id: i64,
    pub recipient_id: Option<i64>,
    pub message: String,
    pub client_id: Option<String>,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[serde(serialize_with = "time::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub edited_at: Option<Timestamp>,
    pub deleted: bool,
    pub attachments: Vec<AttachmentView>,
    // The v1.1 fields default when absent, so events stored before them still read.
    #[serde(default)]
    pub reply_to: Option<ReplyView>,
    /// Members the text names with `@username`, sender excluded; empty outside groups.
    #[serde(default)]
    pub mentions: Vec<i64>,
    #[serde(default)]
    pub reactions: Vec<ReactionView>,
    #[serde(default)]
    pub pinned: bool,
    /// Set on a message its sender's away setting posted; null on everything typed.
    #[serde(default)]
    pub auto_reply: Option<AutoReply>,
}

/// The marker of an away reply: the assistant bot that wrote it, or null for the fixed text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AutoReply {
    pub bot_id: Option<i64>,
}

impl MessageView {
    /// What everyone sees of a deleted message: id, sender and time, no content.
    pub fn redact(&mut self) {
        self.deleted = true;
        self.message.clear();
        self.attachments.clear();
        self.mentions.clear();
        self.reactions.clear();
        self.pinned = false;
        self.reply_to = None;
    }
}

/// The message a reply quotes, as it is now.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReplyView {
    pub id: i64,
    pub sender_id: i64,
    /// The first 200 characters of the quoted text; empty once it is deleted.
    pub message: String,
    pub deleted: bool,
}

/// Characters of the quoted text a reply shows.
const QUOTED_CHARS: usize = 200;

impl ReplyView {
    /// A quote of a message deleted since: no text.
    pub fn redact(&mut self) {
        self.deleted = true;
        self.message.clear();
    }
}

impl From<&message::Model> for ReplyView {
    fn from(row: &message::Model) -> Self {
        let deleted = row.deleted_at.is_some();
        let message = if deleted { String::new() } else { row.body.chars().take(QUOTED_CHARS).collect() };
        Self { id: row.id, sender_id: row.sender_id, message, deleted }
    }
}

/// One emoji on a message: how many reacted with it and who first (at most 50 ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ReactionView {
    pub emoji: String,
    pub count: i64,
    pub user_ids: Vec<i64>,
}

impl From<message::Model> for MessageView {
    fn from(row: message::Model) -> Self {
        let deleted = row.deleted_at.is_some();
        Self {
            id: row.id,
            conversation_id: row.conversation_id,
            sender_id: row.sender_id,
            recipient_id: row.recipient_id,
            // A deleted message keeps id, sender and time, and nothing of its content.
            message: if deleted { String::new() } else { row.body },
            client_id: row.client_id,
            created_at: row.created_at,
            edited_at: row.edited_at,
            deleted,
            attachments: Vec::new(),
            reply_to: None,
            mentions: Vec::new(),
            reactions: Vec::new(),
            pinned: row.pinned_at.is_some() && !deleted,
            auto_reply: row.auto_reply.then_some(AutoReply { bot_id: row.auto_reply_bot_id }),
        }
    }
}

/// A conversation as one member sees it: `other_user` and the fields from `unread_count` on
/// are the caller's. Those per-reader fields come last, so a group message's frame can be
/// serialized once and given each reader's tail (`send/render.rs`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConversationView {
    pub id: i64,
    pub kind: ConversationKind,
    pub name: Option<String>,
    pub other_user: Option<UserView>,
    pub members_count: i64,
    #[serde(with = "time")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub last_message: Option<MessageView>,
    pub unread_count: i64,
    pub unread_mentions: i64,
    pub last_read_message_id: Option<i64>,
    pub notify: Notify,
    #[serde(serialize_with = "time::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub muted_until: Option<Timestamp>,
}

/// `0` in the database means "nothing yet"; the API says null.
pub fn optional_id(id: i64) -> Option<i64> {
    (id > 0).then_some(id)
}
