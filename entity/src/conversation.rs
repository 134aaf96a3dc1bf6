use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversations")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub kind: ConversationKind,
    /// Group name; null for direct conversations.
    pub name: Option<String>,
    /// `"{low_user_id}:{high_user_id}"` for direct conversations, so a unique index keeps
    /// one conversation per pair; null for groups.
    #[sea_orm(unique)]
    pub direct_key: Option<String>,
    pub created_by: i64,
    pub created_at: DateTimeUtc,
    pub last_message_id: Option<i64>,
    /// Event id of the latest activity; orders the conversation list without ties.
    pub last_activity_id: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// Stored as `direct` or `group`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum, serde::Serialize, utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    #[sea_orm(string_value = "direct")]
    Direct,
    #[sea_orm(string_value = "group")]
    Group,
}
