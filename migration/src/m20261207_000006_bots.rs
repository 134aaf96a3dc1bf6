//! Bots: users (`is_bot`) owned by a user, with a token and an optional webhook; and the
//! queue of webhook deliveries, kept in the database so that they survive restarts.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(boolean(Users::IsBot).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Bots::Table)
                    .col(big_integer(Bots::UserId).primary_key())
                    .col(big_integer(Bots::OwnerId))
                    .col(string_len(Bots::Kind, 16))
                    .col(string_len_null(Bots::WebhookUrl, 2048))
                    .col(string_len(Bots::WebhookSecret, 128))
                    .col(boolean(Bots::WebhookEnabled).default(true))
                    // Requests failed in a row; the hook is disabled at bots.max_consecutive_failures.
                    .col(integer(Bots::Failures).default(0))
                    // SHA-256 of the bot's token: a leaked table does not leak tokens.
                    .col(string_len(Bots::TokenHash, 64))
                    .col(timestamp_with_time_zone(Bots::CreatedAt))
                    .foreign_key(
                        ForeignKey::create().from(Bots::Table, Bots::UserId).to(Users::Table, Users::Id),
                    )
                    .foreign_key(
                        ForeignKey::create().from(Bots::Table, Bots::OwnerId).to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_bots_token_hash")
                    .table(Bots::Table)
                    .col(Bots::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_bots_owner").table(Bots::Table).col(Bots::OwnerId).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDeliveries::Table)
                    .col(big_pk_auto(WebhookDeliveries::Id))
                    .col(big_integer(WebhookDeliveries::BotId))
                    .col(big_integer(WebhookDeliveries::EventId))
                    .col(string_len(WebhookDeliveries::Kind, 32))
                    .col(big_integer(WebhookDeliveries::MessageId))
                    // Unix milliseconds, like push_deliveries.
                    .col(big_integer(WebhookDeliveries::DueAt))
                    .col(big_integer(WebhookDeliveries::LeaseUntil).default(0))
                    .col(big_integer(WebhookDeliveries::LeaseToken).default(0))
                    .col(integer(WebhookDeliveries::Attempts).default(0))
                    .to_owned(),
            )
            .await?;
        // One delivery per bot and event, whichever instance plans it.
        manager
            .create_index(
                Index::create()
                    .name("uq_webhook_deliveries_bot_event")
                    .table(WebhookDeliveries::Table)
                    .col(WebhookDeliveries::BotId)
                    .col(WebhookDeliveries::EventId)
                    .col(WebhookDeliveries::Kind)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(WebhookDeliveries::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Bots::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Users::Table).drop_column(Users::IsBot).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    IsBot,
}

#[derive(DeriveIden)]
enum Bots {
    Table,
    UserId,
    OwnerId,
    Kind,
    WebhookUrl,
    WebhookSecret,
    WebhookEnabled,
    Failures,
    TokenHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    Id,
    BotId,
    EventId,
    Kind,
    MessageId,
    DueAt,
    LeaseUntil,
    LeaseToken,
    Attempts,
}
