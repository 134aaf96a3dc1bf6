//! The relay: how a persisted event reaches the rooms of its users on every instance.
//!
//! Without Redis, frames go straight to this process's `ChatServer`. With Redis, every frame
//! is published on its user's channel (`{prefix}user:{id}`, see `redis_store`), and each instance subscribes to
//! the channels of the users it holds sessions for, its own included. Why per-user channels:
//! an instance decodes only what its own users receive (with N instances, 1/N of the
//! traffic each instead of all of it), and Redis keeps each channel in publish order.
//!
//! Order and gaps: publishes happen in commit order (the writer holds the cluster-wide event
//! lock until its publish returns), so each user's channel carries that user's events in id
//! order. A Lua script stamps every event with the previous event id published on the same
//! channel; a session that sees a predecessor newer than what it sent knows it missed a
//! publish and catches up from the database before going on. When Redis is unreachable the
//! relay stops publishing (no writer waits on a dead Redis), local users are told to catch up
//! from the database, and every session polls until the subscriber is back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::Addr;
use bytestring::ByteString;
use futures_util::StreamExt;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{mpsc, oneshot};

use super::server::{CatchUp, ChatServer, Deliver, RelayState};
use super::{Frame, UserFrame, UserId};
use crate::metrics;
use crate::redis_store::RedisStore;

/// A publish that takes longer than this counts as failed; writers never wait longer.
const PUBLISH_TIMEOUT: Duration = crate::redis_store::TIMEOUT;
/// How long a user's chain stamp outlives their last event.
const CHAIN_TTL_SECONDS: u64 = 7 * 24 * 3600;
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Publishes `ARGV[2]` (`committed:json`) on `KEYS[2]` prefixed with the previous event id
/// stamped on `KEYS[1]` and the event id: the payload is `prev:event:committed:json`
/// (`-:-:-:json` for ephemeral frames).
const CHAIN_PUBLISH: &str = r"
local prev = redis.call('GET', KEYS[1]) or '0'
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
return redis.call('PUBLISH', KEYS[2], prev .. ':' .. ARGV[1] .. ':' .. ARGV[2])
";

fn stamp(committed_us: Option<u64>) -> String {
    committed_us.map_or_else(|| "-".to_owned(), |us| us.to_string())
}

pub enum Relay {
    Local(Addr<ChatServer>),
    Redis(Arc<RedisRelay>),
}

impl Relay {
    /// Hands frames to every instance. Called in commit order.
    pub async fn publish(&self, frames: Vec<UserFrame>) {
        match self {
            Relay::Local(chat) => chat.do_send(Deliver { frames }),
            Relay::Redis(relay) => relay.publish(frames).await,
        }
    }

    pub fn redis(&self) -> Option<&Arc<RedisRelay>> {
        match self {
            Relay::Local(_) => None,
            Relay::Redis(relay) => Some(relay),
        }
    }
}

/// What `ChatServer` asks of the subscriber as rooms come and go.
pub enum SubscriberCommand {
    Subscribe { user_id: UserId, subscribed: oneshot::Sender<bool> },
    Unsubscribe { user_id: UserId },
}

/// The relay's counters, registered in its instance's metrics.
pub struct RelayCounters {
    pub published: IntCounter,
    pub publish_errors: IntCounter,
    pub received: IntCounter,
    pub reconnects: IntCounter,
    pub up: IntGauge,
}

impl RelayCounters {
    pub fn new(instance: &metrics::Instance) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str| {
            let counter = IntCounter::new(name, help)?;
            instance.register(Box::new(counter.clone()))?;
            Ok::<_, prometheus::Error>(counter)
        };
        let up = IntGauge::new("switchboard_relay_up", "1 while live relay through Redis works.")?;
        instance.register(Box::new(up.clone()))?;
        Ok(Self {
            published: counter("switchboard_relay_published_total", "Frames published to Redis.")?,
            publish_errors: counter(
                "switchboard_relay_publish_errors_total",
                "Redis publishes that failed or timed out.",
            )?,
            received: counter("switchboard_relay_received_total", "Messages received from Redis.")?,
            reconnects: counter(
                "switchboard_relay_subscriptions_total",
                "Times the Redis subscriber (re)connected.",
            )?,
            up,
        })
    }
}

