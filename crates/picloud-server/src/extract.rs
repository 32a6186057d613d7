//! Extractors that fail with our error envelope instead of axum's plain-text
//! rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use picloud_store::{PageError, PageRequest};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use picloud_core::ErrorCode;

use crate::error::ApiError;

/// A JSON body. The content type is not checked (`curl -d` sends a form type), but
/// the body must be JSON: malformed → 400 `bad_request`; well-formed but wrong shape →
/// 422 `invalid` naming the field.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, e.body_text())
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body sent as `application/json`, else 415. For the endpoints that sign a
/// browser in: that type is not one a page elsewhere can send without a CORS
/// preflight (a form or a `no-cors` fetch sends `text/plain` and the like).
pub struct JsonOnly<T>(pub T);

impl<T, S> FromRequest<S> for JsonOnly<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let essence = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !essence.is_some_and(|e| e.eq_ignore_ascii_case("application/json")) {
            return Err(ApiError::unsupported_media_type(
                "send the body as Content-Type: application/json",
            ));
        }
        ApiJson::from_request(req, state)
            .await
            .map(|ApiJson(value)| JsonOnly(value))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { String::new() } else { path };
                let message = strip_position(&inner.to_string());
                ApiError::invalid(&field, message)
            }
            _ => ApiError::bad_request(format!("the body is not valid JSON: {inner}")),
        }
    })
}

/// serde's data errors end in " at line 1 column 23", which means nothing to an API user.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        const BAD_LIMIT: &str = "limit must be a whole number from 1 to 500";
        let limit = match self.limit.as_deref() {
            None | Some("") => None,
            Some(raw) => Some(
                raw.parse::<u32>()
                    .map_err(|_| ApiError::bad_request(BAD_LIMIT))?,
            ),
        };
        // An empty `cursor=` (a form left blank) means the first page.
        let cursor = self.cursor.as_deref().filter(|c| !c.is_empty());
        PageRequest::parse(cursor, limit).map_err(|e| match e {
            PageError::InvalidLimit => ApiError::bad_request(BAD_LIMIT),
            PageError::InvalidCursor => ApiError::bad_request("invalid cursor"),
        })
    }
}

/// Query string extraction with our error envelope.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}
