//! Web Push deliveries: one row per message and subscription still to be pushed, so a push
//! survives the instance that planned it, and the cursor of messages already planned.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PushDeliveries::Table)
                    .col(big_pk_auto(PushDeliveries::Id))
                    .col(big_integer(PushDeliveries::MessageId))
                    .col(big_integer(PushDeliveries::SubscriptionId))
                    // Unix milliseconds: compared in SQL the same way on both databases.
                    .col(big_integer(PushDeliveries::DueAt))
                    .col(big_integer(PushDeliveries::LeaseUntil).default(0))
                    .col(big_integer(PushDeliveries::LeaseToken).default(0))
                    .col(integer(PushDeliveries::Attempts).default(0))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PushDeliveries::Table, PushDeliveries::SubscriptionId)
                            .to(PushSubscriptions::Table, PushSubscriptions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A message is planned once per subscription, whichever instance plans it.
        manager
            .create_index(
                Index::create()
                    .name("uq_push_deliveries_message_subscription")
                    .table(PushDeliveries::Table)
                    .col(PushDeliveries::MessageId)
                    .col(PushDeliveries::SubscriptionId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_push_deliveries_due")
                    .table(PushDeliveries::Table)
                    .col(PushDeliveries::DueAt)
                    .to_owned(),
            )
            .await?;
        // The cascade's lookup when a subscription goes.
        manager
            .create_index(
                Index::create()
                    .name("idx_push_deliveries_subscription")
                    .table(PushDeliveries::Table)
                    .col(PushDeliveries::SubscriptionId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(PushDeliveries::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum PushDeliveries {
    Table,
    Id,
    MessageId,
    SubscriptionId,
    DueAt,
    LeaseUntil,
    LeaseToken,
    Attempts,
}

#[derive(DeriveIden)]
enum PushSubscriptions {
    Table,
    Id,
}
