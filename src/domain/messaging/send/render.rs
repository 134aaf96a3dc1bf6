//! Stage 4: the frames a committed batch sends, in event order for every user: opened
//! conversations first, then messages. Each shape is serialized once: a direct message's
//! two frames, and a group message's `new_message` once for all of its readers.

use bytestring::ByteString;
use serde::Serialize;

use super::load::UserCache;
use super::write::Written;
use super::{Accepted, PendingMessage, ReadState};
use crate::realtime::{Frame, UserFrame, UserId};
use crate::time::{self, Timestamp};
use crate::wire::frames::ServerFrame;
use crate::wire::views::{ConversationKind, ConversationView, MessageView, Notify, optional_id};

pub(super) fn frames(
    jobs: &[PendingMessage],
    accepted: &[Accepted],
    written: &Written,
    users: &UserCache,
) -> Vec<UserFrame> {
    let mut frames = Vec::new();
    for ((sent, view), created) in accepted.iter().zip(&written.views).zip(&written.created) {
        if let Some(created) = created {
            conversation_created(&mut frames, *created, jobs[sent.job].sender_id, sent, view, users);
        }
    }
    for ((sent, view), event_id) in accepted.iter().zip(&written.views).zip(&written.event_ids) {
        let sender = jobs[sent.job].sender_id;
        let frame = ServerFrame::MessageSent { event_id: *event_id, message: view };
        frames.push(UserFrame { user_id: UserId(sender), frame: frame.to_frame() });
        let conversation = template(sent, view);
        if sent.conversation.kind == ConversationKind::Direct {
            for (reader, state) in &sent.recipients {
                let mut theirs = conversation.clone();
                theirs.other_user = users.get(sender).cloned();
                state.show_in(&mut theirs);
                let frame =
                    ServerFrame::NewMessage { event_id: *event_id, message: view, conversation: &theirs };
                frames.push(UserFrame { user_id: UserId(*reader), frame: frame.to_frame() });
            }
        } else {
            let shared = PerReaderFrame::new(*event_id, view, &conversation);
            for (reader, state) in &sent.recipients {
                frames.push(UserFrame { user_id: UserId(*reader), frame: shared.for_reader(state) });
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
        state.show_in(&mut theirs);
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
        unread_mentions: 0,
        last_read_message_id: None,
        notify: Notify::All,
        muted_until: None,
    }
}

impl ReadState {
    /// The reader's own fields of a conversation view.
    fn show_in(&self, view: &mut ConversationView) {
        view.unread_count = self.unread_count;
        view.unread_mentions = self.unread_mentions;
        view.last_read_message_id = optional_id(self.last_read_message_id);
        view.notify = self.notify;
        view.muted_until = self.muted_until;
    }
}

/// The per-reader fields, in `ConversationView`'s order, serialized for a frame's tail.
#[derive(Serialize)]
struct ReaderTail {
    unread_count: i64,
    unread_mentions: i64,
    last_read_message_id: Option<i64>,
    notify: Notify,
    #[serde(serialize_with = "time::option::serialize")]
    muted_until: Option<Timestamp>,
}

/// A `new_message` frame serialized once for all recipients of a group message. Only the
/// conversation's per-reader fields differ between readers; they are the last fields of the
/// last object, so each reader's frame is the shared prefix plus a short tail.
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

    fn for_reader(&self, state: &ReadState) -> Frame {
        let tail = ReaderTail {
            unread_count: state.unread_count,
            unread_mentions: state.unread_mentions,
            last_read_message_id: optional_id(state.last_read_message_id),
            notify: state.notify,
            muted_until: state.muted_until,
        };
        // `{"unread_count":…}` without its opening brace, then the frame's closing one.
        let tail = serde_json::to_string(&tail).unwrap_or_default();
        let mut text = String::with_capacity(self.prefix.len() + tail.len() + 1);
        text.push_str(&self.prefix);
        text.push_str(tail.get(1..).unwrap_or_default());
        text.push('}');
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
            reply_to: None,
            mentions: vec![2],
            reactions: Vec::new(),
            pinned: false,
            auto_reply: None,
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
            unread_mentions: 0,
            last_read_message_id: None,
            notify: Notify::All,
            muted_until: None,
        };
        let shared = PerReaderFrame::new(11, &message, &conversation);
        let muted = ReadState {
            unread_count: 42,
            unread_mentions: 3,
            last_read_message_id: 6,
            notify: Notify::Mentions,
            muted_until: Some(at),
        };
        for state in [ReadState { unread_count: 1, ..Default::default() }, muted] {
            let mut reader = conversation.clone();
            state.show_in(&mut reader);
            let full = ServerFrame::NewMessage { event_id: 11, message: &message, conversation: &reader };
            assert_eq!(shared.for_reader(&state).text, full.to_frame().text);
        }
    }
}
