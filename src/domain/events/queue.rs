//! What the push and webhook senders share: a cursor in `server_keys` that instances move
//! compare-and-set (so each row past it is planned once), and leases on delivery rows (so
//! each is sent by one instance at a time, and by another once a dead one's lease runs out).

use entity::server_key;
use sea_orm::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{DatabaseTransaction, Set};

use super::writer::Writer;
use crate::db::{self, Db};
use crate::error::AppResult;

/// Starts the cursor `name` at `newest` unless an instance already has.
pub async fn start_cursor(writer: &Writer, name: &'static str, newest: i64) -> AppResult<()> {
    let value = newest.to_string();
    writer
        .write(move |txn| {
            Box::pin(async move {
                let row = server_key::ActiveModel { name: Set(name.into()), value: Set(value) };
                server_key::Entity::insert(row)
                    .on_conflict_do_nothing_on([server_key::Column::Name])
                    .exec(txn)
                    .await?;
                Ok(((), Vec::new()))
            })
        })
        .await
}

/// The cursor's position; `None` before it is started.
pub async fn cursor(db: &Db, name: &str) -> AppResult<Option<i64>> {
    let row = server_key::Entity::find_by_id(name).one(&db.read).await?;
    Ok(row.map(|row| row.value.parse().unwrap_or(0)))
}

/// Moves the cursor from `from` to `to`; false when another instance moved it first.
pub async fn advance(txn: &DatabaseTransaction, name: &str, from: i64, to: i64) -> Result<bool, DbErr> {
    let moved = server_key::Entity::update_many()
        .col_expr(server_key::Column::Value, Expr::value(to.to_string()))
        .filter(server_key::Column::Name.eq(name))
        .filter(server_key::Column::Value.eq(from.to_string()))
        .exec(txn)
        .await?;
    Ok(moved.rows_affected == 1)
}

/// Leases the rows `ids` of `table` whose lease has run out (at `now`, unix ms) to `token`
/// until `until`, counting an attempt each. `table` is one of ours, never input.
pub async fn lease(
    writer: &Writer,
    table: &'static str,
    ids: Vec<i64>,
    now: i64,
    until: i64,
    token: i64,
) -> AppResult<()> {
    writer
        .write(move |txn| {
            Box::pin(async move {
                let ids = db::padded(ids);
                let sql = format!(
                    "UPDATE {table} SET lease_until = $1, lease_token = $2, attempts = attempts + 1 \
                     WHERE lease_until < $3 AND id IN ({})",
                    db::placeholders(4, ids.len())
                );
                let mut values: Vec<sea_orm::Value> = vec![until.into(), token.into(), now.into()];
                values.extend(ids.into_iter().map(Into::into));
                txn.execute_raw(db::statement(txn.get_database_backend(), &sql, values)).await?;
                Ok(((), Vec::new()))
            })
        })
        .await
}
