//! The error codes of the public API (API.md, "Conventions") and the one place each
//! code is given its HTTP status. Every error a crate defines names its code through
//! this enum, and the server turns the code into the status and the envelope's
//! `code`, so the same kind of mistake gets the same answer on every endpoint.
//! Statuses are plain numbers here: this crate does not depend on an HTTP library.

use serde::Serialize;

/// A stable, machine-readable error code, sent as `{"error": {"code": …}}`. Codes are
/// only ever added (API.md is a contract); every code has exactly one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request cannot be read: malformed JSON, a bad query or path parameter,
    /// an operation that makes no sense for the target.
    BadRequest,
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials without the right.
    Forbidden,
    /// Nothing there (or nothing the caller may see).
    NotFound,
    /// The path exists but does not take this method.
    MethodNotAllowed,
    /// A uniqueness or dependency rule would break.
    Conflict,
    /// The body is larger than the server accepts.
    PayloadTooLarge,
    /// The request target is longer than the server reads.
    UriTooLong,
    /// The body is not sent with the content type the endpoint needs.
    UnsupportedMediaType,
    /// Well-formed, but a value is not acceptable (the envelope names the `field`
    /// where one is at fault).
    Invalid,
    /// Too many attempts; `Retry-After` says when to try again.
    RateLimited,
    /// A fault of the server; logged in full, answered opaquely.
    Internal,
    /// An app's script threw.
    ScriptError,
    /// An app's script was stopped by one of its limits.
    LimitExceeded,
    /// The server cannot take the request now (database outage, at capacity,
    /// shutting down); `Retry-After` says when to try again.
    Unavailable,
    /// An app's script ran past its time limit.
    Timeout,
}

impl ErrorCode {
    /// Every code, in status order (for documentation and tests).
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UriTooLong,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Invalid,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
        ErrorCode::ScriptError,
        ErrorCode::LimitExceeded,
        ErrorCode::Unavailable,
        ErrorCode::Timeout,
    ];

    /// The HTTP status of this code: the only place a status is chosen for an error.
    pub const fn status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UriTooLong => 414,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Invalid => 422,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal | ErrorCode::ScriptError | ErrorCode::LimitExceeded => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
        }
    }

    /// The wire name (`"not_found"`), as serde writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Invalid => "invalid",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::ScriptError => "script_error",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn wire_names_match_serde_and_api_md() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).expect("serialises");
            assert_eq!(json, serde_json::json!(code.as_str()));
        }
        // API.md's table, code by code.
        let table = [
            ("bad_request", 400),
            ("unauthorized", 401),
            ("forbidden", 403),
            ("not_found", 404),
            ("conflict", 409),
            ("payload_too_large", 413),
            ("invalid", 422),
            ("rate_limited", 429),
            ("internal", 500),
            ("unavailable", 503),
        ];
        for (name, status) in table {
            let code = ErrorCode::ALL
                .into_iter()
                .find(|c| c.as_str() == name)
                .expect("every code of API.md exists");
            assert_eq!(code.status(), status, "{name}");
        }
    }
}
