use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub conversation_id: i64,
    pub sender_id: i64,
    /// The other user of a direct conversation; null in groups.
    pub recipient_id: Option<i64>,
    pub body: String,
    /// The sender's idempotency key, unique per sender.
    pub client_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub edited_at: Option<DateTimeUtc>,
    /// Soft delete: the row stays for audit, the API shows it as deleted.
    pub deleted_at: Option<DateTimeUtc>,
    /// The message of the same conversation this one quotes.
    pub reply_to_id: Option<i64>,
    /// Set while pinned; orders the conversation's pins, most recent first.
    pub pinned_at: Option<DateTimeUtc>,
    /// Posted by the sender's away setting, not typed by them.
    pub auto_reply: bool,
    /// The assistant bot that wrote an auto reply; null for the fixed text.
    pub auto_reply_bot_id: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
