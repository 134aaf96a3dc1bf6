//! Outgoing webhooks, fed from the event log rather than the request path, on a thread of
//! their own (like the push sender):
//! - **Plan.** Events past a cursor (`webhook_cursor` in `server_keys`) are read in id order.
//!   A `new_message` for a bot member (a direct message, or a group message that mentions
//!   it), not sent by a bot, becomes a `webhook_deliveries` row, in the transaction that
//!   moves the cursor compare-and-set: once per bot and event, whichever instance plans it.
//! - **Send.** Each bot's oldest delivery only, so a bot gets its events in order; leased,
//!   POSTed with an HMAC-SHA256 signature, and deleted once answered. Timeouts, connection
//!   errors, 429 and 5xx are retried with jittered backoff (the first within 5 s; 7 attempts
//!   over about 25 minutes); other answers are not. After `bots.max_consecutive_failures`
//!   failed requests in a row the hook is disabled and its owner told.
//! - **Replies.** `{"reply": "text"}` is posted by the bot as a reply to the message, with a
//!   `client_id` derived from the event id: once, however often the hook was called.
//! - **Away requests** (`away.rs` plans them) go through the same queue: the answer is posted
//!   as the bot's owner, marked `auto_reply`, once per away period.

use std::sync::Arc;
use std::time::Duration;

use entity::{bot, message, webhook_delivery};
use hmac::{Hmac, Mac};
use sea_orm::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ExprTrait, FromQueryResult, QueryOrder, QuerySelect, Set};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore, watch};

use super::away::{self, AWAY_REQUEST};
use crate::config::{AssistantSettings, AwaySettings, BotSettings};
use crate::db::{self, Db};
use crate::domain::conversations;
use crate::domain::events::queue;
use crate::domain::events::writer::Writer;
use crate::domain::messaging::messages::{self, NewMessage, Target};
use crate::domain::messaging::views;
use crate::error::{AppError, AppResult};
use crate::outbound;
use crate::realtime::UserId;
use crate::realtime::presence::Presence;
use crate::time;
use crate::wire::views::{ConversationView, MessageView};

const CURSOR: &str = "webhook_cursor";
const TICK: Duration = Duration::from_millis(100);
/// The shortest wait for away replies falling due: those due meanwhile are planned together
/// (see the push sender's `MIN_WAIT`).
const MIN_WAIT: Duration = Duration::from_millis(50);
const PLAN_BATCH: u64 = 512;
/// Bots called at once per instance (each bot one at a time).
const IN_FLIGHT: usize = 64;
/// How long a lease outlives a request that never answers, beyond its timeout.
const LEASE_MARGIN_MS: i64 = 5_000;
/// The waits after each failed attempt, before jitter: the first retry within 5 s, the
/// sixth attempt more than ten minutes after the first.
const BACKOFF_MS: [i64; 6] = [2_000, 10_000, 60_000, 180_000, 420_000, 900_000];
/// A hook's answer is read up to this size; a larger one is no reply.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The longest reply text a message holds.
const MAX_REPLY_CHARS: usize = 2000;
/// Messages of the conversation an assistant is given, the one it answers included.
const ASSISTANT_CONTEXT: u64 = 20;
/// What an assistant bot says when its model could not answer: from the bot, never as
/// anyone else's words.
const ASSISTANT_FAILED: &str = "Sorry, I cannot answer right now: the model did not respond.";
/// Told to the model when it answers for a user who is away.
const AWAY_INSTRUCTION: &str = "You are answering on behalf of the user whose messages are yours here: \
     they are away. Say so, answer briefly if you can, and never promise anything for them.";

/// What the webhook sender is given.
pub struct Setup {
    pub db: Db,
    pub writer: Writer,
    pub presence: Arc<Presence>,
    pub bots: BotSettings,
    pub away: AwaySettings,
    pub assistant: AssistantSettings,
}

