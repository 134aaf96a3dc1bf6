//! The push sender, on a thread of its own so that neither the request path nor the writer
//! waits for a push service.
//!
//! Two steps, both safe to run on every instance at once:
//! - **Plan.** Messages whose commit is `push.delay_seconds` old are read past a cursor kept
//!   in `server_keys`. For each member who has not read the message, whose settings allow
//!   it, and who has no live socket anywhere (presence), one `push_deliveries` row per
//!   subscription is written in the same transaction that moves the cursor, compare-and-set:
//!   one instance plans each message, and a plan is never half-written.
//! - **Send.** Due rows are leased (a token and an expiry), sent, and deleted once the push
//!   service has them; a row whose instance died mid-send is taken again when its lease
//!   expires. A push service that answers slowly or not at all holds a lease, never a message.
//!
//! So a push is sent at least once, and twice only if an instance dies between the push
//! service's answer and the commit that deletes the row; the repeat carries the same `Topic`,
//! so a push service still holding the first replaces it rather than showing both.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use entity::member::Notify;
use entity::{message, push_delivery, push_subscription};
use futures_util::future::join_all;
use sea_orm::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ExprTrait, FromQueryResult, QueryOrder, QuerySelect, Set};
use tokio::sync::{Semaphore, watch};

use super::VapidKeys;
use super::payload::{self, Payload, Sender as PayloadSender, Signatures, Target};
use crate::config::PushSettings;
use crate::db::{self, Db};
use crate::domain::events::queue;
use crate::domain::events::writer::Writer;
use crate::error::AppResult;
use crate::metrics;
use crate::outbound;
use crate::realtime::presence::Presence;
use crate::time::{self, Timestamp};
use crate::wire::UserId;

/// The `server_keys` row holding the last message id planned.
const CURSOR: &str = "push_cursor";
/// How often an idle sender looks for new messages and due retries.
const TICK: Duration = Duration::from_millis(200);
/// The shortest wait between passes: messages falling due meanwhile are planned together.
/// Waking for each one as it fell due (every 2 ms at 500 messages/s) cost 0.37 cores of
/// reads and cursor writes with no subscription anywhere.
const MIN_WAIT: Duration = Duration::from_millis(50);
/// Messages planned per transaction.
const PLAN_BATCH: u64 = 512;
/// Requests in flight per instance: enough that a few push services answering slowly do not
/// hold up the others.
const IN_FLIGHT: usize = 256;
/// A push service's whole answer, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lease outlives a request that never answers.
const LEASE_MS: i64 = 30_000;
/// Requests per push before it is given up: about four minutes of retries.
const MAX_ATTEMPTS: i32 = 8;
/// The first retry's delay; each later one doubles, with jitter.
const BACKOFF_BASE_MS: f64 = 2_000.0;
const BACKOFF_CAP_MS: f64 = 600_000.0;
/// A push older than this is dropped: the push service would not keep it either.
const EXPIRES_MS: i64 = 24 * 60 * 60 * 1000;

pub struct PushSender {
    db: Db,
    writer: Writer,
    presence: Arc<Presence>,
    signatures: Signatures,
    settings: PushSettings,
}

/// Starts the sender on its own thread. It stops when `stop`'s sender is dropped (the
/// instance stopped); what it had not sent waits in the database for another instance or
/// the next start.
pub async fn start(
    db: Db,
    writer: Writer,
    presence: Arc<Presence>,
    keys: VapidKeys,
    settings: PushSettings,
    stop: watch::Receiver<()>,
) {
    let signatures = Signatures::new(keys, settings.subject.clone());
    let sender = PushSender { db, writer, presence, signatures, settings };
    // Before the instance takes requests: a message sent meanwhile would fall behind a
    // cursor started later.
    if let Err(err) = sender.start_cursor().await {
        tracing::warn!(error = %err, "push: cannot start the cursor yet");
    }
    actix::Arbiter::new().spawn(async move {
        let client = match outbound::client(sender.settings.allow_insecure_endpoints, REQUEST_TIMEOUT) {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(error = %err, "push: no HTTP client; pushes are not sent");
                return;
            }
        };
        Arc::new(sender).run(client, stop).await;
    });
}

