//! Database pools. SQLite runs in WAL mode with one write connection (SQLite allows one
//! writer at a time; queuing writers in the pool avoids `SQLITE_BUSY` lock upgrades) and a
//! pool of readers that never wait for it. PostgreSQL uses one pool for both.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseBackend, DatabaseConnection, DbErr, RuntimeErr};

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
            let write = Database::connect(sqlite_options(&settings.url, 1, SqliteRole::Write)).await?;
            // Create the schema through the writer before readers open the file read-only.
            Migrator::up(&write, None).await?;
            let read =
                Database::connect(sqlite_options(&settings.url, settings.max_connections, SqliteRole::Read))
                    .await?;
            let checkpoints =
                Database::connect(sqlite_options(&settings.url, 1, SqliteRole::Checkpoint)).await?;
            actix::spawn(checkpoint_wal(checkpoints));
            Ok(Self { writer: write.clone(), write, read, backend: DatabaseBackend::Sqlite })
        } else {
            let mut options = ConnectOptions::new(settings.url.clone());
            // Every connection opened at start: one opened under load (TCP, TLS, auth) kept
            // its request waiting 40–130 ms here, the `dm` tail on PostgreSQL.
            options
                .max_connections(settings.max_connections)
                .min_connections(settings.max_connections)
                .acquire_timeout(Duration::from_secs(5))
                .sqlx_logging(false);
            if let Some(port) = tcp_port(&settings.url) {
                options.map_sqlx_postgres_pool_opts(move |pool| {
                    pool.after_connect(move |_, _| {
                        nodelay::database_sockets(port);
                        Box::pin(async { Ok(()) })
                    })
                });
            }
            let pool = Database::connect(options.clone()).await?;
            migrate(&pool).await?;
            // No connection at start: the first is opened when the writer first asks, on
            // its thread. Two: the batch's, and the event lock's with several instances.
            // Kept open: reopening one would stall a batch the same way.
            options
                .min_connections(0)
                .max_connections(2)
                .connect_lazy(true)
                .idle_timeout(None)
                .max_lifetime(None);
            // A batch's multi-row statements take one shape per row count; with sqlx's
            // default 100 cached statements they were evicted and prepared again all the
            // time, each eviction a round trip of its own.
            //
            // Planned for each execution's values: a generic plan cached while a table was
            // small (a new deployment's first minutes) kept scanning it whole as it grew, until
            // autovacuum's next ANALYZE (8.9 million rows read by 961 scans of `conversations`
            // in a 15 s `dm-max` on a fresh database). Planning these short statements costs
            // tens of microseconds.
            options.map_sqlx_postgres_opts(|opts| {
                opts.statement_cache_capacity(4096).options([("plan_cache_mode", "force_custom_plan")])
            });
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

/// The TCP port of a PostgreSQL URL; `None` for a Unix socket.
fn tcp_port(url: &str) -> Option<u16> {
    let options: PgConnectOptions = url.parse().ok()?;
    options.get_socket().is_none().then(|| options.get_port())
}

/// sqlx 0.9.0 opens its PostgreSQL TCP sockets without `TCP_NODELAY` (transact-rs/sqlx#4335;
/// the fix, #4336, is merged but unreleased). Where it sends a statement in two writes, the
/// second waits for the server's delayed ACK: 40 ms on Linux. Measured here, `dm` at 500
/// msgs/s on PostgreSQL had p99 244 ms over TCP and 12 ms over the Unix socket. sqlx gives
/// no handle on its socket, so after each new connection every TCP socket of this process
/// whose peer is the database port gets the option. Remove once sqlx sets it itself.
mod nodelay {
    #[cfg(target_os = "linux")]
    pub fn database_sockets(port: u16) {
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else { return };
        for entry in entries.flatten() {
            let fd = entry.file_name().to_str().and_then(|name| name.parse::<libc::c_int>().ok());
            if let Some(fd) = fd
                && peer_port(fd) == Some(port)
            {
                set_nodelay(fd);
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn database_sockets(_port: u16) {}

    /// The remote port of `fd` if it is a connected IPv4 or IPv6 socket. The number may have
    /// been closed (or reused) since it was listed; the calls then fail or see another socket,
    /// which only costs that socket Nagle's algorithm.
    #[cfg(target_os = "linux")]
    fn peer_port(fd: libc::c_int) -> Option<u16> {
        // SAFETY: an all-zero sockaddr_storage is a valid value.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `addr` and `len` are valid for writes and `len` is `addr`'s size.
        let found = unsafe { libc::getpeername(fd, std::ptr::from_mut(&mut addr).cast(), &mut len) };
        if found != 0 {
            return None;
        }
        match libc::c_int::from(addr.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in, which fits in sockaddr_storage.
                let v4 = unsafe { &*std::ptr::from_ref(&addr).cast::<libc::sockaddr_in>() };
                Some(u16::from_be(v4.sin_port))
            }
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote a sockaddr_in6, which fits in sockaddr_storage.
                let v6 = unsafe { &*std::ptr::from_ref(&addr).cast::<libc::sockaddr_in6>() };
                Some(u16::from_be(v6.sin6_port))
            }
            _ => None,
        }
    }

    #[cfg(target_os = "linux")]
    fn set_nodelay(fd: libc::c_int) {
        let on: libc::c_int = 1;
        // SAFETY: `on` is a valid c_int for the call's duration and its size is passed.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                std::ptr::from_ref(&on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
}

/// What a SQLite connection is for.
#[derive(Clone, Copy, PartialEq)]
enum SqliteRole {
    Write,
    Read,
    Checkpoint,
}

/// How often the checkpointer copies committed WAL pages back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Past this many WAL pages (~40 MB) the writer checkpoints itself after a commit, as SQLite
/// does by default at 1,000: only if the checkpointer cannot keep up or has stopped.
const WRITER_AUTOCHECKPOINT_PAGES: &str = "10000";

/// Past this many WAL pages (~16 MB) the checkpointer restarts the WAL. Passive checkpoints
/// copy pages back but cannot start the WAL over while readers keep using it, and with
/// sockets replaying all the time they always do: under 20 concurrent replaying clients it
/// grew to 3 GB (1.2 M pages) in 20 minutes.
const RESTART_PAGES: i64 = 4_000;

/// How long a restart may wait for readers to move on, holding off the writer meanwhile:
/// this much per `RESTART_PAGES` in the WAL, so a WAL that keeps growing (readers slowed by
/// a busy machine) waits longer until one restart gets through, up to the cap.
const RESTART_WAIT_MS_PER_STEP: i64 = 20;
const RESTART_WAIT_MS_MAX: i64 = 200;

/// Ticks to let pass after a restart that readers kept from finishing, so long readers cost
/// the writer at most one wait a second.
const RESTART_BACKOFF_TICKS: u32 = 10;

/// The WAL file is cut back to this size when it starts over, so one burst does not keep
/// its disk space for ever.
const WAL_SIZE_LIMIT_BYTES: &str = "67108864";

/// Checkpoints the WAL from a connection of its own. By default the connection whose commit
/// takes the WAL past 1,000 pages copies them back (and fsyncs twice) before that commit
/// returns: that was the writer, with every send queued behind it. A passive checkpoint
/// takes no lock the writer needs; a restart, only once the WAL is long, briefly does.
async fn checkpoint_wal(db: DatabaseConnection) {
    let mut ticks = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = 0;
    loop {
        ticks.tick().await;
        let Some((_, pages)) = checkpoint(&db, "PASSIVE").await else { continue };
        if backoff > 0 {
            backoff -= 1;
        } else if pages > RESTART_PAGES && !restart(&db, pages).await {
            backoff = RESTART_BACKOFF_TICKS;
        }
    }
}

/// Restarts the WAL, waiting for readers as long as its length warrants; whether it did.
async fn restart(db: &DatabaseConnection, pages: i64) -> bool {
    use sea_orm::ConnectionTrait;
    let wait = (pages / RESTART_PAGES * RESTART_WAIT_MS_PER_STEP).min(RESTART_WAIT_MS_MAX);
    let set_wait = format!("PRAGMA busy_timeout = {wait}");
    if db.execute_unprepared(&set_wait).await.is_err() {
        return false;
    }
    checkpoint(db, "RESTART").await.is_some_and(|(busy, _)| !busy)
}

/// One checkpoint in `mode`: whether readers or the writer kept it from finishing, and the
/// WAL's length in pages.
async fn checkpoint(db: &DatabaseConnection, mode: &str) -> Option<(bool, i64)> {
    use sea_orm::ConnectionTrait;
    let started = std::time::Instant::now();
    let statement =
        sea_orm::Statement::from_string(DatabaseBackend::Sqlite, format!("PRAGMA wal_checkpoint({mode})"));
    match db.query_one_raw(statement).await {
        Ok(row) => {
            // The row is (busy, pages in the WAL, pages checkpointed).
            let column = |n| row.as_ref().and_then(|row| row.try_get_by_index::<i64>(n).ok()).unwrap_or(0);
            let (busy, pages) = (column(0) != 0, column(1));
            crate::metrics::record(|m| {
                m.checkpoint_seconds.observe(started.elapsed().as_secs_f64());
                m.wal_pages.set(pages);
            });
            Some((busy, pages))
        }
        Err(err) => {
            tracing::warn!(error = %err, mode, "WAL checkpoint failed");
            None
        }
    }
}

fn sqlite_options(url: &str, connections: u32, role: SqliteRole) -> ConnectOptions {
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
            let opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                // Durable across a process crash; an OS crash may lose the last commits.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
                .read_only(role == SqliteRole::Read);
            match role {
                SqliteRole::Write => opts
                    .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
                    .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES),
                SqliteRole::Checkpoint => opts.pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES),
                SqliteRole::Read => opts,
            }
        });
    options
}

