//! Groups: creation, members with roles (`owner`, `admin`, `member`), adding, removing and
//! leaving. Every change is an event in the group's log, so members' devices and late
//! readers see the same membership history.

use std::collections::{HashMap, HashSet};

pub use entity::member::Role;
use entity::{conversation, member, user};
use sea_orm::prelude::*;
use sea_orm::{DatabaseTransaction, IntoActiveModel, QueryOrder, QuerySelect, Set};
use serde::Serialize;

use crate::db::Db;
use crate::domain::conversations::{self, visible};
use crate::domain::events::writer::Writer;
use crate::domain::events::{self, StoredEvent};
use crate::domain::messaging::messages::{event_to_members, new_member, open_conversation};
use crate::domain::messaging::text::{self, Trimmed};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::realtime::UserFrame;
use crate::time;
use crate::wire::frames::ServerFrame;
use crate::wire::views::{ConversationKind, ConversationView, Notify, UserView, optional_id};
use crate::wire::{ConversationId, EventId, MessageId, UserId};

pub const MAX_NAME_CHARS: usize = 100;

/// A member as the members list shows them, with their receipts (for "read by" in groups).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub user: UserView,
    pub role: Role,
    pub last_read_message_id: Option<i64>,
    pub last_delivered_message_id: Option<i64>,
}

/// A group's name: 1–100 characters after trimming; no NUL.
pub const NAME: Trimmed = Trimmed { min: 1, max: MAX_NAME_CHARS, banned: text::NUL, visible: false };

pub fn validate_name(name: &str) -> AppResult<String> {
    match NAME.check(name) {
        Ok(name) => Ok(name.to_owned()),
        Err(_) => {
            Err(AppError::validation("name", format!("name must be 1-{MAX_NAME_CHARS} characters, no NUL")))
        }
    }
}

/// Creates a group owned by `owner_id` with `member_ids`; every member gets
/// `conversation_created`.
pub async fn create(
    db: &Db,
    writer: &Writer,
    max_members: usize,
    owner_id: i64,
    name: String,
    member_ids: Vec<i64>,
) -> AppResult<ConversationView> {
    let mut ids: Vec<i64> = vec![owner_id];
    let mut seen: HashSet<i64> = HashSet::from([owner_id]);
    ids.extend(member_ids.into_iter().filter(|id| seen.insert(*id)));
    if ids.len() > max_members {
        return Err(AppError::validation(
            "member_ids",
            format!("a group may have at most {max_members} members, its owner included"),
        ));
    }
    let found: HashSet<i64> = user::Entity::find()
        .select_only()
        .column(user::Column::Id)
        .filter(user::Column::Id.is_in(ids.clone()))
        .into_tuple::<i64>()
        .all(&db.read)
        .await?
        .into_iter()
        .collect();
    if !found.contains(&owner_id) {
        return Err(AppError::unauthorized(ErrorCode::InvalidToken, "the token's user does not exist"));
    }
    if let Some(missing) = ids.iter().find(|id| !found.contains(id)) {
        return Err(AppError::NotFound { message: format!("user {missing} not found").into() });
    }
    writer
        .write(move |txn| {
            Box::pin(async move {
                let (conversation, event_id) =
                    open_conversation(txn, ConversationKind::Group, Some(name), None, owner_id).await?;
                let rows: Vec<member::ActiveModel> = ids
                    .iter()
                    .map(|id| {
                        let role = if *id == owner_id { Role::Owner } else { Role::Member };
                        new_member(
                            ConversationId(conversation.id),
                            UserId(*id),
                            role,
                            EventId(event_id),
                            MessageId(0),
                        )
                    })
                    .collect();
                // Several statements keep each under the databases' bound-parameter limits.
                for chunk in rows.chunks(500) {
                    member::Entity::insert_many(chunk.to_vec()).exec_without_returning(txn).await?;
                }
                // Every member's view is the same (no other user, nothing unread): serialized once.
                let view = ConversationView {
                    id: conversation.id,
                    kind: ConversationKind::Group,
                    name: conversation.name.clone(),
                    other_user: None,
                    members_count: ids.len() as i64,
                    created_at: conversation.created_at,
                    last_message: None,
                    unread_count: 0,
                    unread_mentions: 0,
                    last_read_message_id: None,
                    notify: Notify::All,
                    muted_until: None,
                };
                let frame = ServerFrame::ConversationCreated { event_id, conversation: &view }.to_frame();
                let frames =
                    ids.iter().map(|id| UserFrame { user_id: UserId(*id), frame: frame.clone() }).collect();
                Ok((view, frames))
            })
        })
        .await
}

