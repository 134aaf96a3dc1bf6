//! The single path for transactions that append events.
//!
//! `Writer::begin` serializes them: a process-wide async lock, and on PostgreSQL a
//! transaction-scoped advisory lock that does the same across instances. Event ids are
//! therefore committed in id order, and `commit_and_deliver` hands the frames to
//! `ChatServer` before releasing the lock, so live delivery follows commit order too.

use std::sync::Arc;

use actix::Addr;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, TransactionTrait};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::db::Db;
use crate::realtime::UserFrame;
use crate::realtime::server::{ChatServer, Deliver};

/// Any constant works; it only has to be the same on every instance.
const EVENT_LOCK_KEY: i64 = 7_355_608_002;

pub struct Writer {
    db: Db,
    lock: Arc<Mutex<()>>,
    chat: Addr<ChatServer>,
}

/// An open write transaction holding the event lock; dropping it rolls back.
pub struct WriteTxn {
    pub txn: DatabaseTransaction,
    chat: Addr<ChatServer>,
    _guard: OwnedMutexGuard<()>,
}

impl Writer {
    pub fn new(db: Db, chat: Addr<ChatServer>) -> Self {
        Self {
            db,
            lock: Arc::new(Mutex::new(())),
            chat,
        }
    }

    pub async fn begin(&self) -> Result<WriteTxn, DbErr> {
        let guard = self.lock.clone().lock_owned().await;
        let txn = self.db.write.begin().await?;
        if self.db.is_postgres() {
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({EVENT_LOCK_KEY})"))
                .await?;
        }
        Ok(WriteTxn {
            txn,
            chat: self.chat.clone(),
            _guard: guard,
        })
    }
}

impl WriteTxn {
    /// Commits, then queues the frames for live delivery while still holding the lock.
    pub async fn commit_and_deliver(self, frames: Vec<UserFrame>) -> Result<(), DbErr> {
        let WriteTxn { txn, chat, _guard } = self;
        txn.commit().await?;
        if !frames.is_empty() {
            chat.do_send(Deliver { frames });
        }
        Ok(())
    }
}
