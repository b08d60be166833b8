//! Backlog drain: no-op jobs enqueued, then drained by 16 connections in
//! plain SQL (jq_grab 100, then jq_complete_many) or by a worker process
//! (the jobq-client runtime, 16 handlers, prefetch 256).

use crate::db::{
    connect, flush_stats, jobq_live_table, quiesce, reset_jobq, settle_stats, Counters, PerJob,
};
use crate::BenchResult;
use jobq_client::worker::{JobContext, Outcome, Worker};
use jobq_client::{enqueue_many, NewJob};
use serde_json::json;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_postgres::Client;

pub const JOBS: u64 = 100_000;
pub const ENQUEUE_BATCH: usize = 1000;
/// Connections of the SQL loops, handlers of the worker runtime.
pub const CONNECTIONS: usize = 16;
/// Jobs per grab in the SQL loops.
pub const BATCH: i64 = 100;
/// Jobs leased ahead of free handlers. Short jobs drain faster when each grab
/// leases many (one statement per batch); the README gives this setting.
const PREFETCH: usize = 256;

/// Every column, as a worker needs them; the token also as text, so that the
/// bench needs no uuid crate of its own.
const GRAB_SQL: &str =
    "SELECT *, lease_token::text AS token FROM jobq.jq_grab(NULL, '5 minutes', 100, 'w')";
const COMPLETE_SQL: &str = "SELECT count(*) FILTER (WHERE outcome = 'completed') \
     FROM jobq.jq_complete_many($1, $2::text[]::uuid[])";

/// One drain's figures.
pub struct DrainRun {
    pub enqueue_per_s: f64,
    pub drain_per_s: f64,
    /// WAL of the enqueue alone (the vacuum between is not counted).
    pub enqueue_wal_bytes: i64,
    pub drain: PerJob,
    pub jobs: u64,
    pub worker_rss_kb: Option<u64>,
    /// The table whose HOT share is reported.
    pub table: String,
}

