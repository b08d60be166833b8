//! Connections, server counters and the clean-up shared by the benchmarks.

use crate::BenchResult;
use tokio_postgres::{Client, NoTls};

pub async fn connect(url: &str) -> BenchResult<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("connection ended: {error}");
        }
    });
    Ok(client)
}

/// How the counters below are made fresh, printed with the results.
pub const STATS_METHOD: &str =
    "commits and HOT counts from pg_stat_database / pg_stat_user_tables: \
     the bench's own connections call pg_stat_force_next_flush() before they close, then 1.1 s \
     pass so that exited backends (worker process, pgbench) have flushed, and the reader forces \
     its own flush and clears its snapshot; background workers that never report stay invisible";

/// What the server did between two readings: commits in this database, WAL
/// bytes written cluster-wide, and the updates of one table (None when it
/// does not exist). All three hold across machines, unlike jobs/s.
#[derive(Clone, Copy)]
pub struct Counters {
    commits: i64,
    wal_lsn: i64,
    updates: Option<(i64, i64)>,
}

/// The difference of two readings, per job.
pub struct PerJob {
    pub commits: f64,
    pub wal_bytes: f64,
    /// (HOT updates, all updates) of the table during the interval.
    pub updates: Option<(i64, i64)>,
}

impl PerJob {
    /// "12 % of 200000" or "n/a".
    pub fn hot_share(&self) -> String {
        match self.updates {
            Some((_, 0)) => "no updates".to_owned(),
            Some((hot, all)) => format!("{:.0} % of {all}", 100.0 * hot as f64 / all as f64),
            None => "n/a".to_owned(),
        }
    }
}

impl Counters {
    /// Reads the counters; `table` (e.g. "jobq.jobs") is the one whose HOT
    /// share is reported.
    pub async fn read(client: &Client, table: &str) -> BenchResult<Counters> {
        // This connection's own commits reach the shared statistics when it
        // next goes idle, forced by this call; a fresh snapshot then sees
        // them together with everything other backends have flushed.
        client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .await?;
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await?;
        let row = client
            .query_one(
                "SELECT d.xact_commit, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,
                        pg_stat_get_tuples_updated(t.oid), pg_stat_get_tuples_hot_updated(t.oid)
                 FROM pg_stat_database d LEFT JOIN (SELECT to_regclass($1) AS oid) t ON true
                 WHERE d.datname = current_database()",
                &[&table],
            )
            .await?;
        let updated: Option<i64> = row.try_get(2)?;
        let hot: Option<i64> = row.try_get(3)?;
        Ok(Counters {
            commits: row.try_get(0)?,
            wal_lsn: row.try_get(1)?,
            updates: updated.zip(hot),
        })
    }

    /// WAL bytes written since `earlier`.
    pub fn wal_since(&self, earlier: &Counters) -> i64 {
        self.wal_lsn - earlier.wal_lsn
    }

    /// Per-job figures since `earlier`.
    pub fn per_job(&self, earlier: &Counters, jobs: u64) -> PerJob {
        let jobs = jobs.max(1) as f64;
        PerJob {
            commits: (self.commits - earlier.commits) as f64 / jobs,
            wal_bytes: self.wal_since(earlier) as f64 / jobs,
            updates: match (self.updates, earlier.updates) {
                (Some((upd, hot)), Some((upd0, hot0))) => Some((hot - hot0, upd - upd0)),
                _ => None,
            },
        }
    }
}

/// Makes this connection's statistics visible to others before it closes.
pub async fn flush_stats(client: &Client) -> BenchResult<()> {
    client
        .batch_execute("SELECT pg_stat_force_next_flush()")
        .await?;
    Ok(())
}

/// Waits until the server's statistics include what exited backends did:
/// they flush at exit, which the bench does not wait for.
pub async fn settle_stats() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}

