//! `switchboard presence`: who is online, on which instance, and which instances are alive,
//! read from the same Redis keys the servers write (see the README for the key schema).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use entity::user;
use redis::AsyncCommands;
use sea_orm::prelude::*;

use crate::config::Settings;
use crate::db::Db;
use crate::redis_store::RedisStore;

async fn scan(conn: &mut deadpool_redis::Connection, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut iter = conn.scan_match::<_, String>(pattern).await?;
    while let Some(key) = iter.next_item().await {
        keys.push(key?);
    }
    Ok(keys)
}

/// The report, as printed.
pub async fn presence_report(settings: &Settings) -> Result<String, String> {
    if settings.redis.url.is_empty() {
        return Err("redis.url is not set: without Redis, presence lives in each server's memory".into());
    }
    let store = RedisStore::open(&settings.redis.url, &settings.redis.prefix)?;
    let mut conn = store.connection().await.ok_or("redis: no connection within 500 ms")?;
    let keys = &store.keys;

    let mut alive = BTreeMap::new();
    for key in scan(&mut conn, &keys.all("instance")).await.map_err(|err| err.to_string())? {
        let ttl: i64 = conn.ttl(&key).await.unwrap_or(-2);
        if let Some(instance) = keys.instance_of(&key) {
            alive.insert(instance.to_owned(), ttl);
        }
    }
    let mut online: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
    for key in scan(&mut conn, &keys.all("presence")).await.map_err(|err| err.to_string())? {
        let Some(user_id) = keys.user_of_presence(&key) else { continue };
        let holders: HashMap<String, i64> = conn.hgetall(&key).await.unwrap_or_default();
        let mut live: Vec<(String, i64)> =
            holders.into_iter().filter(|(instance, n)| *n > 0 && alive.contains_key(instance)).collect();
        live.sort();
        if !live.is_empty() {
            online.insert(user_id, live);
        }
    }

    // Usernames make the list readable; without the database, ids still answer.
    let names: HashMap<i64, String> = match Db::connect(&settings.database).await {
        Ok(db) => user::Entity::find()
            .filter(user::Column::Id.is_in(online.keys().copied()))
            .all(&db.read)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|row| (row.id, row.username))
            .collect(),
        Err(_) => HashMap::new(),
    };

    let mut out = String::new();
    let _ = writeln!(out, "instances alive: {}", alive.len());
    for (instance, ttl) in &alive {
        let here = online.values().flatten().filter(|(i, _)| i == instance).count();
        let _ = writeln!(out, "  {instance}  heartbeat expires in {ttl}s  users online: {here}");
    }
    let _ = writeln!(out, "users online: {}", online.len());
    for (user_id, holders) in &online {
        let name = names.get(user_id).map_or("?", String::as_str);
        let places: Vec<String> = holders.iter().map(|(i, n)| format!("{i} ({n} sessions)")).collect();
        let _ = writeln!(out, "  {user_id} {name}  on {}", places.join(", "));
    }
    Ok(out)
}
