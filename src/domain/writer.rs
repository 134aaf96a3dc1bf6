//! The single path for transactions that append events.
//!
//! `Writer::begin` serializes them, so event ids are committed in id order and a reader that
//! sees event N can never later find a smaller id committing behind it:
//! - in this process, an async lock;
//! - on PostgreSQL alone, a transaction-scoped advisory lock, taken before the first insert;
//! - on PostgreSQL with Redis (several instances), a session-level advisory lock on a
//!   dedicated connection, held until the commit's frames are published, so every user's
//!   Redis channel also carries events in commit order.
//!
//! `commit_and_deliver` commits, then hands the frames to the relay before the lock is let go.

use std::sync::Arc;

use sea_orm::sqlx::{Postgres, pool::PoolConnection};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::db::Db;
use crate::realtime::UserFrame;
use crate::realtime::relay::Relay;

/// Any constant works; it only has to be the same on every instance.
const EVENT_LOCK_KEY: i64 = 7_355_608_002;

/// The dedicated connection that holds the cluster-wide lock, when there is one.
type LockSlot = Option<PoolConnection<Postgres>>;

pub struct Writer {
    db: Db,
    slot: Arc<Mutex<LockSlot>>,
    /// Several instances share the database: order commits and publishes cluster-wide.
    cluster: bool,
    relay: Arc<Relay>,
}

/// An open write transaction holding the event lock. Dropping it rolls back; prefer
/// `commit_and_deliver` or `finish`, which also let go of the lock without closing its
/// connection.
pub struct WriteTxn {
    txn: Option<DatabaseTransaction>,
    relay: Arc<Relay>,
    slot: OwnedMutexGuard<LockSlot>,
    cluster_locked: bool,
}

fn sqlx_err(err: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Custom(format!("event lock: {err}"))
}

impl Writer {
    pub fn new(db: Db, relay: Arc<Relay>) -> Self {
        let cluster = db.is_postgres() && relay.redis().is_some();
        Self { db, slot: Arc::new(Mutex::new(None)), cluster, relay }
    }

    pub async fn begin(&self) -> Result<WriteTxn, DbErr> {
        let mut slot = self.slot.clone().lock_owned().await;
        if self.cluster {
            if slot.is_none() {
                let pool = self.db.write.get_postgres_connection_pool();
                *slot = Some(pool.acquire().await.map_err(sqlx_err)?);
            }
            if let Some(conn) = slot.as_mut() {
                let locked = sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(EVENT_LOCK_KEY)
                    .execute(&mut **conn)
                    .await;
                if let Err(err) = locked {
                    *slot = None;
                    return Err(sqlx_err(err));
                }
            }
        }
        let write = WriteTxn {
            txn: Some(self.db.write.begin().await?),
            relay: self.relay.clone(),
            slot,
            cluster_locked: self.cluster,
        };
        if self.db.is_postgres() && !self.cluster {
            write
                .txn()
                .execute_unprepared(&format!("SELECT pg_advisory_xact_lock({EVENT_LOCK_KEY})"))
                .await?;
        }
        Ok(write)
    }
}

impl WriteTxn {
    pub fn txn(&self) -> &DatabaseTransaction {
        // Present until `commit_and_deliver` or `finish` consumes `self`.
        self.txn.as_ref().unwrap_or_else(|| unreachable!("transaction taken before use"))
    }

    /// Commits, then hands the frames to the relay while still holding the lock.
    pub async fn commit_and_deliver(mut self, frames: Vec<UserFrame>) -> Result<(), DbErr> {
        let committed = match self.txn.take() {
            Some(txn) => txn.commit().await,
            None => Ok(()),
        };
        if committed.is_ok() {
            self.relay.publish(frames).await;
        }
        self.unlock().await;
        committed
    }

    /// Ends a transaction that changed nothing.
    pub async fn finish(mut self) -> Result<(), DbErr> {
        let rolled_back = match self.txn.take() {
            Some(txn) => txn.rollback().await,
            None => Ok(()),
        };
        self.unlock().await;
        rolled_back
    }

    async fn unlock(&mut self) {
        if !std::mem::take(&mut self.cluster_locked) {
            return;
        }
        if let Some(conn) = self.slot.as_mut() {
            let unlocked = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(EVENT_LOCK_KEY)
                .execute(&mut **conn)
                .await;
            if unlocked.is_err() {
                self.abandon_lock_connection();
            }
        }
    }

    /// Closing the lock's connection releases the lock on the server's side.
    fn abandon_lock_connection(&mut self) {
        if let Some(conn) = self.slot.take() {
            drop(conn.detach());
        }
    }
}

impl Drop for WriteTxn {
    fn drop(&mut self) {
        if self.cluster_locked {
            self.abandon_lock_connection();
        }
    }
}
