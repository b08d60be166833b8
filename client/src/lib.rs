//! Rust client for jobq, the job queue that lives inside PostgreSQL.
//!
//! Producers call [`enqueue`] / [`enqueue_many`] with any
//! `tokio_postgres::GenericClient`, including their own open transaction.
//! Workers [`grab`] jobs and finish each under its [`Lease`]: [`complete`],
//! [`temp_fail`], [`perm_fail`], [`replace`], [`extend`].

mod error;
mod job;
mod lease;
mod producer;

pub use error::{
    Error, Result, SQLSTATE_INVALID_ARGUMENT, SQLSTATE_JOB_NOT_FOUND, SQLSTATE_LEASE_LOST,
    SQLSTATE_PAYLOAD_TOO_LARGE,
};
pub use job::{EnqueueOptions, JobType, NewJob};
pub use lease::{
    complete, complete_many, details, extend, grab, perm_fail, replace, temp_fail, CompleteOutcome,
    GrabRequest, Lease, LeasedJob, TempFailOutcome,
};
pub use producer::{enqueue, enqueue_many, enqueue_typed};