/// A delivery leased by this instance, with what its push needs.
#[derive(Debug, FromQueryResult)]
struct Leased {
    id: i64,
    attempts: i32,
    message_id: i64,
    subscription_id: i64,
    endpoint: String,
    p256dh: String,
    auth: String,
    conversation_id: i64,
    body: String,
    created_at: Timestamp,
    deleted_at: Option<Timestamp>,
    sender_id: i64,
    username: String,
    display_name: String,
    /// Null once the member has left (or the row is gone).
    last_read_message_id: Option<i64>,
    left_event_id: Option<i64>,
}

/// A member who may get a push for a message, before settings and presence are checked.
#[derive(Debug, FromQueryResult)]
struct Candidate {
    message_id: i64,
    user_id: i64,
    subscription_id: i64,
    notify: Notify,
    muted_until: Option<Timestamp>,
    mentioned: Option<i64>,
}

/// What one planning pass did.
#[derive(Default)]
struct Planned {
    /// Messages planned.
    messages: usize,
    /// When the oldest message not yet due falls due.
    next_due: Option<Timestamp>,
}

enum Outcome {
    /// The push service has it.
    Sent,
    /// Nothing to send any more: the message was read, deleted, or is too old.
    Moot,
    /// 404 or 410: the subscription is gone.
    Gone,
    /// 429, 5xx, a timeout or a connection error.
    Retry { after_ms: Option<i64> },
    /// Refused for good (413, another 4xx, a URL inside the network): logged, dropped.
    Failed,
}