/// The group, if `user_id` is a current member; 404 for direct conversations too.
async fn group(
    conn: &impl sea_orm::ConnectionTrait,
    UserId(user_id): UserId,
    ConversationId(group_id): ConversationId,
) -> AppResult<(conversation::Model, member::Model)> {
    let (conversation, membership) = visible(conn, UserId(user_id), ConversationId(group_id))
        .await
        .map_err(|_| AppError::not_found("group not found"))?;
    if conversation.kind != ConversationKind::Group {
        return Err(AppError::not_found("group not found"));
    }
    Ok((conversation, membership))
}

pub async fn members(
    db: &Db,
    UserId(user_id): UserId,
    ConversationId(group_id): ConversationId,
) -> AppResult<Vec<MemberView>> {
    group(&db.read, UserId(user_id), ConversationId(group_id)).await?;
    let rows = member::Entity::find()
        .filter(member::Column::ConversationId.eq(group_id))
        .filter(member::Column::LeftEventId.is_null())
        .order_by_asc(member::Column::JoinedEventId)
        .order_by_asc(member::Column::UserId)
        .all(&db.read)
        .await?;
    let users: HashMap<i64, UserView> = user::Entity::find()
        .filter(user::Column::Id.is_in(rows.iter().map(|row| row.user_id)))
        .all(&db.read)
        .await?
        .into_iter()
        .map(|row| (row.id, UserView::from(row)))
        .collect();
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            Some(MemberView {
                user: users.get(&row.user_id)?.clone(),
                role: row.role,
                last_read_message_id: optional_id(row.last_read_message_id),
                last_delivered_message_id: optional_id(row.last_delivered_message_id),
            })
        })
        .collect())
}

/// Adds `user_id` (owner or admin only). Adding a current member changes nothing. The new
/// member gets `conversation_created`; everyone, the new member included, gets `member_added`.
pub async fn add_member(
    db: &Db,
    writer: &Writer,
    max_members: usize,
    UserId(actor_id): UserId,
    ConversationId(group_id): ConversationId,
    UserId(user_id): UserId,
) -> AppResult<MemberView> {
    let (_, membership) = group(&db.read, UserId(actor_id), ConversationId(group_id)).await?;
    if membership.role < Role::Admin {
        return Err(AppError::forbidden(ErrorCode::NotAllowed, "only the owner or an admin may add members"));
    }
    let user: UserView = user::Entity::find_by_id(user_id)
        .one(&db.read)
        .await?
        .map(UserView::from)
        .ok_or_else(|| AppError::not_found("user not found"))?;
    writer
        .write(move |txn| {
            Box::pin(add_in(txn, max_members, UserId(actor_id), ConversationId(group_id), user))
        })
        .await
}

