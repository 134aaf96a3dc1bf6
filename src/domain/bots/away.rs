//! Away replies (the "AI mode"): while a user has away replies on and no live socket
//! anywhere, a direct message to them still unread `away.delay_seconds` after it was sent
//! gets one reply per sender and away period, posted as the user and marked `auto_reply`.
//!
//! - **Period.** An away period ends when the user opens a socket, so it is named by the
//!   user's last disconnect (presence's `last_seen`, 0 if never seen). The reply's
//!   `client_id` is `away-{conversation}-{period}`: a second reply in the same period,
//!   whichever instance or retry makes it, finds the first one instead (the send's
//!   idempotency), and no bookkeeping table is needed.
//! - **Plan.** A cursor over the event log (`away_cursor`), moved compare-and-set once its
//!   messages are `delay_seconds` old. A fixed text is posted right then, before the cursor
//!   moves (a crash in between repeats it, and the `client_id` makes the repeat a no-op).
//!   An assistant bot gets an `away_request` row in the webhook queue, in the transaction
//!   that moves the cursor, unless this period already has its reply or its request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use entity::{away_setting, bot, message, webhook_delivery};
use futures_util::future::join_all;
use sea_orm::prelude::*;
use sea_orm::{FromQueryResult, QuerySelect, Set};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::{self, Db};
use crate::domain::events::queue;
use crate::domain::events::writer::Writer;
use crate::domain::messaging::messages::{self, NewMessage, Target, validate_body};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::realtime::UserId;
use crate::realtime::presence::Presence;
use crate::time::{self, Timestamp};
use crate::wire::views::AutoReply;

const CURSOR: &str = "away_cursor";
const PLAN_BATCH: u64 = 512;
/// The webhook queue's kind for a request to a user's assistant bot.
pub const AWAY_REQUEST: &str = "away_request";

/// A user's away setting, as `GET`/`PUT /api/users/me/away` show it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AwayView {
    pub enabled: bool,
    /// A bot the user owns that writes the replies (a webhook bot gets `away_request`, an
    /// assistant bot asks the model); without one, `message` is the reply.
    pub assistant_bot_id: Option<i64>,
    /// The fixed reply; also what is sent when the assistant bot could not answer.
    pub message: Option<String>,
}

impl From<away_setting::Model> for AwayView {
    fn from(row: away_setting::Model) -> Self {
        Self { enabled: row.enabled, assistant_bot_id: row.assistant_bot_id, message: row.message }
    }
}

/// The caller's away setting; off when never set.
pub async fn get(db: &Db, user_id: i64) -> AppResult<AwayView> {
    let row = away_setting::Entity::find_by_id(user_id).one(&db.read).await?;
    Ok(row.map(AwayView::from).unwrap_or_default())
}

