//! Push subscriptions: validated before anything is stored, one row per endpoint.

use entity::push_subscription;
use sea_orm::prelude::*;
use sea_orm::{IntoActiveModel, QueryOrder, Set};
use serde::{Deserialize, Serialize};
use url::Url;
use utoipa::ToSchema;

use super::decode;
use crate::db::Db;
use crate::domain::events::writer::Writer;
use crate::error::{AppError, AppResult};
use crate::outbound::{host_is_internal, resolves_inside};
use crate::time::{self, Timestamp};
use crate::wire::UserId;

/// Longest endpoint accepted; push services' URLs are a few hundred characters.
const MAX_ENDPOINT_CHARS: usize = 2048;
/// Subscriptions one user may hold (one per browser profile they use).
const MAX_PER_USER: u64 = 50;

/// The browser's `PushSubscription` keys.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Keys {
    /// The browser's P-256 public key: base64url of its uncompressed point (65 bytes).
    pub p256dh: String,
    /// The authentication secret: base64url of 16 bytes.
    pub auth: String,
}

/// A subscription as the caller sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: i64,
    pub endpoint: String,
    #[serde(serialize_with = "time::serialize")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A checked subscription, keys normalized to base64url without padding.
pub struct Subscription {
    endpoint: String,
    p256dh: String,
    auth: String,
}

impl Subscription {
    /// 422 naming the first bad field: `endpoint` (not https, or an address inside the
    /// server's own network unless `allow_insecure`), `keys.p256dh`, `keys.auth`.
    pub fn check(endpoint: String, keys: Keys, allow_insecure: bool) -> AppResult<Self> {
        check_endpoint(&endpoint, allow_insecure)?;
        let point = |bytes: Vec<u8>| {
            bytes.len() == 65 && bytes[0] == 4 && p256::PublicKey::from_sec1_bytes(&bytes).is_ok()
        };
        if !decode(&keys.p256dh).is_some_and(point) {
            return Err(AppError::validation(
                "keys.p256dh",
                "p256dh must be base64url of an uncompressed P-256 point",
            ));
        }
        if decode(&keys.auth).is_none_or(|bytes| bytes.len() != 16) {
            return Err(AppError::validation("keys.auth", "auth must be base64url of 16 bytes"));
        }
        // Valid base64url: without its padding it is the canonical text.
        let unpadded = |text: String| text.trim_end_matches('=').to_owned();
        Ok(Self { endpoint, p256dh: unpadded(keys.p256dh), auth: unpadded(keys.auth) })
    }
}

impl Subscription {
    /// The endpoint's host name, resolved now: 422 if it points inside the network (unless
    /// allowed). Every push checks it again as it connects.
    pub async fn check_resolved(self, allow_insecure: bool) -> AppResult<Self> {
        if allow_insecure {
            return Ok(self);
        }
        let url = Url::parse(&self.endpoint)
            .map_err(|_| AppError::validation("endpoint", "endpoint must be an https:// URL"))?;
        if resolves_inside(&url).await {
            return Err(AppError::validation(
                "endpoint",
                "endpoint must not resolve to a loopback, private, link-local or unspecified address",
            ));
        }
        Ok(self)
    }
}

fn check_endpoint(endpoint: &str, allow_insecure: bool) -> AppResult<()> {
    let refuse = |why: &str| Err(AppError::validation("endpoint", format!("endpoint {why}")));
    if endpoint.chars().count() > MAX_ENDPOINT_CHARS {
        return refuse("must be at most 2,048 characters");
    }
    let Ok(url) = Url::parse(endpoint) else {
        return refuse("must be an https:// URL");
    };
    let secure = url.scheme() == "https";
    if !(secure || allow_insecure && url.scheme() == "http") {
        return refuse("must be an https:// URL");
    }
    let Some(inside) = host_is_internal(&url) else {
        return refuse("must name a host");
    };
    if inside && !allow_insecure {
        return refuse("must not be a loopback, private, link-local or unspecified address");
    }
    Ok(())
}

