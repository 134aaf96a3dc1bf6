//! Blocks and contacts, and the rules they put on direct messages: blocks refuse them both
//! ways, `direct_policy = "contacts"` needs an accepted contact, and
//! `mask_pii_before_contact` masks contact details between users who are not contacts.

use std::collections::HashMap;

use entity::{block, contact_request, user};
use sea_orm::prelude::*;
use sea_orm::sea_query::ExprTrait;
use sea_orm::{Condition, ConnectionTrait, FromQueryResult, IntoActiveModel, QueryOrder, Set};
use serde::Serialize;

use crate::config::{DirectPolicy, MessagingSettings};
use crate::db::{self, Db};
use crate::domain::messaging::pii;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::time::{self, Timestamp};
use crate::wire::UserId;
use crate::wire::views::UserView;

/// How two users stand with each other.
pub struct Pair {
    pub blocked: bool,
    pub contacts: bool,
}

impl Pair {
    pub const NONE: Pair = Pair { blocked: false, contacts: false };
}

/// How two users stand with each other, in one statement.
pub async fn pair(conn: &impl ConnectionTrait, a: i64, b: i64) -> Result<Pair, DbErr> {
    Ok(pairs(conn, &[(a, b)]).await?.remove(&pair_key(a, b)).unwrap_or(Pair::NONE))
}

/// The key of a pair in `pairs`' answer, the same whichever user comes first.
pub fn pair_key(a: i64, b: i64) -> (i64, i64) {
    (Ord::min(a, b), Ord::max(a, b))
}

/// How each of `wanted` stands, in one statement whatever their number (a writer batch
/// checks all of its direct messages at once). Pairs with neither a block nor a contact are
/// left out.
pub async fn pairs(
    conn: &impl ConnectionTrait,
    wanted: &[(i64, i64)],
) -> Result<HashMap<(i64, i64), Pair>, DbErr> {
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let users: Vec<i64> = db::padded(
        wanted
            .iter()
            .flat_map(|(a, b)| [*a, *b])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    );
    let list = db::placeholders(1, users.len());
    let sql = format!(
        "SELECT 1 AS blocked, blocker_id AS a, blocked_id AS b FROM blocks \
         WHERE blocker_id IN ({list}) AND blocked_id IN ({list}) \
         UNION ALL SELECT 0, from_user_id, to_user_id FROM contact_requests \
         WHERE status = 'accepted' AND from_user_id IN ({list}) AND to_user_id IN ({list})"
    );
    let values = users.into_iter().map(Into::into).collect();
    let statement = db::statement(conn.get_database_backend(), &sql, values);
    let rows = PairRow::find_by_statement(statement).all(conn).await?;
    let wanted: std::collections::HashSet<(i64, i64)> =
        wanted.iter().map(|(a, b)| pair_key(*a, *b)).collect();
    let mut standing: HashMap<(i64, i64), Pair> = HashMap::new();
    for row in rows {
        let key = pair_key(row.a, row.b);
        if !wanted.contains(&key) {
            continue;
        }
        let pair = standing.entry(key).or_insert(Pair::NONE);
        if row.blocked == 1 {
            pair.blocked = true;
        } else {
            pair.contacts = true;
        }
    }
    Ok(standing)
}

#[derive(FromQueryResult)]
struct PairRow {
    blocked: i32,
    a: i64,
    b: i64,
}

fn between(a: i64, b: i64) -> Condition {
    Condition::any()
        .add(contact_request::Column::FromUserId.eq(a).and(contact_request::Column::ToUserId.eq(b)))
        .add(contact_request::Column::FromUserId.eq(b).and(contact_request::Column::ToUserId.eq(a)))
}

impl Pair {
    /// 403 `blocked` either way; 403 `not_connected` under the contacts policy.
    pub fn may_message(&self, rules: &MessagingSettings) -> AppResult<()> {
        if self.blocked {
            return Err(AppError::forbidden(ErrorCode::Blocked, "messages between these users are blocked"));
        }
        if rules.direct_policy == DirectPolicy::Contacts && !self.contacts {
            return Err(AppError::forbidden(
                ErrorCode::NotConnected,
                "direct messages need an accepted contact request",
            ));
        }
        Ok(())
    }

