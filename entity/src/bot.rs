use sea_orm::entity::prelude::*;

/// A bot's own data beside its `users` row: who owns it, how it is reached, its token.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bots")]
pub struct Model {
    /// The bot's user id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: i64,
    pub owner_id: i64,
    /// `webhook` or `assistant` (answered by the configured model).
    pub kind: String,
    pub webhook_url: Option<String>,
    /// Signs each webhook request (HMAC-SHA256); shown to the owner at creation and rotation.
    pub webhook_secret: String,
    pub webhook_enabled: bool,
    /// Webhook requests failed in a row.
    pub failures: i32,
    /// SHA-256 (hex) of the bot's token.
    #[sea_orm(unique)]
    pub token_hash: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
