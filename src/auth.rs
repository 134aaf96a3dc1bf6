//! Passwords (Argon2id), tokens (HS256 JWT with the algorithm pinned) and the extractor that
//! authenticates `/api` requests.

use std::collections::HashSet;
use std::sync::RwLock;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use futures_util::future::LocalBoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::config::AuthSettings;
use crate::db::Db;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::redis_store::RedisStore;
use crate::startup::AppState;

/// The contract allows at most this much clock skew on `exp` (and so on `nbf` and `iat`).
const LEEWAY_SECONDS: u64 = 5;
/// Users remembered as existing; beyond this the set starts again (one query per user).
const KNOWN_USERS_CAPACITY: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_seconds: i64,
    max_lifetime_seconds: i64,
    /// Users are never deleted, so a user once found exists for good; a validly signed
    /// token naming an id with no user (a forged `sub`, another service's user) is refused.
    known_users: RwLock<HashSet<i64>>,
}

impl Tokens {
    pub fn new(settings: &AuthSettings) -> Self {
        let secret = settings.jwt_secret.expose_secret().as_bytes();
        // Only HS256: a token naming another algorithm (or `none`) is refused before its
        // signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        // Another service's tokens may name an audience; the secret is what we trust.
        validation.validate_aud = false;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_seconds: i64::try_from(settings.token_ttl_seconds).unwrap_or(i64::MAX / 2),
            max_lifetime_seconds: i64::try_from(settings.max_token_lifetime_seconds).unwrap_or(i64::MAX),
            known_users: RwLock::new(HashSet::new()),
        }
    }

    pub fn issue(&self, user_id: i64) -> AppResult<String> {
        let iat = chrono::Utc::now().timestamp();
        let claims = Claims { sub: user_id.to_string(), iat, exp: iat.saturating_add(self.ttl_seconds) };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AppError::internal)
    }

    /// The user id a valid token names, before checking that the user exists.
    fn verify(&self, token: &str) -> AppResult<i64> {
        let invalid = |message| AppError::unauthorized(ErrorCode::InvalidToken, message);
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map_err(|err| {
                use jsonwebtoken::errors::ErrorKind;
                match err.kind() {
                    ErrorKind::ExpiredSignature => {
                        AppError::unauthorized(ErrorCode::TokenExpired, "the token has expired")
                    }
                    ErrorKind::ImmatureSignature => invalid("the token is not valid yet"),
                    _ => invalid("the token is not valid"),
                }
            })?;
        let Claims { sub, iat, exp } = data.claims;
        if iat > chrono::Utc::now().timestamp().saturating_add(LEEWAY_SECONDS as i64) {
            return Err(invalid("the token was issued in the future"));
        }
        if exp.saturating_sub(iat) > self.max_lifetime_seconds {
            return Err(invalid("the token's lifetime is longer than this server accepts"));
        }
        subject_id(&sub).ok_or_else(|| invalid("the token's subject is not a user id"))
    }

    /// The user a valid token names; 401 when no such user exists.
    pub async fn authenticate(&self, db: &Db, token: &str) -> AppResult<AuthUser> {
        // A bot's token is looked up every time: rotating or deleting the bot revokes it at
        // once, on every instance.
        if crate::domain::bots::is_bot_token(token) {
            return match crate::domain::bots::authenticate(db, token).await? {
                Some(id) => Ok(AuthUser { id }),
                None => Err(AppError::unauthorized(ErrorCode::InvalidToken, "the token is not valid")),
            };
        }
        let id = self.verify(token)?;
        if self.known_users.read().is_ok_and(|known| known.contains(&id)) {
            return Ok(AuthUser { id });
        }
        if !crate::domain::users::exists(db, id).await? {
            return Err(AppError::unauthorized(ErrorCode::InvalidToken, "the token names no user"));
        }
        if let Ok(mut known) = self.known_users.write() {
            if known.len() >= KNOWN_USERS_CAPACITY {
                known.clear();
            }
            known.insert(id);
        }
        Ok(AuthUser { id })
    }
}

/// A user id in its one canonical form: decimal digits without sign or leading zero, so
/// "+1" or "01" never name user 1.
fn subject_id(sub: &str) -> Option<i64> {
    let canonical = !sub.starts_with('0') && !sub.is_empty() && sub.bytes().all(|b| b.is_ascii_digit());
    canonical.then(|| sub.parse::<i64>().ok()).flatten()
}

/// The authenticated caller of an `/api` route.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: i64,
}

