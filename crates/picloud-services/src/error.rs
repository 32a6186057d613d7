use picloud_core::ErrorCode;
use picloud_store::StoreError;

/// Why a service call failed. The script bindings prefix every message with the
/// namespace (`"kv: …"`); `Forbidden` becomes the distinct refusal scripts cannot forge.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The caller lacks the right (only when the run is on behalf of a caller).
    #[error("{0}")]
    Forbidden(String),
    /// Bad arguments; nothing was written.
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Something this call needs cannot serve it now (file storage full or
    /// unreachable, every upload slot taken); the message is safe to show, and
    /// retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A body or file past a size limit; nothing was written.
    #[error("{0}")]
    TooLarge(String),
    /// Stored bytes no longer match the checksum recorded when they were written (or
    /// are missing): logged with the blob key, left in place, never served.
    #[error("corrupted: the stored bytes do not match their checksum")]
    Corrupted,
    /// A sealed value does not open: no configured master key opens its data key, or
    /// the bytes were tampered with (or moved from another row). Logged with the data
    /// key's id; the message never carries anything of the value.
    #[error("a stored secret cannot be decrypted; see the server log")]
    Undecryptable,
    /// Something outside PiCloud failed (an outbound request's network error or
    /// timeout); the message is safe to show the script.
    #[error("{0}")]
    Upstream(String),
    /// The storage failed; logged in full, reported opaquely. Only an outage says
    /// "unavailable": calling every failure that sent callers waiting for a recovery
    /// that a fault of ours or of the request would never bring.
    #[error("{}", store_message(.0))]
    Store(#[source] StoreError),
}

fn store_message(e: &StoreError) -> &'static str {
    match e.outage() {
        Some(_) => "storage unavailable; try again later",
        None => "storage error; see the server log",
    }
}

impl ServiceError {
    /// The public error code of this kind of failure: a service's `Invalid` is the
    /// same mistake as the store's, so both are `invalid` (422).
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Forbidden(_) => ErrorCode::Forbidden,
            ServiceError::Invalid(_) => ErrorCode::Invalid,
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::Conflict(_) => ErrorCode::Conflict,
            ServiceError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            ServiceError::Unavailable(_) => ErrorCode::Unavailable,
            ServiceError::Corrupted | ServiceError::Undecryptable => ErrorCode::Internal,
            // A failure outside PiCloud is not the caller's mistake.
            ServiceError::Upstream(_) => ErrorCode::Internal,
            ServiceError::Store(e) => e.code(),
        }
    }

    pub fn store(e: StoreError, what: &str) -> Self {
        match e {
            StoreError::NotFound => ServiceError::NotFound(what.to_owned()),
            StoreError::Conflict(message) => ServiceError::Conflict(message),
            StoreError::Invalid(message) => ServiceError::Invalid(message),
            other => {
                tracing::error!(error = %other, "storage error in a service call");
                ServiceError::Store(other)
            }
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