/// Stores the subscription for `user`: `(id, created)`. An endpoint already stored is the
/// same browser subscribing again, perhaps now for another user: it moves to this one.
pub async fn subscribe(
    writer: &Writer,
    UserId(user_id): UserId,
    sub: Subscription,
) -> AppResult<(i64, bool)> {
    writer
        .write(move |txn| {
            Box::pin(async move {
                let existing = push_subscription::Entity::find()
                    .filter(push_subscription::Column::Endpoint.eq(sub.endpoint.as_str()))
                    .one(txn)
                    .await?;
                if let Some(row) = existing {
                    let id = row.id;
                    let mut active = row.into_active_model();
                    active.user_id = Set(user_id);
                    active.p256dh = Set(sub.p256dh);
                    active.auth = Set(sub.auth);
                    active.update(txn).await?;
                    return Ok(((id, false), Vec::new()));
                }
                let held = push_subscription::Entity::find()
                    .filter(push_subscription::Column::UserId.eq(user_id))
                    .count(txn)
                    .await?;
                if held >= MAX_PER_USER {
                    return Err(AppError::validation("endpoint", "at most 50 push subscriptions per user"));
                }
                let row = push_subscription::ActiveModel {
                    user_id: Set(user_id),
                    endpoint: Set(sub.endpoint),
                    p256dh: Set(sub.p256dh),
                    auth: Set(sub.auth),
                    created_at: Set(time::now()),
                    ..Default::default()
                }
                .insert(txn)
                .await?;
                Ok(((row.id, true), Vec::new()))
            })
        })
        .await
}

/// The caller's subscriptions, oldest first.
pub async fn list(db: &Db, UserId(user_id): UserId) -> AppResult<Vec<SubscriptionView>> {
    let rows = push_subscription::Entity::find()
        .filter(push_subscription::Column::UserId.eq(user_id))
        .order_by_asc(push_subscription::Column::Id)
        .all(&db.read)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| SubscriptionView { id: row.id, endpoint: row.endpoint, created_at: row.created_at })
        .collect())
}

/// Deletes one of the caller's subscriptions; anyone else's is 404.
pub async fn unsubscribe(writer: &Writer, UserId(user_id): UserId, id: i64) -> AppResult<()> {
    writer
        .write(move |txn| {
            Box::pin(async move {
                let deleted = push_subscription::Entity::delete_many()
                    .filter(push_subscription::Column::Id.eq(id))
                    .filter(push_subscription::Column::UserId.eq(user_id))
                    .exec(txn)
                    .await?;
                if deleted.rows_affected == 0 {
                    return Err(AppError::not_found("push subscription not found"));
                }
                Ok(((), Vec::new()))
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_inside_the_server_s_network_are_refused_unless_allowed() {
        for endpoint in [
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://push.localhost./x",
            "https://[::1]/x",
            "https://10.1.2.3/x",
            "https://172.16.5.4/x",
            "https://192.168.0.10/x",
            "https://169.254.10.10/x",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[fe80::1]/x",
            "https://[fd00::1]/x",
            "https://[::ffff:127.0.0.1]/x",
        ] {
            assert!(check_endpoint(endpoint, false).is_err(), "{endpoint}");
            assert!(check_endpoint(endpoint, true).is_ok(), "{endpoint} where allowed");
        }
        for endpoint in ["http://push.example.com/x", "ftp://push.example.com/x", "not a url", "https://"] {
            assert!(check_endpoint(endpoint, false).is_err(), "{endpoint}");
        }
        assert!(check_endpoint("https://fcm.googleapis.com/fcm/send/abc", false).is_ok());
        assert!(check_endpoint("https://8.8.8.8/x", false).is_ok());
        assert!(check_endpoint(&format!("https://push.example.com/{}", "a".repeat(2048)), false).is_err());
    }
}