impl AuthUser {
    pub fn user(&self) -> crate::wire::UserId {
        crate::wire::UserId(self.id)
    }
}

impl FromRequest for AuthUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { authenticate(&req, None).await })
    }
}

/// The bearer token from `Authorization`, or else `fallback` (the WebSocket's `?token=`).
pub async fn authenticate(req: &HttpRequest, fallback: Option<&str>) -> AppResult<AuthUser> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| AppError::Unavailable { message: "not ready".into() })?;
    let token = match req.headers().get(header::AUTHORIZATION) {
        Some(value) => bearer(value.to_str().unwrap_or_default()).ok_or_else(|| {
            AppError::unauthorized(ErrorCode::InvalidToken, "expected Authorization: Bearer <token>")
        })?,
        None => fallback
            .ok_or_else(|| AppError::unauthorized(ErrorCode::MissingToken, "authentication required"))?,
    };
    state.tokens.authenticate(&state.db, token).await
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Argon2id with the crate's recommended parameters; runs on the blocking pool.
pub async fn hash_password(password: String) -> AppResult<String> {
    web::block(move || Argon2::default().hash_password(password.as_bytes()).map(|hash| hash.to_string()))
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)
}

/// Checks `password` against `hash`; with no hash (unknown user) it still spends the same
/// work, so response time does not reveal which usernames exist.
pub async fn verify_password(password: String, hash: Option<String>) -> AppResult<bool> {
    web::block(move || {
        let argon = Argon2::default();
        match hash {
            Some(hash) => argon.verify_password(password.as_bytes(), hash.as_str()).is_ok(),
            None => {
                let _ = argon.hash_password(password.as_bytes());
                false
            }
        }
    })
    .await
    .map_err(AppError::internal)
}

/// Single-use WebSocket tickets (`POST /api/ws-ticket`, then `/ws?ticket=`), so browsers need
/// not put a long-lived token in a URL. With Redis a ticket is redeemable on any instance
/// (`GETDEL` makes it single-use cluster-wide); without, it lives in this process.
pub struct Tickets {
    redis: Option<std::sync::Arc<RedisStore>>,
    local: std::sync::Mutex<std::collections::HashMap<String, (i64, std::time::Instant)>>,
}

pub const TICKET_TTL_SECONDS: u64 = 30;

impl Tickets {
    pub fn new(redis: Option<std::sync::Arc<RedisStore>>) -> Self {
        Self { redis, local: std::sync::Mutex::new(std::collections::HashMap::new()) }
    }

    pub async fn issue(&self, user_id: i64) -> AppResult<String> {
        let bytes: [u8; 24] = rand::random();
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match &self.redis {
            Some(store) => {
                let mut conn = store.connection().await.ok_or_else(unavailable)?;
                redis::cmd("SET")
                    .arg(store.keys.ticket(&ticket))
                    .arg(user_id)
                    .arg("EX")
                    .arg(TICKET_TTL_SECONDS)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|_| unavailable())?;
            }
            None => {
                let now = std::time::Instant::now();
                let mut local = self.local.lock().map_err(|_| unavailable())?;
                local.retain(|_, (_, expires)| *expires > now);
                local.insert(
                    ticket.clone(),
                    (user_id, now + std::time::Duration::from_secs(TICKET_TTL_SECONDS)),
                );
            }
        }
        Ok(ticket)
    }

    /// The ticket's user, once; an unknown, used or expired ticket is a 401.
    pub async fn redeem(&self, ticket: &str) -> AppResult<i64> {
        let invalid =
            || AppError::unauthorized(ErrorCode::InvalidTicket, "the ticket is unknown, used or expired");
        if ticket.is_empty() || ticket.len() > 128 {
            return Err(invalid());
        }
        match &self.redis {
            Some(store) => {
                let mut conn = store.connection().await.ok_or_else(unavailable)?;
                let user: Option<i64> = redis::cmd("GETDEL")
                    .arg(store.keys.ticket(ticket))
                    .query_async(&mut conn)
                    .await
                    .map_err(|_| unavailable())?;
                user.ok_or_else(invalid)
            }
            None => {
                let mut local = self.local.lock().map_err(|_| unavailable())?;
                match local.remove(ticket) {
                    Some((user_id, expires)) if expires > std::time::Instant::now() => Ok(user_id),
                    _ => Err(invalid()),
                }
            }
        }
    }
}

fn unavailable() -> AppError {
    AppError::Unavailable { message: "tickets are unavailable; use the token".into() }
}