/// Starts the webhook sender (and the away replies' planner) on its own thread; it stops
/// when `stop`'s sender is dropped.
pub async fn start(setup: Setup, stop: watch::Receiver<()>) {
    let Setup { db, writer, presence, bots, away, assistant } = setup;
    let delay = chrono::Duration::seconds(i64::try_from(away.delay_seconds).unwrap_or(i64::MAX / 1000));
    let away = away::Planner { db: db.clone(), writer: writer.clone(), presence, delay };
    // Before the instance takes requests: an event appended meanwhile would fall behind a
    // cursor started later.
    if let Err(err) = start_cursor(&db, &writer).await {
        tracing::warn!(error = %err, "webhooks: cannot start the cursor yet");
    }
    if let Err(err) = away.start_cursor().await {
        tracing::warn!(error = %err, "away: cannot start the cursor yet");
    }
    actix::Arbiter::new().spawn(async move {
        let timeout = Duration::from_secs(bots.webhook_timeout_seconds);
        let client = match outbound::client(bots.allow_private_urls, timeout) {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(error = %err, "webhooks: no HTTP client; webhooks are not called");
                return;
            }
        };
        // The model's URL is the operator's, not a user's: it may well be on this host.
        let model_timeout = Duration::from_secs(assistant.timeout_seconds);
        let model_client = match outbound::client(true, model_timeout) {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(error = %err, "webhooks: no HTTP client; webhooks are not called");
                return;
            }
        };
        let hooks = Arc::new(Hooks {
            db,
            writer,
            away,
            bots,
            assistant,
            client,
            model_client,
            settled: Notify::new(),
        });
        hooks.run(stop).await;
    });
}

struct Hooks {
    db: Db,
    writer: Writer,
    away: away::Planner,
    bots: BotSettings,
    assistant: AssistantSettings,
    client: reqwest::Client,
    model_client: reqwest::Client,
    /// A delivery finished: its bot's next one may be ready now, not at the next tick.
    settled: Notify,
}

#[derive(Debug, FromQueryResult)]
struct Planned {
    event_id: i64,
    message_id: i64,
    bot_id: i64,
}

#[derive(Debug, Clone, FromQueryResult)]
struct Leased {
    id: i64,
    bot_id: i64,
    event_id: i64,
    kind: String,
    message_id: i64,
    attempts: i32,
    away_period: i64,
}

/// What a hook is sent.
#[derive(Serialize)]
struct Delivery<'a> {
    event_id: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    bot_id: i64,
    message: &'a MessageView,
    conversation: &'a ConversationView,
}

/// What a user's assistant bot is sent when a direct message waits for them while away.
#[derive(Serialize)]
struct AwayRequest<'a> {
    event_id: i64,
    #[serde(rename = "type")]
    kind: &'a str,
    bot_id: i64,
    /// The away user the reply is posted as.
    user_id: i64,
    message: &'a MessageView,
    conversation: &'a ConversationView,
    /// The conversation's last 20 messages as the user sees them, oldest first, the
    /// message included.
    messages: &'a [MessageView],
}

enum Outcome {
    /// Answered (2xx), with the reply text if there was one.
    Delivered(Option<String>),
    /// Nothing to deliver any more (the message or the bot is gone).
    Moot,
    Retry {
        after_ms: Option<i64>,
        why: String,
    },
    /// Refused (another 4xx): not retried.
    Refused(String),
}

