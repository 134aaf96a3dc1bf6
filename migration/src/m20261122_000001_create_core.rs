use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(big_pk_auto(Users::Id))
                    .col(string_len_uniq(Users::Username, 32))
                    .col(string_len(Users::DisplayName, 64))
                    .col(string(Users::PasswordHash))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Conversations::Table)
                    .col(big_pk_auto(Conversations::Id))
                    .col(string_len(Conversations::Kind, 16))
                    .col(string_len_null(Conversations::Name, 100))
                    .col(string_len_null(Conversations::DirectKey, 48).unique_key())
                    .col(big_integer(Conversations::CreatedBy))
                    .col(timestamp_with_time_zone(Conversations::CreatedAt))
                    .col(big_integer_null(Conversations::LastMessageId))
                    .col(big_integer(Conversations::LastActivityId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Conversations::Table, Conversations::CreatedBy)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ConversationMembers::Table)
                    .col(big_integer(ConversationMembers::ConversationId))
                    .col(big_integer(ConversationMembers::UserId))
                    .col(string_len(ConversationMembers::Role, 16))
                    .col(timestamp_with_time_zone(ConversationMembers::JoinedAt))
                    .col(big_integer(ConversationMembers::JoinedEventId))
                    .col(big_integer_null(ConversationMembers::LeftEventId))
                    .col(big_integer(ConversationMembers::LastReadMessageId).default(0))
                    .col(big_integer(ConversationMembers::LastDeliveredMessageId).default(0))
                    .primary_key(
                        Index::create()
                            .col(ConversationMembers::ConversationId)
                            .col(ConversationMembers::UserId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ConversationMembers::Table, ConversationMembers::ConversationId)
                            .to(Conversations::Table, Conversations::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ConversationMembers::Table, ConversationMembers::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // The conversation list starts from the caller's memberships.
        manager
            .create_index(
                Index::create()
                    .name("idx_members_user")
                    .table(ConversationMembers::Table)
                    .col(ConversationMembers::UserId)
                    .col(ConversationMembers::ConversationId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(big_pk_auto(Messages::Id))
                    .col(big_integer(Messages::ConversationId))
                    .col(big_integer(Messages::SenderId))
                    .col(big_integer_null(Messages::RecipientId))
                    .col(text(Messages::Body))
                    .col(string_len_null(Messages::ClientId, 64))
                    .col(timestamp_with_time_zone(Messages::CreatedAt))
                    .col(timestamp_with_time_zone_null(Messages::EditedAt))
                    .col(timestamp_with_time_zone_null(Messages::DeletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Messages::Table, Messages::ConversationId)
                            .to(Conversations::Table, Conversations::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Messages::Table, Messages::SenderId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // History pages and unread counts are id ranges within one conversation.
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_conversation_id")
                    .table(Messages::Table)
                    .col(Messages::ConversationId)
                    .col(Messages::Id)
                    .to_owned(),
            )
            .await?;
        // Idempotent sends: one message per (sender, client_id); NULL client ids never clash.
        manager
            .create_index(
                Index::create()
                    .name("uq_messages_sender_client_id")
                    .table(Messages::Table)
                    .col(Messages::SenderId)
                    .col(Messages::ClientId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(big_pk_auto(Events::Id))
                    .col(big_integer_null(Events::ConversationId))
                    .col(big_integer_null(Events::UserId))
                    .col(string_len(Events::Kind, 32))
                    .col(text(Events::Payload))
                    .col(timestamp_with_time_zone(Events::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_conversation")
                    .table(Events::Table)
                    .col(Events::ConversationId)
                    .col(Events::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_events_user")
                    .table(Events::Table)
                    .col(Events::UserId)
                    .col(Events::Id)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Username,
    DisplayName,
    PasswordHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    Kind,
    Name,
    DirectKey,
    CreatedBy,
    CreatedAt,
    LastMessageId,
    LastActivityId,
}

#[derive(DeriveIden)]
enum ConversationMembers {
    Table,
    ConversationId,
    UserId,
    Role,
    JoinedAt,
    JoinedEventId,
    LeftEventId,
    LastReadMessageId,
    LastDeliveredMessageId,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ConversationId,
    SenderId,
    RecipientId,
    Body,
    ClientId,
    CreatedAt,
    EditedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    ConversationId,
    UserId,
    Kind,
    Payload,
    CreatedAt,
}
