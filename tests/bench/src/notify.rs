//! Enqueue rate with wake-up notifications off, deferred (the wake-up
//! worker sends them after commit) and direct (each producer NOTIFYs in its
//! own transaction, the fallback without shared_preload_libraries).

use crate::db::{connect, truncate_jobq};
use crate::BenchResult;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

const PRODUCERS: [usize; 3] = [1, 4, 16];
const MODES: [&str; 3] = ["off", "deferred", "direct"];
const ROUNDS: usize = 3;
const RUN: Duration = Duration::from_secs(3);

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The body of jobq._announce_inserted, to put back after the "off" runs.
const ANNOUNCE_NOOP: &str = "CREATE OR REPLACE FUNCTION jobq._announce_inserted(p_specs jobq.job_spec[], p_now timestamptz) \
     RETURNS void LANGUAGE plpgsql VOLATILE STRICT SET search_path = jobq, pg_catalog, pg_temp \
     AS $$ BEGIN END; $$";

async fn set_mode(admin: &Client, mode: &str, original_announce: &str) -> BenchResult<()> {
    // "off" swaps the announcing function for a no-op: there is no user-facing
    // switch, and the benchmark should measure exactly the code users run.
    admin
        .batch_execute(if mode == "off" {
            ANNOUNCE_NOOP
        } else {
            original_announce
        })
        .await?;
    let workers = "SELECT pid FROM jobq.jq_wakeup_workers() \
                   WHERE database_oid = (SELECT oid FROM pg_database WHERE datname = current_database())";
    if mode == "direct" {
        for row in admin.query(workers, &[]).await? {
            let pid: i32 = row.try_get(0)?;
            admin
                .execute("SELECT pg_terminate_backend($1)", &[&pid])
                .await?;
        }
        while !admin.query(workers, &[]).await?.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        // A grab starts the worker if it is not running.
        admin
            .batch_execute("SELECT count(*) FROM jobq.jq_grab(ARRAY['no-such-type'])")
            .await?;
        while admin.query(workers, &[]).await?.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

async fn enqueue_rate(url: &str, producers: usize, duration: Duration) -> BenchResult<f64> {
    let mut tasks = Vec::new();
    let start_at = Instant::now() + Duration::from_millis(200);
    for p in 0..producers {
        let client = connect(url).await?;
        let queue = format!("bench{}", p % 4);
        tasks.push(tokio::spawn(async move {
            let statement = client
                .prepare("SELECT jobq.jq_enqueue('bench', '{}', $1)")
                .await?;
            tokio::time::sleep_until(start_at.into()).await;
            let mut done = 0u64;
            while start_at.elapsed() < duration {
                client.execute(&statement, &[&queue]).await?;
                done += 1;
            }
            BenchResult::Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / duration.as_secs_f64())
}

pub async fn bench_enqueue(url: &str) -> BenchResult<()> {
    let admin = connect(url).await?;
    admin
        .batch_execute(
            "INSERT INTO jobq.job_types (job_type, record_events) VALUES ('bench', false)
             ON CONFLICT (job_type) DO UPDATE SET record_events = false",
        )
        .await?;
    let original_announce: String = admin
        .query_one(
            "SELECT pg_get_functiondef('jobq._announce_inserted(jobq.job_spec[], timestamptz)'::regprocedure)",
            &[],
        )
        .await?
        .try_get(0)?;
    let settings = admin
        .query_one(
            "SELECT current_setting('synchronous_commit'), current_setting('fsync')",
            &[],
        )
        .await?;
    println!(
        "enqueue: one job per transaction, synchronous_commit={}, fsync={}, median of {} runs of {} s",
        settings.try_get::<_, String>(0)?,
        settings.try_get::<_, String>(1)?,
        ROUNDS,
        RUN.as_secs()
    );
    println!(
        "{:>10} {:>12} {:>12} {:>12}",
        "producers", "off", "deferred", "direct"
    );
    for producers in PRODUCERS {
        // Modes take turns, ROUNDS times, and each reports its median: the
        // machine is shared, and drift should hit every mode alike.
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
        for _ in 0..ROUNDS {
            for (mode, rates) in MODES.iter().zip(samples.iter_mut()) {
                set_mode(&admin, mode, &original_announce).await?;
                truncate_jobq(&admin).await?;
                rates.push(enqueue_rate(url, producers, RUN).await?);
            }
        }
        // Each round's deferred/off, in the order run: the target is about
        // every one of three consecutive runs, not their median.
        let per_round: Vec<String> = samples[0]
            .iter()
            .zip(&samples[1])
            .map(|(off, deferred)| format!("{:.2}", deferred / off))
            .collect();
        let rates: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
        println!(
            "{producers:>10} {:>10.0}/s {:>10.0}/s {:>10.0}/s   deferred/off = {:.2} (rounds: {}), direct/off = {:.2}",
            rates[0],
            rates[1],
            rates[2],
            rates[1] / rates[0],
            per_round.join(" "),
            rates[2] / rates[0]
        );
    }
    set_mode(&admin, "deferred", &original_announce).await?;
    Ok(())
}