impl Hooks {
    async fn run(self: Arc<Self>, mut stop: watch::Receiver<()>) {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut next_due = None;
        loop {
            // An away reply falls due at a known time: wake then, not a tick later.
            let wait = next_due.map_or(TICK, |at: time::Timestamp| {
                (at - time::now()).to_std().unwrap_or(Duration::ZERO).clamp(MIN_WAIT, TICK)
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.settled.notified() => {}
                changed = stop.changed() => if changed.is_err() { break },
            }
            loop {
                let planned = self.plan().await.unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "webhooks: planning failed; retrying");
                    0
                });
                let away = self.away.plan().await.unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "away: planning failed; retrying");
                    away::Planned::default()
                });
                next_due = away.next_due;
                drop(slots.acquire().await);
                let leased = self.send_due(&slots).await.unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "webhooks: leasing failed; retrying");
                    0
                });
                if planned < PLAN_BATCH as usize && away.events < PLAN_BATCH as usize && leased == 0 {
                    break;
                }
            }
        }
    }

    /// Plans the deliveries of the events past the cursor; returns how many events it read.
    async fn plan(&self) -> AppResult<usize> {
        let Some(cursor) = queue::cursor(&self.db, CURSOR).await? else {
            start_cursor(&self.db, &self.writer).await?;
            return Ok(0);
        };
        let ids: Vec<i64> = entity::event::Entity::find()
            .select_only()
            .column(entity::event::Column::Id)
            .filter(entity::event::Column::Id.gt(cursor))
            .order_by_asc(entity::event::Column::Id)
            .limit(PLAN_BATCH)
            .into_tuple()
            .all(&self.db.read)
            .await?;
        let Some(&upto) = ids.last() else { return Ok(0) };
        // Members that are bots with a way to answer, of messages not sent by a bot: all
        // of a direct conversation's, a group's only where the message mentions the bot.
        let sql = "SELECT e.id AS event_id, m.id AS message_id, cm.user_id AS bot_id \
                   FROM events e \
                   JOIN messages m ON m.id = e.message_id \
                   JOIN users s ON s.id = m.sender_id \
                   JOIN conversation_members cm ON cm.conversation_id = m.conversation_id \
                     AND cm.user_id <> m.sender_id AND cm.left_event_id IS NULL AND cm.joined_event_id <= e.id \
                   JOIN bots b ON b.user_id = cm.user_id \
                   WHERE e.id > $1 AND e.id <= $2 AND e.kind = 'message_created' AND s.is_bot = $3 \
                     AND (b.kind = 'assistant' OR (b.webhook_url IS NOT NULL AND b.webhook_enabled = $4)) \
                     AND (m.recipient_id IS NOT NULL OR EXISTS \
                       (SELECT 1 FROM mentions mn WHERE mn.message_id = m.id AND mn.user_id = cm.user_id)) \
                   ORDER BY e.id";
        let values = vec![cursor.into(), upto.into(), false.into(), true.into()];
        let planned = Planned::find_by_statement(db::statement(self.db.backend, sql, values))
            .all(&self.db.read)
            .await?;
        let now = time::unix_ms(time::now());
        let rows: Vec<webhook_delivery::ActiveModel> = planned
            .iter()
            .map(|p| webhook_delivery::ActiveModel {
                bot_id: Set(p.bot_id),
                event_id: Set(p.event_id),
                kind: Set("new_message".into()),
                message_id: Set(p.message_id),
                due_at: Set(now),
                lease_until: Set(0),
                lease_token: Set(0),
                attempts: Set(0),
                ..Default::default()
            })
            .collect();
        self.writer
            .write(move |txn| {
                Box::pin(async move {
                    if queue::advance(txn, CURSOR, cursor, upto).await? && !rows.is_empty() {
                        webhook_delivery::Entity::insert_many(rows)
                            .on_conflict_do_nothing_on([
                                webhook_delivery::Column::BotId,
                                webhook_delivery::Column::EventId,
                                webhook_delivery::Column::Kind,
                            ])
                            .exec(txn)
                            .await?;
                    }
                    Ok(((), Vec::new()))
                })
            })
            .await?;
        Ok(ids.len())
    }

    /// Leases each ready bot's oldest delivery and sends it on a task of its own.
    async fn send_due(self: &Arc<Self>, slots: &Arc<Semaphore>) -> AppResult<usize> {
        let free = slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let now = time::unix_ms(time::now());
        // Only a bot's oldest delivery is ever sent: the next waits for it, retries included.
        let sql = "SELECT d.id FROM webhook_deliveries d \
                   JOIN bots b ON b.user_id = d.bot_id \
                   WHERE d.id IN (SELECT MIN(id) FROM webhook_deliveries GROUP BY bot_id) \
                     AND d.due_at <= $1 AND d.lease_until < $1 \
                     AND (b.kind = 'assistant' OR b.webhook_enabled = $2) \
                   ORDER BY d.id LIMIT $3";
        let values = vec![now.into(), true.into(), (free as i64).into()];
        let ids: Vec<i64> = self
            .db
            .read
            .query_all_raw(db::statement(self.db.backend, sql, values))
            .await?
            .iter()
            .filter_map(|row| row.try_get_by_index::<i64>(0).ok())
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let token = rand::random::<i64>() | 1;
        let lease_until = now
            + i64::try_from(self.bots.webhook_timeout_seconds * 1000).unwrap_or(i64::MAX / 4)
            + LEASE_MARGIN_MS;
        queue::lease(&self.writer, "webhook_deliveries", ids.clone(), now, lease_until, token).await?;
        let leased: Vec<Leased> = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::Id.is_in(ids))
            .filter(webhook_delivery::Column::LeaseToken.eq(token))
            .into_model::<Leased>()
            .all(&self.db.read)
            .await?;
        let count = leased.len();
        for delivery in leased {
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let hooks = self.clone();
            actix::spawn(async move {
                let (outcome, bot) = hooks.deliver(&delivery).await;
                if let Err(err) = hooks.settle(&delivery, token, outcome, bot.as_ref()).await {
                    tracing::warn!(error = %err, delivery = delivery.id, "webhooks: cannot record the outcome");
                }
                drop(permit);
                hooks.settled.notify_one();
            });
        }
        Ok(count)
    }

    /// Calls the bot's hook (or its model); also gives the bot, if it still exists.
    async fn deliver(&self, delivery: &Leased) -> (Outcome, Option<bot::Model>) {
        let Ok(Some(bot)) = bot::Entity::find_by_id(delivery.bot_id).one(&self.db.read).await else {
            return (Outcome::Moot, None);
        };
        let outcome = self.call(delivery, &bot).await;
        (outcome, Some(bot))
    }

    async fn call(&self, delivery: &Leased, bot: &bot::Model) -> Outcome {
        let Ok(Some(row)) = message::Entity::find_by_id(delivery.message_id).one(&self.db.read).await else {
            return Outcome::Moot;
        };
        if row.deleted_at.is_some() {
            return Outcome::Moot;
        }
        if delivery.kind == AWAY_REQUEST {
            return self.away_request(delivery, bot, row).await;
        }
        let (message, conversation) = match self.views(bot.user_id, row).await {
            Ok(Some(views)) => views,
            Ok(None) => return Outcome::Moot,
            Err(err) => return Outcome::Retry { after_ms: None, why: err.to_string() },
        };
        if bot.kind == "assistant" {
            let upto = conversations::Window::Before(message.id.saturating_add(1));
            return match self.recent(bot.user_id, message.conversation_id, upto).await {
                Ok(history) => self.ask_model(bot.user_id, &history, None).await,
                Err(outcome) => outcome,
            };
        }
        let body = Delivery {
            event_id: delivery.event_id,
            kind: "new_message",
            bot_id: bot.user_id,
            message: &message,
            conversation: &conversation,
        };
        let Ok(body) = serde_json::to_vec(&body) else { return Outcome::Refused("unserializable".into()) };
        let Some(url) = bot.webhook_url.as_deref() else { return Outcome::Moot };
        self.post(url, &bot.webhook_secret, delivery.event_id, body).await
    }

    /// Asks the owner's assistant bot for an away reply, unless it is no longer wanted (the
    /// owner came back, or changed their setting) or the owner read the message meanwhile.
    async fn away_request(&self, delivery: &Leased, bot: &bot::Model, row: message::Model) -> Outcome {
        let owner = bot.owner_id;
        match self.wanted(delivery, bot).await {
            Ok(true) => {}
            Ok(false) => return Outcome::Moot,
            Err(err) => return Outcome::Retry { after_ms: None, why: err.to_string() },
        }
        let (message, conversation) = match self.views(owner, row).await {
            Ok(Some(views)) => views,
            Ok(None) => return Outcome::Moot,
            Err(err) => return Outcome::Retry { after_ms: None, why: err.to_string() },
        };
        if conversation.last_read_message_id.is_some_and(|read| read >= message.id) {
            return Outcome::Moot;
        }
        // The conversation as it is now: what came after the message counts too.
        let history = match self.recent(owner, message.conversation_id, conversations::Window::Latest).await {
            Ok(history) => history,
            Err(outcome) => return outcome,
        };
        if bot.kind == "assistant" {
            return self.ask_model(owner, &history, Some(AWAY_INSTRUCTION)).await;
        }
        let body = AwayRequest {
            event_id: delivery.event_id,
            kind: AWAY_REQUEST,
            bot_id: bot.user_id,
            user_id: owner,
            message: &message,
            conversation: &conversation,
            messages: &history,
        };
        let Ok(body) = serde_json::to_vec(&body) else { return Outcome::Refused("unserializable".into()) };
        let Some(url) = bot.webhook_url.as_deref() else { return Outcome::Moot };
        self.post(url, &bot.webhook_secret, delivery.event_id, body).await
    }

    /// The away request's owner still wants this bot's answer in this period.
    async fn wanted(&self, delivery: &Leased, bot: &bot::Model) -> AppResult<bool> {
        let presence = &self.away.presence;
        let setting =
            away::still_wanted(&self.db, presence, bot.owner_id, Some(bot.user_id), delivery.away_period)
                .await?;
        Ok(setting.is_some())
    }

    /// The conversation's last messages in `window` as `viewer` sees them, oldest first.
    async fn recent(
        &self,
        viewer: i64,
        conversation: i64,
        window: conversations::Window,
    ) -> Result<Vec<MessageView>, Outcome> {
        let conversation = crate::wire::ConversationId(conversation);
        match conversations::history(&self.db, UserId(viewer), conversation, window, ASSISTANT_CONTEXT).await
        {
            Ok((history, _)) => Ok(history),
            Err(AppError::NotFound { .. }) => Err(Outcome::Moot),
            Err(err) => Err(Outcome::Retry { after_ms: None, why: err.to_string() }),
        }
    }

    /// The message and its conversation as the bot sees them now; `None` once it may not.
    async fn views(
        &self,
        bot_id: i64,
        row: message::Model,
    ) -> AppResult<Option<(MessageView, ConversationView)>> {
        let conversation_id = row.conversation_id;
        let mut conversations =
            conversations::views_by_id(&self.db.read, bot_id, vec![conversation_id]).await?;
        let Some(conversation) = conversations.remove(&conversation_id) else { return Ok(None) };
        let message = views::views(&self.db.read, vec![row]).await?.pop();
        Ok(message.map(|message| (message, conversation)))
    }

    /// The built-in assistant: the conversation's recent messages to an OpenAI-compatible
    /// `chat/completions`, the answer's first choice as the reply. `speaker`'s messages are
    /// the model's own.
    async fn ask_model(&self, speaker: i64, history: &[MessageView], instruction: Option<&str>) -> Outcome {
        let settings = &self.assistant;
        if settings.base_url.is_empty() {
            return Outcome::Refused("assistant.base_url is not set".into());
        }
        let mut messages = vec![serde_json::json!({"role": "system", "content": settings.system_prompt})];
        if let Some(instruction) = instruction {
            messages.push(serde_json::json!({"role": "system", "content": instruction}));
        }
        messages.extend(history.iter().filter(|m| !m.deleted && !m.message.is_empty()).map(|m| {
            let role = if m.sender_id == speaker { "assistant" } else { "user" };
            serde_json::json!({"role": role, "content": m.message})
        }));
        let body = serde_json::json!({"model": settings.model, "messages": messages});
        let url = format!("{}/chat/completions", settings.base_url.trim_end_matches('/'));
        let mut request = self.model_client.post(url).json(&body);
        let key = secrecy::ExposeSecret::expose_secret(&settings.api_key);
        if !key.is_empty() {
            request = request.bearer_auth(key);
        }
        let answer = match request.send().await {
            Ok(answer) => answer,
            Err(err) => return Outcome::Retry { after_ms: None, why: without_url(err) },
        };
        if let Some(failed) = unanswered(&answer, "model: ") {
            return failed;
        }
        match answer.json::<serde_json::Value>().await {
            Ok(completion) => match completion["choices"][0]["message"]["content"].as_str().map(str::trim) {
                Some(text) if !text.is_empty() => Outcome::Delivered(Some(text.to_owned())),
                _ => Outcome::Refused("model: no answer in the completion".into()),
            },
            Err(err) => Outcome::Refused(format!("model: {}", without_url(err))),
        }
    }

    /// POSTs `body`, signed; reads the answer.
    async fn post(&self, url: &str, secret: &str, event_id: i64, body: Vec<u8>) -> Outcome {
        let Ok(parsed) = url::Url::parse(url) else { return Outcome::Refused("not a URL".into()) };
        if !self.bots.allow_private_urls && outbound::literal_inside(&parsed) {
            return Outcome::Refused("an address inside the server's network".into());
        }
        let timestamp = time::now().timestamp();
        let signature = sign(secret, timestamp, &body);
        let sent = self
            .client
            .post(parsed)
            .header("Content-Type", "application/json")
            .header("X-Switchboard-Event-Id", event_id.to_string())
            .header("X-Switchboard-Timestamp", timestamp.to_string())
            .header("X-Switchboard-Signature", format!("v1={signature}"))
            .body(body)
            .send()
            .await;
        let mut answer = match sent {
            Ok(answer) => answer,
            Err(err) => return Outcome::Retry { after_ms: None, why: without_url(err) },
        };
        if let Some(failed) = unanswered(&answer, "") {
            return failed;
        }
        let mut bytes = Vec::new();
        loop {
            match answer.chunk().await {
                Ok(Some(chunk)) => {
                    bytes.extend_from_slice(&chunk);
                    if bytes.len() > MAX_ANSWER_BYTES {
                        tracing::info!(event_id, "webhooks: answer over 64 KiB; taken as no reply");
                        return Outcome::Delivered(None);
                    }
                }
                Ok(None) => break,
                // The 2xx arrived: delivered, whatever became of its body.
                Err(_) => return Outcome::Delivered(None),
            }
        }
        Outcome::Delivered(reply_of(&bytes, event_id))
    }

    /// Records the outcome: posts a reply, reschedules, or deletes the delivery.
    async fn settle(
        &self,
        delivery: &Leased,
        token: i64,
        outcome: Outcome,
        bot: Option<&bot::Model>,
    ) -> AppResult<()> {
        let failed = match &outcome {
            Outcome::Delivered(Some(text)) => {
                if let Err(err) = self.reply(delivery, bot, text).await {
                    if matches!(err, AppError::Unavailable { .. }) {
                        // The database is away: the lease runs out and all of this repeats.
                        return Err(err);
                    }
                    tracing::info!(error = %err, event_id = delivery.event_id, "webhooks: the reply was refused");
                }
                None
            }
            // An away request answered without a reply: the fixed text stands in.
            Outcome::Delivered(None) if delivery.kind == AWAY_REQUEST => {
                Some("no reply in the answer".into())
            }
            Outcome::Delivered(None) | Outcome::Moot => None,
            Outcome::Retry { why, .. } | Outcome::Refused(why) => Some(why.clone()),
        };
        let retry_at = match &outcome {
            Outcome::Retry { after_ms, .. } if (delivery.attempts as usize) <= BACKOFF_MS.len() => {
                Some(time::unix_ms(time::now()) + after_ms.unwrap_or_else(|| backoff_ms(delivery.attempts)))
            }
            _ => None,
        };
        if let (Some(why), None) = (&failed, retry_at) {
            tracing::warn!(bot = delivery.bot_id, event_id = delivery.event_id, %why, "webhooks: delivery given up");
            if let Some(bot) = bot
                && let Err(err) = self.give_up(delivery, bot).await
            {
                tracing::info!(error = %err, event_id = delivery.event_id, "webhooks: the fallback reply was refused");
            }
        }
        let (id, bot_id) = (delivery.id, delivery.bot_id);
        let counts = !matches!(outcome, Outcome::Moot);
        // A 2xx without a reply is the hook working, even where it leaves a gap to fill.
        let hook_failed = matches!(outcome, Outcome::Retry { .. } | Outcome::Refused(_));
        let max = i32::try_from(self.bots.max_consecutive_failures).unwrap_or(i32::MAX);
        let disabled = self
            .writer
            .write(move |txn| {
                Box::pin(async move {
                    let mine = webhook_delivery::Column::Id
                        .eq(id)
                        .and(webhook_delivery::Column::LeaseToken.eq(token));
                    match retry_at {
                        Some(at) => {
                            webhook_delivery::Entity::update_many()
                                .col_expr(webhook_delivery::Column::DueAt, Expr::value(at))
                                .col_expr(webhook_delivery::Column::LeaseUntil, Expr::value(0i64))
                                .filter(mine)
                                .exec(txn)
                                .await?;
                        }
                        None => {
                            webhook_delivery::Entity::delete_many().filter(mine).exec(txn).await?;
                        }
                    }
                    if !counts {
                        return Ok((None, Vec::new()));
                    }
                    if !hook_failed {
                        // The usual case, one statement and no read: a success ends a run of failures.
                        bot::Entity::update_many()
                            .col_expr(bot::Column::Failures, Expr::value(0))
                            .filter(bot::Column::UserId.eq(bot_id))
                            .filter(bot::Column::Failures.ne(0))
                            .exec(txn)
                            .await?;
                        return Ok((None, Vec::new()));
                    }
                    let Some(bot) = bot::Entity::find_by_id(bot_id).one(txn).await? else {
                        return Ok((None, Vec::new()));
                    };
                    let failures = bot.failures.saturating_add(1);
                    let disable = failures >= max && bot.webhook_enabled && bot.kind != "assistant";
                    let owner = bot.owner_id;
                    let mut active: bot::ActiveModel = bot.into();
                    active.failures = Set(failures);
                    if disable {
                        active.webhook_enabled = Set(false);
                    }
                    active.update(txn).await?;
                    Ok((disable.then_some((owner, failed)), Vec::new()))
                })
            })
            .await?;
        if let Some((owner, why)) = disabled {
            self.tell_owner(delivery, owner, why.unwrap_or_default()).await;
        }
        Ok(())
    }

    /// What is posted when a delivery is given up: an assistant's apology, in its own name;
    /// for an away request, the owner's fixed text if they set one (never an apology as
    /// their words).
    async fn give_up(&self, delivery: &Leased, bot: &bot::Model) -> AppResult<()> {
        if delivery.kind != AWAY_REQUEST {
            if bot.kind == "assistant" {
                return self.reply(delivery, Some(bot), ASSISTANT_FAILED).await;
            }
            return Ok(());
        }
        let (db, presence) = (&self.db, &self.away.presence);
        away::fall_back(db, &self.writer, presence, bot.owner_id, delivery.message_id, delivery.away_period)
            .await
    }

    /// Posts the hook's reply as the bot, quoting the message; the `client_id` makes a
    /// repeat of the same delivery answer with the stored reply instead of a second one.
    /// An away request's reply is the owner's, marked, once per away period.
    async fn reply(&self, delivery: &Leased, bot: Option<&bot::Model>, text: &str) -> AppResult<()> {
        let Some(row) = message::Entity::find_by_id(delivery.message_id).one(&self.db.read).await? else {
            return Ok(());
        };
        if delivery.kind == AWAY_REQUEST {
            // The answer took a while: the owner may be back, or have changed their setting.
            let Some(bot) = bot else { return Ok(()) };
            if !self.wanted(delivery, bot).await? {
                return Ok(());
            }
            let marker = Some(bot.user_id);
            return away::reply(&self.writer, bot.owner_id, &row, delivery.away_period, text, marker).await;
        }
        let text: String = text.chars().take(MAX_REPLY_CHARS).collect();
        let client_id = format!("hook-{}-{}", delivery.kind, delivery.event_id);
        let input = NewMessage::new(Target::Conversation(row.conversation_id), &text, Some(client_id), None)?
            .replying_to(Some(row.id));
        messages::send(&self.writer, delivery.bot_id, input).await?;
        Ok(())
    }

    /// A direct message from the bot to its owner: the hook is off, and why.
    async fn tell_owner(&self, delivery: &Leased, owner: i64, why: String) {
        let text = format!(
            "My webhook was disabled after {} failed requests in a row (the last: {why}). \
             Set its URL again (PATCH /api/bots/{}) to turn it back on.",
            self.bots.max_consecutive_failures, delivery.bot_id
        );
        let client_id = format!("hook-disabled-{}", delivery.event_id);
        let sent = match NewMessage::new(Target::User(owner), &text, Some(client_id), None) {
            Ok(input) => messages::send(&self.writer, delivery.bot_id, input).await.map(|_| ()),
            Err(err) => Err(err),
        };
        if let Err(err) = sent {
            tracing::warn!(error = %err, bot = delivery.bot_id, "webhooks: hook disabled; its owner could not be told");
        } else {
            tracing::warn!(bot = delivery.bot_id, %why, "webhooks: hook disabled after failures in a row");
        }
    }
}

