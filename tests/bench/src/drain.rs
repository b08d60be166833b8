//! Backlog drain: 100,000 no-op jobs enqueued, then drained by a worker
//! process (the jobq-client runtime, 16 handlers); the same on a minimal
//! hand-written SQL queue for the physical limit of this cluster.

use crate::db::{connect, settle_stats, Counters};
use crate::BenchResult;
use jobq_client::worker::{JobContext, Outcome, Worker};
use jobq_client::{enqueue_many, NewJob};
use serde_json::json;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

pub const JOBS: u64 = 100_000;
const ENQUEUE_BATCH: usize = 1000;
const HANDLERS: usize = 16;
/// Jobs leased ahead of free handlers. Short jobs drain faster when each grab
/// leases many (one statement per batch); the README gives this setting.
const PREFETCH: usize = 256;
const BASELINE_CONNECTIONS: usize = 4;
const BASELINE_BATCH: i64 = 100;

pub struct Drain {
    pub enqueue_per_s: f64,
    pub drain_per_s: f64,
    pub commits_per_job: f64,
    pub wal_per_job: f64,
    pub worker_rss_kb: u64,
}

pub async fn jobq_drain(url: &str, record_events: bool) -> BenchResult<Drain> {
    let client = connect(url).await?;
    client
        .batch_execute("TRUNCATE jobq.jobs, jobq.events")
        .await?;
    client
        .execute(
            "INSERT INTO jobq.job_types (job_type, record_events) VALUES ('noop', $1)
             ON CONFLICT (job_type) DO UPDATE SET record_events = $1",
            &[&record_events],
        )
        .await?;
    client.batch_execute("CHECKPOINT").await?;

    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|n| NewJob::new("noop", json!({ "n": n })))
        .collect();
    let started = Instant::now();
    for batch in jobs.chunks(ENQUEUE_BATCH) {
        enqueue_many(&client, batch).await?;
    }
    let enqueue_per_s = JOBS as f64 / started.elapsed().as_secs_f64();
    drop(jobs);
    client.batch_execute("VACUUM ANALYZE jobq.jobs").await?;

    settle_stats().await;
    let before = Counters::read(&client).await?;
    let started = Instant::now();
    let worker_rss_kb = run_worker_process(url).await?;
    let elapsed = started.elapsed();
    let left: i64 = client
        .query_one(
            "SELECT count(*) FROM jobq.jobs WHERE state <> 'completed'",
            &[],
        )
        .await?
        .try_get(0)?;
    if left != 0 {
        return Err(format!("{left} jobs were not completed").into());
    }
    settle_stats().await;
    let (commits_per_job, wal_per_job) = Counters::read(&client).await?.per_job(&before, JOBS);
    Ok(Drain {
        enqueue_per_s,
        drain_per_s: JOBS as f64 / elapsed.as_secs_f64(),
        commits_per_job,
        wal_per_job,
        worker_rss_kb,
    })
}

/// Runs `jobq-bench drain-worker` as a child, so that its memory is the
/// worker's alone; it drains the backlog and prints its peak RSS.
async fn run_worker_process(url: &str) -> BenchResult<u64> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([url, "drain-worker"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or("no stdout from the worker process")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut rss = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(kb) = line.strip_prefix("peak_rss_kb=") {
            rss = Some(kb.trim().parse()?);
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        return Err(format!("worker process failed: {status}").into());
    }
    rss.ok_or_else(|| "the worker process did not report its memory".into())
}

/// The child: a worker with 16 no-op handlers and 256 jobs prefetched,
/// stopped once nothing is left.
pub async fn drain_worker(url: &str) -> BenchResult<()> {
    let watcher = connect(url).await?;
    let worker = Worker::builder(url.parse()?)
        .concurrency(HANDLERS)
        .prefetch(PREFETCH)
        .handler("noop", |_job: JobContext| async {
            Ok::<_, std::convert::Infallible>(Outcome::complete())
        })
        .build()?;
    let done = async move {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let open = watcher
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM jobq.jobs WHERE state IN ('waiting', 'running'))",
                    &[],
                )
                .await
                .and_then(|row| row.try_get::<_, bool>(0));
            if !matches!(open, Ok(true)) {
                return;
            }
        }
    };
    worker.run_until(done).await?;
    println!("peak_rss_kb={}", peak_rss_kb()?);
    Ok(())
}

fn peak_rss_kb() -> BenchResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmHWM")?
        .parse()?)
}

pub struct Baseline {
    pub insert_per_s: f64,
    pub drain_per_s: f64,
    pub commits_per_job: f64,
    pub wal_per_job: f64,
}

/// The physical limit: a bare table, 100 rows grabbed with FOR UPDATE SKIP
/// LOCKED and deleted by id per transaction.
pub async fn baseline_drain(url: &str) -> BenchResult<Baseline> {
    let client = connect(url).await?;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS bench_baseline;
             CREATE TABLE bench_baseline (id bigserial PRIMARY KEY, args jsonb NOT NULL);
             CHECKPOINT",
        )
        .await?;
    // The same payloads as jobq's enqueue, sent the same way: a JSON array
    // of 1,000 per statement.
    let batches: Vec<serde_json::Value> = (0..JOBS)
        .collect::<Vec<_>>()
        .chunks(ENQUEUE_BATCH)
        .map(|chunk| serde_json::Value::Array(chunk.iter().map(|n| json!({ "n": n })).collect()))
        .collect();
    let started = Instant::now();
    for batch in &batches {
        client
            .execute(
                "INSERT INTO bench_baseline (args) SELECT a FROM jsonb_array_elements($1::jsonb) AS a",
                &[batch],
            )
            .await?;
    }
    let insert_per_s = JOBS as f64 / started.elapsed().as_secs_f64();
    client
        .batch_execute("VACUUM ANALYZE bench_baseline")
        .await?;

    settle_stats().await;
    let before = Counters::read(&client).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..BASELINE_CONNECTIONS {
        let mut worker = connect(url).await?;
        tasks.push(tokio::spawn(async move {
            loop {
                let tx = worker.transaction().await?;
                let ids: Vec<i64> = tx
                    .query(
                        "SELECT id FROM bench_baseline ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                        &[&BASELINE_BATCH],
                    )
                    .await?
                    .iter()
                    .map(|row| row.try_get(0))
                    .collect::<Result<_, _>>()?;
                if ids.is_empty() {
                    tx.commit().await?;
                    return BenchResult::Ok(());
                }
                tx.execute("DELETE FROM bench_baseline WHERE id = ANY($1)", &[&ids])
                    .await?;
                tx.commit().await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let drain_per_s = JOBS as f64 / started.elapsed().as_secs_f64();
    settle_stats().await;
    let (commits_per_job, wal_per_job) = Counters::read(&client).await?.per_job(&before, JOBS);
    client.batch_execute("DROP TABLE bench_baseline").await?;
    Ok(Baseline {
        insert_per_s,
        drain_per_s,
        commits_per_job,
        wal_per_job,
    })
}
