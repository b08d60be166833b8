//! jobq benchmarks. Run through `bash tests/bin/bench.sh [mode] [options]`,
//! which starts a throwaway cluster with jobq preloaded and
//! synchronous_commit=on, or directly: `jobq-bench <url> [mode] [options]`.
//!
//!   all       (default) settings, drain, grabbers, latency, enqueue; with
//!             --history also history
//!   drain     N no-op jobs (default 100,000), 16 connections or handlers:
//!             the reference queue (SKIP LOCKED grab 100 + lease update, then
//!             delete), jobq in plain SQL (jq_grab 100 + jq_complete_many)
//!             and the Rust worker runtime (prefetch 256) in its own process,
//!             events on and off: jobs/s, ratio to the reference, WAL bytes
//!             and commits per job, HOT share of updates, worker peak RSS
//!   grabbers  pgbench, 10 jobs per transaction, jobq at 4 and 64 clients,
//!             the reference at 1, 4 and 64
//!   latency   enqueue commit -> handler start, events on, random spacing
//!             (0-5 ms) and the older fixed spacing
//!   enqueue   single-job enqueues/s at 1, 4 and 16 producers, wake-ups off,
//!             deferred (the default) and direct, three rounds
//!   history   plain-SQL grab rate with 0 and 1,000,000 finished jobs
//!             retained (takes minutes, so not in "all" without --history)
//!
//! Options: --jobs N (drain size; also the history backlog), --samples N
//! (latency samples), --history, --retained N (finished jobs for history).

mod db;
mod drain;
mod grabbers;
mod history;
mod latency;
mod notify;
mod reference;

