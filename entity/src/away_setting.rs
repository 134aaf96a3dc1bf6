use sea_orm::entity::prelude::*;

/// A user's away replies: while enabled and the user is offline, a direct message still
/// unread after `away.delay_seconds` gets one reply per sender and away period.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "away_settings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    pub enabled: bool,
    /// A bot the user owns that writes the reply; without one, `message` is the reply.
    pub assistant_bot_id: Option<i64>,
    pub message: Option<String>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
