//! Many grabbers: pgbench clients each running one transaction after the
//! other that grabs 10 jobs and finishes them, over a queue filled
//! beforehand. jobq: jq_grab of 10 and jq_complete_many of what it returned,
//! in one statement; reference: the same grab on the reference table with a
//! delete, in one statement.

use crate::db::{connect, fill_jobq, quiesce, reset_jobq};
use crate::reference;
use crate::BenchResult;
use std::path::PathBuf;
use std::time::Duration;
use tokio_postgres::Client;

/// Jobs in the queue when a run starts; a run that empties it says so.
const FILL: u64 = 150_000;
const RUN: Duration = Duration::from_secs(5);
const PER_TRANSACTION: u32 = 10;

const JOBQ_SCRIPT: &str = "WITH g AS (SELECT id, lease_token FROM jobq.jq_grab(NULL, '5 minutes', 10, 'pgbench'))
SELECT count(*) FROM jobq.jq_complete_many(ARRAY(SELECT id FROM g), ARRAY(SELECT lease_token FROM g));
";

/// pgbench from JOBQ_PGBENCH, else next to the server's binaries
/// (JOBQ_PG_BIN), else PostgreSQL 15's, else the PATH.
fn pgbench() -> PathBuf {
    if let Some(path) = std::env::var_os("JOBQ_PGBENCH") {
        return path.into();
    }
    let bin = std::env::var_os("JOBQ_PG_BIN").map_or_else(
        || PathBuf::from("/usr/lib/postgresql/15/bin"),
        PathBuf::from,
    );
    let candidate = bin.join("pgbench");
    if candidate.exists() {
        candidate
    } else {
        PathBuf::from("pgbench")
    }
}

pub struct GrabberRun {
    pub clients: usize,
    pub jobs_per_s: f64,
    /// The queue ran empty during the run: empty grabs were counted.
    pub ran_empty: bool,
}

/// Runs pgbench with `script` at `clients` clients for RUN; returns its
/// transactions per second (without connection time).
async fn run_pgbench(url: &str, script: &str, clients: usize) -> BenchResult<f64> {
    let path =
        std::env::temp_dir().join(format!("jobq-bench-{}-{clients}.sql", std::process::id()));
    std::fs::write(&path, script)?;
    let output = tokio::process::Command::new(pgbench())
        .arg("--no-vacuum")
        .args(["--protocol", "prepared"])
        .args(["--client", &clients.to_string()])
        .args(["--jobs", &clients.min(2).to_string()])
        .args(["--time", &RUN.as_secs().to_string()])
        .arg("--file")
        .arg(&path)
        .arg(url)
        .output()
        .await;
    std::fs::remove_file(&path)?;
    let output = output?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "pgbench failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let tps = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| format!("no tps in pgbench's output: {stdout}"))?;
    Ok(tps.parse()?)
}

async fn count(client: &Client, sql: &str) -> BenchResult<i64> {
    Ok(client.query_one(sql, &[]).await?.try_get(0)?)
}

/// jobq at each of `clients`, events on.
pub async fn jobq(url: &str, clients: &[usize]) -> BenchResult<Vec<GrabberRun>> {
    let client = connect(url).await?;
    let mut runs = Vec::new();
    for &n in clients {
        reset_jobq(&client, true).await?;
        fill_jobq(&client, "noop", FILL).await?;
        quiesce(&client).await?;
        let tps = run_pgbench(url, JOBQ_SCRIPT, n).await?;
        let left = count(
            &client,
            "SELECT count(*) FROM jobq.jobs WHERE state = 'waiting'",
        )
        .await?;
        runs.push(GrabberRun {
            clients: n,
            jobs_per_s: tps * f64::from(PER_TRANSACTION),
            ran_empty: left == 0,
        });
    }
    reset_jobq(&client, true).await?;
    Ok(runs)
}

/// The reference table at each of `clients`.
pub async fn reference(url: &str, clients: &[usize]) -> BenchResult<Vec<GrabberRun>> {
    let client = connect(url).await?;
    let script = format!("{};\n", reference::grab_delete_sql(PER_TRANSACTION));
    let mut runs = Vec::new();
    for &n in clients {
        reference::create(&client).await?;
        reference::fill(&client, FILL).await?;
        quiesce(&client).await?;
        let tps = run_pgbench(url, &script, n).await?;
        let left = count(&client, "SELECT count(*) FROM bench_ref.jobs").await?;
        runs.push(GrabberRun {
            clients: n,
            jobs_per_s: tps * f64::from(PER_TRANSACTION),
            ran_empty: left == 0,
        });
    }
    client
        .batch_execute("DROP SCHEMA bench_ref CASCADE")
        .await?;
    Ok(runs)
}

pub fn describe() -> String {
    format!(
        "pgbench -M prepared -T {} over {FILL} queued jobs, {PER_TRANSACTION} jobs per transaction \
         (one statement: jobq = jq_grab + jq_complete_many, reference = SKIP LOCKED grab + delete)",
        RUN.as_secs()
    )
}
