//! The single path for transactions that append events: one task per process that commits
//! them in batches (group commit).
//!
//! Callers hand `Writer::write` a piece of work that runs inside a transaction and returns
//! its result and the frames to deliver. The writer task takes every piece of work that is
//! waiting, runs each in its own savepoint (a failing one rolls back alone), commits them
//! together, publishes their frames in order and only then answers the callers: a 2xx still
//! means "persisted", and one fsync serves the whole batch.
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
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
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

type Job = Box<dyn for<'a> FnOnce(&'a DatabaseTransaction) -> BoxFuture<'a, Outcome> + Send>;

#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Writer {
    /// Starts the writer task on the current actix arbiter.
    pub fn start(db: Db, relay: Arc<Relay>) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let cluster = db.is_postgres() && relay.redis().is_some();
        actix::spawn(run(receiver, db, relay, cluster));
        Self { jobs }
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
        let job: Job = Box::new(move |txn| {
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
        self.jobs.send(job).map_err(|_| write_unavailable())?;
        answer.await.map_err(|_| write_unavailable())?
    }
}

fn write_unavailable() -> AppError {
    AppError::Unavailable { message: "the database is not accepting writes; try again".into() }
}

fn failure(err: &DbErr) -> AppError {
    AppError::internal(DbErr::Custom(err.to_string()))
}

async fn run(mut jobs: mpsc::UnboundedReceiver<Job>, db: Db, relay: Arc<Relay>, cluster: bool) {
    while let Some(first) = jobs.recv().await {
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
        let locked = if cluster { lock(&db, &mut lock_connection).await } else { Ok(()) };
        match locked {
            Ok(()) => run_batch(&db, &relay, batch, cluster).await,
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

/// A batch that could not start: dropping its jobs drops their reply channels, and each
/// caller answers 503 (`write_unavailable`).
fn fail_all(batch: Vec<Job>, err: &DbErr) {
    tracing::warn!(error = %err, jobs = batch.len(), "write batch could not start");
    drop(batch);
}

async fn run_batch(db: &Db, relay: &Relay, batch: Vec<Job>, cluster: bool) {
    let started = std::time::Instant::now();
    let jobs = batch.len();
    let txn = match db.write.begin().await {
        Ok(txn) => txn,
        Err(err) => return fail_all(batch, &err),
    };
    if db.is_postgres()
        && !cluster
        && let Err(err) =
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({EVENT_LOCK_KEY})")).await
    {
        return fail_all(batch, &err);
    }
    let single = batch.len() == 1;
    let mut frames = Vec::new();
    let mut committed_answers = Vec::with_capacity(batch.len());
    for job in batch {
        if single {
            // No savepoint needed: the transaction itself rolls back on failure.
            let outcome = job(&txn).await;
            if !outcome.ok {
                let _ = txn.rollback().await;
                return (outcome.answer)(None);
            }
            frames = outcome.frames;
            committed_answers.push(outcome.answer);
            break;
        }
        let savepoint = match txn.begin().await {
            Ok(savepoint) => savepoint,
            Err(err) => {
                tracing::warn!(error = %err, "savepoint failed");
                continue;
            }
        };
        let outcome = job(&savepoint).await;
        if outcome.ok {
            match savepoint.commit().await {
                Ok(()) => {
                    frames.extend(outcome.frames);
                    committed_answers.push(outcome.answer);
                }
                Err(err) => (outcome.answer)(Some(failure(&err))),
            }
        } else {
            let _ = savepoint.rollback().await;
            (outcome.answer)(None);
        }
    }
    match txn.commit().await {
        Ok(()) => {
            let committed = std::time::Instant::now();
            let committed_us = crate::realtime::unix_micros();
            for frame in &mut frames {
                frame.frame.committed_us = Some(committed_us);
            }
            relay.publish(frames).await;
            crate::metrics::record(|m| {
                m.write_batch_seconds.observe(committed.duration_since(started).as_secs_f64());
                m.write_batch_jobs.observe(jobs as f64);
                m.publish_seconds.observe(committed.elapsed().as_secs_f64());
            });
            for answer in committed_answers {
                answer(None);
            }
        }
        Err(err) => {
            tracing::error!(error = %err, "batch commit failed");
            for answer in committed_answers {
                answer(Some(failure(&err)));
            }
        }
    }
}

async fn lock(db: &Db, slot: &mut Option<PoolConnection<Postgres>>) -> Result<(), DbErr> {
    if slot.is_none() {
        let pool = db.write.get_postgres_connection_pool();
        *slot = Some(pool.acquire().await.map_err(|err| DbErr::Custom(err.to_string()))?);
    }
    let Some(conn) = slot.as_mut() else { return Ok(()) };
    let locked =
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)").bind(EVENT_LOCK_KEY).execute(&mut **conn).await;
    if let Err(err) = locked {
        *slot = None;
        return Err(DbErr::Custom(err.to_string()));
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
