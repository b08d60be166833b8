//! Producers and workers for the failover test (tests/bin/failover-test.sh),
//! both on a multi-host URL with `target_session_attrs=read-write`, both
//! carrying on through a failover without a restart.
//!
//!     jobq-failover-load produce <url> <first n> <count> <ids file>
//!     jobq-failover-load work <url> <concurrency>
//!
//! `produce` enqueues jobs of type `failover` with args {"n": n}, one per
//! call, and appends "<n> <id>" to the ids file for every enqueue whose
//! commit it saw succeed. An enqueue whose connection broke before the
//! answer is uncertain: it is retried under the same unique key, which finds
//! the job if it committed and is still unfinished; one that committed and
//! already finished runs again under a new id (the README's "High
//! availability" says so). Only ids the producer was told are recorded.
//!
//! `work` runs the worker runtime with a no-op handler until SIGTERM and
//! exits 0 after a graceful shutdown.

use jobq_client::worker::{JobContext, Outcome, Worker};
use jobq_client::{enqueue, NewJob};
use serde_json::json;
use std::io::Write;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn arg<T: FromStr>(args: &[String], index: usize, name: &str) -> Result<T, BoxError> {
    args.get(index)
        .ok_or_else(|| format!("missing argument <{name}>"))?
        .parse()
        .map_err(|_| format!("argument <{name}> is not valid").into())
}

async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::warn!(%error, "producer connection ended");
        }
    });
    Ok(client)
}

async fn produce(config: Config, first: i64, count: i64, ids_file: String) -> Result<(), BoxError> {
    let mut ids = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ids_file)?;
    let mut client: Option<Client> = None;
    let mut n = first;
    while n < first + count {
        let current = match client.take() {
            Some(open) if !open.is_closed() => open,
            _ => match connect(&config).await {
                Ok(open) => open,
                Err(error) => {
                    tracing::warn!(%error, "producer cannot connect; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let job = NewJob::new("failover", json!({ "n": n })).unique_key(format!("failover-{n}"));
        match enqueue(&current, &job).await {
            Ok(id) => {
                writeln!(ids, "{n} {id}")?;
                n += 1;
                client = Some(current);
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(%error, n, "enqueue failed; retrying under the same unique key");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
    ids.flush()?;
    Ok(())
}

async fn work(config: Config, concurrency: usize) -> Result<(), BoxError> {
    Worker::builder(config)
        .concurrency(concurrency)
        .prefetch(concurrency * 4)
        .handler("failover", |_job: JobContext| async {
            Ok::<_, std::io::Error>(Outcome::complete())
        })
        .build()?
        .run()
        .await?;
    Ok(())
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
    let mode: String = arg(&args, 1, "produce|work")?;
    let url: String = arg(&args, 2, "database url")?;
    let config = Config::from_str(&url)?;
    match mode.as_str() {
        "produce" => {
            produce(
                config,
                arg(&args, 3, "first n")?,
                arg(&args, 4, "count")?,
                arg(&args, 5, "ids file")?,
            )
            .await
        }
        "work" => work(config, arg(&args, 3, "concurrency")?).await,
        other => Err(format!("unknown mode {other}: produce or work").into()),
    }
}
