use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Lowercase; unique.
    #[sea_orm(unique)]
    pub username: String,
    pub display_name: String,
    /// Argon2id PHC string; never leaves the server.
    pub password_hash: String,
    pub created_at: DateTimeUtc,
    /// A bot: owned by a user (`bots`), signs in with its token only.
    pub is_bot: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
