//! Stage 4: the frames a committed batch sends, in event order for every user: opened
//! conversations first, then messages. Each shape is serialized once: a direct message's
//! two frames, and a group message's `new_message` once for all of its readers.

use bytestring::ByteString;

use super::load::UserCache;
use super::write::Written;
use super::{Accepted, PendingMessage};
use crate::realtime::{Frame, UserFrame, UserId};
use crate::wire::frames::ServerFrame;
use crate::wire::views::{ConversationKind, ConversationView, MessageView, optional_id};

pub(super) fn frames(
    jobs: &[PendingMessage],
    accepted: &[Accepted],
    written: &Written,
    users: &UserCache,
) -> Vec<UserFrame> {
    let mut frames = Vec::new();
    for (sent, view) in accepted.iter().zip(&written.views) {
        if let Some(created) = sent.opened {
            conversation_created(&mut frames, created, jobs[sent.job].sender_id, sent, view, users);
        }
    }
    for ((sent, view), event_id) in accepted.iter().zip(&written.views).zip(&written.event_ids) {
        let sender = jobs[sent.job].sender_id;
        let frame = ServerFrame::MessageSent { event_id: *event_id, message: view };
        frames.push(UserFrame { user_id: UserId(sender), frame: frame.to_frame() });
        let conversation = template(sent, view);
        if sent.conversation.kind == ConversationKind::Direct {
            for (reader, state) in &sent.recipients {
                let theirs = ConversationView {
                    other_user: users.get(sender).cloned(),
                    unread_count: state.unread_count,
                    last_read_message_id: optional_id(state.last_read_message_id),
                    ..conversation.clone()
                };
                let frame =
                    ServerFrame::NewMessage { event_id: *event_id, message: view, conversation: &theirs };
                frames.push(UserFrame { user_id: UserId(*reader), frame: frame.to_frame() });
            }
        } else {
            let shared = PerReaderFrame::new(*event_id, view, &conversation);
            for (reader, state) in &sent.recipients {
                let frame = shared.for_reader(state.unread_count, state.last_read_message_id);
                frames.push(UserFrame { user_id: UserId(*reader), frame });
            }
        }
    }
    frames
}

/// `conversation_created` for a first message: the sender's view names the recipient, the
/// recipient's names the sender and counts this message unread.
fn conversation_created(
    frames: &mut Vec<UserFrame>,
    event_id: i64,
    sender: i64,
    sent: &Accepted,
    view: &MessageView,
    users: &UserCache,
) {
    let mut readers = vec![(sender, template(sent, view))];
    for (recipient, state) in &sent.recipients {
        readers[0].1.other_user = users.get(*recipient).cloned();
        let mut theirs = template(sent, view);
        theirs.other_user = users.get(sender).cloned();
        theirs.unread_count = state.unread_count;
        theirs.last_read_message_id = optional_id(state.last_read_message_id);
        readers.push((*recipient, theirs));
    }
    for (reader, conversation) in &readers {
        let frame = ServerFrame::ConversationCreated { event_id, conversation };
        frames.push(UserFrame { user_id: UserId(*reader), frame: frame.to_frame() });
    }
}

/// The conversation as the sender sees it right after this message.
fn template(sent: &Accepted, view: &MessageView) -> ConversationView {
    ConversationView {
        id: sent.conversation.id,
        kind: sent.conversation.kind,
        name: sent.conversation.name.clone(),
        other_user: None,
        members_count: sent.recipients.len() as i64 + 1,
        created_at: sent.conversation.created_at,
        last_message: Some(view.clone()),
        unread_count: 0,
        last_read_message_id: None,
    }
}

/// A `new_message` frame serialized once for all recipients of a group message. Only the
/// conversation's `unread_count` and `last_read_message_id` differ between readers; they are
/// the last two fields of the last object, so each reader's frame is the shared prefix plus
/// a short tail.
struct PerReaderFrame {
    event_id: i64,
    prefix: String,
}

impl PerReaderFrame {
    const TAIL_KEY: &'static str = "\"unread_count\":";

    fn new(event_id: i64, message: &MessageView, conversation: &ConversationView) -> Self {
        let text = serde_json::to_string(&ServerFrame::NewMessage { event_id, message, conversation })
            .unwrap_or_default();
        // Keys are unescaped quotes only outside strings, so the last match is the field.
        let cut = text.rfind(Self::TAIL_KEY).unwrap_or(text.len());
        Self { event_id, prefix: text[..cut].to_owned() }
    }

    fn for_reader(&self, unread_count: i64, last_read_message_id: i64) -> Frame {
        let last_read =
            optional_id(last_read_message_id).map_or_else(|| "null".to_owned(), |id| id.to_string());
        let text = format!(
            "{}{}{unread_count},\"last_read_message_id\":{last_read}}}}}",
            self.prefix,
            Self::TAIL_KEY
        );
        Frame {
            event_id: Some(self.event_id),
            prev_event_id: None,
            committed_us: None,
            text: ByteString::from(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time;

    #[test]
    fn per_reader_frames_match_a_full_serialization() {
        let at = time::now();
        let message = MessageView {
            id: 7,
            conversation_id: 3,
            sender_id: 1,
            recipient_id: None,
            message: "a \"unread_count\": trap".into(),
            client_id: None,
            created_at: at,
            edited_at: None,
            deleted: false,
            attachments: Vec::new(),
        };
        let conversation = ConversationView {
            id: 3,
            kind: ConversationKind::Group,
            name: Some("g".into()),
            other_user: None,
            members_count: 3,
            created_at: at,
            last_message: Some(message.clone()),
            unread_count: 0,
            last_read_message_id: None,
        };
        let shared = PerReaderFrame::new(11, &message, &conversation);
        for (unread, last_read) in [(1, 0), (42, 6)] {
            let reader = ConversationView {
                unread_count: unread,
                last_read_message_id: optional_id(last_read),
                ..conversation.clone()
            };
            let full = ServerFrame::NewMessage { event_id: 11, message: &message, conversation: &reader };
            assert_eq!(shared.for_reader(unread, last_read).text, full.to_frame().text);
        }
    }
}
