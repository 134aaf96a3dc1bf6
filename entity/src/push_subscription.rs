use sea_orm::entity::prelude::*;

/// A browser's Web Push subscription (RFC 8030): where to send, and the keys to encrypt for.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "push_subscriptions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub user_id: i64,
    #[sea_orm(unique)]
    pub endpoint: String,
    /// The browser's P-256 public key, base64url as received.
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url as received.
    pub auth: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
