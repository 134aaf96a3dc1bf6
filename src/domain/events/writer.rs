//! The single path for transactions that append events: one task per process that commits
//! them in batches (group commit).
//!
//! Message sends, the hot path, are typed jobs (`Writer::send`): the batch stores all of them
//! together, with one query per check and one multi-row statement per table
//! (`send::store`). Every other change is a piece of work (`Writer::write`) that runs
//! inside the transaction and returns its result and the frames to deliver; each runs in its
//! own savepoint, so a failing one rolls back alone. The writer task takes every job that is
//! waiting, commits them together, publishes their frames in order and only then answers the
//! callers: a 2xx still means "persisted", and one fsync serves the whole batch.
//!
//! It also keeps event ids committed in id order, so a reader that sees event N can never
//! later find a smaller id committing behind it: one writer task per process; on PostgreSQL
//! alone, a transaction-scoped advisory lock taken before the first insert; on PostgreSQL
//! with Redis (several instances), a session-level advisory lock on a dedicated connection,
//! held until the batch's frames are published, so every user's Redis channel also carries
//! events in commit order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sea_orm::sqlx::{Postgres, pool::PoolConnection};
use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbErr, RuntimeErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::MessagingSettings;
use crate::db::Db;
use crate::domain::messaging::messages::Sent;
use crate::domain::messaging::send::{self, PendingMessage, UserCache};
use crate::error::{AppError, AppResult};
use crate::realtime::UserFrame;
use crate::realtime::relay::Relay;

/// Any constant works; it only has to be the same on every instance.
const EVENT_LOCK_KEY: i64 = 7_355_608_002;
/// Upper bound on one batch, so one commit never holds the lock for long.
const MAX_BATCH: usize = 256;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a piece of work left behind: its frames, and how to answer its caller once the
/// batch's fate is known.
struct Outcome {
    ok: bool,
    frames: Vec<UserFrame>,
    answer: Box<dyn FnOnce(Option<AppError>) + Send>,
}

type Work = Box<dyn for<'a> FnOnce(&'a DatabaseTransaction) -> BoxFuture<'a, Outcome> + Send>;

enum Job {
    Send(PendingMessage, oneshot::Sender<AppResult<Sent>>),
    Work(Work),
}

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Writer {
    /// Starts the writer task on a thread of its own: on the main arbiter it would wait for
    /// `ChatServer` and the rooms between its statements.
    pub fn start(db: Db, relay: Arc<Relay>, rules: MessagingSettings) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let cluster = db.is_postgres() && relay.redis().is_some();
        let batcher = Batcher { db, relay, rules, cluster, users: UserCache::default() };
        actix::Arbiter::new().spawn(run(receiver, batcher));
        Self { jobs }
    }

    /// Stores a message in the next batch; the answer comes once the batch is committed and
    /// its frames are handed to the relay.
    pub async fn send(&self, message: PendingMessage) -> AppResult<Sent> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Send(message, reply)).map_err(|_| write_unavailable())?;
        answer.await.map_err(|_| write_unavailable())?
    }

    /// Runs `work` in the next batch's transaction; its result comes back once the batch is
    /// committed and its frames are handed to the relay.
    pub async fn write<T, F>(&self, work: F) -> AppResult<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a DatabaseTransaction) -> BoxFuture<'a, AppResult<(T, Vec<UserFrame>)>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel::<AppResult<T>>();
        let job: Work = Box::new(move |txn| {
            Box::pin(async move {
                match work(txn).await {
                    Ok((value, frames)) => Outcome {
                        ok: true,
                        frames,
                        answer: Box::new(move |failed| {
                            let _ = reply.send(failed.map_or(Ok(value), Err));
                        }),
                    },
                    Err(err) => Outcome {
                        ok: false,
                        frames: Vec::new(),
                        answer: Box::new(move |_| {
                            let _ = reply.send(Err(err));
                        }),
                    },
                }
            })
        });
        self.jobs.send(Job::Work(job)).map_err(|_| write_unavailable())?;
        answer.await.map_err(|_| write_unavailable())?
    }
}

struct Batcher {
    db: Db,
    relay: Arc<Relay>,
    rules: MessagingSettings,
    cluster: bool,
    users: UserCache,
}

fn write_unavailable() -> AppError {
    AppError::Unavailable { message: "the database is not accepting writes; try again".into() }
}

/// A statement in the batch failed, so nothing of it was committed.
fn failure(err: &DbErr) -> AppError {
    if crate::db::is_outage(err) {
        return write_unavailable();
    }
    AppError::internal(DbErr::Custom(err.to_string()))
}

/// The commit itself failed: the database may have applied it before the connection was
/// lost, so the client is told to retry with the same `client_id`, which answers with the
/// stored message if there is one and stores it once if not.
fn commit_unknown() -> AppError {
    AppError::Unavailable {
        message: "the database did not confirm the write; it may have been applied: retry, a message with the same client_id".into(),
    }
}

