//! The one boundary error type. Every failure leaving the server becomes
//! `{"error": {"code", "message", …}}` with the status API.md gives its code; internal
//! errors are logged in full and answered opaquely. An `ApiError` is built from an
//! [`ErrorCode`] only: its status comes from `ErrorCode::status`, never from the call
//! site, and store and service errors convert through their own `code()`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use picloud_core::ErrorCode;
use picloud_services::ServiceError;
use picloud_store::{Outage, StoreError};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
}

/// `{"error": {...}}`
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    /// Boxed so that `Result<_, ApiError>` stays small on the happy path.
    pub body: Box<ErrorBody>,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            body: Box::new(ErrorBody {
                code,
                message: message.into(),
                field: None,
                line: None,
                column: None,
                execution_id: None,
            }),
            retry_after_secs: None,
        }
    }

    /// The status of this error, from its code (the one mapping in `ErrorCode`).
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.body.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn code(&self) -> ErrorCode {
        self.body.code
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "a valid token is required")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedMediaType, message)
    }

    /// 422 `invalid`, blaming `field`. An empty `field` (serde reports a missing
    /// top-level field at the empty path) names the field its message names, or none.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::Invalid, message);
        e.body.field = if field.is_empty() {
            missing_field(&e.body.message).map(str::to_owned)
        } else {
            Some(field.to_owned())
        };
        e
    }

    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(ErrorCode::Unavailable, message);
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// Logs the cause and answers an opaque 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error; see the server log")
    }

    pub fn with_execution(mut self, execution_id: &str) -> Self {
        self.body.execution_id = Some(execution_id.to_owned());
        self
    }

    /// Maps a store error, naming the missing thing for `NotFound`.
    pub fn from_store(e: StoreError, what: &str) -> Self {
        let code = e.code();
        match e {
            StoreError::NotFound => Self::not_found(what),
            StoreError::Conflict(message) | StoreError::Invalid(message) => {
                Self::new(code, message)
            }
            StoreError::InvalidCursor => Self::new(code, "invalid cursor"),
            StoreError::Unavailable { outage, source } => {
                tracing::error!(error = %source, %outage, "database unavailable");
                Self::unavailable(outage.message(), retry_after(outage))
            }
            StoreError::Other(cause) => Self::internal(cause),
        }
    }
}

/// Seconds a client should wait before retrying: a full disk needs an operator, a
/// lost connection or a busy database is usually back within a moment.
fn retry_after(outage: Outage) -> u64 {
    match outage {
        Outage::DiskFull => 30,
        Outage::ConnectionLost | Outage::Busy => 1,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::from_store(e, "resource")
    }
}

/// A service's error, at the edge: its code picks the status; what it hides (a store
/// fault, an upstream failure) is logged and answered opaquely.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let code = e.code();
        match e {
            ServiceError::NotFound(what) => Self::not_found(&what),
            ServiceError::Forbidden(message)
            | ServiceError::Invalid(message)
            | ServiceError::Conflict(message)
            | ServiceError::TooLarge(message)
            | ServiceError::Unavailable(message) => Self::new(code, message),
            ServiceError::Upstream(message) => Self::internal(message),
            opaque @ (ServiceError::Corrupted | ServiceError::Undecryptable) => {
                Self::internal(opaque.to_string())
            }
            ServiceError::Store(e) => Self::from(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            axum::Json(ErrorEnvelope { error: *self.body }),
        )
            .into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The field serde's "missing field `x`" message names.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.split("missing field `").nth(1)?;
    rest.split('`').next().filter(|f| !f.is_empty())
}
