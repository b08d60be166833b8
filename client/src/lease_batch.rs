//! Batch lease calls for workers that hold many jobs at once: one statement
//! extends or hands back every lease, with an outcome per job, so a lost lease
//! among them is reported rather than failing the batch.

use crate::lease::Lease;
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio_postgres::types::Type;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

/// What happened to one lease of a batch heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtendOutcome {
    /// The lease now runs until this time (database clock).
    Extended(DateTime<Utc>),
    LeaseLost,
    NotFound,
    /// An operator asked to cancel the job (`jq_cancel`); the lease was not
    /// extended and still ends at this time. Stop working on the job.
    CancelRequested(DateTime<Utc>),
}

/// What happened to one lease of a batch hand-back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The job waits again, due at once, with its attempt not counted.
    Released,
    LeaseLost,
    NotFound,
}

fn ids_and_tokens(leases: &[Lease]) -> (Vec<i64>, Vec<Uuid>) {
    leases
        .iter()
        .map(|lease| (lease.job_id, lease.token))
        .unzip()
}

fn unknown_outcome(outcome: &str) -> Error {
    Error::InvalidArgument(format!("unknown outcome {outcome:?} from the database"))
}

/// Pushes every lease out to the database clock's now + `duration` in one
/// statement; one outcome per lease, in input order.
pub async fn extend_many<C: GenericClient>(
    client: &C,
    leases: &[Lease],
    duration: Duration,
) -> Result<Vec<(i64, ExtendOutcome)>> {
    let (ids, tokens) = ids_and_tokens(leases);
    let rows = client
        .query_typed(
            "SELECT id, locked_until, outcome \
             FROM jobq.jq_extend_many($1, $2, make_interval(secs => $3))",
            &[
                (&ids, Type::INT8_ARRAY),
                (&tokens, Type::UUID_ARRAY),
                (&duration.as_secs_f64(), Type::FLOAT8),
            ],
        )
        .await?;
    rows.iter().map(extend_outcome).collect()
}

fn extend_outcome(row: &Row) -> Result<(i64, ExtendOutcome)> {
    let outcome = match row.try_get::<_, &str>("outcome")? {
        "extended" => ExtendOutcome::Extended(row.try_get("locked_until")?),
        "lease_lost" => ExtendOutcome::LeaseLost,
        "not_found" => ExtendOutcome::NotFound,
        "cancel_requested" => ExtendOutcome::CancelRequested(row.try_get("locked_until")?),
        other => return Err(unknown_outcome(other)),
    };
    Ok((row.try_get("id")?, outcome))
}

/// Hands back a job this worker leased but never started: it waits again,
/// due at once, and the grab's attempt is not counted. A stale lease is
/// [`Error::LeaseLost`].
pub async fn release<C: GenericClient>(client: &C, lease: Lease) -> Result<()> {
    client
        .query_typed(
            "SELECT jobq.jq_release($1, $2)",
            &[(&lease.job_id, Type::INT8), (&lease.token, Type::UUID)],
        )
        .await?;
    Ok(())
}

/// [`release`] for many jobs in one statement; one outcome per lease, in
/// input order.
pub async fn release_many<C: GenericClient>(
    client: &C,
    leases: &[Lease],
) -> Result<Vec<(i64, ReleaseOutcome)>> {
    let (ids, tokens) = ids_and_tokens(leases);
    let rows = client
        .query_typed(
            "SELECT id, outcome FROM jobq.jq_release_many($1, $2)",
            &[(&ids, Type::INT8_ARRAY), (&tokens, Type::UUID_ARRAY)],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let outcome = match row.try_get::<_, &str>("outcome")? {
                "released" => ReleaseOutcome::Released,
                "lease_lost" => ReleaseOutcome::LeaseLost,
                "not_found" => ReleaseOutcome::NotFound,
                other => return Err(unknown_outcome(other)),
            };
            Ok((row.try_get("id")?, outcome))
        })
        .collect()
}
