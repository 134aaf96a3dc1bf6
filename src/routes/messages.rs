use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::limit_in;
use crate::auth::AuthUser;
use crate::domain::messages::{self, NewMessage, Sent, Target};
use crate::domain::search;
use crate::domain::views::MessageView;
use crate::error::{AppError, AppResult};
use crate::extract::{Id, JsonBody, Query};
use crate::startup::AppState;

#[derive(Deserialize)]
pub struct SendBody {
    recipient_id: Option<Id>,
    conversation_id: Option<Id>,
    message: String,
    client_id: Option<String>,
}

/// # POST /api/messages
/// 201 with the new message; 200 with the original when `client_id` was already used.
pub async fn send(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    body: JsonBody<SendBody>,
) -> AppResult<HttpResponse> {
    state.limits.send(&req, caller.id)?;
    let JsonBody(body) = body;
    let target = match (body.recipient_id, body.conversation_id) {
        (Some(Id(user)), None) => Target::User(user),
        (None, Some(Id(conversation))) => Target::Conversation(conversation),
        (Some(_), Some(_)) => {
            return Err(AppError::validation(
                "recipient_id",
                "give recipient_id or conversation_id, not both",
            ));
        }
        (None, None) => {
            return Err(AppError::validation("recipient_id", "recipient_id or conversation_id is required"));
        }
    };
    let body_text = messages::validate_body(&body.message)?;
    if let Some(client_id) = &body.client_id {
        messages::validate_client_id(client_id)?;
    }
    let input = NewMessage { target, body: body_text, client_id: body.client_id, attachment: None };
    sent(messages::send(&state.db, &state.writer, &state.settings.messaging, caller.id, input).await?)
}

/// 201 for a new message, 200 for the one a repeated `client_id` already stored.
pub fn sent(sent: Sent) -> AppResult<HttpResponse> {
    Ok(match sent {
        Sent::Created(message) => HttpResponse::Created().json(message),
        Sent::Existing(message) => HttpResponse::Ok().json(message),
    })
}

#[derive(Deserialize)]
pub struct GroupSendBody {
    message: String,
    client_id: Option<String>,
}

/// # POST /api/groups/{id}/messages
pub async fn send_to_group(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    path: web::Path<Id>,
    body: JsonBody<GroupSendBody>,
) -> AppResult<HttpResponse> {
    state.limits.send(&req, caller.id)?;
    let JsonBody(body) = body;
    let text = messages::validate_body(&body.message)?;
    if let Some(client_id) = &body.client_id {
        messages::validate_client_id(client_id)?;
    }
    let target = Target::Group(path.into_inner().0);
    let input = NewMessage { target, body: text, client_id: body.client_id, attachment: None };
    sent(messages::send(&state.db, &state.writer, &state.settings.messaging, caller.id, input).await?)
}

#[derive(Deserialize)]
pub struct EditBody {
    message: String,
}

/// # PATCH /api/messages/{id}
pub async fn edit(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
    body: JsonBody<EditBody>,
) -> AppResult<HttpResponse> {
    let text = messages::validate_body(&body.0.message)?;
    let rules = &state.settings.messaging;
    let message =
        messages::edit(&state.db, &state.writer, rules, caller.id, path.into_inner().0, text).await?;
    Ok(HttpResponse::Ok().json(message))
}

/// # DELETE /api/messages/{id}
pub async fn delete(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    messages::delete(&state.db, &state.writer, caller.id, path.into_inner().0).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    conversation_id: Option<Id>,
    page: Option<u64>,
    page_size: Option<u64>,
}

#[derive(Serialize)]
struct SearchPage {
    messages: Vec<MessageView>,
    total: i64,
    page: u64,
    page_size: u64,
}

/// # GET /api/messages/search?q=&conversation_id=&page=&page_size=
pub async fn search(
    state: web::Data<AppState>,
    caller: AuthUser,
    query: Query<SearchQuery>,
) -> AppResult<HttpResponse> {
    let Query(query) = query;
    let q = query.q.as_deref().map(str::trim).unwrap_or_default();
    if q.chars().count() < 2 || q.chars().count() > 200 {
        return Err(AppError::bad_request("bad_query", "q must be 2-200 characters", Some("q")));
    }
    let page = query.page.unwrap_or(1);
    if !(1..=10_000).contains(&page) {
        return Err(AppError::bad_request("bad_query", "page must be 1-10000", Some("page")));
    }
    let page_size = limit_in(query.page_size, 20, 100, "page_size")?;
    let conversation_id = query.conversation_id.map(|Id(id)| id);
    let hits = search::messages(&state.db, caller.id, q, conversation_id, page, page_size).await?;
    Ok(HttpResponse::Ok().json(SearchPage { messages: hits.messages, total: hits.total, page, page_size }))
}

/// # PATCH /api/messages/{id}/read
pub async fn read_up_to(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    let read = messages::mark_read_up_to(&state.db, &state.writer, caller.id, path.into_inner().0).await?;
    Ok(HttpResponse::Ok().json(read))
}
