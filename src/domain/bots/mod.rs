//! Bots: users (`is_bot`) owned by a user, signing in with a long-lived token that rotation
//! revokes, reached through a webhook (or the built-in assistant). They read and write through
//! the same API as anyone, so blocks, policies, masking and rate limits apply to them.

pub mod away;
pub mod webhooks;

use entity::{away_setting, bot, user, webhook_delivery};
use sea_orm::prelude::*;
use sea_orm::{QueryOrder, Set, TransactionTrait};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;
use utoipa::ToSchema;

use crate::config::Settings;
use crate::db::Db;
use crate::domain::users::{normalize_username, username_taken, validate_display_name};
use crate::error::{AppError, AppResult};
use crate::outbound::{host_is_internal, resolves_inside};
use crate::time;
use crate::wire::views::UserView;

/// Bot tokens start with this, so `authenticate` tells them from JWTs without trying both.
const TOKEN_PREFIX: &str = "sbb_";
/// Bots one user may own.
const MAX_PER_OWNER: u64 = 20;
const MAX_URL_CHARS: usize = 2048;
/// Not a PHC string: no password verifies against it, so a bot cannot log in.
const NO_PASSWORD: &str = "!bot";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Answered by its webhook.
    #[default]
    Webhook,
    /// Answered by the configured model (`assistant.base_url`).
    Assistant,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Assistant => "assistant",
        }
    }

    fn parse(text: &str) -> Kind {
        if text == "assistant" { Kind::Assistant } else { Kind::Webhook }
    }
}

/// A bot as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct BotView {
    pub user: UserView,
    pub kind: Kind,
    pub webhook_url: Option<String>,
    /// False once the hook failed `bots.max_consecutive_failures` times in a row; setting
    /// `webhook_url` again turns it back on.
    pub webhook_enabled: bool,
}

/// What only creation and rotation show: the bot's secrets.
#[derive(Debug, Serialize, ToSchema)]
pub struct Secrets {
    pub token: String,
    pub webhook_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub bot: UserView,
    pub token: String,
    pub webhook_secret: String,
}

pub struct NewBot {
    pub username: String,
    pub display_name: Option<String>,
    pub webhook_url: Option<String>,
    pub kind: Kind,
}

pub struct Change {
    pub display_name: Option<String>,
    /// `Some(None)` removes the hook.
    pub webhook_url: Option<Option<String>>,
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_secrets() -> (Secrets, String) {
    let token = format!("{TOKEN_PREFIX}{}", random_hex(32));
    let hash = token_hash(&token);
    (Secrets { token, webhook_secret: format!("whsec_{}", random_hex(32)) }, hash)
}

/// Whether `token` is shaped like a bot token (it may still be unknown).
pub fn is_bot_token(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX)
}

/// The bot a token belongs to; `None` for an unknown, rotated or deleted one.
pub async fn authenticate(db: &Db, token: &str) -> AppResult<Option<i64>> {
    let row = bot::Entity::find().filter(bot::Column::TokenHash.eq(token_hash(token))).one(&db.read).await?;
    Ok(row.map(|row| row.user_id))
}

/// 422 on `webhook_url` unless it is an http(s) URL outside the server's network (names
/// resolved now, and again on every connection), or private URLs are allowed.
pub async fn check_webhook_url(url: &str, allow_private: bool) -> AppResult<()> {
    let refuse = |why: &str| Err(AppError::validation("webhook_url", format!("webhook_url {why}")));
    if url.chars().count() > MAX_URL_CHARS {
        return refuse("must be at most 2,048 characters");
    }
    let Ok(parsed) = Url::parse(url) else { return refuse("must be an http:// or https:// URL") };
    if !matches!(parsed.scheme(), "http" | "https") {
        return refuse("must be an http:// or https:// URL");
    }
    let Some(inside) = host_is_internal(&parsed) else { return refuse("must name a host") };
    if !allow_private && (inside || resolves_inside(&parsed).await) {
        return refuse("must not be or resolve to a loopback, private, link-local or unspecified address");
    }
    Ok(())
}

fn view(user: user::Model, bot: bot::Model) -> BotView {
    BotView {
        user: user.into(),
        kind: Kind::parse(&bot.kind),
        webhook_url: bot.webhook_url,
        webhook_enabled: bot.webhook_enabled,
    }
}

