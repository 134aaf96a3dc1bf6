//! v1.1: reactions, replies, mentions, pins and per-member notification settings.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for column in
            [big_integer_null(Messages::ReplyToId), timestamp_with_time_zone_null(Messages::PinnedAt)]
        {
            manager.alter_table(Table::alter().table(Messages::Table).add_column(column).to_owned()).await?;
        }
        // Kept by the writer like `unread_count`, so a conversation list never counts mentions.
        for column in [
            big_integer(ConversationMembers::UnreadMentions).default(0).to_owned(),
            string_len(ConversationMembers::Notify, 16).default("all").to_owned(),
            timestamp_with_time_zone_null(ConversationMembers::MutedUntil),
        ] {
            manager
                .alter_table(Table::alter().table(ConversationMembers::Table).add_column(column).to_owned())
                .await?;
        }
        // Partial: a send adds no entry to either index, and both stay as small as what
        // they find (pinned messages; members who changed their settings).
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_pinned")
                    .table(Messages::Table)
                    .col(Messages::ConversationId)
                    .col(Messages::PinnedAt)
                    .and_where(Expr::col(Messages::PinnedAt).is_not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_members_settings")
                    .table(ConversationMembers::Table)
                    .col(ConversationMembers::ConversationId)
                    .and_where(
                        Expr::col(ConversationMembers::Notify)
                            .ne("all")
                            .or(Expr::col(ConversationMembers::MutedUntil).is_not_null()),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Reactions::Table)
                    // Ascending ids give the first-reaction order.
                    .col(big_pk_auto(Reactions::Id))
                    .col(big_integer(Reactions::MessageId))
                    .col(big_integer(Reactions::UserId))
                    .col(string_len(Reactions::Emoji, 32))
                    .col(timestamp_with_time_zone(Reactions::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Reactions::Table, Reactions::MessageId)
                            .to(Messages::Table, Messages::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_reactions_message_emoji_user")
                    .table(Reactions::Table)
                    .col(Reactions::MessageId)
                    .col(Reactions::Emoji)
                    .col(Reactions::UserId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Mentions::Table)
                    .col(big_integer(Mentions::MessageId))
                    .col(big_integer(Mentions::UserId))
                    .col(big_integer(Mentions::ConversationId))
                    .primary_key(Index::create().col(Mentions::MessageId).col(Mentions::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Mentions::Table, Mentions::MessageId)
                            .to(Messages::Table, Messages::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Reading recounts a member's unread mentions from here.
        manager
            .create_index(
                Index::create()
                    .name("idx_mentions_user_conversation")
                    .table(Mentions::Table)
                    .col(Mentions::UserId)
                    .col(Mentions::ConversationId)
                    .col(Mentions::MessageId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    ConversationId,
    ReplyToId,
    PinnedAt,
}

#[derive(DeriveIden)]
enum ConversationMembers {
    Table,
    ConversationId,
    UnreadMentions,
    Notify,
    MutedUntil,
}

#[derive(DeriveIden)]
enum Reactions {
    Table,
    Id,
    MessageId,
    UserId,
    Emoji,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Mentions {
    Table,
    MessageId,
    UserId,
    ConversationId,
}
