//! A worker process for the tests that kill workers (tests/worker_process.rs).
//!
//!     jobq-test-worker <database url> <job type> <concurrency> <prefetch> <lease ms> <handler ms>
//!
//! Each handler writes a `started` row to the table `marks` (which the test
//! creates), sleeps for `handler ms`, writes `finished` and completes the
//! job. It runs until SIGTERM / ctrl-c and exits 0 after a graceful shutdown.

use jobq_client::worker::{JobContext, Outcome, Worker};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn arg<T: FromStr>(args: &[String], index: usize, name: &str) -> Result<T, BoxError> {
    args.get(index)
        .ok_or_else(|| format!("missing argument <{name}>"))?
        .parse()
        .map_err(|_| format!("argument <{name}> is not valid").into())
}

async fn mark(client: &Client, job: &JobContext, mark: &str) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO marks (job_id, attempt, mark, pid) VALUES ($1, $2, $3, pg_backend_pid())",
            &[&job.job().id, &job.job().attempt, &mark],
        )
        .await
        .map(drop)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().collect();
    let url: String = arg(&args, 1, "database url")?;
    let job_type: String = arg(&args, 2, "job type")?;
    let concurrency: usize = arg(&args, 3, "concurrency")?;
    let prefetch: usize = arg(&args, 4, "prefetch")?;
    let lease = Duration::from_millis(arg(&args, 5, "lease ms")?);
    let handler_time = Duration::from_millis(arg(&args, 6, "handler ms")?);

    let config = Config::from_str(&url)?;
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("marks connection ended: {error}");
        }
    });
    let client = Arc::new(client);

    Worker::builder(config)
        .concurrency(concurrency)
        .prefetch(prefetch)
        .lease(lease)
        .handler(job_type, move |job: JobContext| {
            let client = Arc::clone(&client);
            async move {
                mark(&client, &job, "started").await?;
                tokio::time::sleep(handler_time).await;
                mark(&client, &job, "finished").await?;
                Ok::<_, tokio_postgres::Error>(Outcome::complete())
            }
        })
        .build()?
        .run()
        .await?;
    Ok(())
}