pub async fn create(db: &Db, settings: &Settings, owner: i64, input: NewBot) -> AppResult<Created> {
    let username = normalize_username(&input.username)?;
    let display_name = validate_display_name(input.display_name.as_deref(), &username)?;
    if input.kind == Kind::Assistant && settings.assistant.base_url.is_empty() {
        return Err(AppError::validation("kind", "no assistant is configured (assistant.base_url)"));
    }
    if let Some(url) = &input.webhook_url {
        check_webhook_url(url, settings.bots.allow_private_urls).await?;
    }
    let owned = bot::Entity::find().filter(bot::Column::OwnerId.eq(owner)).count(&db.read).await?;
    if owned >= MAX_PER_OWNER {
        return Err(AppError::validation("username", "at most 20 bots per owner"));
    }
    let (secrets, hash) = new_secrets();
    let txn = db.write.begin().await?;
    let row = user::ActiveModel {
        username: Set(username),
        display_name: Set(display_name),
        password_hash: Set(NO_PASSWORD.into()),
        created_at: Set(time::now()),
        is_bot: Set(true),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(username_taken)?;
    bot::ActiveModel {
        user_id: Set(row.id),
        owner_id: Set(owner),
        kind: Set(input.kind.as_str().into()),
        webhook_url: Set(input.webhook_url),
        webhook_secret: Set(secrets.webhook_secret.clone()),
        webhook_enabled: Set(true),
        failures: Set(0),
        token_hash: Set(hash),
        created_at: Set(row.created_at),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(Created { bot: row.into(), token: secrets.token, webhook_secret: secrets.webhook_secret })
}

/// The caller's bots, oldest first.
pub async fn list(db: &Db, owner: i64) -> AppResult<Vec<BotView>> {
    let bots = bot::Entity::find()
        .filter(bot::Column::OwnerId.eq(owner))
        .order_by_asc(bot::Column::UserId)
        .all(&db.read)
        .await?;
    let ids: Vec<i64> = bots.iter().map(|bot| bot.user_id).collect();
    let mut users: std::collections::HashMap<i64, user::Model> = user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(&db.read)
        .await?
        .into_iter()
        .map(|user| (user.id, user))
        .collect();
    Ok(bots.into_iter().filter_map(|bot| Some(view(users.remove(&bot.user_id)?, bot))).collect())
}

/// The owner's bot `id`; 404 for anyone else's, and for users who are no bot.
async fn owned<C: ConnectionTrait>(conn: &C, owner: i64, id: i64) -> AppResult<bot::Model> {
    bot::Entity::find_by_id(id)
        .filter(bot::Column::OwnerId.eq(owner))
        .one(conn)
        .await?
        .ok_or_else(|| AppError::not_found("bot not found"))
}

pub async fn update(db: &Db, settings: &Settings, owner: i64, id: i64, change: Change) -> AppResult<BotView> {
    owned(&db.read, owner, id).await?;
    let user = user::Entity::find_by_id(id)
        .one(&db.read)
        .await?
        .ok_or_else(|| AppError::not_found("bot not found"))?;
    let display_name = change
        .display_name
        .as_deref()
        .map(|name| validate_display_name(Some(name), &user.username))
        .transpose()?;
    if let Some(Some(url)) = &change.webhook_url {
        check_webhook_url(url, settings.bots.allow_private_urls).await?;
    }
    let txn = db.write.begin().await?;
    // Again inside: the bot may have been deleted meanwhile.
    let bot = owned(&txn, owner, id).await?;
    let user = match display_name {
        Some(name) => {
            user::ActiveModel { id: Set(id), display_name: Set(name), ..Default::default() }
                .update(&txn)
                .await?
        }
        None => user,
    };
    let bot = match change.webhook_url {
        Some(url) => {
            let mut active: bot::ActiveModel = bot.into();
            active.webhook_url = Set(url);
            // A new URL is a new chance: the hook is on again and its failures forgotten.
            active.webhook_enabled = Set(true);
            active.failures = Set(0);
            active.update(&txn).await?
        }
        None => bot,
    };
    txn.commit().await?;
    Ok(view(user, bot))
}

/// New token and webhook secret; the old ones stop working at once.
pub async fn rotate(db: &Db, owner: i64, id: i64) -> AppResult<Secrets> {
    let bot = owned(&db.read, owner, id).await?;
    let (secrets, hash) = new_secrets();
    let mut active: bot::ActiveModel = bot.into();
    active.token_hash = Set(hash);
    active.webhook_secret = Set(secrets.webhook_secret.clone());
    active.update(&db.write).await?;
    Ok(secrets)
}

/// The bot stops: its token, its hook and what was queued for it. Its user stays, so its
/// messages still name a sender (and its username stays taken).
pub async fn delete(db: &Db, owner: i64, id: i64) -> AppResult<()> {
    let txn = db.write.begin().await?;
    let deleted = bot::Entity::delete_many()
        .filter(bot::Column::UserId.eq(id))
        .filter(bot::Column::OwnerId.eq(owner))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(AppError::not_found("bot not found"));
    }
    webhook_delivery::Entity::delete_many().filter(webhook_delivery::Column::BotId.eq(id)).exec(&txn).await?;
    // Away replies it wrote fall back to the owner's fixed text.
    away_setting::Entity::update_many()
        .col_expr(away_setting::Column::AssistantBotId, sea_orm::sea_query::Expr::value(Option::<i64>::None))
        .filter(away_setting::Column::AssistantBotId.eq(id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}