    pub fn mask(&self, rules: &MessagingSettings, body: String) -> String {
        if rules.mask_pii_before_contact && !self.contacts { pii::mask(&body).into_owned() } else { body }
    }
}

async fn existing_user(db: &Db, user_id: i64) -> AppResult<UserView> {
    user::Entity::find_by_id(user_id)
        .one(&db.read)
        .await?
        .map(UserView::from)
        .ok_or_else(|| AppError::not_found("user not found"))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlockView {
    pub user: UserView,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// Blocks `blocked_id`; true when the block is new.
pub async fn block(db: &Db, user_id: i64, blocked_id: i64) -> AppResult<(BlockView, bool)> {
    if blocked_id == user_id {
        return Err(AppError::validation("user_id", "you cannot block yourself"));
    }
    let user = existing_user(db, blocked_id).await?;
    if let Some(row) = block::Entity::find_by_id((user_id, blocked_id)).one(&db.write).await? {
        return Ok((BlockView { user, created_at: row.created_at }, false));
    }
    let created_at = time::now();
    let row = block::ActiveModel {
        blocker_id: Set(user_id),
        blocked_id: Set(blocked_id),
        created_at: Set(created_at),
    };
    match block::Entity::insert(row).exec_without_returning(&db.write).await {
        Ok(_) => Ok((BlockView { user, created_at }, true)),
        // A concurrent identical request won; the block stands either way.
        Err(_) if block::Entity::find_by_id((user_id, blocked_id)).one(&db.write).await?.is_some() => {
            Ok((BlockView { user, created_at }, false))
        }
        Err(err) => Err(err.into()),
    }
}

pub async fn unblock(db: &Db, user_id: i64, blocked_id: i64) -> AppResult<()> {
    block::Entity::delete_by_id((user_id, blocked_id)).exec(&db.write).await?;
    Ok(())
}

pub async fn blocks(db: &Db, user_id: i64) -> AppResult<Vec<BlockView>> {
    let rows = block::Entity::find()
        .filter(block::Column::BlockerId.eq(user_id))
        .order_by_asc(block::Column::CreatedAt)
        .all(&db.read)
        .await?;
    let users = users_by_id(db, rows.iter().map(|row| row.blocked_id).collect()).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(BlockView { user: users.get(&row.blocked_id)?.clone(), created_at: row.created_at })
        })
        .collect())
}

async fn users_by_id(db: &Db, ids: Vec<i64>) -> Result<HashMap<i64, UserView>, DbErr> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(user::Entity::find()
        .filter(user::Column::Id.is_in(ids))
        .all(&db.read)
        .await?
        .into_iter()
        .map(|row| (row.id, UserView::from(row)))
        .collect())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestView {
    pub id: i64,
    pub from_user: UserView,
    pub to_user: UserView,
    pub status: String,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

async fn request_views(db: &Db, rows: Vec<contact_request::Model>) -> AppResult<Vec<RequestView>> {
    let ids = rows.iter().flat_map(|row| [row.from_user_id, row.to_user_id]).collect();
    let users = users_by_id(db, ids).await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(RequestView {
                id: row.id,
                from_user: users.get(&row.from_user_id)?.clone(),
                to_user: users.get(&row.to_user_id)?.clone(),
                status: row.status,
                created_at: row.created_at,
            })
        })
        .collect())
}

async fn request_view(db: &Db, row: contact_request::Model) -> AppResult<RequestView> {
    request_views(db, vec![row]).await?.pop().ok_or_else(|| AppError::not_found("contact request not found"))
}