async fn add_in(
    txn: &DatabaseTransaction,
    max_members: usize,
    UserId(actor_id): UserId,
    ConversationId(group_id): ConversationId,
    user: UserView,
) -> AppResult<(MemberView, Vec<UserFrame>)> {
    // Checked again inside the writer: the actor may have been removed meanwhile.
    let (conversation, actor) = group(txn, UserId(actor_id), ConversationId(group_id)).await?;
    if actor.role < Role::Admin {
        return Err(AppError::forbidden(ErrorCode::NotAllowed, "only the owner or an admin may add members"));
    }
    let existing = member::Entity::find_by_id((group_id, user.id)).one(txn).await?;
    if let Some(current) = existing.as_ref().filter(|row| row.left_event_id.is_none()) {
        let view = MemberView {
            role: current.role,
            last_read_message_id: optional_id(current.last_read_message_id),
            last_delivered_message_id: optional_id(current.last_delivered_message_id),
            user,
        };
        return Ok((view, Vec::new()));
    }
    let count = member::Entity::find()
        .filter(member::Column::ConversationId.eq(group_id))
        .filter(member::Column::LeftEventId.is_null())
        .count(txn)
        .await?;
    if count as usize >= max_members {
        return Err(AppError::validation("user_id", format!("the group is full ({max_members} members)")));
    }
    // The new member's own `conversation_created` first, then everyone's `member_added`,
    // from which on the member sees the group's events.
    let created = events::append_for_user(
        txn,
        ConversationId(group_id),
        UserId(user.id),
        &StoredEvent::ConversationCreated {},
    )
    .await?;
    let added = StoredEvent::MemberAdded { user: user.clone() };
    let added_id = events::append(txn, group_id, &added).await?;
    // History before joining is readable, but not unread.
    let read_up_to = conversation.last_message_id.unwrap_or(0);
    join(txn, existing, ConversationId(group_id), UserId(user.id), EventId(added_id), MessageId(read_up_to))
        .await?;
    conversation::Entity::update_many()
        .col_expr(conversation::Column::LastActivityId, Expr::value(added_id))
        .filter(conversation::Column::Id.eq(group_id))
        .exec(txn)
        .await?;
    let view = conversations::build_views(txn, user.id, vec![conversation]).await?.pop();
    let mut frames = Vec::new();
    if let Some(view) = &view {
        let frame = ServerFrame::ConversationCreated { event_id: created, conversation: view }.to_frame();
        frames.push(UserFrame { user_id: UserId(user.id), frame });
    }
    frames.extend(event_to_members(txn, group_id, added_id, &added, actor_id).await?);
    let member = MemberView {
        user,
        role: Role::Member,
        last_read_message_id: optional_id(read_up_to),
        last_delivered_message_id: optional_id(read_up_to),
    };
    Ok((member, frames))
}

/// The membership row of a member who joins at event `added_id`: a former member's row comes back,
/// anyone else gets a new one.
async fn join(
    txn: &DatabaseTransaction,
    existing: Option<member::Model>,
    group: ConversationId,
    user: UserId,
    EventId(added_id): EventId,
    MessageId(read_up_to): MessageId,
) -> Result<(), DbErr> {
    match existing {
        Some(previous) => {
            let mut active = previous.into_active_model();
            active.role = Set(Role::Member);
            active.joined_at = Set(time::now());
            active.joined_event_id = Set(added_id);
            active.left_event_id = Set(None);
            active.last_read_message_id = Set(read_up_to);
            active.last_delivered_message_id = Set(read_up_to);
            // A member who comes back starts afresh, as a new one would.
            active.unread_count = Set(0);
            active.unread_mentions = Set(0);
            active.notify = Set(member::Notify::All);
            active.muted_until = Set(None);
            active.update(txn).await?;
        }
        None => {
            new_member(group, user, Role::Member, EventId(added_id), MessageId(read_up_to))
                .insert(txn)
                .await?;
        }
    }
    Ok(())
}

/// Removes `user_id` from the group: the owner removes anyone, an admin removes members,
/// anyone removes themselves (leaves). The removed member gets `member_removed` too, then
/// nothing more. An owner who leaves hands the group to the longest-standing admin, or else
/// the longest-standing member.
pub async fn remove_member(
    db: &Db,
    writer: &Writer,
    UserId(actor_id): UserId,
    ConversationId(group_id): ConversationId,
    UserId(user_id): UserId,
) -> AppResult<()> {
    group(&db.read, UserId(actor_id), ConversationId(group_id)).await?;
    writer
        .write(move |txn| {
            Box::pin(remove_in(txn, UserId(actor_id), ConversationId(group_id), UserId(user_id)))
        })
        .await
}

