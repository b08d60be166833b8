//! The one error type of the client, with jobq's SQLSTATEs mapped to variants.

use tokio_postgres::error::SqlState;

/// SQLSTATE of a call about a job whose lease this worker no longer holds.
pub const SQLSTATE_LEASE_LOST: &str = "JQ001";
/// SQLSTATE of a call naming a job id that does not exist.
pub const SQLSTATE_JOB_NOT_FOUND: &str = "JQ002";
/// SQLSTATE of an operation the job's state does not allow.
pub const SQLSTATE_INVALID_STATE: &str = "JQ003";
/// SQLSTATE of a lease call on a job whose cancellation was requested.
pub const SQLSTATE_CANCEL_REQUESTED: &str = "JQ004";
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
    /// The job's state does not allow this (e.g. cancelling a finished job).
    /// SQLSTATE JQ003.
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// An operator asked to cancel this running job: stop working on it.
    /// SQLSTATE JQ004.
    #[error("cancellation requested: {0}")]
    CancelRequested(String),
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
    /// A worker was configured in a way it cannot run (no handlers, zero
    /// concurrency, a lease the database would reject, ...).
    #[error("invalid worker configuration: {0}")]
    Config(String),
    /// Any other database or connection error.
    #[error("database error: {}", describe(.0))]
    Database(#[source] tokio_postgres::Error),
}

impl Error {
    /// The SQLSTATE behind this error, if the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::LeaseLost(_) => Some(SQLSTATE_LEASE_LOST),
            Error::JobNotFound(_) => Some(SQLSTATE_JOB_NOT_FOUND),
            Error::InvalidState(_) => Some(SQLSTATE_INVALID_STATE),
            Error::CancelRequested(_) => Some(SQLSTATE_CANCEL_REQUESTED),
            Error::InvalidArgument(_) => Some(SQLSTATE_INVALID_ARGUMENT),
            Error::PayloadTooLarge(_) => Some(SQLSTATE_PAYLOAD_TOO_LARGE),
            Error::PermissionDenied(_) => Some(SqlState::INSUFFICIENT_PRIVILEGE.code()),
            Error::Database(e) => e.code().map(SqlState::code),
            Error::Json(_) | Error::Config(_) => None,
        }
    }

    /// Whether the same call may succeed if tried again, on a new connection:
    /// the connection broke or the server is shutting down, restarting or out
    /// of resources, or the transaction lost a serialization race. A lost
    /// lease or a rejected argument never is.
    pub fn is_transient(&self) -> bool {
        let Error::Database(error) = self else {
            return false;
        };
        if error.is_closed() {
            return true;
        }
        match error.code() {
            // No SQLSTATE: the connection failed (an I/O error underneath, or
            // a connect timeout), or the client did (a value that does not
            // convert, which no retry fixes).
            None => {
                std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>())
                    || error.to_string() == "timeout waiting for server"
            }
            Some(code) => {
                let code = code.code();
                // 08 connection exception, 57 operator intervention (admin
                // shutdown, terminated backend), 53 insufficient resources,
                // 40 transaction rollback (serialization failure, deadlock).
                ["08", "57", "53", "40"]
                    .iter()
                    .any(|class| code.starts_with(class))
            }
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
            SQLSTATE_INVALID_STATE => Error::InvalidState(message),
            SQLSTATE_CANCEL_REQUESTED => Error::CancelRequested(message),
            SQLSTATE_INVALID_ARGUMENT => Error::InvalidArgument(message),
            SQLSTATE_PAYLOAD_TOO_LARGE => Error::PayloadTooLarge(message),
            code if code == SqlState::INSUFFICIENT_PRIVILEGE.code() => {
                Error::PermissionDenied(message)
            }
            _ => Error::Database(error),
        }
    }
}

/// tokio-postgres displays a server error as just "db error"; logs and
/// failure messages need what the server said.
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Results of jobq calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;
