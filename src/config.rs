//! Settings: embedded defaults, then `config.toml` (or `--config PATH`), then
//! `SWITCHBOARD__SECTION__KEY` environment variables. Unknown keys are refused so a typo
//! cannot silently fall back to a default.

use std::path::Path;

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The secret shipped in `config.toml` for local development; refused outside `dev_mode`.
pub const DEV_JWT_SECRET: &str = "dev-only-insecure-secret-change-me";
const DEFAULT_CONFIG: &str = "config.toml";
const ENV_PREFIX: &str = "SWITCHBOARD__";

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub redis: RedisSettings,
    pub presence: PresenceSettings,
    pub websocket: WebSocketSettings,
    pub messaging: MessagingSettings,
    pub push: PushSettings,
    pub bots: BotSettings,
    pub away: AwaySettings,
    pub assistant: AssistantSettings,
    pub attachments: AttachmentSettings,
    pub limits: LimitSettings,
    pub log: LogSettings,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// `false` turns every limit off (load tests, trusted networks).
    pub enabled: bool,
    /// Take the client's IP from the last `X-Forwarded-For` hop; only behind a proxy that
    /// appends it (as deploy/nginx.conf does), or clients could choose their own key.
    pub trust_forwarded_for: bool,
    pub login_per_minute_per_ip: u32,
    /// Login attempts against one username from one address: tight.
    pub login_per_hour_per_username_and_ip: u32,
    /// Login attempts against one username from anywhere: loose, so one address alone can
    /// never lock its owner out.
    pub login_per_hour_per_username: u32,
    pub register_per_hour_per_ip: u32,
    pub send_per_minute_per_user: u32,
    pub send_per_minute_per_ip: u32,
    pub typing_per_minute_per_user: u32,
    /// Open sockets per user on one instance.
    pub max_sockets_per_user: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            trust_forwarded_for: false,
            login_per_minute_per_ip: 30,
            login_per_hour_per_username_and_ip: 20,
            login_per_hour_per_username: 100,
            register_per_hour_per_ip: 60,
            send_per_minute_per_user: 600,
            send_per_minute_per_ip: 6000,
            typing_per_minute_per_user: 60,
            max_sockets_per_user: 20,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DirectPolicy {
    /// Anyone may message anyone they have not blocked (nor been blocked by).
    Open,
    /// A direct message needs an accepted contact request.
    Contacts,
}

/// Web Push (RFC 8030, 8291, 8292) for members with no live socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    pub enabled: bool,
    /// The VAPID P-256 private key, base64url; empty: generated at first start and kept in
    /// the database, so every instance signs with the same key.
    pub vapid_private_key: SecretString,
    /// Who push services may contact: `mailto:` or `https:`.
    pub subject: String,
    pub delay_seconds: u64,
    pub include_preview: bool,
    /// Accepts `http://` and loopback or private endpoints (tests only): otherwise a
    /// subscription could make the server call into its own network.
    pub allow_insecure_endpoints: bool,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            vapid_private_key: SecretString::from(""),
            subject: "mailto:admin@localhost".into(),
            delay_seconds: 5,
            include_preview: true,
            allow_insecure_endpoints: false,
        }
    }
}

/// Bots' outgoing webhooks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotSettings {
    /// A hook's whole answer, connection included.
    pub webhook_timeout_seconds: u64,
    /// Failed requests in a row after which a hook is disabled (its owner is told).
    pub max_consecutive_failures: u32,
    /// Accepts webhook URLs on loopback or private addresses (tests, or bots on the same
    /// host); otherwise a webhook could make the server call into its own network.
    pub allow_private_urls: bool,
}

impl Default for BotSettings {
    fn default() -> Self {
        Self { webhook_timeout_seconds: 10, max_consecutive_failures: 10, allow_private_urls: false }
    }
}

/// Away replies (`PUT /api/users/me/away`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwaySettings {
    /// A direct message still unread this long after it was sent gets the away reply.
    pub delay_seconds: u64,
}

impl Default for AwaySettings {
    fn default() -> Self {
        Self { delay_seconds: 30 }
    }
}

/// The built-in assistant: any OpenAI-compatible chat completions API.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssistantSettings {
    /// The API's root, `/v1` included (`https://api.openai.com/v1`,
    /// `http://127.0.0.1:11434/v1` for Ollama); empty: no assistant bots.
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
    pub system_prompt: String,
    pub timeout_seconds: u64,
}

