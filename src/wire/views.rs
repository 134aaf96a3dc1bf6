//! The contract's JSON shapes, built from rows.

pub use entity::conversation::ConversationKind;
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
}

impl From<user::Model> for UserView {
    fn from(row: user::Model) -> Self {
        Self {
            id: row.id,
            username: row.username,
            display_name: row.display_name,
            created_at: row.created_at,
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
}

impl MessageView {
    /// What everyone sees of a deleted message: id, sender and time, no content.
    pub fn redact(&mut self) {
        self.deleted = true;
        self.message.clear();
        self.attachments.clear();
    }
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
        }
    }
}

/// A conversation as one member sees it: `other_user`, `unread_count` and
/// `last_read_message_id` are the caller's.
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
    pub last_read_message_id: Option<i64>,
}

/// `0` in the database means "nothing yet"; the API says null.
pub fn optional_id(id: i64) -> Option<i64> {
    (id > 0).then_some(id)
}
