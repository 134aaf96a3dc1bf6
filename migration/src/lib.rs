//! Switchboard's schema. The same migrations run on SQLite and PostgreSQL; they are applied
//! at start-up and by `switchboard migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_create_core;
mod m20261122_000002_conversations_complete;
mod m20261206_000003_reactions_replies_mentions_pins;
mod m20261206_000004_push;
mod m20261207_000005_push_deliveries;
mod m20261207_000006_bots;
mod m20261208_000007_away;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_core::Migration),
            Box::new(m20261122_000002_conversations_complete::Migration),
            Box::new(m20261206_000003_reactions_replies_mentions_pins::Migration),
            Box::new(m20261206_000004_push::Migration),
            Box::new(m20261207_000005_push_deliveries::Migration),
            Box::new(m20261207_000006_bots::Migration),
            Box::new(m20261208_000007_away::Migration),
        ]
    }
}
