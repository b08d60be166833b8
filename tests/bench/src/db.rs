//! Connections and server counters shared by the benchmarks.

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

/// What the server did between two readings: commits in this database and
/// WAL bytes written cluster-wide. Both hold across machines, unlike jobs/s.
#[derive(Clone, Copy)]
pub struct Counters {
    commits: i64,
    wal_lsn: i64,
}

impl Counters {
    pub async fn read(client: &Client) -> BenchResult<Counters> {
        // pg_stat_database is only refreshed from other backends' reports,
        // so ask for a fresh snapshot.
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await?;
        let row = client
            .query_one(
                "SELECT xact_commit, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint
                 FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await?;
        Ok(Counters {
            commits: row.try_get(0)?,
            wal_lsn: row.try_get(1)?,
        })
    }

    /// (commits per job, WAL bytes per job) since `earlier`.
    pub fn per_job(&self, earlier: &Counters, jobs: u64) -> (f64, f64) {
        let jobs = jobs.max(1) as f64;
        (
            (self.commits - earlier.commits) as f64 / jobs,
            (self.wal_lsn - earlier.wal_lsn) as f64 / jobs,
        )
    }
}

/// Waits until the server's statistics include our commits: backends report
/// them at most every second or when idle.
pub async fn settle_stats() {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
}
