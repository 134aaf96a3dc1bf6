//! A member's notification settings for one conversation. They govern push notifications
//! only (unread counts are unaffected); a change is an event of the member's alone.

use sea_orm::{ActiveModelTrait, DatabaseTransaction, IntoActiveModel, Set};

use crate::domain::conversations::visible;
use crate::domain::events::writer::Writer;
use crate::domain::events::{self, StoredEvent};
use crate::error::AppResult;
use crate::realtime::UserFrame;
use crate::time::{self, Timestamp};
use crate::wire::views::Notify;
use crate::wire::{ConversationId, EventId, UserId};

/// The caller's settings after a change.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Settings {
    pub conversation_id: i64,
    pub notify: Notify,
    #[serde(serialize_with = "time::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub muted_until: Option<Timestamp>,
}

/// What a change sets; `None` keeps the current value (`Some(None)` unmutes).
#[derive(Debug, Clone, Copy, Default)]
pub struct Change {
    pub notify: Option<Notify>,
    pub muted_until: Option<Option<Timestamp>>,
}

/// Applies `change`; when something changed, `settings_changed` goes to the caller's devices.
pub async fn change(
    writer: &Writer,
    user: UserId,
    conversation: ConversationId,
    change: Change,
) -> AppResult<Settings> {
    writer.write(move |txn| Box::pin(apply(txn, user, conversation, change))).await
}

async fn apply(
    txn: &DatabaseTransaction,
    UserId(user_id): UserId,
    ConversationId(conversation_id): ConversationId,
    change: Change,
) -> AppResult<(Settings, Vec<UserFrame>)> {
    let (_, membership) = visible(txn, UserId(user_id), ConversationId(conversation_id)).await?;
    let notify = change.notify.unwrap_or(membership.notify);
    let muted_until = change.muted_until.unwrap_or(membership.muted_until);
    let settings = Settings { conversation_id, notify, muted_until };
    if (notify, muted_until) == (membership.notify, membership.muted_until) {
        return Ok((settings, Vec::new()));
    }
    let mut active = membership.into_active_model();
    active.notify = Set(notify);
    active.muted_until = Set(muted_until);
    active.update(txn).await?;
    let stored = StoredEvent::SettingsChanged { notify, muted_until };
    let event_id =
        events::append_for_user(txn, ConversationId(conversation_id), UserId(user_id), &stored).await?;
    let frame = events::render(EventId(event_id), ConversationId(conversation_id), &stored, user_id, None);
    Ok((settings, frame.map(|frame| UserFrame { user_id: UserId(user_id), frame }).into_iter().collect()))
}
