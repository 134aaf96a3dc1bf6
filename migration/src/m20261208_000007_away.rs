//! Away replies: each user's away setting, the marker on the messages it posts, and the
//! away period a pending `away_request` delivery belongs to.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AwaySettings::Table)
                    .col(big_integer(AwaySettings::UserId).primary_key())
                    .col(boolean(AwaySettings::Enabled).default(false))
                    .col(big_integer_null(AwaySettings::AssistantBotId))
                    .col(string_len_null(AwaySettings::Message, 8000))
                    .col(timestamp_with_time_zone(AwaySettings::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(AwaySettings::Table, AwaySettings::UserId)
                            .to(Users::Table, Users::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // Two columns: `{bot_id: null}` (the fixed text) differs from no marker at all.
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(boolean(Messages::AutoReply).default(false))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Messages::Table)
                    .add_column(big_integer_null(Messages::AutoReplyBotId))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookDeliveries::Table)
                    .add_column(big_integer(WebhookDeliveries::AwayPeriod).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(WebhookDeliveries::Table)
                    .drop_column(WebhookDeliveries::AwayPeriod)
                    .to_owned(),
            )
            .await?;
        for column in [Messages::AutoReplyBotId, Messages::AutoReply] {
            manager.alter_table(Table::alter().table(Messages::Table).drop_column(column).to_owned()).await?;
        }
        manager.drop_table(Table::drop().table(AwaySettings::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum AwaySettings {
    Table,
    UserId,
    Enabled,
    AssistantBotId,
    Message,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    AutoReply,
    AutoReplyBotId,
}

#[derive(DeriveIden)]
enum WebhookDeliveries {
    Table,
    AwayPeriod,
}