/// Replaces the caller's away setting. 422 for a bot the caller does not own, a message
/// that is no valid message text, or turning it on with neither; 403 for a bot (its
/// answers are its own, and its owner is not asked).
pub async fn put(db: &Db, user_id: i64, input: AwayView) -> AppResult<AwayView> {
    if bot::Entity::find_by_id(user_id).one(&db.read).await?.is_some() {
        return Err(AppError::forbidden(ErrorCode::NotAllowed, "bots have no away replies"));
    }
    let message = input.message.as_deref().map(validate_body).transpose()?;
    if let Some(bot_id) = input.assistant_bot_id {
        let owned = bot::Entity::find_by_id(bot_id)
            .filter(bot::Column::OwnerId.eq(user_id))
            .one(&db.read)
            .await?
            .is_some();
        if !owned {
            return Err(AppError::validation(
                "assistant_bot_id",
                "assistant_bot_id must be one of your bots",
            ));
        }
    }
    if input.enabled && input.assistant_bot_id.is_none() && message.is_none() {
        return Err(AppError::validation(
            "message",
            "give assistant_bot_id or message to turn away replies on",
        ));
    }
    let row = away_setting::ActiveModel {
        user_id: Set(user_id),
        enabled: Set(input.enabled),
        assistant_bot_id: Set(input.assistant_bot_id),
        message: Set(message),
        updated_at: Set(time::now()),
    };
    away_setting::Entity::insert(row)
        .on_conflict(
            sea_orm::sea_query::OnConflict::column(away_setting::Column::UserId)
                .update_columns([
                    away_setting::Column::Enabled,
                    away_setting::Column::AssistantBotId,
                    away_setting::Column::Message,
                    away_setting::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec(&db.write)
        .await?;
    get(db, user_id).await
}

/// Whether `user_id` is away now, and in which period: named by their last disconnect in
/// unix ms, 0 if never seen. `None` when they are online; an error while presence is
/// unknown (Redis not answering), so nothing is decided blind.
pub async fn period(presence: &Presence, user_id: i64) -> AppResult<Option<i64>> {
    match presence.state(UserId(user_id)).await {
        Some((true, _)) => Ok(None),
        Some((false, last_seen)) => Ok(Some(last_seen.map_or(0, time::unix_ms))),
        None => {
            Err(AppError::Unavailable { message: "presence is unknown while Redis does not answer".into() })
        }
    }
}

/// The user's setting, if an away reply for `period` is still wanted: away replies still
/// on (and, for a bot's answer, still by `bot_id`), and the user still away in that same
/// period.
pub async fn still_wanted(
    db: &Db,
    presence: &Presence,
    user_id: i64,
    bot_id: Option<i64>,
    period: i64,
) -> AppResult<Option<away_setting::Model>> {
    let setting = away_setting::Entity::find_by_id(user_id).one(&db.read).await?;
    let on = setting.filter(|s| s.enabled && bot_id.is_none_or(|bot| s.assistant_bot_id == Some(bot)));
    match on {
        Some(setting) if self::period(presence, user_id).await? == Some(period) => Ok(Some(setting)),
        _ => Ok(None),
    }
}

/// The `client_id` of the one away reply of a conversation and period.
pub fn client_id(conversation_id: i64, period: i64) -> String {
    format!("away-{conversation_id}-{period}")
}

/// Posts `text` as `user_id`'s away reply to `message_id`; a repeat in the same period
/// finds the first reply instead.
pub async fn reply(
    writer: &Writer,
    user_id: i64,
    message: &message::Model,
    period: i64,
    text: &str,
    bot_id: Option<i64>,
) -> AppResult<()> {
    let text: String = text.chars().take(messages::MAX_MESSAGE_CHARS).collect();
    let client_id = client_id(message.conversation_id, period);
    let input = NewMessage::new(Target::Conversation(message.conversation_id), &text, Some(client_id), None)?
        .replying_to(Some(message.id))
        .auto_reply(AutoReply { bot_id });
    messages::send(writer, user_id, input).await?;
    Ok(())
}

/// The fixed text, as `user_id`'s away reply to `message_id`, if it is still wanted: the
/// fallback when their bot could not answer.
pub async fn fall_back(
    db: &Db,
    writer: &Writer,
    presence: &Presence,
    user_id: i64,
    message_id: i64,
    period: i64,
) -> AppResult<()> {
    let setting = still_wanted(db, presence, user_id, None, period).await?;
    let Some(text) = setting.and_then(|setting| setting.message) else { return Ok(()) };
    let Some(row) = message::Entity::find_by_id(message_id).one(&db.read).await? else { return Ok(()) };
    reply(writer, user_id, &row, period, &text, None).await
}

/// A direct message to a user with away replies on, unread, not itself an away reply.
#[derive(Debug, FromQueryResult)]
struct Candidate {
    event_id: i64,
    message_id: i64,
    conversation_id: i64,
    user_id: i64,
    text: Option<String>,
    /// The user's assistant bot, when it is theirs and can answer.
    bot_id: Option<i64>,
}

/// What one planning pass did.
#[derive(Default)]
pub struct Planned {
    /// Events read past the cursor.
    pub events: usize,
    /// When the oldest message not yet due falls due.
    pub next_due: Option<Timestamp>,
}

pub struct Planner {
    pub db: Db,
    pub writer: Writer,
    pub presence: Arc<Presence>,
    pub delay: chrono::Duration,
}

impl Planner {
    /// A new deployment starts at the newest event: history gets no away replies.
    pub async fn start_cursor(&self) -> AppResult<()> {
        let newest: Option<i64> = entity::event::Entity::find()
            .select_only()
            .column_as(entity::event::Column::Id.max(), "max")
            .into_tuple()
            .one(&self.db.read)
            .await?
            .flatten();
        queue::start_cursor(&self.writer, CURSOR, newest.unwrap_or(0)).await
    }

    /// Answers the direct messages now `delay` old, or queues their `away_request`.
    pub async fn plan(&self) -> AppResult<Planned> {
        let Some(cursor) = queue::cursor(&self.db, CURSOR).await? else {
            self.start_cursor().await?;
            return Ok(Planned::default());
        };
        // Every event past the cursor, with its message's time if it created one: the
        // others are due at once.
        let sql = "SELECT e.id, m.created_at FROM events e \
                   LEFT JOIN messages m ON m.id = e.message_id AND e.kind = 'message_created' \
                   WHERE e.id > $1 ORDER BY e.id LIMIT $2";
        let values = vec![cursor.into(), (PLAN_BATCH as i64).into()];
        let pending = self
            .db
            .read
            .query_all_raw(db::statement(self.db.backend, sql, values))
            .await?
            .iter()
            .map(|row| Ok((row.try_get_by_index::<i64>(0)?, row.try_get_by_index::<Option<Timestamp>>(1)?)))
            .collect::<Result<Vec<_>, DbErr>>()?;
        let cutoff = time::now() - self.delay;
        let due = pending.iter().take_while(|(_, at)| at.is_none_or(|at| at <= cutoff)).count();
        let next_due = pending.get(due).and_then(|(_, at)| *at).map(|at| at + self.delay);
        let Some(upto) = due.checked_sub(1).map(|last| pending[last].0) else {
            return Ok(Planned { events: 0, next_due });
        };
        let candidates = first_per_recipient(self.candidates(cursor, upto).await?);
        let users: HashSet<i64> = candidates.iter().map(|c| c.user_id).collect();
        // Presence unknown: the cursor stays, and the next pass decides.
        let periods: HashMap<i64, Option<i64>> = join_all(
            users
                .into_iter()
                .map(|user| async move { period(&self.presence, user).await.map(|period| (user, period)) }),
        )
        .await
        .into_iter()
        .collect::<AppResult<_>>()?;
        let mut rows = Vec::new();
        for candidate in candidates {
            // Online: no reply.
            let Some(Some(period)) = periods.get(&candidate.user_id).copied() else { continue };
            match (candidate.bot_id, &candidate.text) {
                (Some(bot_id), _) => rows.push((candidate, bot_id, period)),
                (None, Some(text)) => self.post_text(&candidate, period, text).await?,
                (None, None) => {}
            }
        }
        let moved = self
            .writer
            .write(move |txn| {
                Box::pin(async move {
                    if !queue::advance(txn, CURSOR, cursor, upto).await? {
                        return Ok((false, Vec::new()));
                    }
                    let now = time::unix_ms(time::now());
                    for (candidate, bot_id, period) in rows {
                        if answered(txn, &candidate, bot_id, period).await? {
                            continue;
                        }
                        let row = webhook_delivery::ActiveModel {
                            bot_id: Set(bot_id),
                            event_id: Set(candidate.event_id),
                            kind: Set(AWAY_REQUEST.into()),
                            message_id: Set(candidate.message_id),
                            due_at: Set(now),
                            lease_until: Set(0),
                            lease_token: Set(0),
                            attempts: Set(0),
                            away_period: Set(period),
                            ..Default::default()
                        };
                        webhook_delivery::Entity::insert(row)
                            .on_conflict_do_nothing_on([
                                webhook_delivery::Column::BotId,
                                webhook_delivery::Column::EventId,
                                webhook_delivery::Column::Kind,
                            ])
                            .exec_without_returning(txn)
                            .await?;
                    }
                    Ok((true, Vec::new()))
                })
            })
            .await?;
        Ok(Planned { events: if moved { due } else { 0 }, next_due })
    }

    async fn candidates(&self, after: i64, upto: i64) -> AppResult<Vec<Candidate>> {
        let sql = "SELECT e.id AS event_id, m.id AS message_id, m.conversation_id, a.user_id, \
                   a.message AS text, b.user_id AS bot_id \
                   FROM events e \
                   JOIN messages m ON m.id = e.message_id \
                   JOIN away_settings a ON a.user_id = m.recipient_id \
                   JOIN conversation_members cm ON cm.conversation_id = m.conversation_id AND cm.user_id = a.user_id \
                   LEFT JOIN bots b ON b.user_id = a.assistant_bot_id AND b.owner_id = a.user_id \
                     AND (b.kind = 'assistant' OR (b.webhook_url IS NOT NULL AND b.webhook_enabled = $3)) \
                   WHERE e.id > $1 AND e.id <= $2 AND e.kind = 'message_created' AND a.enabled = $3 \
                     AND m.deleted_at IS NULL AND m.auto_reply = $4 \
                     AND cm.left_event_id IS NULL AND cm.last_read_message_id < m.id \
                   ORDER BY e.id";
        let values = vec![after.into(), upto.into(), true.into(), false.into()];
        let statement = db::statement(self.db.backend, sql, values);
        Ok(Candidate::find_by_statement(statement).all(&self.db.read).await?)
    }

    /// The fixed text, now. A refusal (the sender blocked meanwhile) is logged, not retried.
    async fn post_text(&self, candidate: &Candidate, period: i64, text: &str) -> AppResult<()> {
        let Some(row) = message::Entity::find_by_id(candidate.message_id).one(&self.db.read).await? else {
            return Ok(());
        };
        match reply(&self.writer, candidate.user_id, &row, period, text, None).await {
            Err(err @ AppError::Unavailable { .. }) => Err(err),
            Err(err) => {
                tracing::info!(error = %err, user = candidate.user_id, "away: the reply was refused");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}

/// The first unread message to each user of a conversation answers for the rest (in a
/// direct conversation both users may be away, each with messages from the other).
fn first_per_recipient(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let mut seen = HashSet::new();
    candidates.into_iter().filter(|c| seen.insert((c.conversation_id, c.user_id))).collect()
}

/// Whether this period of the conversation already has its reply, or a request for one.
async fn answered(
    txn: &sea_orm::DatabaseTransaction,
    candidate: &Candidate,
    bot_id: i64,
    period: i64,
) -> Result<bool, DbErr> {
    let replied = message::Entity::find()
        .filter(message::Column::SenderId.eq(candidate.user_id))
        .filter(message::Column::ClientId.eq(client_id(candidate.conversation_id, period)))
        .count(txn)
        .await?;
    if replied > 0 {
        return Ok(true);
    }
    let sql = "SELECT COUNT(*) FROM webhook_deliveries d JOIN messages m ON m.id = d.message_id \
               WHERE d.kind = $1 AND d.bot_id = $2 AND d.away_period = $3 AND m.conversation_id = $4";
    let values = vec![AWAY_REQUEST.into(), bot_id.into(), period.into(), candidate.conversation_id.into()];
    let requested = match txn.query_one_raw(db::statement(txn.get_database_backend(), sql, values)).await? {
        Some(row) => row.try_get_by_index::<i64>(0)?,
        None => 0,
    };
    Ok(requested > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(message_id: i64, conversation_id: i64, user_id: i64) -> Candidate {
        Candidate { event_id: message_id, message_id, conversation_id, user_id, text: None, bot_id: None }
    }

    #[test]
    fn each_recipient_of_a_conversation_is_answered_for_their_first_message() {
        let planned = first_per_recipient(vec![
            candidate(1, 7, 10),
            candidate(2, 7, 20),
            candidate(3, 7, 10),
            candidate(4, 8, 10),
        ]);
        let ids: Vec<i64> = planned.iter().map(|c| c.message_id).collect();
        assert_eq!(ids, vec![1, 2, 4]);
    }
}