async fn remove_in(
    txn: &DatabaseTransaction,
    UserId(actor_id): UserId,
    ConversationId(group_id): ConversationId,
    UserId(user_id): UserId,
) -> AppResult<((), Vec<UserFrame>)> {
    let (_, actor) = group(txn, UserId(actor_id), ConversationId(group_id)).await?;
    let target = member::Entity::find_by_id((group_id, user_id))
        .one(txn)
        .await?
        .filter(|row| row.left_event_id.is_none())
        .ok_or_else(|| AppError::not_found("member not found"))?;
    let (actor_role, target_role) = (actor.role, target.role);
    let allowed = actor_id == user_id
        || actor_role == Role::Owner
        || (actor_role == Role::Admin && target_role == Role::Member);
    if !allowed {
        return Err(AppError::forbidden(ErrorCode::NotAllowed, "you may not remove this member"));
    }
    let user: UserView = user::Entity::find_by_id(user_id)
        .one(txn)
        .await?
        .map(UserView::from)
        .ok_or_else(|| AppError::not_found("member not found"))?;
    let removed = StoredEvent::MemberRemoved { user };
    let event_id = events::append(txn, group_id, &removed).await?;
    // Rendered before the row changes, so the removed member is still among the recipients.
    let frames = event_to_members(txn, group_id, event_id, &removed, actor_id).await?;
    let mut active = target.into_active_model();
    active.left_event_id = Set(Some(event_id));
    active.role = Set(Role::Member);
    active.update(txn).await?;
    if target_role == Role::Owner {
        let heir = member::Entity::find()
            .filter(member::Column::ConversationId.eq(group_id))
            .filter(member::Column::LeftEventId.is_null())
            .order_by_desc(member::Column::Role.eq(Role::Admin))
            .order_by_asc(member::Column::JoinedEventId)
            .order_by_asc(member::Column::UserId)
            .one(txn)
            .await?;
        if let Some(heir) = heir {
            let mut active = heir.into_active_model();
            active.role = Set(Role::Owner);
            active.update(txn).await?;
        }
    }
    conversation::Entity::update_many()
        .col_expr(conversation::Column::LastActivityId, Expr::value(event_id))
        .filter(conversation::Column::Id.eq(group_id))
        .exec(txn)
        .await?;
    Ok(((), frames))
}

/// Makes a member an admin or an admin a member (owner only).
pub async fn set_role(
    db: &Db,
    writer: &Writer,
    UserId(actor_id): UserId,
    ConversationId(group_id): ConversationId,
    UserId(user_id): UserId,
    role: Role,
) -> AppResult<MemberView> {
    // The owner naming themselves is caught below (their row is the owner's); anyone
    // else is refused as not the owner first.
    if role == Role::Owner {
        return Err(AppError::validation("role", "role must be admin or member"));
    }
    // Checked and changed in the writer, so a concurrent leave (which may hand ownership to
    // this very member) cannot interleave with it.
    let row = writer
        .write(move |txn| {
            Box::pin(async move {
                let (_, actor) = group(txn, UserId(actor_id), ConversationId(group_id)).await?;
                if actor.role != Role::Owner {
                    return Err(AppError::forbidden(
                        ErrorCode::NotAllowed,
                        "only the owner may change roles",
                    ));
                }
                let target = member::Entity::find_by_id((group_id, user_id))
                    .one(txn)
                    .await?
                    .filter(|row| row.left_event_id.is_none())
                    .ok_or_else(|| AppError::not_found("member not found"))?;
                if target.role == Role::Owner {
                    return Err(AppError::validation("role", "the owner's role cannot be changed"));
                }
                let mut active = target.into_active_model();
                active.role = Set(role);
                Ok((active.update(txn).await?, Vec::new()))
            })
        })
        .await?;
    let user = user::Entity::find_by_id(user_id)
        .one(&db.read)
        .await?
        .map(UserView::from)
        .ok_or_else(|| AppError::not_found("member not found"))?;
    Ok(MemberView {
        user,
        role,
        last_read_message_id: optional_id(row.last_read_message_id),
        last_delivered_message_id: optional_id(row.last_delivered_message_id),
    })
}