async fn run(mut jobs: mpsc::UnboundedReceiver<Job>, mut batcher: Batcher) {
    open_connections(&batcher.db, batcher.cluster).await;
    while let Some(first) = jobs.recv().await {
        let (db, cluster) = (&batcher.db, batcher.cluster);
        // Held for one batch only, so no pooled connection outlives the runtime at exit.
        let mut lock_connection: Option<PoolConnection<Postgres>> = None;
        // Whatever queued up while the last batch committed goes into this one.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let locked = if cluster { lock(db, &mut lock_connection).await } else { Ok(()) };
        match locked {
            Ok(()) => batcher.run_batch(batch).await,
            Err(err) => {
                tracing::warn!(error = %err, "cannot take the event lock");
                fail_all(batch, &err);
            }
        }
        if cluster {
            unlock(&mut lock_connection).await;
        }
    }
}

/// Opens the writer's PostgreSQL connections (the batch's, and the event lock's in a
/// cluster) on this thread before the first batch. Opened by the first batch instead (TCP,
/// TLS, authentication: ~90 ms each here), they held up every send queued behind it: 1% of
/// a 20 s `dm` run at 500 msgs/s waited 150 ms or more.
async fn open_connections(db: &Db, cluster: bool) {
    if !db.is_postgres() {
        return;
    }
    let pool = db.writer.get_postgres_connection_pool();
    // Held until all are open, so each acquire opens a new one; then back to the pool.
    let mut held = Vec::new();
    for _ in 0..if cluster { 2 } else { 1 } {
        match pool.acquire().await {
            Ok(connection) => held.push(connection),
            Err(err) => {
                tracing::warn!(error = %err, "could not open the writer's connection; the first batch will");
                break;
            }
        }
    }
}

/// A batch that could not start: dropping its jobs drops their reply channels, and each
/// caller answers 503 (`write_unavailable`).
fn fail_all(batch: Vec<Job>, err: &DbErr) {
    tracing::warn!(error = %err, jobs = batch.len(), "write batch could not start");
    drop(batch);
}

/// A job's answer, sent once the batch's commit is known.
enum Answer {
    // Boxed: a message view is large, and most answers in a batch are other work.
    Send(oneshot::Sender<AppResult<Sent>>, Box<Sent>),
    Work(WorkAnswer),
}

impl Answer {
    fn give(self, failed: Option<AppError>) {
        match self {
            Answer::Send(reply, sent) => {
                let _ = reply.send(failed.map_or(Ok(*sent), Err));
            }
            Answer::Work(answer) => answer(failed),
        }
    }
}

/// What the batch's jobs leave for after the commit: frames to publish, callers to answer.
#[derive(Default)]
struct Done {
    frames: Vec<UserFrame>,
    answers: Vec<Answer>,
}

type WorkAnswer = Box<dyn FnOnce(Option<AppError>) + Send>;

impl Batcher {
    async fn run_batch(&mut self, batch: Vec<Job>) {
        let started = std::time::Instant::now();
        let jobs = batch.len();
        let mut sends = Vec::new();
        let mut replies = Vec::new();
        let mut works = Vec::new();
        for job in batch {
            match job {
                Job::Send(message, reply) => {
                    sends.push(message);
                    replies.push(reply);
                }
                Job::Work(work) => works.push(work),
            }
        }
        let Some(txn) = self.begin(jobs).await else { return };
        let mut done = Done::default();
        // Sends first, so their events precede the other jobs' in every user's stream.
        if !sends.is_empty()
            && !self.store_sends(&txn, sends, replies, !works.is_empty(), &mut done).await
            && works.is_empty()
        {
            let _ = txn.rollback().await;
            return;
        }
        if let Err(answer) = run_works(&txn, works, &mut done).await {
            let _ = txn.rollback().await;
            return answer(None);
        }
        self.commit(txn, done, started, jobs).await;
    }