pub struct RedisRelay {
    store: Arc<RedisStore>,
    chat: Addr<ChatServer>,
    /// False while Redis is known to be unreachable: publishing is skipped until it is back.
    healthy: AtomicBool,
    /// A publish was skipped or failed: other instances must catch up once Redis is back.
    resync_pending: AtomicBool,
    pub counters: RelayCounters,
}

impl RedisRelay {
    /// Builds the publisher and starts the subscriber task (on the current actix arbiter).
    pub fn start(
        store: Arc<RedisStore>,
        chat: Addr<ChatServer>,
        receiver: mpsc::UnboundedReceiver<SubscriberCommand>,
        counters: RelayCounters,
    ) -> Arc<Self> {
        let relay = Arc::new(Self {
            store,
            chat,
            healthy: AtomicBool::new(false),
            resync_pending: AtomicBool::new(false),
            counters,
        });
        actix::spawn(subscribe_loop(relay.clone(), receiver));
        relay
    }

    pub fn store(&self) -> &Arc<RedisStore> {
        &self.store
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn user_channel(&self, user_id: UserId) -> String {
        self.store.keys.user_channel(user_id.0)
    }

    fn resync_channel(&self) -> String {
        self.store.keys.resync_channel()
    }

    async fn publish(&self, frames: Vec<UserFrame>) {
        if frames.is_empty() {
            return;
        }
        if self.is_healthy() {
            match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_now(&frames)).await {
                Ok(Ok(())) => {
                    self.counters.published.inc_by(frames.len() as u64);
                    return;
                }
                Ok(Err(err)) => self.publish_failed(&err),
                Err(_) => self.publish_failed("timed out"),
            }
        }
        self.fall_back(frames);
    }

    async fn publish_now(&self, frames: &[UserFrame]) -> Result<(), String> {
        let mut conn = self.store.connection().await.ok_or("no connection within the timeout")?;
        let mut pipe = redis::pipe();
        for UserFrame { user_id, frame } in frames {
            let channel = self.user_channel(*user_id);
            match frame.event_id {
                Some(event_id) => {
                    pipe.cmd("EVAL")
                        .arg(CHAIN_PUBLISH)
                        .arg(2)
                        .arg(self.store.keys.chain(user_id.0))
                        .arg(channel)
                        .arg(event_id)
                        .arg(format!("{}:{}", stamp(frame.committed_us), frame.text))
                        .arg(CHAIN_TTL_SECONDS)
                        .ignore();
                }
                None => {
                    pipe.cmd("PUBLISH").arg(channel).arg(format!("-:-:-:{}", frame.text)).ignore();
                }
            }
        }
        if self.resync_pending.swap(false, Ordering::Relaxed) {
            pipe.cmd("PUBLISH").arg(self.resync_channel()).arg("resync").ignore();
        }
        pipe.query_async::<()>(&mut conn).await.map_err(|err| err.to_string())
    }

    /// Opens the circuit: until the subscriber is back, nothing waits on Redis.
    fn publish_failed(&self, err: &str) {
        self.counters.publish_errors.inc();
        self.resync_pending.store(true, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %err, "redis publish failed; relaying locally until redis is back");
        }
    }

    /// Local users catch up from the database, which keeps their events in commit order;
    /// frames without an event id (typing, presence) are only worth sending live.
    fn fall_back(&self, frames: Vec<UserFrame>) {
        self.resync_pending.store(true, Ordering::Relaxed);
        let mut users = HashSet::new();
        let mut ephemeral = Vec::new();
        for user_frame in frames {
            if user_frame.frame.event_id.is_some() {
                users.insert(user_frame.user_id);
            } else {
                ephemeral.push(user_frame);
            }
        }
        if !ephemeral.is_empty() {
            self.chat.do_send(Deliver { frames: ephemeral });
        }
        self.chat.do_send(CatchUp { users: Some(users.into_iter().collect()) });
    }

    fn parse(&self, message: &redis::Msg) -> Option<UserFrame> {
        let user_id = UserId(self.store.keys.user_of_channel(message.get_channel_name())?);
        let payload = std::str::from_utf8(message.get_payload_bytes()).ok()?;
        let (prev, rest) = payload.split_once(':')?;
        let (event_id, rest) = rest.split_once(':')?;
        let (committed_us, json) = rest.split_once(':')?;
        Some(UserFrame {
            user_id,
            frame: Frame {
                event_id: event_id.parse().ok(),
                prev_event_id: prev.parse().ok(),
                committed_us: committed_us.parse().ok(),
                text: ByteString::from(json.to_owned()),
            },
        })
    }
}

