use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversation_members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub conversation_id: i64,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    pub role: Role,
    pub joined_at: DateTimeUtc,
    /// The member sees the conversation's events from this event id on.
    pub joined_event_id: i64,
    /// Set when the member leaves or is removed: events after it are no longer theirs.
    pub left_event_id: Option<i64>,
    /// 0 until the member reads anything.
    pub last_read_message_id: i64,
    /// 0 until a device acknowledges anything.
    pub last_delivered_message_id: i64,
    /// Messages from others after `last_read_message_id`, not deleted; kept by the writer.
    pub unread_count: i64,
    /// The unread messages among those that mention this member; kept with `unread_count`.
    pub unread_mentions: i64,
    /// Which messages may be pushed to this member: `all`, `mentions` or `none`.
    pub notify: Notify,
    pub muted_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Stored as `member`, `admin` or `owner`; ordered by power.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[sea_orm(string_value = "member")]
    Member,
    #[sea_orm(string_value = "admin")]
    Admin,
    #[sea_orm(string_value = "owner")]
    Owner,
}

/// A member's push setting for one conversation.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum Notify {
    #[default]
    #[sea_orm(string_value = "all")]
    All,
    #[sea_orm(string_value = "mentions")]
    Mentions,
    #[sea_orm(string_value = "none")]
    None,
}
