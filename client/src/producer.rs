//! Enqueueing, through any `GenericClient`: a `Client`, or a `Transaction`
//! so that jobs commit or roll back with the caller's own writes.

use crate::job::{JobType, NewJob};
use crate::Result;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::GenericClient;

/// Enqueues one job and returns its id (or, with a unique key that is taken,
/// the id of the live job holding it).
pub async fn enqueue<C: GenericClient>(client: &C, job: &NewJob) -> Result<i64> {
    let o = &job.options;
    let row = client
        .query_one(
            "SELECT jobq.jq_enqueue($1, $2, $3, $4::int2, \
                 coalesce($5, clock_timestamp() + $9::float8 * interval '1 millisecond'), \
                 $6, $7, $8)",
            &[
                &job.job_type,
                &job.args,
                &o.queue,
                &o.priority,
                &o.run_at,
                &o.max_attempts,
                &o.unique_key,
                &o.expires_at,
                &job.delay_ms(),
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Enqueues a typed job with default options.
pub async fn enqueue_typed<C: GenericClient, J: JobType>(client: &C, job: &J) -> Result<i64> {
    enqueue(client, &NewJob::typed(job)?).await
}

/// Enqueues many jobs in one statement, all or nothing; returns their ids in
/// the order given.
pub async fn enqueue_many<C: GenericClient>(client: &C, jobs: &[NewJob]) -> Result<Vec<i64>> {
    let rows = client
        .query(
            &format!(
                "SELECT id FROM jobq.jq_enqueue_many({}) AS id",
                JOBS_JSON_SQL
            ),
            &[&jobs_json(jobs), &delays_ms(jobs)],
        )
        .await?;
    rows.iter().map(|row| Ok(row.try_get(0)?)).collect()
}

/// SQL for the job array built from `$1` (jsonb array of job objects) and
/// `$2` (float8 array of delays in ms, NULL for none): delayed jobs get their
/// run_at from the database clock, never from this machine's.
pub(crate) const JOBS_JSON_SQL: &str = "(SELECT coalesce(jsonb_agg(CASE WHEN u.delay_ms IS NULL THEN j.job \
     ELSE j.job || jsonb_build_object('run_at', clock_timestamp() + u.delay_ms * interval '1 millisecond') END \
     ORDER BY j.ord), '[]'::jsonb) \
     FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS j(job, ord) \
     LEFT JOIN unnest($2::float8[]) WITH ORDINALITY AS u(delay_ms, ord) ON u.ord = j.ord)";

pub(crate) fn jobs_json(jobs: &[NewJob]) -> Value {
    Value::Array(jobs.iter().map(NewJob::to_json).collect())
}

pub(crate) fn delays_ms(jobs: &[NewJob]) -> Vec<Option<f64>> {
    jobs.iter().map(NewJob::delay_ms).collect()
}

/// Option setters, so a job reads as one expression:
/// `NewJob::typed(&email)?.queue("mail").delay(Duration::from_secs(60))`.
impl NewJob {
    /// Puts the job in this queue (default `default`).
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.options.queue = Some(queue.into());
        self
    }

    /// Lower runs first (default 0).
    pub fn priority(mut self, priority: i16) -> Self {
        self.options.priority = Some(priority);
        self
    }

    /// Not before this time.
    pub fn run_at(mut self, run_at: DateTime<Utc>) -> Self {
        self.options.run_at = Some(run_at);
        self
    }

    /// Not before this long after enqueue, on the database clock (a
    /// producer's clock may be off; the lease and due times are the
    /// database's).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.options.delay = Some(delay);
        self
    }

    /// Attempts before the job fails for good.
    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.options.max_attempts = Some(max_attempts);
        self
    }

    /// At most one waiting or running job per job type and key: enqueueing
    /// again returns the live job's id.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.options.unique_key = Some(key.into());
        self
    }

    /// Not after this time: a job not started by then ends as `expired`.
    pub fn expires_at(mut self, expires_at: DateTime<Utc>) -> Self {
        self.options.expires_at = Some(expires_at);
        self
    }
}
