//! Groups, edits and deletes, receipts, blocks, contacts, search and attachments.

use sea_orm_migration::sea_orm::DatabaseBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // A counter per member, moved by the writer with each message, read and delete: a
        // 1,000-member group would otherwise count its history once per recipient and send.
        manager
            .alter_table(
                Table::alter()
                    .table(ConversationMembers::Table)
                    .add_column(big_integer(ConversationMembers::UnreadCount).default(0))
                    .to_owned(),
            )
            .await?;
        // The message a `message_created` event carries, so an `ack` of an event id can be
        // turned into delivered-message pointers.
        manager
            .alter_table(
                Table::alter()
                    .table(Events::Table)
                    .add_column(big_integer_null(Events::MessageId))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Blocks::Table)
                    .col(big_integer(Blocks::BlockerId))
                    .col(big_integer(Blocks::BlockedId))
                    .col(timestamp_with_time_zone(Blocks::CreatedAt))
                    .primary_key(Index::create().col(Blocks::BlockerId).col(Blocks::BlockedId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Blocks::Table, Blocks::BlockerId)
                            .to(Users::Table, Users::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Blocks::Table, Blocks::BlockedId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ContactRequests::Table)
                    .col(big_pk_auto(ContactRequests::Id))
                    .col(big_integer(ContactRequests::FromUserId))
                    .col(big_integer(ContactRequests::ToUserId))
                    .col(string_len(ContactRequests::Status, 16))
                    .col(timestamp_with_time_zone(ContactRequests::CreatedAt))
                    .col(timestamp_with_time_zone_null(ContactRequests::AcceptedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ContactRequests::Table, ContactRequests::FromUserId)
                            .to(Users::Table, Users::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ContactRequests::Table, ContactRequests::ToUserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One request per ordered pair; the reverse direction is looked up by the same index.
        manager
            .create_index(
                Index::create()
                    .name("uq_contact_requests_pair")
                    .table(ContactRequests::Table)
                    .col(ContactRequests::FromUserId)
                    .col(ContactRequests::ToUserId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_contact_requests_to")
                    .table(ContactRequests::Table)
                    .col(ContactRequests::ToUserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Attachments::Table)
                    .col(big_pk_auto(Attachments::Id))
                    .col(big_integer(Attachments::MessageId))
                    .col(big_integer(Attachments::UploaderId))
                    .col(string_len(Attachments::Filename, 255))
                    .col(string_len(Attachments::MimeType, 100))
                    .col(big_integer(Attachments::Size))
                    .col(string_len_uniq(Attachments::StorageKey, 64))
                    .col(timestamp_with_time_zone(Attachments::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Attachments::Table, Attachments::MessageId)
                            .to(Messages::Table, Messages::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_attachments_message")
                    .table(Attachments::Table)
                    .col(Attachments::MessageId)
                    .to_owned(),
            )
            .await?;

        // Full-text search, kept in step with inserts, edits and deletes by the database
        // itself, in the same transaction as the change.
        let db = manager.get_connection();
        match manager.get_database_backend() {
            DatabaseBackend::Sqlite => {
                for statement in [
                    "CREATE VIRTUAL TABLE messages_fts USING fts5(body, tokenize = 'porter unicode61')",
                    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages WHEN new.deleted_at IS NULL \
                     BEGIN INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END",
                    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF body, deleted_at ON messages \
                     BEGIN DELETE FROM messages_fts WHERE rowid = old.id; \
                     INSERT INTO messages_fts(rowid, body) SELECT new.id, new.body WHERE new.deleted_at IS NULL; END",
                ] {
                    db.execute_unprepared(statement).await?;
                }
            }
            _ => {
                for statement in [
                    "ALTER TABLE messages ADD COLUMN search tsvector \
                     GENERATED ALWAYS AS (to_tsvector('english', body)) STORED",
                    "CREATE INDEX idx_messages_search ON messages USING GIN (search) WHERE deleted_at IS NULL",
                ] {
                    db.execute_unprepared(statement).await?;
                }
            }
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum ConversationMembers {
    Table,
    UnreadCount,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    MessageId,
}

#[derive(DeriveIden)]
enum Blocks {
    Table,
    BlockerId,
    BlockedId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ContactRequests {
    Table,
    Id,
    FromUserId,
    ToUserId,
    Status,
    CreatedAt,
    AcceptedAt,
}

#[derive(DeriveIden)]
enum Attachments {
    Table,
    Id,
    MessageId,
    UploaderId,
    Filename,
    MimeType,
    Size,
    StorageKey,
    CreatedAt,
}