/// Keeps one subscription connection: (re)connects with backoff, resubscribes every channel
/// this instance needs, and tells `ChatServer` when live relay is up or down.
async fn subscribe_loop(relay: Arc<RedisRelay>, mut commands: mpsc::UnboundedReceiver<SubscriberCommand>) {
    let mut wanted: HashSet<UserId> = HashSet::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected =
            match tokio::time::timeout(PUBLISH_TIMEOUT * 4, relay.store.client().get_async_pubsub()).await {
                Ok(Ok(pubsub)) => Some(pubsub),
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, "redis subscriber cannot connect");
                    None
                }
                Err(_) => None,
            };
        if let Some(pubsub) = connected {
            match relay.serve(pubsub, &mut wanted, &mut commands).await {
                Served::Closed => return,
                Served::Subscribed => backoff = Duration::from_millis(100),
                Served::Failed => {}
            }
            relay.healthy.store(false, Ordering::Relaxed);
            relay.resync_pending.store(true, Ordering::Relaxed);
            relay.chat.do_send(RelayState { up: false });
        }
        if !wait_answering(backoff, &mut wanted, &mut commands).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How a subscription connection ended.
enum Served {
    /// It subscribed, relayed, then lost the connection.
    Subscribed,
    /// It could not subscribe.
    Failed,
    /// The instance is stopping.
    Closed,
}

impl RedisRelay {
    /// Subscribes `wanted` and the resync channel, then relays messages to `ChatServer` and
    /// follows rooms as they come and go, until the connection is lost.
    async fn serve(
        &self,
        pubsub: redis::aio::PubSub,
        wanted: &mut HashSet<UserId>,
        commands: &mut mpsc::UnboundedReceiver<SubscriberCommand>,
    ) -> Served {
        let (mut sink, mut stream) = pubsub.split();
        let mut channels: Vec<String> = wanted.iter().map(|user| self.user_channel(*user)).collect();
        channels.push(self.resync_channel());
        for chunk in channels.chunks(1000) {
            if sink.subscribe(chunk).await.is_err() {
                return Served::Failed;
            }
        }
        self.counters.reconnects.inc();
        self.healthy.store(true, Ordering::Relaxed);
        tracing::info!(channels = channels.len(), "redis relay subscribed");
        // Everyone catches up on what was published while we were away.
        self.chat.do_send(RelayState { up: true });
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        self.counters.received.inc();
                        if message.get_channel_name() == self.resync_channel() {
                            self.chat.do_send(CatchUp { users: None });
                        } else if let Some(user_frame) = self.parse(&message) {
                            self.chat.do_send(Deliver { frames: vec![user_frame] });
                        }
                    }
                    None => break,
                },
                command = commands.recv() => match command {
                    Some(SubscriberCommand::Subscribe { user_id, subscribed }) => {
                        wanted.insert(user_id);
                        let ok = sink.subscribe(self.user_channel(user_id)).await.is_ok();
                        let _ = subscribed.send(ok);
                    }
                    Some(SubscriberCommand::Unsubscribe { user_id }) => {
                        wanted.remove(&user_id);
                        let _ = sink.unsubscribe(self.user_channel(user_id)).await;
                    }
                    None => return Served::Closed,
                },
            }
        }
        tracing::warn!("redis relay connection lost; sessions poll the database until it is back");
        Served::Subscribed
    }
}

/// Waits before the next attempt, answering subscriptions meanwhile so no socket waits.
/// False when the instance is stopping.
async fn wait_answering(
    backoff: Duration,
    wanted: &mut HashSet<UserId>,
    commands: &mut mpsc::UnboundedReceiver<SubscriberCommand>,
) -> bool {
    let sleep = tokio::time::sleep(backoff);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return true,
            command = commands.recv() => match command {
                Some(SubscriberCommand::Subscribe { user_id, subscribed }) => {
                    wanted.insert(user_id);
                    let _ = subscribed.send(false);
                }
                Some(SubscriberCommand::Unsubscribe { user_id }) => {
                    wanted.remove(&user_id);
                }
                None => return false,
            },
        }
    }
}
