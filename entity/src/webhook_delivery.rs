use sea_orm::entity::prelude::*;

/// An event still to be delivered to a bot. Deleted once delivered, or given up.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub bot_id: i64,
    pub event_id: i64,
    /// What the hook is told of: `new_message` or `away_request`.
    pub kind: String,
    pub message_id: i64,
    /// Unix milliseconds: not sent before.
    pub due_at: i64,
    /// Unix milliseconds: until then the instance holding `lease_token` is sending it.
    pub lease_until: i64,
    pub lease_token: i64,
    pub attempts: i32,
    /// For an `away_request`: the away period it answers in (unix ms of the user's last
    /// disconnect, 0 if never seen); 0 otherwise.
    pub away_period: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
