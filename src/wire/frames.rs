//! The WebSocket wire protocol: what clients send and what the server sends.

use serde::{Deserialize, Serialize};

use super::Id;
use super::views::{ConversationView, MessageView, Notify, UserView};
use crate::time::{self, Timestamp};

/// Frames a client may send.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Ping,
    Typing {
        conversation_id: Id,
    },
    /// The last event the client processed.
    Ack {
        event_id: Id,
    },
}

/// Frames the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Hello {
        user_id: i64,
        session_id: u64,
        instance_id: &'a str,
        last_event_id: i64,
    },
    NewMessage {
        event_id: i64,
        message: &'a MessageView,
        conversation: &'a ConversationView,
    },
    MessageSent {
        event_id: i64,
        message: &'a MessageView,
    },
    ConversationCreated {
        event_id: i64,
        conversation: &'a ConversationView,
    },
    MessageEdited {
        event_id: i64,
        message: &'a MessageView,
    },
    MessageDeleted {
        event_id: i64,
        conversation_id: i64,
        message_id: i64,
    },
    MemberAdded {
        event_id: i64,
        conversation_id: i64,
        user: &'a UserView,
    },
    MemberRemoved {
        event_id: i64,
        conversation_id: i64,
        user: &'a UserView,
    },
    /// Ephemeral: `user_id`'s devices have received the conversation up to this message.
    MessageDelivered {
        conversation_id: i64,
        user_id: i64,
        last_delivered_message_id: i64,
    },
    MessageRead {
        event_id: i64,
        conversation_id: i64,
        reader_id: i64,
        last_read_message_id: i64,
        #[serde(serialize_with = "time::serialize")]
        read_at: Timestamp,
    },
    ReactionAdded {
        event_id: i64,
        conversation_id: i64,
        message_id: i64,
        user_id: i64,
        emoji: &'a str,
    },
    ReactionRemoved {
        event_id: i64,
        conversation_id: i64,
        message_id: i64,
        user_id: i64,
        emoji: &'a str,
    },
    MessagePinned {
        event_id: i64,
        conversation_id: i64,
        message_id: i64,
        user_id: i64,
    },
    MessageUnpinned {
        event_id: i64,
        conversation_id: i64,
        message_id: i64,
        user_id: i64,
    },
    /// To the member's own devices only.
    SettingsChanged {
        event_id: i64,
        conversation_id: i64,
        notify: Notify,
        #[serde(serialize_with = "time::option::serialize")]
        muted_until: Option<Timestamp>,
    },
    /// Ephemeral: to the conversation's other members, never stored.
    Typing {
        conversation_id: i64,
        user_id: i64,
    },
    /// Ephemeral: to users who share a conversation, never stored.
    Presence {
        user_id: i64,
        status: &'a str,
        #[serde(serialize_with = "time::option::serialize")]
        last_seen: Option<Timestamp>,
    },
    Pong,
    Error {
        code: &'a str,
        message: &'a str,
    },
}

impl ServerFrame<'_> {
    pub fn event_id(&self) -> Option<i64> {
        match self {
            Self::NewMessage { event_id, .. }
            | Self::MessageSent { event_id, .. }
            | Self::ConversationCreated { event_id, .. }
            | Self::MessageEdited { event_id, .. }
            | Self::MessageDeleted { event_id, .. }
            | Self::MemberAdded { event_id, .. }
            | Self::MemberRemoved { event_id, .. }
            | Self::MessageRead { event_id, .. }
            | Self::ReactionAdded { event_id, .. }
            | Self::ReactionRemoved { event_id, .. }
            | Self::MessagePinned { event_id, .. }
            | Self::MessageUnpinned { event_id, .. }
            | Self::SettingsChanged { event_id, .. } => Some(*event_id),
            Self::Hello { .. }
            | Self::MessageDelivered { .. }
            | Self::Typing { .. }
            | Self::Presence { .. }
            | Self::Pong
            | Self::Error { .. } => None,
        }
    }

    pub fn to_frame(&self) -> super::Frame {
        super::Frame::new(self.event_id(), self)
    }
}
