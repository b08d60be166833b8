//! The lease-level worker calls: grab jobs, then finish each one under the
//! lease token its grab returned. The worker runtime is built on these; they
//! are public for workers in other shapes.
//!
//! Each call is one round trip: the parameter types are given with the
//! statement (`query_typed`), so nothing is prepared first and no prepared
//! statement is left to close. Calls issued concurrently on one client are
//! pipelined by tokio-postgres, each still its own transaction.

use crate::job::NewJob;
use crate::producer::{delays_ms, jobs_json, JOBS_JSON_SQL};
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::types::Type;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

/// The right to act on one grabbed job: its id and the fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub job_id: i64,
    pub token: Uuid,
}

/// A job this worker holds a lease on.
#[derive(Debug, Clone, PartialEq)]
pub struct LeasedJob {
    pub id: i64,
    pub job_type: String,
    pub queue: String,
    pub args: Value,
    pub priority: i32,
    /// 1 for the first attempt.
    pub attempt: i32,
    pub max_attempts: i32,
    pub lease_token: Uuid,
    /// When the lease runs out, by the database clock.
    pub locked_until: DateTime<Utc>,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl LeasedJob {
    pub fn lease(&self) -> Lease {
        Lease {
            job_id: self.id,
            token: self.lease_token,
        }
    }

    fn from_row(row: &Row) -> Result<Self> {
        Ok(LeasedJob {
            id: row.try_get("id")?,
            job_type: row.try_get("job_type")?,
            queue: row.try_get("queue")?,
            args: row.try_get("args")?,
            priority: row.try_get("priority")?,
            attempt: row.try_get("attempt")?,
            max_attempts: row.try_get("max_attempts")?,
            lease_token: row.try_get("lease_token")?,
            locked_until: row.try_get("locked_until")?,
            run_at: row.try_get("run_at")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// What to grab. `None` filters mean "any".
#[derive(Debug, Clone, PartialEq)]
pub struct GrabRequest {
    pub job_types: Option<Vec<String>>,
    pub queues: Option<Vec<String>>,
    /// Only jobs whose args contain this JSON object.
    pub search: Option<Value>,
    pub lease: Duration,
    pub max_jobs: i32,
    /// Recorded as the lease holder and in failure history.
    pub worker: Option<String>,
    /// Whether the grab's transaction waits for its WAL to reach disk
    /// (default `true`). `false` saves a disk flush per grab, but a crash can
    /// undo the grab (the job then runs again, as after a lost lease), and it
    /// applies to the whole transaction: use it only for a grab that is alone
    /// in its transaction, as the worker runtime's are. See `jq_grab`.
    pub durable: bool,
}

impl Default for GrabRequest {
    fn default() -> Self {
        GrabRequest {
            job_types: None,
            queues: None,
            search: None,
            lease: Duration::from_secs(300),
            max_jobs: 1,
            worker: None,
            durable: true,
        }
    }
}

/// Leases up to `max_jobs` due jobs, highest priority first.
pub async fn grab<C: GenericClient>(client: &C, request: &GrabRequest) -> Result<Vec<LeasedJob>> {
    let rows = client
        .query_typed(
            "SELECT * FROM jobq.jq_grab($1, make_interval(secs => $2), $3, $4, $5, $6, $7)",
            &[
                (&request.job_types, Type::TEXT_ARRAY),
                (&request.lease.as_secs_f64(), Type::FLOAT8),
                (&request.max_jobs, Type::INT4),
                (&request.worker, Type::TEXT),
                (&request.search, Type::JSONB),
                (&request.queues, Type::TEXT_ARRAY),
                (&request.durable, Type::BOOL),
            ],
        )
        .await?;
    rows.iter().map(LeasedJob::from_row).collect()
}

/// Finishes a job successfully.
pub async fn complete<C: GenericClient>(
    client: &C,
    lease: Lease,
    result: Option<&Value>,
) -> Result<()> {
    client
        .query_typed(
            "SELECT jobq.jq_complete($1, $2, $3)",
            &[
                (&lease.job_id, Type::INT8),
                (&lease.token, Type::UUID),
                (&result, Type::JSONB),
            ],
        )
        .await?;
    Ok(())
}

/// What happened to one job of a batch completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompleteOutcome {
    Completed,
    LeaseLost,
    NotFound,
}

/// Completes many jobs in one statement; one outcome per job, in input order.
/// A lost lease is an outcome here, not an error.
pub async fn complete_many<C: GenericClient>(
    client: &C,
    jobs: &[(Lease, Option<Value>)],
) -> Result<Vec<(i64, CompleteOutcome)>> {
    let ids: Vec<i64> = jobs.iter().map(|(lease, _)| lease.job_id).collect();
    let tokens: Vec<Uuid> = jobs.iter().map(|(lease, _)| lease.token).collect();
    let results: Vec<Option<Value>> = jobs.iter().map(|(_, result)| result.clone()).collect();
    let rows = client
        .query_typed(
            "SELECT id, outcome FROM jobq.jq_complete_many($1, $2, $3)",
            &[
                (&ids, Type::INT8_ARRAY),
                (&tokens, Type::UUID_ARRAY),
                (&results, Type::JSONB_ARRAY),
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let outcome: &str = row.try_get("outcome")?;
            let outcome = match outcome {
                "completed" => CompleteOutcome::Completed,
                "lease_lost" => CompleteOutcome::LeaseLost,
                "not_found" => CompleteOutcome::NotFound,
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown completion outcome {other:?}"
                    )))
                }
            };
            Ok((row.try_get("id")?, outcome))
        })
        .collect()
}

