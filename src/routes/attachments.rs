use actix_files::NamedFile;
use actix_multipart::Multipart;
use actix_web::http::header::{
    self, Charset, ContentDisposition, DispositionParam, DispositionType, ExtendedValue,
};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::messages::sent;
use crate::auth::AuthUser;
use crate::domain::files::attachments::{self, StoredFile};
use crate::domain::messaging::messages::{self, NewMessage, Target};
use crate::error::ErrorBody;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::extract::{Id, Query};
use crate::startup::AppState;
use crate::wire::UserId;
use crate::wire::views::MessageView;

/// Largest non-file field (a 2,000-character message is at most 8,000 bytes of UTF-8).
const MAX_TEXT_FIELD_BYTES: usize = 16 * 1024;
/// More parts than a well-formed upload has means abuse, not a client.
const MAX_PARTS: usize = 16;

/// The multipart form, as read; its schema documents the upload.
#[derive(Default, ToSchema)]
#[schema(as = UploadForm)]
struct Form {
    // A form has no null: a field is there or not.
    #[schema(value_type = i64, minimum = 1, required = false)]
    recipient_id: Option<String>,
    #[schema(value_type = i64, minimum = 1, required = false)]
    conversation_id: Option<String>,
    #[schema(schema_with = super::openapi::message_text_or_blank)]
    message: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    client_id: Option<String>,
    /// A message of the same conversation to quote.
    #[schema(value_type = i64, minimum = 1, required = false)]
    reply_to_id: Option<String>,
    #[schema(value_type = String, format = Binary, required = true)]
    file: Option<StoredFile>,
}

/// # POST /api/messages/with-attachment
/// multipart/form-data: `recipient_id | conversation_id`, `message` (may be empty with a
/// file), `client_id?`, `file`. The file is streamed to disk while its type and size are
/// checked; it is linked to the message in the message's transaction.
#[utoipa::path(
    post,
    path = "/api/messages/with-attachment",
    request_body(content = Form, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = MessageView),
        (status = 200, description = "client_id already used", body = MessageView),
        (status = 403, description = "known but not allowed", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
        (status = 429, description = "rate limited (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn send(
    state: web::Data<AppState>,
    caller: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> AppResult<HttpResponse> {
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().starts_with("multipart/form-data"));
    if !is_multipart {
        return Err(AppError::UnsupportedMediaType { message: "expected multipart/form-data".into() });
    }
    state.limits.send(&req, caller.id)?;
    let mut form = Form::default();
    let read = read_form(&state, Multipart::new(req.headers(), payload), &mut form).await;
    let result = match read {
        Ok(()) => send_form(&state, caller.id, &mut form).await,
        Err(err) => Err(err),
    };
    // Whatever did not end up linked to a new message is removed.
    if let Some(file) = &form.file {
        state.files.discard(file).await;
    }
    result
}

async fn read_form(state: &AppState, mut multipart: Multipart, form: &mut Form) -> AppResult<()> {
    let mut parts = 0;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(bad_multipart)?;
        parts += 1;
        if parts > MAX_PARTS {
            return Err(AppError::bad_request(ErrorCode::BadMultipart, "too many parts", None));
        }
        let name = field.name().unwrap_or_default().to_owned();
        // RFC 7578: every part has a name; it travels in a header, so printable ASCII.
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
            return Err(AppError::bad_request(
                ErrorCode::BadMultipart,
                "every part needs a printable name",
                None,
            ));
        }
        if name == "file" {
            if form.file.is_some() {
                return Err(AppError::validation("file", "send one file per message"));
            }
            let filename = field
                .content_disposition()
                .and_then(|disposition| disposition.get_filename())
                .unwrap_or_default()
                .to_owned();
            form.file = Some(state.files.receive(&mut field, &filename).await?);
            continue;
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.next().await {
            let chunk = chunk.map_err(bad_multipart)?;
            if text.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
                return Err(AppError::PayloadTooLarge {
                    message: format!("field {name} is too large").into(),
                });
            }
            text.extend_from_slice(&chunk);
        }
        let slot = match name.as_str() {
            "recipient_id" => &mut form.recipient_id,
            "conversation_id" => &mut form.conversation_id,
            "message" => &mut form.message,
            "client_id" => &mut form.client_id,
            "reply_to_id" => &mut form.reply_to_id,
            // Unknown fields are ignored, as in JSON bodies.
            _ => continue,
        };
        let text =
            String::from_utf8(text).map_err(|_| AppError::validation(name.clone(), "must be UTF-8 text"))?;
        *slot = Some(text);
    }
    Ok(())
}