/// Asks `to_user_id` to be a contact. Returns the request and whether it was created (201)
/// rather than found (200): asking again returns the same request, and asking someone who
/// already asked you accepts their request.
pub async fn request_contact(db: &Db, user_id: i64, to_user_id: i64) -> AppResult<(RequestView, bool)> {
    if to_user_id == user_id {
        return Err(AppError::validation("user_id", "you cannot add yourself as a contact"));
    }
    existing_user(db, to_user_id).await?;
    if pair(&db.read, user_id, to_user_id).await?.blocked {
        return Err(AppError::forbidden(
            ErrorCode::Blocked,
            "contact requests between these users are blocked",
        ));
    }
    let existing = contact_request::Entity::find()
        .filter(between(user_id, to_user_id))
        .order_by_asc(contact_request::Column::Id)
        .all(&db.write)
        .await?;
    if let Some(accepted) = existing.iter().find(|row| row.status == "accepted") {
        return Ok((request_view(db, accepted.clone()).await?, false));
    }
    if let Some(theirs) = existing.iter().find(|row| row.from_user_id == to_user_id) {
        return Ok((request_view(db, accept_row(db, theirs.clone()).await?).await?, false));
    }
    if let Some(mine) = existing.into_iter().next() {
        return Ok((request_view(db, mine).await?, false));
    }
    let row = contact_request::ActiveModel {
        from_user_id: Set(user_id),
        to_user_id: Set(to_user_id),
        status: Set("pending".into()),
        created_at: Set(time::now()),
        accepted_at: Set(None),
        ..Default::default()
    };
    match row.insert(&db.write).await {
        Ok(row) => Ok((request_view(db, row).await?, true)),
        // The unique pair index: a concurrent identical request won.
        Err(_) => {
            let row = contact_request::Entity::find()
                .filter(contact_request::Column::FromUserId.eq(user_id))
                .filter(contact_request::Column::ToUserId.eq(to_user_id))
                .one(&db.write)
                .await?
                .ok_or_else(|| AppError::not_found("contact request not found"))?;
            Ok((request_view(db, row).await?, false))
        }
    }
}

async fn accept_row(db: &Db, row: contact_request::Model) -> AppResult<contact_request::Model> {
    if row.status == "accepted" {
        return Ok(row);
    }
    let mut active = row.into_active_model();
    active.status = Set("accepted".into());
    active.accepted_at = Set(Some(time::now()));
    Ok(active.update(&db.write).await?)
}

/// Accepts a request made to the caller. Its sender cannot accept it (403); anyone else
/// gets 404.
pub async fn accept(db: &Db, UserId(user_id): UserId, request_id: i64) -> AppResult<RequestView> {
    let row = contact_request::Entity::find_by_id(request_id)
        .one(&db.write)
        .await?
        .filter(|row| row.from_user_id == user_id || row.to_user_id == user_id)
        .ok_or_else(|| AppError::not_found("contact request not found"))?;
    if row.to_user_id != user_id && row.status != "accepted" {
        return Err(AppError::forbidden(
            ErrorCode::NotAllowed,
            "only the requested user may accept a contact request",
        ));
    }
    if pair(&db.read, row.from_user_id, row.to_user_id).await?.blocked {
        return Err(AppError::forbidden(
            ErrorCode::Blocked,
            "contact requests between these users are blocked",
        ));
    }
    let row = accept_row(db, row).await?;
    request_view(db, row).await
}

pub async fn contacts(db: &Db, user_id: i64) -> AppResult<Vec<UserView>> {
    let rows = contact_request::Entity::find()
        .filter(
            Condition::any()
                .add(contact_request::Column::FromUserId.eq(user_id))
                .add(contact_request::Column::ToUserId.eq(user_id)),
        )
        .filter(contact_request::Column::Status.eq("accepted"))
        .all(&db.read)
        .await?;
    let ids: Vec<i64> = rows
        .iter()
        .map(|row| if row.from_user_id == user_id { row.to_user_id } else { row.from_user_id })
        .collect();
    let users = users_by_id(db, ids.clone()).await?;
    let mut contacts: Vec<UserView> = ids.iter().filter_map(|id| users.get(id).cloned()).collect();
    contacts.sort_by(|a, b| a.username.cmp(&b.username));
    contacts.dedup_by_key(|user| user.id);
    Ok(contacts)
}

/// Pending requests to and from the caller, oldest first.
pub async fn requests(db: &Db, user_id: i64) -> AppResult<(Vec<RequestView>, Vec<RequestView>)> {
    let rows = contact_request::Entity::find()
        .filter(
            Condition::any()
                .add(contact_request::Column::FromUserId.eq(user_id))
                .add(contact_request::Column::ToUserId.eq(user_id)),
        )
        .filter(contact_request::Column::Status.eq("pending"))
        .order_by_asc(contact_request::Column::Id)
        .all(&db.read)
        .await?;
    let (incoming, outgoing): (Vec<_>, Vec<_>) = rows.into_iter().partition(|row| row.to_user_id == user_id);
    Ok((request_views(db, incoming).await?, request_views(db, outgoing).await?))
}