/// Inserts rows in one statement and returns their ids in the order they were listed.
/// PostgreSQL sends `RETURNING` rows back in one reply. From SQLite, sqlx hands each
/// returned row from the connection's thread to ours separately, a thread switch each
/// (70–85 per batch of 31 sends in `dm-max`); but one SQLite statement's rows take
/// consecutive ids (each is the largest so far plus one, under the write lock), so the last
/// is enough.
pub async fn insert_ids<A, C>(
    conn: &C,
    insert: sea_orm::InsertMany<A>,
    rows: usize,
) -> Result<Vec<i64>, DbErr>
where
    A: sea_orm::ActiveModelTrait,
    <A::Entity as sea_orm::EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
    <A::Entity as sea_orm::EntityTrait>::PrimaryKey: sea_orm::PrimaryKeyTrait<ValueType = i64>,
    C: sea_orm::ConnectionTrait,
{
    let ids = match conn.get_database_backend() {
        DatabaseBackend::Sqlite => {
            use sea_orm::QueryTrait;
            let result = conn.execute_raw(insert.build(DatabaseBackend::Sqlite)).await?;
            let last =
                i64::try_from(result.last_insert_id()).map_err(|err| DbErr::Custom(err.to_string()))?;
            let count =
                i64::try_from(result.rows_affected()).map_err(|err| DbErr::Custom(err.to_string()))?;
            (last - count + 1..=last).collect()
        }
        _ => {
            let mut ids = insert.exec_with_returning_keys(conn).await?;
            // One statement's rows take ascending ids in the order they are listed.
            ids.sort_unstable();
            ids
        }
    };
    if ids.len() != rows {
        return Err(DbErr::Custom(format!("an insert of {rows} rows returned {} ids", ids.len())));
    }
    Ok(ids)
}

