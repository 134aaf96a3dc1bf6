//! Presence: who is online, and where. Without Redis it lives in this process's memory.
//! With Redis, in the `instance`, `presence`, `sessions` and `last_seen` keys of
//! `redis_store`, which admins read with `redis-cli` (see the README).
//!
//! A user is online while some instance whose heartbeat key exists holds a session of
//! theirs. An instance killed without cleanup stops refreshing its heartbeat, so its users
//! read offline within one TTL; a janitor on a live instance then removes its leftovers and
//! tells those users' contacts that they went offline.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Mutex, mpsc};

use super::port::Domain;
use super::relay::Relay;
use super::{UserFrame, UserId};
use crate::redis_store::RedisStore;
use crate::time::{self, Timestamp};
use crate::wire::frames::ServerFrame;

/// Sent by `ChatServer` whenever a user's number of sessions on this instance changes.
#[derive(Debug, Clone, Copy)]
pub struct SessionCount {
    pub user_id: UserId,
    pub sessions: usize,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PresenceView {
    pub user_id: i64,
    pub status: &'static str,
    #[serde(serialize_with = "time::option::serialize")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<Timestamp>,
}

pub struct Presence {
    instance_id: String,
    ttl: Duration,
    /// This instance's users and their session counts.
    local: Mutex<HashMap<UserId, usize>>,
    /// Without Redis: when each user was last seen.
    last_seen: Mutex<HashMap<UserId, Timestamp>>,
    redis: Option<Arc<RedisStore>>,
    /// Set on a clean stop: the heartbeat must not bring the keys back.
    stopped: std::sync::atomic::AtomicBool,
}

impl Presence {
    pub fn new(instance_id: String, ttl_seconds: u64, redis: Option<Arc<RedisStore>>) -> Arc<Self> {
        Arc::new(Self {
            instance_id,
            ttl: Duration::from_secs(ttl_seconds),
            local: Mutex::new(HashMap::new()),
            last_seen: Mutex::new(HashMap::new()),
            redis,
            stopped: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether `user_id` has a session on any live instance (with Redis unreachable: on
    /// this one).
    pub async fn is_online(&self, user_id: UserId) -> bool {
        if self.local.lock().await.get(&user_id).is_some_and(|n| *n > 0) {
            return true;
        }
        let Some(store) = &self.redis else { return false };
        let Some(mut conn) = store.connection().await else { return false };
        online_elsewhere(store, &mut conn, user_id).await.unwrap_or(false)
    }

    /// Whether `user_id` is online, and when last seen if not, for decisions that must
    /// not be taken blind: `None` while Redis is configured but does not answer.
    pub async fn state(&self, user_id: UserId) -> Option<(bool, Option<Timestamp>)> {
        if self.local.lock().await.get(&user_id).is_some_and(|n| *n > 0) {
            return Some((true, None));
        }
        let Some(store) = &self.redis else {
            return Some((false, self.last_seen.lock().await.get(&user_id).copied()));
        };
        let mut conn = store.connection().await?;
        if online_elsewhere(store, &mut conn, user_id).await.ok()? {
            return Some((true, None));
        }
        Some((false, stored_last_seen(store, &mut conn, user_id).await.ok()?))
    }

    pub async fn view(&self, user_id: UserId) -> PresenceView {
        let unknown = PresenceView { user_id: user_id.0, status: "offline", last_seen: None };
        self.views(&[user_id]).await.pop().unwrap_or(unknown)
    }

    /// Each user's presence, in three Redis round trips at most however many they are (a
    /// group's members list). Online users were last seen now; users whose presence cannot
    /// be read (Redis not answering) read as this instance knows them.
    pub async fn views(&self, users: &[UserId]) -> Vec<PresenceView> {
        if users.is_empty() {
            return Vec::new();
        }
        let now = time::now();
        let local: Vec<bool> = {
            let local = self.local.lock().await;
            users.iter().map(|user| local.get(user).is_some_and(|n| *n > 0)).collect()
        };
        let (online, last_seen) = match &self.redis {
            Some(store) => match store.connection().await {
                Some(mut conn) => {
                    redis_views(store, &mut conn, users, local.clone()).await.unwrap_or((local, Vec::new()))
                }
                None => (local, Vec::new()),
            },
            None => {
                let seen = self.last_seen.lock().await;
                let last_seen = users.iter().map(|user| seen.get(user).copied()).collect();
                (local, last_seen)
            }
        };
        users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let online = online.get(i).copied().unwrap_or(false);
                PresenceView {
                    user_id: user.0,
                    status: if online { "online" } else { "offline" },
                    last_seen: if online { Some(now) } else { last_seen.get(i).copied().flatten() },
                }
            })
            .collect()
    }

    async fn last_seen(&self, user_id: UserId) -> Option<Timestamp> {
        if let Some(store) = &self.redis {
            let mut conn = store.connection().await?;
            return stored_last_seen(store, &mut conn, user_id).await.ok()?;
        }
        self.last_seen.lock().await.get(&user_id).copied()
    }

    /// Records a local change; returns the user's new global status if it changed.
    async fn apply(&self, change: SessionCount) -> Option<bool> {
        let before = self.is_online(change.user_id).await;
        {
            let mut local = self.local.lock().await;
            if change.sessions == 0 {
                local.remove(&change.user_id);
            } else {
                local.insert(change.user_id, change.sessions);
            }
        }
        let now = time::now();
        if change.sessions == 0 {
            self.last_seen.lock().await.insert(change.user_id, now);
        }
        if let Some(store) = &self.redis
            && let Some(mut conn) = store.connection().await
        {
            let user = change.user_id.0;
            let ttl = self.ttl.as_secs() * 2;
            let mut pipe = redis::pipe();
            if change.sessions > 0 {
                pipe.cmd("HSET")
                    .arg(store.keys.presence(user))
                    .arg(&self.instance_id)
                    .arg(change.sessions)
                    .ignore();
                pipe.cmd("EXPIRE").arg(store.keys.presence(user)).arg(ttl).ignore();
                pipe.cmd("HSET")
                    .arg(store.keys.sessions(&self.instance_id))
                    .arg(user)
                    .arg(change.sessions)
                    .ignore();
            } else {
                pipe.cmd("HDEL").arg(store.keys.presence(user)).arg(&self.instance_id).ignore();
                pipe.cmd("HDEL").arg(store.keys.sessions(&self.instance_id)).arg(user).ignore();
                pipe.cmd("SET").arg(store.keys.last_seen(user)).arg(time::format(&now)).ignore();
            }
            pipe.cmd("EXPIRE").arg(store.keys.sessions(&self.instance_id)).arg(ttl).ignore();
            if let Err(err) = pipe.query_async::<()>(&mut conn).await {
                tracing::debug!(error = %err, "presence update failed; the heartbeat rewrites it");
            }
        }
        let after = self.is_online(change.user_id).await;
        (before != after).then_some(after)
    }

    /// On a clean stop: this instance's keys go at once instead of expiring.
    pub async fn shutdown(&self) {
        self.stopped.store(true, std::sync::atomic::Ordering::Relaxed);
        let Some(store) = &self.redis else { return };
        let Some(mut conn) = store.connection().await else { return };
        let users: Vec<UserId> = self.local.lock().await.keys().copied().collect();
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(store.keys.instance(&self.instance_id)).ignore();
        pipe.cmd("DEL").arg(store.keys.sessions(&self.instance_id)).ignore();
        for user in users {
            pipe.cmd("HDEL").arg(store.keys.presence(user.0)).arg(&self.instance_id).ignore();
        }
        let _: Result<(), _> = pipe.query_async(&mut conn).await;
    }

    /// Rewrites this instance's heartbeat and the TTLs of its users' keys.
    async fn heartbeat(&self) {
        if self.stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let Some(store) = &self.redis else { return };
        let Some(mut conn) = store.connection().await else { return };
        let ttl = self.ttl.as_secs();
        let local: Vec<(UserId, usize)> = self.local.lock().await.iter().map(|(u, n)| (*u, *n)).collect();
        let mut pipe = redis::pipe();
        let beat = serde_json::json!({"instance_id": self.instance_id, "at": time::format(&time::now())})
            .to_string();
        pipe.cmd("SET").arg(store.keys.instance(&self.instance_id)).arg(beat).arg("EX").arg(ttl).ignore();
        for chunk in local.chunks(500) {
            for (user, sessions) in chunk {
                pipe.cmd("HSET")
                    .arg(store.keys.presence(user.0))
                    .arg(&self.instance_id)
                    .arg(*sessions)
                    .ignore();
                pipe.cmd("EXPIRE").arg(store.keys.presence(user.0)).arg(ttl * 2).ignore();
                pipe.cmd("HSET")
                    .arg(store.keys.sessions(&self.instance_id))
                    .arg(user.0)
                    .arg(*sessions)
                    .ignore();
            }
        }
        pipe.cmd("EXPIRE").arg(store.keys.sessions(&self.instance_id)).arg(ttl * 2).ignore();
        if let Err(err) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(error = %err, "presence heartbeat failed");
        }
    }

    /// Finds instances whose heartbeat expired; one live instance cleans up after each and
    /// returns the users that went offline with it.
    async fn sweep_dead_instances(&self) -> Vec<UserId> {
        let Some(store) = &self.redis else { return Vec::new() };
        let Some(mut conn) = store.connection().await else { return Vec::new() };
        let pattern = store.keys.all("sessions");
        // SCAN, not KEYS: it never blocks Redis for long.
        let keys: Vec<String> = {
            use redis::AsyncCommands;
            match conn.scan_match::<_, String>(&pattern).await {
                Ok(mut iter) => {
                    let mut keys = Vec::new();
                    while let Some(Ok(key)) = iter.next_item().await {
                        keys.push(key);
                    }
                    keys
                }
                Err(_) => Vec::new(),
            }
        };
        let mut offline = Vec::new();
        for key in keys {
            let Some(instance) = store.keys.instance_of_sessions(&key).map(str::to_owned) else {
                continue;
            };
            if instance == self.instance_id {
                continue;
            }
            let alive: bool = redis::cmd("EXISTS")
                .arg(store.keys.instance(&instance))
                .query_async(&mut conn)
                .await
                .unwrap_or(true);
            if alive {
                continue;
            }
            let claimed: Option<String> = redis::cmd("SET")
                .arg(store.keys.janitor(&instance))
                .arg(&self.instance_id)
                .arg("NX")
                .arg("EX")
                .arg(self.ttl.as_secs().max(1))
                .query_async(&mut conn)
                .await
                .unwrap_or(None);
            if claimed.is_none() {
                continue;
            }
            let users: HashMap<String, i64> =
                redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap_or_default();
            let _: Result<(), _> = redis::cmd("DEL").arg(&key).query_async(&mut conn).await;
            let now = time::format(&time::now());
            for user in users.keys().filter_map(|user| user.parse::<i64>().ok()) {
                let _: Result<(), _> = redis::pipe()
                    .cmd("HDEL")
                    .arg(store.keys.presence(user))
                    .arg(&instance)
                    .ignore()
                    .cmd("SET")
                    .arg(store.keys.last_seen(user))
                    .arg(&now)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                if !self.is_online(UserId(user)).await {
                    offline.push(UserId(user));
                }
            }
            tracing::info!(instance = %instance, users = offline.len(), "cleaned up after a dead instance");
        }
        offline
    }

    /// Runs presence for this instance: applies session counts, pushes `presence` frames to
    /// the users who share a conversation, and (with Redis) keeps the keys fresh.
    pub fn start(
        self: Arc<Self>,
        mut changes: mpsc::UnboundedReceiver<SessionCount>,
        domain: Arc<dyn Domain>,
        relay: Arc<Relay>,
    ) {
        let presence = self.clone();
        let (domain2, relay2) = (domain.clone(), relay.clone());
        actix::spawn(async move {
            while let Some(change) = changes.recv().await {
                if let Some(online) = presence.apply(change).await {
                    announce(domain.as_ref(), &relay, &presence, change.user_id, online).await;
                }
            }
        });
        if self.redis.is_some() {
            actix::spawn(async move {
                let mut beat = tokio::time::interval((self.ttl / 3).max(Duration::from_millis(200)));
                let mut beats = 0u64;
                loop {
                    beat.tick().await;
                    self.heartbeat().await;
                    beats += 1;
                    if beats.is_multiple_of(3) {
                        for user in self.sweep_dead_instances().await {
                            announce(domain2.as_ref(), &relay2, &self, user, false).await;
                        }
                    }
                }
            });
        }
    }
}

/// Sends `presence` to every user who shares a conversation with `user_id`.
async fn announce(domain: &dyn Domain, relay: &Relay, presence: &Presence, user_id: UserId, online: bool) {
    let peers = match domain.peers(user_id).await {
        Ok(peers) => peers,
        Err(err) => {
            tracing::warn!(error = %err, "presence: cannot list peers");
            return;
        }
    };
    if peers.is_empty() {
        return;
    }
    let last_seen = if online { Some(time::now()) } else { presence.last_seen(user_id).await };
    let status = if online { "online" } else { "offline" };
    let frame = ServerFrame::Presence { user_id: user_id.0, status, last_seen }.to_frame();
    let frames = peers.into_iter().map(|peer| UserFrame { user_id: peer, frame: frame.clone() }).collect();
    relay.publish(frames).await;
}

/// Whether an instance whose heartbeat key exists holds a session of `user_id`.
async fn online_elsewhere(
    store: &RedisStore,
    conn: &mut deadpool_redis::Connection,
    user_id: UserId,
) -> redis::RedisResult<bool> {
    let holders: HashMap<String, i64> =
        redis::cmd("HGETALL").arg(store.keys.presence(user_id.0)).query_async(conn).await?;
    for (instance, sessions) in holders {
        if sessions > 0 {
            let alive: bool =
                redis::cmd("EXISTS").arg(store.keys.instance(&instance)).query_async(conn).await?;
            if alive {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Who of `users` is online on a live instance (`local`: here), and when each was last
/// seen: pipelined `presence` hashes, then the heartbeats of the instances they name, then
/// `last_seen` keys.
async fn redis_views(
    store: &RedisStore,
    conn: &mut deadpool_redis::Connection,
    users: &[UserId],
    mut online: Vec<bool>,
) -> redis::RedisResult<(Vec<bool>, Vec<Option<Timestamp>>)> {
    let mut pipe = redis::pipe();
    for user in users {
        pipe.cmd("HGETALL").arg(store.keys.presence(user.0));
    }
    let holders: Vec<HashMap<String, i64>> = pipe.query_async(conn).await?;
    let mut instances: Vec<&str> = holders
        .iter()
        .flat_map(|held| {
            held.iter().filter(|(_, sessions)| **sessions > 0).map(|(instance, _)| instance.as_str())
        })
        .collect();
    instances.sort_unstable();
    instances.dedup();
    let mut pipe = redis::pipe();
    for instance in &instances {
        pipe.cmd("EXISTS").arg(store.keys.instance(instance));
    }
    let alive: Vec<bool> = if instances.is_empty() { Vec::new() } else { pipe.query_async(conn).await? };
    let alive: std::collections::HashSet<&str> =
        instances.iter().zip(alive).filter(|(_, alive)| *alive).map(|(instance, _)| *instance).collect();
    for (online, held) in online.iter_mut().zip(&holders) {
        *online = *online
            || held.iter().any(|(instance, sessions)| *sessions > 0 && alive.contains(instance.as_str()));
    }
    let mut pipe = redis::pipe();
    for user in users {
        pipe.cmd("GET").arg(store.keys.last_seen(user.0));
    }
    let seen: Vec<Option<String>> = pipe.query_async(conn).await?;
    Ok((online, seen.into_iter().map(parse_last_seen).collect()))
}

/// The `last_seen` key, read.
async fn stored_last_seen(
    store: &RedisStore,
    conn: &mut deadpool_redis::Connection,
    user_id: UserId,
) -> redis::RedisResult<Option<Timestamp>> {
    let at: Option<String> = redis::cmd("GET").arg(store.keys.last_seen(user_id.0)).query_async(conn).await?;
    Ok(parse_last_seen(at))
}

/// A `last_seen` key's value (RFC 3339); anything else reads as never seen.
fn parse_last_seen(at: Option<String>) -> Option<Timestamp> {
    at.and_then(|at| chrono::DateTime::parse_from_rfc3339(&at).ok()).map(|at| at.to_utc())
}
