//! Storing the message sends of one writer batch together, in stages:
//!
//! 1. **load** (`load.rs`, and `safety::pairs`): what the checks need, one query per kind
//!    for the whole batch (earlier `client_id`s, users, conversations and their members,
//!    blocks and contacts);
//! 2. **plan** (`plan.rs`, no I/O): who may write where, policy and masking, repeats within
//!    the batch, the conversations first messages open, the unread counters moved in order;
//! 3. **write** (`write.rs`, SQL only): multi-row statements for conversations, messages,
//!    events, counters and conversation pointers;
//! 4. **render** (`render.rs`, no I/O): the frames, each shape serialized once.
//!
//! Sends are the hot path, so the writer does not run them one by one: a batch of 64 direct
//! messages costs about ten statements instead of ten per message. The checks run inside the
//! writer's transaction, so they see every earlier write, blocks included.

mod load;
mod plan;
mod render;
mod write;

use entity::conversation;
use entity::member::Notify;
use sea_orm::{DatabaseTransaction, DbErr};

pub use self::load::UserCache;
use crate::config::MessagingSettings;
use crate::domain::files::attachments::StoredFile;
use crate::domain::messaging::messages::{Sent, Target};
use crate::domain::safety;
use crate::error::AppResult;
use crate::realtime::UserFrame;
use crate::time::Timestamp;
use crate::wire::views::{AutoReply, ReplyView};

/// A send that passed the checks that need no database.
pub struct PendingMessage {
    pub sender_id: i64,
    pub target: Target,
    pub body: String,
    pub client_id: Option<String>,
    pub attachment: Option<StoredFile>,
    /// A message of the same conversation this one quotes (checked in the batch).
    pub reply_to_id: Option<i64>,
    /// Posted by the sender's away setting.
    pub auto_reply: Option<AutoReply>,
}

/// What a batch of sends left: one result per send, in order, and the frames to publish
/// once the batch commits.
pub struct Stored {
    pub results: Vec<AppResult<Sent>>,
    pub frames: Vec<UserFrame>,
}

/// Each send's answer so far; `None` until a stage settles it.
type Results = Vec<Option<AppResult<Sent>>>;

/// One member's read state as the batch moves it, and the settings their view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct ReadState {
    unread_count: i64,
    unread_mentions: i64,
    last_read_message_id: i64,
    notify: Notify,
    muted_until: Option<Timestamp>,
}

/// A send that passed every check and will be written.
struct Accepted {
    job: usize,
    conversation: conversation::Model,
    body: String,
    /// Whether this send opened its (direct) conversation and announces it.
    opened: bool,
    /// Each recipient's read state just after this message reached them.
    recipients: Vec<(i64, ReadState)>,
    /// The message this one quotes, as it is now.
    reply_to: Option<ReplyView>,
    /// The group members the text names, ascending.
    mentions: Vec<i64>,
}

/// Stores the sends of one batch. An `Err` leaves the transaction to be rolled back: it is
/// a database failure, never a refused send (those are in `results`).
pub async fn store(
    txn: &DatabaseTransaction,
    rules: &MessagingSettings,
    cache: &mut UserCache,
    jobs: Vec<PendingMessage>,
) -> Result<Stored, DbErr> {
    let mut results: Results = jobs.iter().map(|_| None).collect();
    load::repeats(txn, &jobs, &mut results).await?;
    cache.load(txn, plan::users_named(&jobs, &results)).await?;
    let mut loaded = load::conversations(txn, &jobs, &results).await?;
    load::quoted_and_named(txn, &jobs, &results, &mut loaded).await?;
    let checked = plan::targets(&jobs, cache, &loaded, &mut results);
    let standing = safety::pairs(txn, &plan::direct_pairs(&jobs, &checked)).await?;
    let plan = plan::admit(&jobs, checked, &standing, rules, &mut results);
    let opened = write::open_directs(txn, &plan.to_open, &mut loaded.members).await?;
    let accepted = plan::accept(&jobs, plan.admitted, opened, &mut loaded)?;
    if accepted.is_empty() {
        return Ok(Stored { results: plan::finish(results), frames: Vec::new() });
    }
    let written = write::messages(txn, &jobs, &accepted).await?;
    let frames = render::frames(&jobs, &accepted, &written, cache);
    plan::answer(&mut results, plan.repeats, &accepted, written.views);
    Ok(Stored { results: plan::finish(results), frames })
}
