//! Database pools. SQLite runs in WAL mode with one write connection (SQLite allows one
//! writer at a time; queuing writers in the pool avoids `SQLITE_BUSY` lock upgrades) and a
//! pool of readers that never wait for it. PostgreSQL uses one pool for both.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseBackend, DatabaseConnection, DbErr};

use crate::config::DatabaseSettings;

#[derive(Clone)]
pub struct Db {
    /// Every transaction that writes goes through this pool.
    pub write: DatabaseConnection,
    /// Reads that need no transaction.
    pub read: DatabaseConnection,
    /// The `Writer`'s own connections. On PostgreSQL a pool of its own, whose connections are
    /// opened by the writer's thread: a socket is served by the runtime that opened it, so a
    /// connection opened by an HTTP worker would have the writer's statements wait for that
    /// worker's turn. On SQLite the one write connection.
    pub writer: DatabaseConnection,
    pub backend: DatabaseBackend,
}

impl Db {
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, DbErr> {
        if settings.url.starts_with("sqlite:") {
            let write = Database::connect(sqlite_options(&settings.url, 1, false)).await?;
            // Create the schema through the writer before readers open the file read-only.
            Migrator::up(&write, None).await?;
            let read =
                Database::connect(sqlite_options(&settings.url, settings.max_connections, true)).await?;
            Ok(Self { writer: write.clone(), write, read, backend: DatabaseBackend::Sqlite })
        } else {
            let mut options = ConnectOptions::new(settings.url.clone());
            options
                .max_connections(settings.max_connections)
                .acquire_timeout(Duration::from_secs(5))
                .sqlx_logging(false);
            let pool = Database::connect(options.clone()).await?;
            migrate(&pool).await?;
            // No connection at start: the first is opened when the writer first asks, on
            // its thread. Two: the batch's, and the event lock's with several instances.
            options.min_connections(0).max_connections(2).connect_lazy(true);
            // A batch's multi-row statements take one shape per row count; with sqlx's
            // default 100 cached statements they were evicted and prepared again all the
            // time, each eviction a round trip of its own.
            options.map_sqlx_postgres_opts(|opts| opts.statement_cache_capacity(4096));
            let writer = Database::connect(options).await?;
            Ok(Self { write: pool.clone(), read: pool, writer, backend: DatabaseBackend::Postgres })
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.backend == DatabaseBackend::Postgres
    }
}

/// Applies pending migrations. On PostgreSQL an advisory lock keeps instances that start
/// together from racing each other.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    use sea_orm::ConnectionTrait;
    if db.get_database_backend() == DatabaseBackend::Postgres {
        let txn = sea_orm::TransactionTrait::begin(db).await?;
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(7355608001)").await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await
    } else {
        Migrator::up(db, None).await
    }
}

fn sqlite_options(url: &str, connections: u32, read_only: bool) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        // A local file needs no ping before each use; on the writer it cost a round trip to
        // the connection's thread per batch.
        .test_before_acquire(false)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                // Durable across a process crash; an OS crash may lose the last commits.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                .read_only(read_only)
        });
    options
}

/// A raw statement with `$n` placeholders, as each database spells them (SQLite: `?n`).
pub fn statement(backend: DatabaseBackend, sql: &str, values: Vec<sea_orm::Value>) -> sea_orm::Statement {
    let sql = match backend {
        DatabaseBackend::Postgres => sql.to_owned(),
        _ => sql.replace('$', "?"),
    };
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

/// Rows per multi-row statement: SQLite allows 32,766 bound values, and no row of ours
/// binds more than eight.
pub const MAX_ROWS_PER_STATEMENT: usize = 1024;

/// Pads a list for `IN (…)` to a power of two by repeating its last value, so a batch's
/// queries come in a handful of shapes that stay in each connection's prepared-statement
/// cache instead of one shape per batch size.
pub fn padded<T: Clone>(mut items: Vec<T>) -> Vec<T> {
    if let Some(last) = items.last().cloned() {
        items.resize(items.len().next_power_of_two(), last);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_repeats_the_last_value() {
        assert_eq!(padded(vec![1, 2, 3]), [1, 2, 3, 3]);
        assert_eq!(padded(vec![5]), [5]);
        assert_eq!(padded(Vec::<i32>::new()), Vec::<i32>::new());
        assert_eq!(padded((0..5).collect()).len(), 8);
    }
}
