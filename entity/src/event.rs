use sea_orm::entity::prelude::*;

/// One row per change a user must see; `id` is the contract's `event_id`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Set for events every member of the conversation sees.
    pub conversation_id: Option<i64>,
    /// Set for events only one user sees.
    pub user_id: Option<i64>,
    /// The event type, e.g. `message_created`, `message_read`, `conversation_created`.
    pub kind: String,
    /// JSON with the data needed to render the frame for each reader.
    pub payload: String,
    pub created_at: DateTimeUtc,
    /// The message of a `message_created` event; turns an acked event id into a delivered
    /// message id.
    pub message_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