/// A new deployment starts at the newest event: history is not delivered.
async fn start_cursor(db: &Db, writer: &Writer) -> AppResult<()> {
    let newest: Option<i64> = entity::event::Entity::find()
        .select_only()
        .column_as(entity::event::Column::Id.max(), "max")
        .into_tuple()
        .one(&db.read)
        .await?
        .flatten();
    queue::start_cursor(writer, CURSOR, newest.unwrap_or(0)).await
}

/// The reply text of a hook's answer: a JSON object with a non-empty string `reply`.
fn reply_of(bytes: &[u8], event_id: i64) -> Option<String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(answer) => answer
            .get("reply")
            .and_then(|reply| reply.as_str())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        Err(_) => {
            tracing::info!(event_id, "webhooks: answer is not JSON; taken as no reply");
            None
        }
    }
}

/// `hex(HMAC-SHA256(secret, "v1:{timestamp}:{body}"))`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(format!("v1:{timestamp}:").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// What a non-2xx answer means: 429 and 5xx are retried (after `Retry-After` if given),
/// other statuses refused; `None` for a 2xx.
fn unanswered(answer: &reqwest::Response, what: &str) -> Option<Outcome> {
    let status = answer.status().as_u16();
    match status {
        200..=299 => None,
        429 | 500..=599 => {
            let after_ms = outbound::retry_after_ms(answer);
            Some(Outcome::Retry { after_ms, why: format!("{what}HTTP {status}") })
        }
        _ => Some(Outcome::Refused(format!("{what}HTTP {status}"))),
    }
}