impl DrainRun {
    pub fn enqueue_and_drain_wal_per_job(&self) -> f64 {
        self.enqueue_wal_bytes as f64 / self.jobs.max(1) as f64 + self.drain.wal_bytes
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Drainer {
    /// 16 connections, each looping jq_grab 100 + jq_complete_many.
    Sql,
    /// The Rust worker runtime in a process of its own.
    Runtime,
}

/// Enqueues `jobs` no-op jobs through the client (jq_enqueue_many, 1,000 per
/// call) and returns (jobs/s, WAL bytes).
async fn enqueue(client: &Client, table: &str, jobs: u64) -> BenchResult<(f64, i64)> {
    let batch: Vec<NewJob> = (0..jobs)
        .map(|n| NewJob::new("noop", json!({ "n": n })))
        .collect();
    let before = Counters::read(client, table).await?;
    let started = Instant::now();
    for chunk in batch.chunks(ENQUEUE_BATCH) {
        enqueue_many(client, chunk).await?;
    }
    let rate = jobs as f64 / started.elapsed().as_secs_f64();
    let after = Counters::read(client, table).await?;
    Ok((rate, after.wal_since(&before)))
}

pub async fn jobq_drain(
    url: &str,
    jobs: u64,
    drainer: Drainer,
    record_events: bool,
) -> BenchResult<DrainRun> {
    let client = connect(url).await?;
    reset_jobq(&client, record_events).await?;
    let table = jobq_live_table(&client).await?;
    client.batch_execute("CHECKPOINT").await?;
    let (enqueue_per_s, enqueue_wal_bytes) = enqueue(&client, &table, jobs).await?;
    quiesce(&client).await?;
    let (drain, elapsed, worker_rss_kb) = match drainer {
        Drainer::Sql => {
            let (drain, elapsed) = sql_drain(url, &client, jobs).await?;
            (drain, elapsed, None)
        }
        Drainer::Runtime => {
            let before = Counters::read(&client, &table).await?;
            let (elapsed, rss) = run_worker_process(url, jobs).await?;
            settle_stats().await;
            let after = Counters::read(&client, &table).await?;
            (after.per_job(&before, jobs), elapsed, Some(rss))
        }
    };
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
    Ok(DrainRun {
        enqueue_per_s,
        drain_per_s: jobs as f64 / elapsed.as_secs_f64(),
        enqueue_wal_bytes,
        drain,
        jobs,
        worker_rss_kb,
        table,
    })
}

/// 16 connections loop jq_grab(NULL, '5 minutes', 100, 'w') and
/// jq_complete_many of what it returned, each its own transaction
/// (autocommit), until a grab comes back empty. Returns the counters over
/// the drain and its time. Also the history benchmark's grab rate.
pub async fn sql_drain(url: &str, reader: &Client, jobs: u64) -> BenchResult<(PerJob, Duration)> {
    let mut workers = Vec::new();
    for _ in 0..CONNECTIONS {
        workers.push(connect(url).await?);
    }
    let table = jobq_live_table(reader).await?;
    let before = Counters::read(reader, &table).await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in workers {
        tasks.push(tokio::spawn(async move {
            let grab = worker.prepare(GRAB_SQL).await?;
            let complete = worker.prepare(COMPLETE_SQL).await?;
            let mut done = 0u64;
            loop {
                let rows = worker.query(&grab, &[]).await?;
                if rows.is_empty() {
                    break;
                }
                let mut ids = Vec::with_capacity(rows.len());
                let mut tokens = Vec::with_capacity(rows.len());
                for row in &rows {
                    ids.push(row.try_get::<_, i64>("id")?);
                    tokens.push(row.try_get::<_, String>("token")?);
                }
                let completed: i64 = worker
                    .query_one(&complete, &[&ids, &tokens])
                    .await?
                    .try_get(0)?;
                done += completed as u64;
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
        return Err(format!("plain SQL drain: {done} of {jobs} jobs completed").into());
    }
    settle_stats().await;
    let after = Counters::read(reader, &table).await?;
    Ok((after.per_job(&before, jobs), elapsed))
}

/// Runs `jobq-bench <url> drain-worker --jobs N` as a child, so that its
/// memory is the worker's alone; it drains the backlog and prints its drain
/// time and peak RSS.
async fn run_worker_process(url: &str, jobs: u64) -> BenchResult<(Duration, u64)> {
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args([url, "drain-worker", "--jobs", &jobs.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or("no stdout from the worker process")?;
    let mut lines = BufReader::new(stdout).lines();
    let mut rss = None;
    let mut elapsed = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(kb) = line.strip_prefix("peak_rss_kb=") {
            rss = Some(kb.trim().parse()?);
        } else if let Some(s) = line.strip_prefix("drain_s=") {
            elapsed = Some(Duration::from_secs_f64(s.trim().parse()?));
        }
    }
    let status = child.wait().await?;
    if !status.success() {
        return Err(format!("worker process failed: {status}").into());
    }
    Ok((
        elapsed.ok_or("the worker process did not report its drain time")?,
        rss.ok_or("the worker process did not report its memory")?,
    ))
}

/// The child: a worker with 16 no-op handlers and 256 jobs prefetched. It
/// stops once its handlers have started `jobs` jobs (every outcome is
/// recorded before run_until returns), or when a check every 2 s finds
/// nothing left to do; the check is that rare so that its commits do not
/// count.
pub async fn drain_worker(url: &str, jobs: u64) -> BenchResult<()> {
    let watcher = connect(url).await?;
    let started_jobs = Arc::new(AtomicU64::new(0));
    let all_started = Arc::new(tokio::sync::Notify::new());
    let (counter, notify) = (Arc::clone(&started_jobs), Arc::clone(&all_started));
    let worker = Worker::builder(url.parse()?)
        .concurrency(CONNECTIONS)
        .prefetch(PREFETCH)
        .handler("noop", move |_job: JobContext| {
            if counter.fetch_add(1, Ordering::Relaxed) + 1 == jobs {
                notify.notify_one();
            }
            async { Ok::<_, std::convert::Infallible>(Outcome::complete()) }
        })
        .build()?;
    let nothing_left = async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
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
    let started = Instant::now();
    let done = async move {
        tokio::select! {
            () = all_started.notified() => {}
            () = nothing_left => {}
        }
    };
    worker.run_until(done).await?;
    println!("drain_s={}", started.elapsed().as_secs_f64());
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
