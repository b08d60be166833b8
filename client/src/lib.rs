//! Rust client for jobq, the job queue that lives inside PostgreSQL.
//!
//! Producers call [`enqueue`] / [`enqueue_many`] with any
//! `tokio_postgres::GenericClient`, including their own open transaction.
//! Workers [`grab`] jobs and finish each under its [`Lease`]: [`complete`],
//! [`temp_fail`], [`perm_fail`], [`replace`], [`extend`].
//!
//! Most workers use the runtime instead: [`Worker`] runs a handler per job
//! type with batched grabs and completions, LISTEN wake-ups, lease
//! extension, reconnection and graceful shutdown.

mod databases;
mod error;
mod job;
mod lease;
mod lease_batch;
mod producer;
pub mod worker;

pub use databases::{Databases, JobRef};
pub use error::{
    Error, Result, SQLSTATE_CANCEL_REQUESTED, SQLSTATE_INVALID_ARGUMENT, SQLSTATE_INVALID_STATE,
    SQLSTATE_JOB_NOT_FOUND, SQLSTATE_LEASE_LOST, SQLSTATE_PAYLOAD_TOO_LARGE,
};
pub use job::{EnqueueOptions, JobType, NewJob};
pub use lease::{
    complete, complete_many, details, extend, grab, perm_fail, replace, temp_fail, CompleteOutcome,
    GrabRequest, Lease, LeasedJob, TempFailOutcome,
};
pub use lease_batch::{extend_many, release, release_many, ExtendOutcome, ReleaseOutcome};
pub use producer::{enqueue, enqueue_many, enqueue_typed};
pub use worker::{JobContext, Outcome, Worker, WorkerConfig};
