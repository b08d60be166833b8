//! History effect: the plain-SQL grab rate (16 connections, jq_grab 100 +
//! jq_complete_many) over a fresh backlog, first with no finished jobs
//! retained, then with 1,000,000 retained. The finished jobs are made through
//! the API (jq_enqueue_many of 10,000 built on the server, then jq_grab of
//! 10,000 and jq_complete_many in one statement), events on, so that they are
//! exactly what users' finished jobs are.

use crate::db::{connect, fill_jobq, quiesce, reset_jobq, PerJob};
use crate::drain::sql_drain;
use crate::BenchResult;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

pub const RETAINED: u64 = 1_000_000;
const CHUNK: u64 = 10_000;

pub struct HistoryRun {
    pub retained: u64,
    pub grab_per_s: f64,
    pub drain: PerJob,
}

pub struct History {
    pub runs: Vec<HistoryRun>,
    /// How long making the finished jobs took, and their rate.
    pub fill_time: Duration,
}

async fn finish_history(client: &Client, jobs: u64) -> BenchResult<()> {
    // From the sixth call in a session, PL/pgSQL may switch jq_complete_many
    // to a generic plan, which in 0.1.0 checks each of 10,000 ids against
    // every completed one (40-90 s a call instead of 0.5 s). Filling is not
    // what is measured, so this session plans each call for its arrays.
    client
        .batch_execute("SET plan_cache_mode = force_custom_plan")
        .await?;
    let mut done = 0;
    while done < jobs {
        let n = CHUNK.min(jobs - done);
        fill_jobq(client, "filler", n).await?;
        let completed: i64 = client
            .query_one(
                "WITH g AS (SELECT id, lease_token
                            FROM jobq.jq_grab(ARRAY['filler'], '1 hour', $1::int, 'history'))
                 SELECT count(*) FILTER (WHERE outcome = 'completed')
                 FROM jobq.jq_complete_many(ARRAY(SELECT id FROM g), ARRAY(SELECT lease_token FROM g))",
                &[&(n as i32)],
            )
            .await?
            .try_get(0)?;
        if completed as u64 != n {
            return Err(format!("history fill: {completed} of {n} jobs completed").into());
        }
        done += n;
    }
    client.batch_execute("RESET plan_cache_mode").await?;
    Ok(())
}

async fn grab_rate(
    url: &str,
    client: &Client,
    jobs: u64,
    retained: u64,
) -> BenchResult<HistoryRun> {
    fill_jobq(client, "noop", jobs).await?;
    quiesce(client).await?;
    let (drain, elapsed) = sql_drain(url, client, jobs).await?;
    Ok(HistoryRun {
        retained,
        grab_per_s: jobs as f64 / elapsed.as_secs_f64(),
        drain,
    })
}

pub async fn run(url: &str, jobs: u64, retained: u64) -> BenchResult<History> {
    let client = connect(url).await?;
    reset_jobq(&client, true).await?;
    let empty = grab_rate(url, &client, jobs, 0).await?;
    // Back to no jobs at all, then the history, then the same backlog again.
    reset_jobq(&client, true).await?;
    let started = Instant::now();
    finish_history(&client, retained).await?;
    let fill_time = started.elapsed();
    let full = grab_rate(url, &client, jobs, retained).await?;
    reset_jobq(&client, true).await?;
    Ok(History {
        runs: vec![empty, full],
        fill_time,
    })
}