/// reqwest's error without the URL (it may carry a secret in its query).
fn without_url(err: reqwest::Error) -> String {
    err.without_url().to_string()
}

/// The wait after `attempts` requests, jittered by ±20%.
fn backoff_ms(attempts: i32) -> i64 {
    let index = usize::try_from(attempts.saturating_sub(1)).unwrap_or(0).min(BACKOFF_MS.len() - 1);
    (BACKOFF_MS[index] as f64 * rand::random_range(0.8..=1.2)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_version_timestamp_and_body() {
        // RFC 4231 style check against an independent computation of the same construction.
        let signature = sign("whsec_test", 1_700_000_000, br#"{"a":1}"#);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap_or_else(|_| unreachable!());
        mac.update(br#"v1:1700000000:{"a":1}"#);
        assert_eq!(signature, hex::encode(mac.finalize().into_bytes()));
        assert_eq!(signature.len(), 64);
    }

    #[test]
    fn retries_start_within_five_seconds_and_span_ten_minutes() {
        for _ in 0..100 {
            assert!(backoff_ms(1) <= 5_000);
        }
        // Every wait at its shortest (jitter -20%): still over ten minutes, in 7 attempts.
        let shortest: i64 = BACKOFF_MS.iter().map(|wait| wait * 8 / 10).sum();
        assert!(shortest >= 10 * 60 * 1000, "{shortest} ms");
        assert!(BACKOFF_MS.len() + 1 >= 5, "at least five attempts");
    }

    #[test]
    fn only_a_json_object_with_a_reply_string_is_a_reply() {
        assert_eq!(reply_of(br#"{"reply": " hi "}"#, 1), Some("hi".into()));
        assert_eq!(reply_of(br#"{"reply": ""}"#, 1), None);
        assert_eq!(reply_of(br#"{"reply": 3}"#, 1), None);
        assert_eq!(reply_of(b"ok", 1), None);
        assert_eq!(reply_of(b"", 1), None);
    }
}