fn bad_multipart(err: actix_multipart::MultipartError) -> AppError {
    let malformed =
        || AppError::bad_request(ErrorCode::BadMultipart, format!("malformed multipart body: {err}"), None);
    match &err {
        actix_multipart::MultipartError::Payload(payload) => {
            crate::body_deadline::body_error(payload, malformed)
        }
        _ => malformed(),
    }
}

fn form_id(value: Option<&String>, field: &'static str) -> AppResult<Option<i64>> {
    match value.map(|value| value.trim()) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(id) if id > 0 => Ok(Some(id)),
            _ => Err(AppError::validation(field, format!("{field} must be a positive integer"))),
        },
    }
}

async fn send_form(state: &AppState, caller: i64, form: &mut Form) -> AppResult<HttpResponse> {
    let target = Target::either(
        form_id(form.recipient_id.as_ref(), "recipient_id")?,
        form_id(form.conversation_id.as_ref(), "conversation_id")?,
    )?;
    if form.file.is_none() {
        return Err(AppError::validation("file", "a file is required"));
    }
    let text = form.message.take().unwrap_or_default();
    let reply_to_id = form_id(form.reply_to_id.as_ref(), "reply_to_id")?;
    let input =
        NewMessage::new(target, &text, form.client_id.take(), form.file.clone())?.replying_to(reply_to_id);
    let sent_message = messages::send(&state.writer, caller, input).await?;
    if let messages::Sent::Created(_) = &sent_message {
        // Linked to its message now: not to be discarded.
        form.file = None;
    }
    sent(sent_message)
}

#[derive(Serialize, ToSchema)]
struct DownloadLink {
    download_url: String,
    filename: String,
    size: i64,
    mime_type: String,
    expires_in_seconds: u64,
}

/// # GET /api/attachments/{id}/download
/// A signed URL for the file; members of its conversation only (404 otherwise).
#[utoipa::path(
    get,
    path = "/api/attachments/{id}/download",
    params(("id" = i64, Path, description = "a positive id", minimum = 1)),
    responses(
        (status = 200, body = DownloadLink),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn download(
    state: web::Data<AppState>,
    caller: AuthUser,
    path: web::Path<Id>,
) -> AppResult<HttpResponse> {
    let row = attachments::downloadable(&state.db, caller.user(), path.into_inner().0).await?;
    let ttl = state.files.url_ttl_seconds();
    let expires = chrono::Utc::now().timestamp().saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
    Ok(HttpResponse::Ok().json(DownloadLink {
        download_url: state.files.signed_url(row.id, caller.id, expires)?,
        filename: row.filename,
        size: row.size,
        mime_type: row.mime_type,
        expires_in_seconds: ttl,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SignedQuery {
    /// The member the link was issued to.
    user: i64,
    expires: i64,
    signature: String,
}

/// # GET /api/attachments/{id}/content?user=&expires=&signature=
/// The bytes, for whoever holds a valid signed URL (no token: links work in `<img>` and
/// `<a download>`) while the member it was issued to still belongs to the conversation and
/// the message stands. Always a download, never rendered in the page's origin.
#[utoipa::path(
    get,
    path = "/api/attachments/{id}/content",
    params(("id" = i64, Path, description = "a positive id", minimum = 1), SignedQuery),
    responses(
        (status = 200, description = "the file, as an attachment download"),
        (status = 403, description = "invalid_signature or link_expired", body = ErrorBody),
        (status = 404, description = "absent or not visible to the caller", body = ErrorBody),
    )
)]
pub async fn content(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<Id>,
    query: Query<SignedQuery>,
) -> AppResult<HttpResponse> {
    let Id(id) = path.into_inner();
    let SignedQuery { user, expires, signature } = query.0;
    state.files.verify(id, user, expires, &signature)?;
    let row = attachments::downloadable(&state.db, UserId(user), id).await?;
    let path = state.files.path(&row.storage_key);
    let file = web::block(move || NamedFile::open(path))
        .await
        .map_err(AppError::internal)?
        .map_err(|_| AppError::not_found("attachment not found"))?;
    let mime = row.mime_type.parse().unwrap_or(actix_web::mime::APPLICATION_OCTET_STREAM);
    // An ASCII fallback for old clients, and the exact name (RFC 6266 `filename*`) otherwise.
    let mut parameters = vec![DispositionParam::Filename(
        row.filename.chars().map(|c| if c.is_ascii() { c } else { '_' }).collect(),
    )];
    if !row.filename.is_ascii() {
        parameters.push(DispositionParam::FilenameExt(ExtendedValue {
            charset: Charset::Ext("UTF-8".into()),
            language_tag: None,
            value: row.filename.into_bytes(),
        }));
    }
    let disposition = ContentDisposition { disposition: DispositionType::Attachment, parameters };
    let mut response = file.set_content_type(mime).set_content_disposition(disposition).into_response(&req);
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("private, max-age=300"));
    Ok(response)
}