impl PushSender {
    async fn run(self: Arc<Self>, client: reqwest::Client, mut stop: watch::Receiver<()>) {
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut next_due = None;
        loop {
            // The next message falls due at a known time: wake then, not a tick later.
            let wait = next_due.map_or(TICK, |at: Timestamp| {
                (at - time::now()).to_std().unwrap_or(Duration::ZERO).clamp(MIN_WAIT, TICK)
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = stop.changed() => if changed.is_err() { break },
            }
            // Catch up without waiting for the next tick while there is a backlog.
            loop {
                let planned = self.plan().await.unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "push: planning failed; retrying");
                    Planned::default()
                });
                next_due = planned.next_due;
                // Every slot busy: the next push to finish frees one.
                drop(slots.acquire().await);
                let leased = self.send_due(&client, &slots).await.unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "push: leasing failed; retrying");
                    0
                });
                if planned.messages < PLAN_BATCH as usize && leased == 0 {
                    break;
                }
            }
        }
    }

    /// A new deployment starts its cursor at the newest message: history is not pushed.
    async fn start_cursor(&self) -> AppResult<()> {
        let newest: Option<i64> = message::Entity::find()
            .select_only()
            .column_as(message::Column::Id.max(), "max")
            .into_tuple()
            .one(&self.db.read)
            .await?
            .flatten();
        queue::start_cursor(&self.writer, CURSOR, newest.unwrap_or(0)).await
    }

    /// Plans the pushes of messages now `delay_seconds` old.
    async fn plan(&self) -> AppResult<Planned> {
        let Some(cursor) = queue::cursor(&self.db, CURSOR).await? else {
            self.start_cursor().await?;
            return Ok(Planned::default());
        };
        let delay =
            chrono::Duration::seconds(i64::try_from(self.settings.delay_seconds).unwrap_or(i64::MAX / 1000));
        let cutoff = time::now() - delay;
        let pending: Vec<(i64, Timestamp)> = message::Entity::find()
            .select_only()
            .column(message::Column::Id)
            .column(message::Column::CreatedAt)
            .filter(message::Column::Id.gt(cursor))
            .order_by_asc(message::Column::Id)
            .limit(PLAN_BATCH)
            .into_tuple()
            .all(&self.db.read)
            .await?;
        let due = pending.iter().take_while(|(_, at)| *at <= cutoff).count();
        let next_due = pending.get(due).map(|(_, at)| *at + delay);
        let Some(upto) = due.checked_sub(1).map(|last| pending[last].0) else {
            return Ok(Planned { messages: 0, next_due });
        };
        let now = time::now();
        let mut wanted: Vec<Candidate> = self
            .candidates(cursor, upto)
            .await?
            .into_iter()
            .filter(|c| c.muted_until.is_none_or(|until| until <= now))
            .filter(|c| match c.notify {
                Notify::All => true,
                Notify::Mentions => c.mentioned.is_some(),
                Notify::None => false,
            })
            .collect();
        let users: Vec<i64> = wanted.iter().map(|c| c.user_id).collect::<HashSet<_>>().into_iter().collect();
        let online = join_all(users.iter().map(|user| self.presence.is_online(UserId(*user)))).await;
        let online: HashSet<i64> =
            users.iter().zip(online).filter(|(_, online)| *online).map(|(user, _)| *user).collect();
        wanted.retain(|c| !online.contains(&c.user_id));
        let due_at = time::unix_ms(now);
        let rows: Vec<push_delivery::ActiveModel> = wanted
            .iter()
            .map(|c| push_delivery::ActiveModel {
                message_id: Set(c.message_id),
                subscription_id: Set(c.subscription_id),
                due_at: Set(due_at),
                lease_until: Set(0),
                lease_token: Set(0),
                attempts: Set(0),
                ..Default::default()
            })
            .collect();
        let moved = self
            .writer
            .write(move |txn| {
                Box::pin(async move {
                    if !queue::advance(txn, CURSOR, cursor, upto).await? {
                        // Another instance planned these first.
                        return Ok((false, Vec::new()));
                    }
                    for chunk in rows.chunks(db::MAX_ROWS_PER_STATEMENT) {
                        push_delivery::Entity::insert_many(chunk.to_vec())
                            .on_conflict_do_nothing_on([
                                push_delivery::Column::MessageId,
                                push_delivery::Column::SubscriptionId,
                            ])
                            .exec(txn)
                            .await?;
                    }
                    Ok((true, Vec::new()))
                })
            })
            .await?;
        if !moved {
            return Ok(Planned { messages: 0, next_due });
        }
        tracing::debug!(from = cursor, to = upto, pushes = wanted.len(), "push: planned");
        Ok(Planned { messages: due, next_due })
    }

    /// Members of the messages in `(after, upto]` who have a subscription and have not read
    /// the message, with their settings for it.
    async fn candidates(&self, after: i64, upto: i64) -> AppResult<Vec<Candidate>> {
        let sql = "SELECT m.id AS message_id, cm.user_id, s.id AS subscription_id, cm.notify, \
                   cm.muted_until, mn.user_id AS mentioned \
                   FROM messages m \
                   JOIN conversation_members cm ON cm.conversation_id = m.conversation_id \
                   JOIN push_subscriptions s ON s.user_id = cm.user_id \
                   LEFT JOIN mentions mn ON mn.message_id = m.id AND mn.user_id = cm.user_id \
                   WHERE m.id > $1 AND m.id <= $2 AND m.deleted_at IS NULL \
                   AND cm.user_id <> m.sender_id AND cm.left_event_id IS NULL \
                   AND cm.last_read_message_id < m.id";
        let statement = db::statement(self.db.backend, sql, vec![after.into(), upto.into()]);
        Ok(Candidate::find_by_statement(statement).all(&self.db.read).await?)
    }

    /// Leases due deliveries for the free slots and sends each on a task of its own;
    /// returns how many it leased.
    async fn send_due(
        self: &Arc<Self>,
        client: &reqwest::Client,
        slots: &Arc<Semaphore>,
    ) -> AppResult<usize> {
        let free = slots.available_permits();
        if free == 0 {
            return Ok(0);
        }
        let leased = self.lease(free as u64).await?;
        let count = leased.len();
        for delivery in leased {
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let (sender, client) = (self.clone(), client.clone());
            actix::spawn(async move {
                let outcome = sender.send(&client, &delivery).await;
                if let Err(err) = sender.settle(&delivery, outcome).await {
                    // The lease runs out and the push is taken again.
                    tracing::warn!(error = %err, delivery = delivery.0.id, "push: cannot record the outcome");
                }
                drop(permit);
            });
        }
        Ok(count)
    }

    async fn lease(&self, limit: u64) -> AppResult<Vec<(Leased, i64)>> {
        let now = time::unix_ms(time::now());
        let ids: Vec<i64> = push_delivery::Entity::find()
            .select_only()
            .column(push_delivery::Column::Id)
            .filter(push_delivery::Column::DueAt.lte(now))
            .filter(push_delivery::Column::LeaseUntil.lt(now))
            .order_by_asc(push_delivery::Column::DueAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db.read)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let token = rand::random::<i64>() | 1;
        queue::lease(&self.writer, "push_deliveries", ids.clone(), now, now + LEASE_MS, token).await?;
        let ids = db::padded(ids);
        let sql = format!(
            "SELECT d.id, d.attempts, d.message_id, d.subscription_id, s.endpoint, s.p256dh, s.auth, \
             m.conversation_id, m.body, m.created_at, m.deleted_at, u.id AS sender_id, u.username, \
             u.display_name, cm.last_read_message_id, cm.left_event_id \
             FROM push_deliveries d \
             JOIN push_subscriptions s ON s.id = d.subscription_id \
             JOIN messages m ON m.id = d.message_id \
             JOIN users u ON u.id = m.sender_id \
             LEFT JOIN conversation_members cm \
               ON cm.conversation_id = m.conversation_id AND cm.user_id = s.user_id \
             WHERE d.lease_token = $1 AND d.id IN ({})",
            db::placeholders(2, ids.len())
        );
        let mut values: Vec<sea_orm::Value> = vec![token.into()];
        values.extend(ids.into_iter().map(Into::into));
        let statement = db::statement(self.db.backend, &sql, values);
        let leased = Leased::find_by_statement(statement).all(&self.db.read).await?;
        Ok(leased.into_iter().map(|row| (row, token)).collect())
    }

    async fn send(&self, client: &reqwest::Client, (row, _): &(Leased, i64)) -> Outcome {
        let read = row.last_read_message_id.is_none_or(|read| read >= row.message_id);
        let expired = time::unix_ms(time::now()) - time::unix_ms(row.created_at) > EXPIRES_MS;
        if row.deleted_at.is_some() || row.left_event_id.is_some() || read || expired {
            return Outcome::Moot;
        }
        let Ok(url) = url::Url::parse(&row.endpoint) else { return Outcome::Failed };
        if !self.settings.allow_insecure_endpoints && outbound::literal_inside(&url) {
            tracing::warn!(subscription = row.subscription_id, "push: endpoint inside the network; not sent");
            return Outcome::Failed;
        }
        let sender = PayloadSender {
            id: row.sender_id,
            username: row.username.clone(),
            display_name: row.display_name.clone(),
        };
        let payload = Payload::new_message(
            row.conversation_id,
            row.message_id,
            sender,
            &row.body,
            self.settings.include_preview,
        );
        let Ok(json) = serde_json::to_vec(&payload) else { return Outcome::Failed };
        let target = Target { endpoint: &row.endpoint, p256dh: &row.p256dh, auth: &row.auth };
        let request = match payload::seal(&self.signatures, &target, &json) {
            Ok(request) => request,
            Err(err) => {
                tracing::warn!(error = %err, subscription = row.subscription_id, "push: cannot encrypt");
                return Outcome::Failed;
            }
        };
        let mut builder = client.post(url).body(request.body);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        // A repeat of the same push replaces the first at a push service still holding it.
        builder = builder.header("Topic", format!("m{}", row.message_id));
        let answer = match builder.send().await {
            Ok(answer) => answer,
            Err(err) => {
                tracing::info!(error = %err, subscription = row.subscription_id, "push: no answer; will retry");
                return Outcome::Retry { after_ms: None };
            }
        };
        let status = answer.status().as_u16();
        match status {
            200..=299 => Outcome::Sent,
            404 | 410 => Outcome::Gone,
            429 => Outcome::Retry { after_ms: outbound::retry_after_ms(&answer) },
            500..=599 => Outcome::Retry { after_ms: outbound::retry_after_ms(&answer) },
            413 => {
                tracing::error!(subscription = row.subscription_id, "push: payload too large (413); dropped");
                Outcome::Failed
            }
            _ => {
                tracing::warn!(status, subscription = row.subscription_id, "push: refused; dropped");
                Outcome::Failed
            }
        }
    }

    /// Records what became of a leased delivery, if this instance still holds its lease.
    async fn settle(&self, (row, token): &(Leased, i64), outcome: Outcome) -> AppResult<()> {
        let (id, token, subscription) = (row.id, *token, row.subscription_id);
        let retry_at = match outcome {
            Outcome::Retry { after_ms } if row.attempts < MAX_ATTEMPTS => {
                Some(time::unix_ms(time::now()) + after_ms.unwrap_or_else(|| backoff_ms(row.attempts)))
            }
            _ => None,
        };
        let gone = matches!(outcome, Outcome::Gone);
        self.writer
            .write(move |txn| {
                Box::pin(async move {
                    let mine =
                        push_delivery::Column::Id.eq(id).and(push_delivery::Column::LeaseToken.eq(token));
                    if let Some(at) = retry_at {
                        push_delivery::Entity::update_many()
                            .col_expr(push_delivery::Column::DueAt, Expr::value(at))
                            .col_expr(push_delivery::Column::LeaseUntil, Expr::value(0i64))
                            .filter(mine)
                            .exec(txn)
                            .await?;
                    } else if gone {
                        push_delivery::Entity::delete_many()
                            .filter(push_delivery::Column::SubscriptionId.eq(subscription))
                            .exec(txn)
                            .await?;
                        push_subscription::Entity::delete_by_id(subscription).exec(txn).await?;
                    } else {
                        push_delivery::Entity::delete_many().filter(mine).exec(txn).await?;
                    }
                    Ok(((), Vec::new()))
                })
            })
            .await?;
        metrics::record(|m| match outcome {
            Outcome::Sent => m.push_sent.inc(),
            Outcome::Gone => m.push_removed.inc(),
            Outcome::Failed => m.push_failed.inc(),
            Outcome::Retry { .. } if retry_at.is_none() => m.push_failed.inc(),
            Outcome::Retry { .. } | Outcome::Moot => {}
        });
        if matches!(outcome, Outcome::Retry { .. }) && retry_at.is_none() {
            tracing::warn!(subscription, attempts = row.attempts, "push: gave up after retries");
        }
        Ok(())
    }
}

/// The wait after `attempts` requests: doubling from two seconds, jittered down by up to
/// half so that a push service's outage does not end in a stampede.
fn backoff_ms(attempts: i32) -> i64 {
    let exponent = attempts.clamp(1, 20) - 1;
    let full = (BACKOFF_BASE_MS * 2f64.powi(exponent)).min(BACKOFF_CAP_MS);
    (full * rand::random_range(0.5..=1.0)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_jitter_and_is_capped() {
        for attempts in 1..=12 {
            let full = (BACKOFF_BASE_MS * 2f64.powi(attempts - 1)).min(BACKOFF_CAP_MS) as i64;
            let wait = backoff_ms(attempts);
            assert!(wait >= full / 2 && wait <= full, "attempt {attempts}: {wait} of {full}");
        }
        assert!(backoff_ms(1) <= 2_000, "the first retry within two seconds");
    }
}