/// A raw statement with `$n` placeholders, as each database spells them.
pub fn statement(backend: DatabaseBackend, sql: &str, values: Vec<sea_orm::Value>) -> sea_orm::Statement {
    let sql = match backend {
        DatabaseBackend::Postgres => sql.to_owned(),
        _ => sqlite_placeholders(sql),
    };
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

/// SQLite's spelling of `$n`. Placeholders that run `$1, $2, $3…`, each once, become bare `?`:
/// sqlx asks SQLite the name of every parameter it binds, and SQLite finds a name by walking
/// the list of all of them, so binding n numbered parameters costs n² steps (the 1,497 values
/// of a 500-member group's counter update took 16% of the server's CPU in `fanout`). Numbers
/// used twice stay `?n`.
fn sqlite_placeholders(sql: &str) -> String {
    let mut anonymous = String::with_capacity(sql.len());
    let mut expected = 1usize;
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if after[..digits].parse::<usize>().ok() != Some(expected) {
            return sql.replace('$', "?");
        }
        anonymous.push_str(&rest[..at]);
        anonymous.push('?');
        expected += 1;
        rest = &after[digits..];
    }
    anonymous.push_str(rest);
    anonymous
}

/// `$first, $first+1, …` for `count` values, for an `IN (…)` list.
pub fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
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

