//! The one error type of the HTTP API. Every variant maps to a status and the contract's
//! body `{"error": {"code", "message", "field"}}`; internal causes are logged, never sent.

use std::borrow::Cow;

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;

type Text = Cow<'static, str>;

/// Every `code` an error body can carry; the OpenAPI document lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // 400
    BadRequest,
    BadId,
    BadQuery,
    BadMultipart,
    MalformedJson,
    MalformedBody,
    NotWebsocket,
    // 401
    MissingToken,
    InvalidToken,
    TokenExpired,
    InvalidTicket,
    InvalidCredentials,
    // 403
    NotAllowed,
    NotOwner,
    NotConnected,
    Blocked,
    EditWindowPassed,
    LinkExpired,
    InvalidSignature,
    // 404, 405, 408
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    // 409
    UsernameTaken,
    MessageDeleted,
    // 413, 415, 422, 429, 503, 500
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    RateLimited,
    Unavailable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: malformed JSON, bad query parameter or id.
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: Text, field: Option<Text> },
    /// 401: missing, malformed, expired or wrongly signed credentials.
    #[error("{message}")]
    Unauthorized { code: ErrorCode, message: Text },
    /// 403: known but not allowed.
    #[error("{message}")]
    Forbidden { code: ErrorCode, message: Text },
    /// 404: absent or not visible to the caller.
    #[error("{message}")]
    NotFound { message: Text },
    /// 408: the request body did not arrive in time; the connection is closed.
    #[error("{message}")]
    RequestTimeout { message: Text },
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: conflicts with existing state.
    #[error("{message}")]
    Conflict { code: ErrorCode, message: Text, field: Option<Text> },
    #[error("{message}")]
    PayloadTooLarge { message: Text },
    #[error("{message}")]
    UnsupportedMediaType { message: Text },
    /// 422: a field fails validation.
    #[error("{message}")]
    Validation { field: Text, message: Text },
    /// 429: over a rate limit; `Retry-After` says when to come back.
    #[error("{message}")]
    RateLimited { message: Text, retry_after_seconds: u64 },
    /// 503: not ready or draining.
    #[error("{message}")]
    Unavailable { message: Text },
    /// 500: a server-side failure; the cause goes to the log only.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn bad_request(code: ErrorCode, message: impl Into<Text>, field: Option<&str>) -> Self {
        Self::BadRequest { code, message: message.into(), field: field.map(|f| Cow::Owned(f.to_owned())) }
    }

    pub fn unauthorized(code: ErrorCode, message: impl Into<Text>) -> Self {
        Self::Unauthorized { code, message: message.into() }
    }

    pub fn forbidden(code: ErrorCode, message: impl Into<Text>) -> Self {
        Self::Forbidden { code, message: message.into() }
    }

    pub fn not_found(message: impl Into<Text>) -> Self {
        Self::NotFound { message: message.into() }
    }

    pub fn validation(field: impl Into<Text>, message: impl Into<Text>) -> Self {
        Self::Validation { field: field.into(), message: message.into() }
    }

    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Forbidden { code, .. }
            | Self::Conflict { code, .. } => *code,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::RequestTimeout { .. } => ErrorCode::RequestTimeout,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType { .. } => ErrorCode::UnsupportedMediaType,
            Self::Validation { .. } => ErrorCode::ValidationFailed,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::BadRequest { field, .. } | Self::Conflict { field, .. } => field.as_deref(),
            Self::Validation { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::db::is_outage(&err) {
            tracing::warn!(error = %err, "database unavailable");
            return Self::Unavailable { message: "the database is unavailable; try again".into() };
        }
        Self::internal(err)
    }
}

/// How long a 503 asks clients to wait: an outage or a restart is usually short, and a
/// draining instance is behind a load balancer that has already moved on.
const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 2;

/// The body of every non-2xx response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail<'a> {
    code: ErrorCode,
    message: &'a str,
    field: Option<&'a str>,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            Self::Internal(err) => {
                tracing::error!(error = %err, "request failed");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        if let Self::RequestTimeout { .. } = self {
            // The rest of a body that is too slow is not worth waiting for.
            response.force_close();
        }
        let retry_after = match self {
            Self::RateLimited { retry_after_seconds, .. } => Some(*retry_after_seconds.max(&1)),
            Self::Unavailable { .. } => Some(UNAVAILABLE_RETRY_AFTER_SECONDS),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response.insert_header((actix_web::http::header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(ErrorBody {
            error: ErrorDetail { code: self.code(), message: &message, field: self.field() },
        })
    }
}