impl Default for AssistantSettings {
    fn default() -> Self {
        Self {
            base_url: String::new(),
            api_key: SecretString::from(""),
            model: "gpt-4o-mini".into(),
            system_prompt: "You are a helpful assistant in a chat. Answer briefly.".into(),
            timeout_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagingSettings {
    pub direct_policy: DirectPolicy,
    /// Masks emails, phone numbers and links in direct messages between non-contacts.
    pub mask_pii_before_contact: bool,
    /// How long after sending a message its sender may edit it.
    pub edit_window_seconds: u64,
    /// Most members a group may have, its owner included.
    pub max_group_members: usize,
}

impl Default for MessagingSettings {
    fn default() -> Self {
        Self {
            direct_policy: DirectPolicy::Open,
            mask_pii_before_contact: false,
            edit_window_seconds: 900,
            max_group_members: 1000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentSettings {
    /// Where uploaded files are stored (created at start).
    pub dir: String,
    /// How long a signed download URL stays valid.
    pub url_ttl_seconds: u64,
    /// Largest JPEG, PNG, GIF or WebP accepted.
    pub max_image_bytes: u64,
    /// Largest PDF, DOCX, TXT or CSV accepted.
    pub max_document_bytes: u64,
}

impl Default for AttachmentSettings {
    fn default() -> Self {
        Self {
            dir: "attachments".into(),
            url_ttl_seconds: 3600,
            max_image_bytes: 5 * 1024 * 1024,
            max_document_bytes: 10 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// Empty: one instance, events relayed in-process, presence in memory.
    pub url: String,
    /// Starts every key and channel, so deployments can share a Redis.
    pub prefix: String,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self { url: String::new(), prefix: "switchboard:".into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceSettings {
    /// An instance's heartbeat key lives this long; its users read offline within 2× this
    /// after it dies.
    pub ttl_seconds: u64,
    /// `presence` frames reach the members of groups up to this size; members of larger
    /// groups read each other's presence from the members list.
    pub max_group_members: u64,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self { ttl_seconds: 30, max_group_members: 100 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Names this process in `hello` frames and presence keys; empty means generated at start.
    pub instance_id: String,
    /// Allows the shipped development secret. Never set it in production.
    pub dev_mode: bool,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// How long a stopping instance waits for in-flight requests.
    pub shutdown_timeout_seconds: u64,
    /// How long an idle HTTP/1.1 connection is kept open; longer than clients keep idle
    /// pooled connections, so the client closes first and never sends into a closing one.
    pub keep_alive_seconds: u64,
    /// Time a request body has to arrive, beyond what its size earns at the minimum rate.
    pub client_body_timeout_seconds: u64,
    /// Each this many bytes received gives a body one more second (slow uploads finish, a
    /// trickle does not).
    pub client_body_min_bytes_per_second: u64,
    /// Browser origins allowed to call the API cross-origin (e.g. `https://app.example.com`);
    /// empty: same origin only.
    pub cors_origins: Vec<String>,
    /// When set, `/metrics` answers only `Authorization: Bearer <this>` (Prometheus's
    /// `authorization` scrape setting); empty: public, for a private network.
    pub metrics_token: SecretString,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            instance_id: String::new(),
            dev_mode: false,
            workers: 0,
            shutdown_timeout_seconds: 10,
            keep_alive_seconds: 120,
            client_body_timeout_seconds: 10,
            client_body_min_bytes_per_second: 4096,
            cors_origins: Vec::new(),
            metrics_token: SecretString::from(""),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH?mode=rwc` or `postgres://user@host/db`.
    pub url: String,
    /// Read connections (SQLite) or all connections (PostgreSQL).
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: "sqlite://switchboard.db?mode=rwc".into(), max_connections: 8 }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_secret: SecretString,
    pub token_ttl_seconds: u64,
    /// Longest `exp - iat` accepted, also for tokens minted by another service: a leaked
    /// token cannot be made to live for ever.
    pub max_token_lifetime_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: SecretString::from(""),
            token_ttl_seconds: 86_400,
            max_token_lifetime_seconds: 30 * 86_400,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSettings {
    pub ping_interval_seconds: u64,
    /// A socket that sends nothing (not even a pong) for this long is closed.
    pub client_timeout_seconds: u64,
    /// Frames above this size close the socket with 1009.
    pub max_frame_bytes: usize,
    /// Bytes queued for one socket before it is closed with 4008.
    pub outbound_queue_bytes: usize,
    /// Events sent per database page while replaying `since`.
    pub replay_page_size: u64,
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            ping_interval_seconds: 30,
            client_timeout_seconds: 60,
            max_frame_bytes: 64 * 1024,
            outbound_queue_bytes: 1024 * 1024,
            replay_page_size: 500,
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info,sqlx=warn,sea_orm=warn".into() }
    }
}

impl Settings {
    /// Loads `path` (or `config.toml` when it exists), then the environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        match path {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            // The default file is optional: containers and process managers configure the
            // server through the environment alone.
            None if Path::new(DEFAULT_CONFIG).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG));
            }
            None => {}
        }
        let settings: Settings = figment
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .extract()
            .map_err(|err| ConfigError(err.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types alone cannot; each error names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_services()?;
        self.validate_auth()?;
        self.validate_websocket()?;
        let key = self.push.vapid_private_key.expose_secret();
        require(
            key.is_empty() || crate::domain::push::VapidKeys::from_base64(key).is_some(),
            "push.vapid_private_key",
            "must be empty (generated at first start) or base64url of a P-256 private key",
        )?;
        let subject = &self.push.subject;
        require(
            subject.starts_with("mailto:") || subject.starts_with("https://"),
            "push.subject",
            "must start with mailto: or https://",
        )?;
        require(self.bots.webhook_timeout_seconds > 0, "bots.webhook_timeout_seconds", "must be at least 1")?;
        require(
            self.bots.max_consecutive_failures > 0,
            "bots.max_consecutive_failures",
            "must be at least 1",
        )?;
        require(
            (1..=7 * 24 * 3600).contains(&self.away.delay_seconds),
            "away.delay_seconds",
            "must be 1 to 604800 (a week)",
        )?;
        let assistant = &self.assistant;
        require(
            assistant.base_url.is_empty()
                || url::Url::parse(&assistant.base_url)
                    .is_ok_and(|url| matches!(url.scheme(), "http" | "https")),
            "assistant.base_url",
            "must be empty or an http(s):// URL",
        )?;
        require(assistant.timeout_seconds > 0, "assistant.timeout_seconds", "must be at least 1")?;
        let files = &self.attachments;
        require(!files.dir.is_empty(), "attachments.dir", "must not be empty")?;
        require(files.url_ttl_seconds > 0, "attachments.url_ttl_seconds", "must be at least 1")?;
        require(
            files.max_image_bytes > 0 && files.max_document_bytes > 0,
            "attachments.max_document_bytes",
            "size limits must be at least 1 byte",
        )?;
        require(self.messaging.max_group_members >= 2, "messaging.max_group_members", "must be at least 2")?;
        if let Err(err) = self.log.level.parse::<tracing_subscriber::EnvFilter>() {
            return require(false, "log.level", &err.to_string());
        }
        Ok(())
    }

    fn validate_services(&self) -> Result<(), ConfigError> {
        let url = &self.database.url;
        let database =
            url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://");
        require(database, "database.url", "must start with sqlite: or postgres://")?;
        require(self.database.max_connections > 0, "database.max_connections", "must be at least 1")?;
        let redis = &self.redis.url;
        require(
            redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://"),
            "redis.url",
            "must be empty or start with redis:// or rediss://",
        )?;
        require(
            self.server.client_body_timeout_seconds > 0 && self.server.client_body_min_bytes_per_second > 0,
            "server.client_body_timeout_seconds",
            "it and server.client_body_min_bytes_per_second must be at least 1",
        )?;
        require(self.presence.ttl_seconds >= 2, "presence.ttl_seconds", "must be at least 2")
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let secret = self.auth.jwt_secret.expose_secret();
        require(
            !secret.is_empty(),
            "auth.jwt_secret",
            "is missing; set SWITCHBOARD__AUTH__JWT_SECRET to at least 32 random bytes (the \
             development secret in the shipped config.toml works only with server.dev_mode = true)",
        )?;
        if !self.server.dev_mode {
            require(
                secret != DEV_JWT_SECRET,
                "auth.jwt_secret",
                "is the shipped development secret; set a real one or server.dev_mode = true",
            )?;
            require(secret.len() >= 32, "auth.jwt_secret", "must be at least 32 bytes outside dev_mode")?;
        }
        require(self.auth.token_ttl_seconds > 0, "auth.token_ttl_seconds", "must be at least 1")?;
        require(
            self.auth.max_token_lifetime_seconds >= self.auth.token_ttl_seconds,
            "auth.max_token_lifetime_seconds",
            "must be at least auth.token_ttl_seconds",
        )
    }

    fn validate_websocket(&self) -> Result<(), ConfigError> {
        let ws = &self.websocket;
        require(
            ws.ping_interval_seconds > 0 && ws.client_timeout_seconds > ws.ping_interval_seconds,
            "websocket.client_timeout_seconds",
            "must be greater than websocket.ping_interval_seconds (which must be at least 1)",
        )?;
        require(ws.max_frame_bytes >= 1024, "websocket.max_frame_bytes", "must be at least 1024")?;
        require(
            ws.outbound_queue_bytes >= ws.max_frame_bytes,
            "websocket.outbound_queue_bytes",
            "must be at least websocket.max_frame_bytes",
        )?;
        require(
            (1..=10_000).contains(&ws.replay_page_size),
            "websocket.replay_page_size",
            "must be between 1 and 10000",
        )
    }

    pub fn is_sqlite(&self) -> bool {
        self.database.url.starts_with("sqlite:")
    }
}
/// `Ok` when `ok`, else the error naming `key` and why.
fn require(ok: bool, key: &str, why: &str) -> Result<(), ConfigError> {
    if ok { Ok(()) } else { Err(ConfigError(format!("{key}: {why}"))) }
}
