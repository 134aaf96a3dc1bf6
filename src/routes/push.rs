//! Web Push: the VAPID public key browsers subscribe with, and the caller's subscriptions.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::domain::push::subscriptions::{self, Keys, Subscription, SubscriptionView};
use crate::error::{AppResult, ErrorBody};
use crate::extract::{Id, JsonBody};
use crate::startup::AppState;

#[derive(Serialize, ToSchema)]
struct PublicKey {
    /// base64url of the uncompressed P-256 point: `applicationServerKey` for `subscribe()`.
    public_key: String,
}

/// # GET /api/push/vapid-public-key
/// The same for every instance of the deployment.
#[utoipa::path(
    get,
    path = "/api/push/vapid-public-key",
    responses((status = 200, body = PublicKey)),
    security(("bearer" = []))
)]
pub async fn vapid_public_key(state: web::Data<AppState>, _caller: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(PublicKey { public_key: state.vapid.public_key.clone() })
}

/// A browser's `PushSubscription.toJSON()`; other fields it carries are ignored.
#[derive(Deserialize, ToSchema)]
pub struct SubscribeBody {
    /// `https://` (`http://` and addresses inside the server's network only with
    /// `push.allow_insecure_endpoints`).
    #[schema(max_length = 2048, pattern = r"^https?://")]
    endpoint: String,
    keys: Keys,
}

#[derive(Serialize, ToSchema)]
struct Subscribed {
    id: i64,
}

/// # POST /api/push/subscriptions
/// 201 when new; the same endpoint again is 200 with the same id (and belongs to the caller).
#[utoipa::path(
    post,
    path = "/api/push/subscriptions",
    request_body = SubscribeBody,
    responses(
        (status = 200, description = "the endpoint was already stored", body = Subscribed),
        (status = 201, body = Subscribed),
    ),
    security(("bearer" = []))
)]
pub async fn subscribe(
    state: web::Data<AppState>,
    caller: AuthUser,
    body: JsonBody<SubscribeBody>,
) -> AppResult<HttpResponse> {
    let JsonBody(SubscribeBody { endpoint, keys }) = body;
    let allow = state.settings.push.allow_insecure_endpoints;
    let checked = Subscription::check(endpoint, keys, allow)?.check_resolved(allow).await?;
    let (id, created) = subscriptions::subscribe(&state.writer, caller.user(), checked).await?;
    let mut reply = if created { HttpResponse::Created() } else { HttpResponse::Ok() };
    Ok(reply.json(Subscribed { id }))
}

#[derive(Serialize, ToSchema)]
struct SubscriptionList {
    subscriptions: Vec<SubscriptionView>,
}

/// # GET /api/push/subscriptions
/// The caller's, oldest first.
#[utoipa::path(
    get,
    path = "/api/push/subscriptions",
    responses((status = 200, body = SubscriptionList)),
    security(("bearer" = []))
)]
pub async fn list(state: web::Data<AppState>, caller: AuthUser) -> AppResult<HttpResponse> {
    let subscriptions = subscriptions::list(&state.db, caller.user()).await?;
    Ok(HttpResponse::Ok().json(SubscriptionList { subscriptions }))
}

/// # DELETE /api/push/subscriptions/{id}
#[utoipa::path(
    delete,
    path = "/api/push/subscriptions/{id}",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, description = "absent or someone else's", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn unsubscribe(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    subscriptions::unsubscribe(&state.writer, caller.user(), path.into_inner().0).await?;
    Ok(HttpResponse::NoContent().finish())
}
