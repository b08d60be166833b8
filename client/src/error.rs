//! The one error type of the client, with jobq's SQLSTATEs mapped to variants.

use tokio_postgres::error::SqlState;

/// SQLSTATE of a call about a job whose lease this worker no longer holds.
pub const SQLSTATE_LEASE_LOST: &str = "JQ001";
/// SQLSTATE of a call naming a job id that does not exist.
pub const SQLSTATE_JOB_NOT_FOUND: &str = "JQ002";
/// SQLSTATE of a rejected argument.
pub const SQLSTATE_INVALID_ARGUMENT: &str = "JQ010";
/// SQLSTATE of an argument over a size limit.
pub const SQLSTATE_PAYLOAD_TOO_LARGE: &str = "JQ011";

/// Everything that can go wrong in a jobq call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The lease is gone (it ran out, or the job was finished or re-grabbed):
    /// stop working on the job, its new holder owns it. SQLSTATE JQ001.
    #[error("lease lost: {0}")]
    LeaseLost(String),
    /// No job has this id (it never existed or was pruned). SQLSTATE JQ002.
    #[error("job not found: {0}")]
    JobNotFound(String),
    /// An argument was rejected; the message names it. SQLSTATE JQ010.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An argument is over a size limit. SQLSTATE JQ011.
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// The database role lacks a jobq role grant. SQLSTATE 42501.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Job arguments or a result could not be turned into or out of JSON.
    #[error("JSON encoding failed: {0}")]
    Json(#[from] serde_json::Error),
    /// Any other database or connection error.
    #[error("database error: {0}")]
    Database(#[source] tokio_postgres::Error),
}

impl Error {
    /// The SQLSTATE behind this error, if the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::LeaseLost(_) => Some(SQLSTATE_LEASE_LOST),
            Error::JobNotFound(_) => Some(SQLSTATE_JOB_NOT_FOUND),
            Error::InvalidArgument(_) => Some(SQLSTATE_INVALID_ARGUMENT),
            Error::PayloadTooLarge(_) => Some(SQLSTATE_PAYLOAD_TOO_LARGE),
            Error::PermissionDenied(_) => Some(SqlState::INSUFFICIENT_PRIVILEGE.code()),
            Error::Database(e) => e.code().map(SqlState::code),
            Error::Json(_) => None,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(db) = error.as_db_error() else {
            return Error::Database(error);
        };
        let message = match db.detail() {
            Some(detail) if !detail.is_empty() => format!("{} ({detail})", db.message()),
            _ => db.message().to_owned(),
        };
        match db.code().code() {
            SQLSTATE_LEASE_LOST => Error::LeaseLost(message),
            SQLSTATE_JOB_NOT_FOUND => Error::JobNotFound(message),
            SQLSTATE_INVALID_ARGUMENT => Error::InvalidArgument(message),
            SQLSTATE_PAYLOAD_TOO_LARGE => Error::PayloadTooLarge(message),
            code if code == SqlState::INSUFFICIENT_PRIVILEGE.code() => {
                Error::PermissionDenied(message)
            }
            _ => Error::Database(error),
        }
    }
}

/// Results of jobq calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