use drain::{DrainRun, Drainer};
use std::time::Instant;

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Options {
    jobs: u64,
    samples: usize,
    history: bool,
    retained: u64,
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn drain_row(name: &str, events: &str, run: &DrainRun, reference: Option<f64>) {
    println!(
        "  {name:<28} {events:<6} {:>9.0} {:>9.0} {:>7} {:>9.0} {:>9.0} {:>8.4}  {:<18} {}",
        run.enqueue_per_s,
        run.drain_per_s,
        reference.map_or_else(
            || "1.00".to_owned(),
            |r| format!("{:.2}", run.drain_per_s / r)
        ),
        run.drain.wal_bytes,
        run.enqueue_and_drain_wal_per_job(),
        run.drain.commits,
        run.drain.hot_share(),
        run.worker_rss_kb.map_or_else(String::new, mb)
    );
}

async fn bench_drain(url: &str, jobs: u64) -> BenchResult<()> {
    println!(
        "drain: {jobs} no-op jobs enqueued (JSON arrays of 1,000), then drained by 16 connections \
         (SQL) or 16 handlers with prefetch 256 (worker runtime, own process)"
    );
    println!("  ({})", db::STATS_METHOD);
    println!(
        "  {:<28} {:<6} {:>9} {:>9} {:>7} {:>9} {:>9} {:>8}  {:<18} worker RSS",
        "queue",
        "events",
        "enq/s",
        "drain/s",
        "x ref",
        "WAL B/j",
        "+enq B/j",
        "commit/j",
        "HOT share of upd",
    );
    let reference = reference::drain(url, jobs).await?;
    drain_row("reference (SKIP LOCKED+del)", "-", &reference, None);
    let mut tables = vec![reference.table.clone()];
    for (name, drainer) in [
        ("jobq plain SQL", Drainer::Sql),
        ("jobq worker runtime", Drainer::Runtime),
    ] {
        for record_events in [true, false] {
            let run = drain::jobq_drain(url, jobs, drainer, record_events).await?;
            drain_row(
                name,
                if record_events { "on" } else { "off" },
                &run,
                Some(reference.drain_per_s),
            );
            if !tables.contains(&run.table) {
                tables.push(run.table);
            }
        }
    }
    println!(
        "  HOT share: of the updates to {} during the drain (n/a: no such table)",
        tables.join(" (reference), ")
    );
    Ok(())
}

async fn bench_grabbers(url: &str) -> BenchResult<()> {
    println!("grabbers: {}", grabbers::describe());
    let show = |name: &str, runs: &[grabbers::GrabberRun]| {
        let rate = |clients: usize| {
            runs.iter()
                .find(|r| r.clients == clients)
                .map(|r| r.jobs_per_s)
        };
        let cells: Vec<String> = runs
            .iter()
            .map(|r| {
                format!(
                    "{:>2} clients: {:.0} jobs/s{}",
                    r.clients,
                    r.jobs_per_s,
                    if r.ran_empty {
                        " (queue ran empty: too high)"
                    } else {
                        ""
                    }
                )
            })
            .collect();
        let ratio = match (rate(64), rate(4)) {
            (Some(many), Some(few)) => format!("{:.2}", many / few),
            _ => "n/a".to_owned(),
        };
        println!("  {name:<10} {}; 64 vs 4 = {ratio}", cells.join(", "));
    };
    let jobq = grabbers::jobq(url, &[4, 64]).await?;
    let reference = grabbers::reference(url, &[1, 4, 64]).await?;
    show("jobq", &jobq);
    show("reference", &reference);
    Ok(())
}

async fn bench_latency(url: &str, samples: usize) -> BenchResult<()> {
    for (spacing, what) in [
        (
            latency::Spacing::Random,
            "random spacing, uniform 0-5 ms between enqueues",
        ),
        (
            latency::Spacing::Fixed,
            "fixed spacing, next enqueue 5 ms after the last handler started",
        ),
    ] {
        let l = latency::enqueue_to_start(url, spacing, samples).await?;
        println!(
            "latency: enqueue commit -> handler start, events on, {what}, {} samples: \
             p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.samples,
            l.p50.as_secs_f64() * 1e3,
            l.p95.as_secs_f64() * 1e3,
            l.p99.as_secs_f64() * 1e3,
            l.max.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

async fn bench_history(url: &str, jobs: u64, retained: u64) -> BenchResult<()> {
    println!(
        "history: plain-SQL grab rate (16 connections, jq_grab 100 + jq_complete_many) over {jobs} \
         jobs, with 0 and {retained} finished jobs retained (made through the API: \
         jq_enqueue_many + jq_grab + jq_complete_many of 10,000 at a time, events on)"
    );
    let h = history::run(url, jobs, retained).await?;
    println!(
        "  making {retained} finished jobs took {:.0} s ({:.0} jobs/s)",
        h.fill_time.as_secs_f64(),
        retained as f64 / h.fill_time.as_secs_f64()
    );
    let base = h.runs[0].grab_per_s;
    for run in &h.runs {
        println!(
            "  {:>9} retained: {:.0} jobs/s = {:.2} x none, {:.0} WAL B/job, {:.4} commits/job, HOT {}",
            run.retained,
            run.grab_per_s,
            run.grab_per_s / base,
            run.drain.wal_bytes,
            run.drain.commits,
            run.drain.hot_share()
        );
    }
    Ok(())
}

fn parse(args: impl Iterator<Item = String>) -> BenchResult<(Vec<String>, Options)> {
    let mut options = Options {
        jobs: drain::JOBS,
        samples: latency::SAMPLES,
        history: false,
        retained: history::RETAINED,
    };
    let mut words = Vec::new();
    let mut args = args;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--jobs" => options.jobs = args.next().ok_or("--jobs needs a number")?.parse()?,
            "--samples" => {
                options.samples = args.next().ok_or("--samples needs a number")?.parse()?
            }
            "--history" => options.history = true,
            "--retained" => {
                options.retained = args.next().ok_or("--retained needs a number")?.parse()?
            }
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}").into()),
            _ => words.push(arg),
        }
    }
    Ok((words, options))
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let (words, options) = parse(std::env::args().skip(1))?;
    let mut words = words.into_iter();
    let url = words.next().ok_or(
        "usage: jobq-bench <postgres url> [all|drain|grabbers|latency|enqueue|history] \
         [--jobs N] [--samples N] [--history] [--retained N]",
    )?;
    let which = words.next().unwrap_or_else(|| "all".to_owned());
    if which == "drain-worker" {
        return drain::drain_worker(&url, options.jobs).await;
    }
    let started = Instant::now();
    let admin = db::connect(&url).await?;
    db::print_settings(&admin).await?;
    match which.as_str() {
        "drain" => bench_drain(&url, options.jobs).await?,
        "grabbers" => bench_grabbers(&url).await?,
        "latency" => bench_latency(&url, options.samples).await?,
        "enqueue" => notify::bench_enqueue(&url).await?,
        "history" => bench_history(&url, options.jobs, options.retained).await?,
        "all" => {
            bench_drain(&url, options.jobs).await?;
            bench_grabbers(&url).await?;
            bench_latency(&url, options.samples).await?;
            db::reset_jobq(&admin, true).await?;
            notify::bench_enqueue(&url).await?;
            if options.history {
                bench_history(&url, options.jobs, options.retained).await?;
            }
        }
        other => return Err(format!("unknown benchmark {other:?}").into()),
    }
    db::reset_jobq(&admin, true).await?;
    println!(
        "bench time: {:.0} s, load average {}",
        started.elapsed().as_secs_f64(),
        db::load_average()
    );
    Ok(())
}
