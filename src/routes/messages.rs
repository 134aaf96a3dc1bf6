use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::auth::AuthUser;
use crate::domain::messages::{self, NewMessage, Sent, Target};
use crate::error::{AppError, AppResult};
use crate::extract::{Id, JsonBody};
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
    body: JsonBody<SendBody>,
) -> AppResult<HttpResponse> {
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
    let input = NewMessage { target, body: body_text, client_id: body.client_id };
    Ok(match messages::send(&state.db, &state.writer, caller.id, input).await? {
        Sent::Created(message) => HttpResponse::Created().json(message),
        Sent::Existing(message) => HttpResponse::Ok().json(message),
    })
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