    async fn begin(&self, jobs: usize) -> Option<DatabaseTransaction> {
        // IMMEDIATE takes SQLite's write lock at BEGIN, through the busy handler; a deferred
        // transaction that upgrades later gets SQLITE_BUSY at once if the checkpointer holds
        // a lock at that moment.
        let options = TransactionOptions {
            sqlite_transaction_mode: (!self.db.is_postgres()).then_some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let txn = match self.db.writer.begin_with_options(options).await {
            Ok(txn) => txn,
            Err(err) => {
                tracing::warn!(error = %err, jobs, "write batch could not start");
                return None;
            }
        };
        if self.db.is_postgres()
            && !self.cluster
            && let Err(err) =
                txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({EVENT_LOCK_KEY})")).await
        {
            tracing::warn!(error = %err, jobs, "write batch could not start");
            return None;
        }
        Some(txn)
    }

    /// Stores the batch's sends, in a savepoint when other work shares the batch so that a
    /// failure spares it; refused sends are answered at once. False when storing failed.
    async fn store_sends(
        &mut self,
        txn: &DatabaseTransaction,
        sends: Vec<PendingMessage>,
        replies: Vec<oneshot::Sender<AppResult<Sent>>>,
        shared: bool,
        done: &mut Done,
    ) -> bool {
        let savepoint = if shared { txn.begin().await.ok() } else { None };
        let stored = match &savepoint {
            Some(savepoint) => send::store(savepoint, &self.rules, &mut self.users, sends).await,
            None => send::store(txn, &self.rules, &mut self.users, sends).await,
        };
        let stored = match (stored, savepoint) {
            (Ok(stored), Some(savepoint)) => savepoint.commit().await.map(|()| stored),
            (Ok(stored), None) => Ok(stored),
            (Err(err), savepoint) => {
                if let Some(savepoint) = savepoint {
                    let _ = savepoint.rollback().await;
                }
                Err(err)
            }
        };
        match stored {
            Ok(stored) => {
                done.frames.extend(stored.frames);
                for (reply, result) in replies.into_iter().zip(stored.results) {
                    match result {
                        Ok(sent) => done.answers.push(Answer::Send(reply, Box::new(sent))),
                        Err(err) => {
                            let _ = reply.send(Err(err));
                        }
                    }
                }
                true
            }
            Err(err) => {
                tracing::error!(error = %err, "storing a batch of messages failed");
                for reply in replies {
                    let _ = reply.send(Err(failure(&err)));
                }
                false
            }
        }
    }

    /// Commits, publishes the frames in commit order, then answers every caller.
    async fn commit(&self, txn: DatabaseTransaction, done: Done, started: std::time::Instant, jobs: usize) {
        let Done { mut frames, answers } = done;
        match txn.commit().await {
            Ok(()) => {
                let committed = std::time::Instant::now();
                let committed_us = crate::realtime::unix_micros();
                for frame in &mut frames {
                    frame.frame.committed_us = Some(committed_us);
                }
                self.relay.publish(frames).await;
                crate::metrics::record(|m| {
                    m.write_batch_seconds.observe(committed.duration_since(started).as_secs_f64());
                    m.write_batch_jobs.observe(jobs as f64);
                    m.publish_seconds.observe(committed.elapsed().as_secs_f64());
                });
                for answer in answers {
                    answer.give(None);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "batch commit failed");
                for answer in answers {
                    answer.give(Some(commit_unknown()));
                }
            }
        }
    }
}

/// Runs each piece of work in a savepoint of its own, so one failing spares the others. A
/// lone piece of work runs in the transaction itself: `Err` with its answer when it failed,
/// for the caller to roll back and then answer.
async fn run_works(txn: &DatabaseTransaction, works: Vec<Work>, done: &mut Done) -> Result<(), WorkAnswer> {
    if works.len() == 1 && done.answers.is_empty() {
        for work in works {
            let outcome = work(txn).await;
            if !outcome.ok {
                return Err(outcome.answer);
            }
            done.frames.extend(outcome.frames);
            done.answers.push(Answer::Work(outcome.answer));
        }
        return Ok(());
    }
    for work in works {
        let savepoint = match txn.begin().await {
            Ok(savepoint) => savepoint,
            Err(err) => {
                tracing::warn!(error = %err, "savepoint failed");
                continue;
            }
        };
        let outcome = work(&savepoint).await;
        if !outcome.ok {
            let _ = savepoint.rollback().await;
            (outcome.answer)(None);
            continue;
        }
        match savepoint.commit().await {
            Ok(()) => {
                done.frames.extend(outcome.frames);
                done.answers.push(Answer::Work(outcome.answer));
            }
            Err(err) => (outcome.answer)(Some(failure(&err))),
        }
    }
    Ok(())
}

async fn lock(db: &Db, slot: &mut Option<PoolConnection<Postgres>>) -> Result<(), DbErr> {
    if slot.is_none() {
        let pool = db.writer.get_postgres_connection_pool();
        *slot = Some(pool.acquire().await.map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(err.into())))?);
    }
    let Some(conn) = slot.as_mut() else { return Ok(()) };
    let locked =
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)").bind(EVENT_LOCK_KEY).execute(&mut **conn).await;
    if let Err(err) = locked {
        *slot = None;
        return Err(DbErr::Conn(RuntimeErr::SqlxError(err.into())));
    }
    Ok(())
}

async fn unlock(slot: &mut Option<PoolConnection<Postgres>>) {
    let Some(conn) = slot.as_mut() else { return };
    let unlocked =
        sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)").bind(EVENT_LOCK_KEY).execute(&mut **conn).await;
    if unlocked.is_err() {
        // Closing the connection releases the lock on the server's side.
        if let Some(conn) = slot.take() {
            drop(conn.detach());
        }
    }
}