/// Where a temporarily failed job went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempFailOutcome {
    /// It waits again and is due at this time.
    RetryAt(DateTime<Utc>),
    /// Its attempts are used up: it failed for good.
    Failed,
    /// Its cancellation had been requested: it ends cancelled, not retried.
    Cancelled,
}

/// Fails this attempt. With no `retry_in`, the job type's backoff applies.
pub async fn temp_fail<C: GenericClient>(
    client: &C,
    lease: Lease,
    message: &str,
    retry_in: Option<Duration>,
) -> Result<TempFailOutcome> {
    let retry_secs = retry_in.map(|d| d.as_secs_f64());
    let row = client
        .query_typed_one(
            "SELECT state, run_at FROM jobq.jq_temp_fail($1, $2, $3, make_interval(secs => $4))",
            &[
                (&lease.job_id, Type::INT8),
                (&lease.token, Type::UUID),
                (&message, Type::TEXT),
                (&retry_secs, Type::FLOAT8),
            ],
        )
        .await?;
    let state: &str = row.try_get("state")?;
    match (state, row.try_get::<_, Option<DateTime<Utc>>>("run_at")?) {
        ("cancelled", _) => Ok(TempFailOutcome::Cancelled),
        (_, Some(at)) => Ok(TempFailOutcome::RetryAt(at)),
        (_, None) => Ok(TempFailOutcome::Failed),
    }
}

/// Fails the job for good.
pub async fn perm_fail<C: GenericClient>(client: &C, lease: Lease, message: &str) -> Result<()> {
    client
        .query_typed(
            "SELECT jobq.jq_perm_fail($1, $2, $3)",
            &[
                (&lease.job_id, Type::INT8),
                (&lease.token, Type::UUID),
                (&message, Type::TEXT),
            ],
        )
        .await?;
    Ok(())
}

/// Ends the job and inserts its replacements atomically; returns their ids.
pub async fn replace<C: GenericClient>(
    client: &C,
    lease: Lease,
    new_jobs: &[NewJob],
) -> Result<Vec<i64>> {
    let sql = format!("SELECT jobq.jq_replace($3, $4, {JOBS_JSON_SQL})");
    let row = client
        .query_typed_one(
            &sql,
            &[
                (&jobs_json(new_jobs), Type::JSONB),
                (&delays_ms(new_jobs), Type::FLOAT8_ARRAY),
                (&lease.job_id, Type::INT8),
                (&lease.token, Type::UUID),
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Pushes the lease out to the database clock's now + `lease`; returns the new end.
pub async fn extend<C: GenericClient>(
    client: &C,
    lease: Lease,
    duration: Duration,
) -> Result<DateTime<Utc>> {
    let row = client
        .query_typed_one(
            "SELECT jobq.jq_extend($1, $2, make_interval(secs => $3))",
            &[
                (&lease.job_id, Type::INT8),
                (&lease.token, Type::UUID),
                (&duration.as_secs_f64(), Type::FLOAT8),
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Everything known about a job (never its lease token).
pub async fn details<C: GenericClient>(client: &C, job_id: i64) -> Result<Value> {
    let row = client
        .query_typed_one("SELECT jobq.jq_details($1)", &[(&job_id, Type::INT8)])
        .await?;
    Ok(row.try_get(0)?)
}
