//! jobq benchmarks. Run through `bash tests/bin/bench.sh`, which starts a
//! throwaway cluster with jobq preloaded and synchronous_commit=on.
//!
//!   enqueue  single-job enqueues/s at 1, 4 and 16 producers, with wake-up
//!            notifications off, deferred (the default) and direct;
//!   drain    100,000 no-op jobs: enqueue and drain rates through the Rust
//!            worker runtime (16 handlers), commits and WAL bytes per job,
//!            worker RSS, the same drain on a bare SKIP LOCKED table, and
//!            enqueue-commit to handler-start latency with an idle worker.

mod db;
mod drain;
mod latency;
mod notify;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

async fn bench_drain(url: &str) -> BenchResult<()> {
    println!(
        "drain: {} no-op jobs, worker runtime with 16 handlers and prefetch 256 in its own process",
        drain::JOBS
    );
    let base = drain::baseline_drain(url).await?;
    println!(
        "  bare SQL queue (SKIP LOCKED, 100 per transaction, 4 connections): insert {:.0}/s, drain {:.0}/s, \
         {:.3} commits/job, {:.0} WAL bytes/job",
        base.insert_per_s, base.drain_per_s, base.commits_per_job, base.wal_per_job
    );
    for record_events in [true, false] {
        let run = drain::jobq_drain(url, record_events).await?;
        println!(
            "  jobq, events {}: enqueue {:.0}/s, drain {:.0}/s = {:.2} x bare, {:.3} commits/job, \
             {:.0} WAL bytes/job, worker peak RSS {:.1} MB",
            if record_events { "on " } else { "off" },
            run.enqueue_per_s,
            run.drain_per_s,
            run.drain_per_s / base.drain_per_s,
            run.commits_per_job,
            run.wal_per_job,
            run.worker_rss_kb as f64 / 1024.0
        );
    }
    let latency = latency::enqueue_to_start(url).await?;
    println!(
        "latency: enqueue commit -> handler start, idle worker, {} samples: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms",
        latency::SAMPLES,
        latency.p50.as_secs_f64() * 1e3,
        latency.p95.as_secs_f64() * 1e3,
        latency.p99.as_secs_f64() * 1e3
    );
    Ok(())
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .ok_or("usage: jobq-bench <postgres url> [enqueue|drain|all]")?;
    let which = args.next().unwrap_or_else(|| "all".to_owned());
    match which.as_str() {
        "enqueue" => notify::bench_enqueue(&url).await,
        "drain" => bench_drain(&url).await,
        "all" => {
            bench_drain(&url).await?;
            notify::bench_enqueue(&url).await
        }
        "drain-worker" => drain::drain_worker(&url).await,
        other => Err(format!("unknown benchmark {other:?}").into()),
    }
}