/// Whether `err` means the database cannot be reached or cannot take work right now (an
/// outage, a restart, a full disk), as opposed to a statement that is wrong: the first is a
/// 503 a client retries, the second a bug.
pub fn is_outage(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error;
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)) => {
            match err.as_ref() {
                Error::Io(_)
                | Error::Tls(_)
                | Error::Protocol(_)
                | Error::PoolTimedOut
                | Error::PoolClosed => true,
                Error::WorkerCrashed => true,
                Error::Database(err) => err.code().is_some_and(|code| is_outage_code(&code)),
                _ => false,
            }
        }
        _ => false,
    }
}

/// PostgreSQL SQLSTATEs for connection loss, shutdown, recovery and exhausted resources;
/// SQLite's primary result codes for a busy or locked file, I/O errors, a full disk, or a
/// file that cannot be opened.
fn is_outage_code(code: &str) -> bool {
    match code.parse::<i32>() {
        Ok(sqlite) => matches!(sqlite & 0xff, 5 | 6 | 10 | 13 | 14),
        Err(_) => code.starts_with("08") || code.starts_with("53") || code.starts_with("57P"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn database_sockets_get_tcp_nodelay() -> std::io::Result<()> {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let other = TcpListener::bind("127.0.0.1:0")?;
        let database = TcpStream::connect(listener.local_addr()?)?;
        let unrelated = TcpStream::connect(other.local_addr()?)?;
        assert!(!database.nodelay()?);
        nodelay::database_sockets(listener.local_addr()?.port());
        assert!(database.nodelay()?);
        assert!(!unrelated.nodelay()?, "only the database's sockets change");
        Ok(())
    }

    #[test]
    fn only_tcp_urls_have_a_port() {
        assert_eq!(tcp_port("postgres://postgres@127.0.0.1:5433/test"), Some(5433));
        assert_eq!(tcp_port("postgres://postgres@localhost/test"), Some(5432));
        assert_eq!(tcp_port("postgres://postgres@localhost/test?host=/var/run/postgresql"), None);
    }

    #[test]
    fn sqlite_placeholders_in_order_become_anonymous() {
        assert_eq!(sqlite_placeholders("VALUES ($1, $2), ($3, $4)"), "VALUES (?, ?), (?, ?)");
        assert_eq!(sqlite_placeholders("a IN ($1, $2) AND b IN ($1, $2)"), "a IN (?1, ?2) AND b IN (?1, ?2)");
        assert_eq!(sqlite_placeholders("x = $2 AND y = $1"), "x = ?2 AND y = ?1");
        assert_eq!(sqlite_placeholders("SELECT 1"), "SELECT 1");
        assert_eq!(sqlite_placeholders("x = $1 AND y = $"), "x = ?1 AND y = ?");
    }

    #[test]
    fn placeholders_number_from_the_first() {
        assert_eq!(placeholders(1, 3), "$1, $2, $3");
        assert_eq!(placeholders(3, 2), "$3, $4");
        assert_eq!(placeholders(1, 0), "");
    }

    #[test]
    fn padding_repeats_the_last_value() {
        assert_eq!(padded(vec![1, 2, 3]), [1, 2, 3, 3]);
        assert_eq!(padded(vec![5]), [5]);
        assert_eq!(padded(Vec::<i32>::new()), Vec::<i32>::new());
        assert_eq!(padded((0..5).collect()).len(), 8);
    }
}
