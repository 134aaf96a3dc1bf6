use sea_orm::entity::prelude::*;

/// A push still to be sent: one message to one subscription. Deleted once the push service
/// has it (or has refused it for good).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "push_deliveries")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub message_id: i64,
    pub subscription_id: i64,
    /// Unix milliseconds: not sent before.
    pub due_at: i64,
    /// Unix milliseconds: until then the instance holding `lease_token` is sending it.
    pub lease_until: i64,
    pub lease_token: i64,
    /// Requests made so far.
    pub attempts: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
