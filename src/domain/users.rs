//! Accounts: register, log in, look up, search.

use entity::user;
use sea_orm::prelude::*;
use sea_orm::sea_query::{ExprTrait, Func, LikeExpr};
use sea_orm::{QueryOrder, QuerySelect, Set, SqlErr};

use crate::auth;
use crate::db::Db;
use crate::domain::messaging::text::{self, Fault, Trimmed};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::time;
use crate::wire::views::UserView;

pub struct Registration {
    pub username: String,
    pub password: String,
    pub display_name: Option<String>,
}

/// Upper case is folded; what remains must be 3–32 of `[a-z0-9_.-]`.
pub fn normalize_username(username: &str) -> AppResult<String> {
    let folded = username.to_ascii_lowercase();
    let valid = (3..=32).contains(&folded.len())
        && folded
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(folded)
    } else {
        Err(AppError::validation("username", "username must be 3-32 of a-z, 0-9, _ . -"))
    }
}

fn validate_password(password: &str) -> AppResult<()> {
    if (8..=128).contains(&password.chars().count()) {
        Ok(())
    } else {
        Err(AppError::validation("password", "password must be 8-128 characters"))
    }
}

/// A display name: at most 64 characters after trimming, no control characters; blank means
/// the username.
pub const DISPLAY_NAME: Trimmed = Trimmed { min: 0, max: 64, banned: text::CONTROL, visible: false };

pub fn validate_display_name(display_name: Option<&str>, username: &str) -> AppResult<String> {
    let name = match display_name.map(|name| DISPLAY_NAME.check(name)) {
        None | Some(Ok("")) => username,
        Some(Ok(name)) => name,
        Some(Err(Fault::Length)) => {
            return Err(AppError::validation("display_name", "display_name must be at most 64 characters"));
        }
        Some(Err(_)) => {
            return Err(AppError::validation(
                "display_name",
                "display_name must not contain control characters",
            ));
        }
    };
    Ok(name.to_owned())
}

pub async fn register(db: &Db, input: Registration) -> AppResult<UserView> {
    let username = normalize_username(&input.username)?;
    validate_password(&input.password)?;
    let display_name = validate_display_name(input.display_name.as_deref(), &username)?;
    let password_hash = auth::hash_password(input.password).await?;
    let row = user::ActiveModel {
        username: Set(username),
        display_name: Set(display_name),
        password_hash: Set(password_hash),
        created_at: Set(time::now()),
        is_bot: Set(false),
        ..Default::default()
    }
    .insert(&db.write)
    .await
    .map_err(username_taken)?;
    Ok(row.into())
}

/// 409 `username_taken` where the insert broke the unique index on usernames (which decides,
/// so two racing registrations cannot both win); other errors as they are.
pub fn username_taken(err: sea_orm::DbErr) -> AppError {
    match err.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => AppError::Conflict {
            code: ErrorCode::UsernameTaken,
            message: "that username is taken".into(),
            field: Some("username".into()),
        },
        _ => err.into(),
    }
}

/// The user for these credentials; the same 401 for an unknown user and a wrong password.
pub async fn login(db: &Db, username: &str, password: String) -> AppResult<UserView> {
    let row = match normalize_username(username) {
        Ok(username) => {
            user::Entity::find().filter(user::Column::Username.eq(username)).one(&db.read).await?
        }
        Err(_) => None,
    };
    let hash = row.as_ref().map(|row| row.password_hash.clone());
    match (auth::verify_password(password, hash).await?, row) {
        (true, Some(row)) => Ok(row.into()),
        _ => Err(AppError::unauthorized(ErrorCode::InvalidCredentials, "invalid username or password")),
    }
}

/// Whether a user with this id exists.
pub async fn exists(db: &Db, user_id: i64) -> AppResult<bool> {
    Ok(user::Entity::find_by_id(user_id)
        .select_only()
        .column(user::Column::Id)
        .into_tuple::<i64>()
        .one(&db.read)
        .await?
        .is_some())
}

pub async fn get(db: &Db, user_id: i64) -> AppResult<UserView> {
    user::Entity::find_by_id(user_id)
        .one(&db.read)
        .await?
        .map(UserView::from)
        .ok_or_else(|| AppError::not_found("user not found"))
}

/// Users whose username or display name contains `q` (case-insensitive), by username.
/// Part of a username or display name: at least 2 characters after trimming.
pub const QUERY: Trimmed = Trimmed { min: 2, max: usize::MAX, banned: &[], visible: false };

pub async fn search(db: &Db, q: &str, limit: u64) -> AppResult<Vec<UserView>> {
    // No stored name holds a NUL (PostgreSQL would refuse the pattern outright).
    if q.contains('\0') {
        return Ok(Vec::new());
    }
    let escaped: String = q
        .to_lowercase()
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let pattern = format!("%{escaped}%");
    let like = || LikeExpr::new(pattern.clone()).escape('\\');
    let rows = user::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(Expr::col(user::Column::Username).like(like()))
                .add(Expr::expr(Func::lower(Expr::col(user::Column::DisplayName))).like(like())),
        )
        .order_by_asc(user::Column::Username)
        .limit(limit)
        .all(&db.read)
        .await?;
    Ok(rows.into_iter().map(UserView::from).collect())
}
