//! Request extractors that turn every kind of bad input into the contract's 4xx body:
//! JSON bodies (400 malformed, 415 wrong type, 413 too large, 422 naming the bad field),
//! query strings and path ids (400 naming the parameter).

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::{AppError, ErrorCode};

/// Largest JSON body any route accepts; messages are at most 2,000 characters.
const MAX_JSON_BYTES: usize = 64 * 1024;

pub use crate::wire::Id;

/// A JSON request body.
pub struct JsonBody<T>(pub T);

/// A JSON request body that may be left out entirely (no body at all); a body that is
/// present is held to the same rules as `JsonBody`.
pub struct OptionalJsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_json(req, payload, false);
        Box::pin(async move {
            match body.await? {
                Some(value) => Ok(JsonBody(value)),
                None => Err(AppError::bad_request(ErrorCode::MalformedJson, "a JSON body is required", None)),
            }
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for OptionalJsonBody<T> {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_json(req, payload, true);
        Box::pin(async move { body.await.map(OptionalJsonBody) })
    }
}

fn read_json<T: DeserializeOwned + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    optional: bool,
) -> impl Future<Output = Result<Option<T>, AppError>> + 'static {
    let content_type = req.headers().get(header::CONTENT_TYPE).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
    });
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let mut payload = payload.take();
    async move {
        if declared_len.is_some_and(|len| len > MAX_JSON_BYTES) {
            return Err(too_large());
        }
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|err| {
                crate::body_deadline::body_error(&err, || {
                    AppError::bad_request(
                        ErrorCode::MalformedBody,
                        "the request body could not be read",
                        None,
                    )
                })
            })?;
            if body.len() + chunk.len() > MAX_JSON_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        // An optional body may be left out, or be JSON `null`.
        let null = body.trim_ascii() == b"null" && content_type == Some(true);
        if optional && (null || body.is_empty() && content_type.is_none_or(|is_json| is_json)) {
            return Ok(None);
        }
        if content_type != Some(true) {
            return Err(AppError::UnsupportedMediaType {
                message: "expected Content-Type: application/json".into(),
            });
        }
        parse_json(&body).map(Some)
    }
}

fn too_large() -> AppError {
    AppError::PayloadTooLarge { message: format!("JSON bodies are limited to {MAX_JSON_BYTES} bytes").into() }
}

/// Syntax errors are 400; well-formed JSON whose values do not fit is 422 naming the field.
/// Every body is an object: serde would also read a struct from an array (`[2, "hi"]`).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, AppError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|err| malformed(&err))?;
        return Err(AppError::validation("body", "the body must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                // A missing field is reported at its parent; name the field itself.
                let missing = inner
                    .to_string()
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split_once('`'))
                    .map(|(name, _)| name.to_owned());
                let field = match (missing, path.as_str()) {
                    (Some(name), ".") => name,
                    (Some(name), _) => format!("{path}.{name}"),
                    (None, ".") => "body".to_owned(),
                    (None, _) => path,
                };
                AppError::validation(field, inner.to_string())
            }
            // serde_json reports a number where an enum belongs as a syntax error
            // ("expected value"); well-formed JSON makes it the field's fault.
            _ if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => {
                let field = if path == "." { "body".to_owned() } else { path };
                AppError::validation(field, inner.to_string())
            }
            _ => malformed(&inner),
        }
    })?;
    deserializer.end().map_err(|err| malformed(&err))?;
    Ok(value)
}

fn malformed(err: &serde_json::Error) -> AppError {
    AppError::bad_request(ErrorCode::MalformedJson, format!("malformed JSON: {err}"), None)
}

/// A query string; a bad value is 400 naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = AppError;
    type Future = std::future::Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let parsed = form_urlencoded::parse(req.query_string().as_bytes());
        let result = serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(parsed))
            .map(Query)
            .map_err(|err| {
                let field = err.path().to_string();
                let message = format!("bad query parameter {field}: {}", err.inner());
                AppError::bad_request(ErrorCode::BadQuery, message, Some(&field))
            });
        std::future::ready(result)
    }
}

/// Turns a bad `{id}` path segment into 400 `bad_id`.
pub fn path_error(err: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    AppError::bad_request(ErrorCode::BadId, format!("bad id in path: {err}"), None).into()
}

/// Requests that match no route get the contract's body too.
pub async fn not_found() -> Result<actix_web::HttpResponse, AppError> {
    Err(AppError::not_found("no such route"))
}

/// A field that is there, `null` included: `Some(None)` for null, `None` when left out.
pub fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
