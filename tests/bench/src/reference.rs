//! The reference queue, shaped like the fastest simple peers (pgmq's read +
//! delete): a plain table in its own schema; a grab leases up to 100 due rows
//! with FOR UPDATE SKIP LOCKED and a lease update in one statement, and a
//! second transaction deletes them. jobq's ratios are taken against it.

use crate::db::{connect, flush_stats, quiesce, settle_stats, Counters};
use crate::drain::{DrainRun, BATCH, CONNECTIONS, ENQUEUE_BATCH};
use crate::BenchResult;
use serde_json::json;
use std::time::Instant;

pub const TABLE: &str = "bench_ref.jobs";

/// The grab: due rows in order, skipping those other grabbers hold, leased
/// for five minutes. Only (run_at, id) is indexed, so the lease update can be
/// HOT when the page has room.
pub const GRAB_SQL: &str = "WITH next AS (
         SELECT id FROM bench_ref.jobs
         WHERE run_at <= now() AND (locked_until IS NULL OR locked_until < now())
         ORDER BY run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)
     UPDATE bench_ref.jobs j SET locked_until = now() + interval '5 minutes'
     FROM next WHERE j.id = next.id
     RETURNING j.id, j.args";

/// A grab of `n` that deletes in the same statement, for pgbench.
pub fn grab_delete_sql(n: u32) -> String {
    format!(
        "WITH next AS (
             SELECT id FROM bench_ref.jobs
             WHERE run_at <= now() AND (locked_until IS NULL OR locked_until < now())
             ORDER BY run_at, id LIMIT {n} FOR UPDATE SKIP LOCKED)
         DELETE FROM bench_ref.jobs j USING next WHERE j.id = next.id RETURNING j.id, j.args"
    )
}

pub async fn create(client: &tokio_postgres::Client) -> BenchResult<()> {
    client
        .batch_execute(
            "DROP SCHEMA IF EXISTS bench_ref CASCADE;
             CREATE SCHEMA bench_ref;
             CREATE TABLE bench_ref.jobs (
                 id           bigserial PRIMARY KEY,
                 run_at       timestamptz NOT NULL DEFAULT now(),
                 locked_until timestamptz,
                 args         jsonb NOT NULL);
             CREATE INDEX jobs_due_idx ON bench_ref.jobs (run_at, id);",
        )
        .await?;
    Ok(())
}

/// Fills the reference table on the server, for pgbench runs.
pub async fn fill(client: &tokio_postgres::Client, jobs: u64) -> BenchResult<()> {
    client
        .execute(
            "INSERT INTO bench_ref.jobs (args)
             SELECT jsonb_build_object('n', g) FROM generate_series(1, $1::bigint) AS g",
            &[&(jobs as i64)],
        )
        .await?;
    Ok(())
}

/// Enqueues `jobs` rows the way jobq's drain does (a JSON array of 1,000 per
/// statement), then drains them with 16 connections.
pub async fn drain(url: &str, jobs: u64) -> BenchResult<DrainRun> {
    let client = connect(url).await?;
    create(&client).await?;
    client.batch_execute("CHECKPOINT").await?;
    let batches: Vec<serde_json::Value> = (0..jobs)
        .collect::<Vec<_>>()
        .chunks(ENQUEUE_BATCH)
        .map(|chunk| serde_json::Value::Array(chunk.iter().map(|n| json!({ "n": n })).collect()))
        .collect();
    let before_enqueue = Counters::read(&client, TABLE).await?;
    let started = Instant::now();
    for batch in &batches {
        client
            .execute(
                "INSERT INTO bench_ref.jobs (args) SELECT a FROM jsonb_array_elements($1::jsonb) AS a",
                &[batch],
            )
            .await?;
    }
    let enqueue_per_s = jobs as f64 / started.elapsed().as_secs_f64();
    let enqueued = Counters::read(&client, TABLE).await?;
    drop(batches);
    quiesce(&client).await?;

    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        workers.push(connect(url).await?);
    }
    let before = Counters::read(&client, TABLE).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in workers {
        tasks.push(tokio::spawn(async move {
            let grab = worker.prepare(GRAB_SQL).await?;
            let delete = worker
                .prepare("DELETE FROM bench_ref.jobs WHERE id = ANY($1)")
                .await?;
            let mut done = 0u64;
            loop {
                let ids: Vec<i64> = worker
                    .query(&grab, &[&BATCH])
                    .await?
                    .iter()
                    .map(|row| row.try_get(0))
                    .collect::<Result<_, _>>()?;
                if ids.is_empty() {
                    break;
                }
                done += worker.execute(&delete, &[&ids]).await?;
            }
            flush_stats(&worker).await?;
            BenchResult::Ok(done)
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    let elapsed = started.elapsed();
    if done != jobs {
        return Err(format!("reference queue: {done} of {jobs} rows deleted").into());
    }
    settle_stats().await;
    let after = Counters::read(&client, TABLE).await?;
    Ok(DrainRun {
        enqueue_per_s,
        drain_per_s: jobs as f64 / elapsed.as_secs_f64(),
        enqueue_wal_bytes: enqueued.wal_since(&before_enqueue),
        drain: after.per_job(&before, jobs),
        jobs,
        worker_rss_kb: None,
        table: TABLE.to_owned(),
    })
}
