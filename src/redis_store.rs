//! Redis in one place: the connection pool, and every key and channel the servers share,
//! each under `redis.prefix`. Relay, presence, tickets and the `presence` command use these
//! names and nothing else; admins read the same keys with `redis-cli` (see the README).
//!
//! | name | type | what |
//! |---|---|---|
//! | `{prefix}user:{user_id}` | channel | that user's frames, for every instance holding their sessions |
//! | `{prefix}relay:resync` | channel | "a publish was lost: every session catches up from the database" |
//! | `{prefix}chain:{user_id}` | STRING | the last event id published on that user's channel |
//! | `{prefix}instance:{instance_id}` | STRING | an instance's heartbeat, TTL `presence.ttl_seconds` |
//! | `{prefix}presence:{user_id}` | HASH | instance_id → that user's sessions there, TTL 2×ttl |
//! | `{prefix}sessions:{instance_id}` | HASH | user_id → sessions on that instance, TTL 2×ttl |
//! | `{prefix}last_seen:{user_id}` | STRING | RFC 3339, when the user was last seen online |
//! | `{prefix}janitor:{instance_id}` | STRING | which live instance cleans up after a dead one |
//! | `{prefix}ticket:{ticket}` | STRING | a WebSocket ticket's user id, TTL 30 s |

use std::sync::Arc;
use std::time::Duration;

/// No caller waits longer than this for a pooled connection or a reply.
pub const TIMEOUT: Duration = Duration::from_millis(500);

pub struct RedisStore {
    pool: deadpool_redis::Pool,
    client: redis::Client,
    pub keys: Keys,
}

impl RedisStore {
    pub fn open(url: &str, prefix: &str) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|err| format!("redis.url: {err}"))?;
        let pool = deadpool_redis::Config::from_url(url)
            .builder()
            .map_err(|err| format!("redis.url: {err}"))?
            .max_size(16)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .map_err(|err| format!("redis.url: {err}"))?;
        Ok(Arc::new(Self { pool, client, keys: Keys::new(prefix) }))
    }

    /// A pooled command connection, or `None` when Redis does not answer in time.
    pub async fn connection(&self) -> Option<deadpool_redis::Connection> {
        tokio::time::timeout(TIMEOUT, self.pool.get()).await.ok()?.ok()
    }

    /// The client, for the subscriber's own (non-pooled) pub/sub connection.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// PING through the pool, for readiness.
    pub async fn ping(&self) -> bool {
        let ping = async {
            let mut conn = self.pool.get().await.ok()?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.ok()
        };
        matches!(tokio::time::timeout(TIMEOUT, ping).await, Ok(Some(_)))
    }
}

/// The key layout (see the module's table).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    /// The id after `{prefix}{kind}:` in `key`.
    fn id_in<'k>(&self, kind: &str, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(&self.prefix)?.strip_prefix(kind)?.strip_prefix(':')
    }

    /// The pattern that matches every key of `kind`, for SCAN.
    pub fn all(&self, kind: &str) -> String {
        format!("{}{kind}:*", self.prefix)
    }

    pub fn user_channel(&self, user_id: i64) -> String {
        self.key("user", user_id)
    }

    pub fn user_of_channel(&self, channel: &str) -> Option<i64> {
        self.id_in("user", channel)?.parse().ok()
    }

    pub fn resync_channel(&self) -> String {
        self.key("relay", "resync")
    }

    pub fn chain(&self, user_id: i64) -> String {
        self.key("chain", user_id)
    }

    pub fn instance(&self, instance_id: &str) -> String {
        self.key("instance", instance_id)
    }

    pub fn instance_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        self.id_in("instance", key)
    }

    pub fn presence(&self, user_id: i64) -> String {
        self.key("presence", user_id)
    }

    pub fn user_of_presence(&self, key: &str) -> Option<i64> {
        self.id_in("presence", key)?.parse().ok()
    }

    pub fn sessions(&self, instance_id: &str) -> String {
        self.key("sessions", instance_id)
    }

    pub fn instance_of_sessions<'k>(&self, key: &'k str) -> Option<&'k str> {
        self.id_in("sessions", key)
    }

    pub fn last_seen(&self, user_id: i64) -> String {
        self.key("last_seen", user_id)
    }

    pub fn janitor(&self, instance_id: &str) -> String {
        self.key("janitor", instance_id)
    }

    pub fn ticket(&self, ticket: &str) -> String {
        self.key("ticket", ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn keys_read_back_what_they_name() {
        let keys = Keys::new("sb:");
        assert_eq!(keys.user_channel(42), "sb:user:42");
        assert_eq!(keys.user_of_channel("sb:user:42"), Some(42));
        assert_eq!(keys.user_of_channel("sb:relay:resync"), None);
        assert_eq!(keys.resync_channel(), "sb:relay:resync");
        assert_eq!(keys.instance_of(&keys.instance("sb-1")), Some("sb-1"));
        assert_eq!(keys.instance_of_sessions(&keys.sessions("sb-1")), Some("sb-1"));
        assert_eq!(keys.user_of_presence(&keys.presence(7)), Some(7));
        assert_eq!(keys.user_of_presence("sb:presenceX:7"), None);
        assert_eq!(keys.all("presence"), "sb:presence:*");
        assert_eq!(keys.ticket("ab"), "sb:ticket:ab");
    }
}
