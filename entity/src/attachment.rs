use sea_orm::entity::prelude::*;

/// A file sent with a message. The bytes live under `attachments.dir` as `storage_key`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "attachments")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub message_id: i64,
    pub uploader_id: i64,
    /// Sanitized: no path parts, no control characters.
    pub filename: String,
    /// Judged from the bytes.
    pub mime_type: String,
    pub size: i64,
    /// Random hex; the file's name on disk, so names never collide or traverse.
    #[sea_orm(unique)]
    pub storage_key: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