/// The table that holds jobq's live jobs, whose HOT share is reported:
/// jobq.live_jobs from 0.2.0 on (jobq.jobs is a view there), else
/// jobq.jobs (which then reads as "n/a" when it is no table either).
pub async fn jobq_live_table(client: &Client) -> BenchResult<String> {
    let name: Option<String> = client
        .query_opt(
            "SELECT c.oid::regclass::text FROM pg_class c
             WHERE c.oid IN (to_regclass('jobq.live_jobs'), to_regclass('jobq.jobs'))
               AND c.relkind IN ('r', 'p')
             ORDER BY c.relname = 'live_jobs' DESC LIMIT 1",
            &[],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    Ok(name.unwrap_or_else(|| "jobq.jobs".to_owned()))
}

/// Empties every jobq table except the settings (job types, queues,
/// maintenance state), whatever the installed version's tables are.
pub async fn truncate_jobq(client: &Client) -> BenchResult<()> {
    let tables: Option<String> = client
        .query_one(
            "SELECT string_agg(format('%I.%I', n.nspname, c.relname), ', ')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'jobq' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND c.relname NOT IN ('job_types', 'queues', 'maintenance')",
            &[],
        )
        .await?
        .try_get(0)?;
    let Some(tables) = tables else {
        return Ok(());
    };
    // The wake-up worker's maintenance may hold one of these tables while it
    // waits for another: a deadlock that ends this statement. Try again.
    for attempt in 1.. {
        match client.batch_execute(&format!("TRUNCATE {tables}")).await {
            Ok(()) => break,
            Err(error)
                if attempt < 10
                    && error.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Empties the jobq tables and leaves only the default job type row, with
/// events on or off.
pub async fn reset_jobq(client: &Client, record_events: bool) -> BenchResult<()> {
    truncate_jobq(client).await?;
    client
        .execute("DELETE FROM jobq.job_types WHERE job_type <> '*'", &[])
        .await?;
    client
        .execute(
            "UPDATE jobq.job_types SET record_events = $1 WHERE job_type = '*'",
            &[&record_events],
        )
        .await?;
    Ok(())
}

/// Enqueues `jobs` no-op jobs of `job_type` built on the server, 10,000 per
/// jq_enqueue_many call: for filling queues, not for measuring enqueues.
pub async fn fill_jobq(client: &Client, job_type: &str, jobs: u64) -> BenchResult<()> {
    const CHUNK: u64 = 10_000;
    let mut from = 0;
    while from < jobs {
        let to = (from + CHUNK).min(jobs) as i64;
        client
            .execute(
                "SELECT count(*) FROM jobq.jq_enqueue_many((
                     SELECT jsonb_agg(jsonb_build_object('job_type', $1::text,
                                                         'args', jsonb_build_object('n', g)))
                     FROM generate_series($2::bigint, $3::bigint - 1) AS g))",
                &[&job_type, &(from as i64), &to],
            )
            .await?;
        from = to as u64;
    }
    Ok(())
}

/// Vacuums and analyzes the whole (small) database and starts the next
/// phase right after a checkpoint, so that every phase pays the same
/// full-page writes and none is hit by a timed checkpoint.
pub async fn quiesce(client: &Client) -> BenchResult<()> {
    client.batch_execute("VACUUM ANALYZE").await?;
    client.batch_execute("CHECKPOINT").await?;
    Ok(())
}

fn first_line_with(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .map(|l| l[prefix.len()..].trim().to_owned())
}

/// The 1, 5 and 15 minute load averages: the machine may be shared.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The machine and the server settings the numbers depend on.
pub async fn print_settings(client: &Client) -> BenchResult<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = first_line_with(&cpuinfo, "model name")
        .map(|m| m.trim_start_matches(':').trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_gib = first_line_with(&meminfo, "MemTotal:")
        .and_then(|m| m.split_whitespace().next().map(str::to_owned))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "machine: {cores} cores ({cpu}), {ram_gib:.1} GiB RAM, Linux {}, load average {}",
        kernel.trim(),
        load_average()
    );
    let row = client
        .query_one(
            "SELECT version(),
                    (SELECT extversion FROM pg_extension WHERE extname = 'jobq'),
                    jobq.jq_library_version()",
            &[],
        )
        .await?;
    let version: String = row.try_get(0)?;
    let extversion: Option<String> = row.try_get(1)?;
    let library: String = row.try_get(2)?;
    println!(
        "server: {}; jobq extension {}, library {library}",
        version.split(',').next().unwrap_or(&version),
        extversion.as_deref().unwrap_or("?")
    );
    let mut settings = Vec::new();
    for name in [
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "wal_compression",
        "shared_buffers",
        "max_wal_size",
        "checkpoint_timeout",
        "shared_preload_libraries",
        "max_connections",
        "data_checksums",
    ] {
        let value: String = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await?
            .try_get(0)?;
        settings.push(format!("{name}={value}"));
    }
    println!("settings: {}", settings.join(" "));
    Ok(())
}
