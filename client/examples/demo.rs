//! The demo: enqueues a mix of jobs, then runs four worker tasks that process
//! them while a progress line shows the queue draining. Some jobs fail and are
//! retried, one fans out into children with jq_replace, a few fail for good.
//!
//!     cargo run -p jobq-client --example demo -- postgres://postgres@127.0.0.1:54331/jobq_demo

use jobq_client::{
    complete, enqueue_many, grab, perm_fail, replace, temp_fail, EnqueueOptions, GrabRequest,
    LeasedJob, NewJob,
};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

const WORKERS: usize = 4;

async fn connect(url: &str) -> Result<Client, Box<dyn std::error::Error>> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("connection ended: {error}");
        }
    });
    Ok(client)
}

/// The demo's handler: what a real worker would do per job type.
async fn handle(client: &Client, job: &LeasedJob) -> Result<&'static str, jobq_client::Error> {
    let n = job.args["n"].as_i64().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    match job.job_type.as_str() {
        "resize_image" if n % 7 == 0 && job.attempt == 1 => {
            temp_fail(
                client,
                job.lease(),
                "image server busy",
                Some(Duration::from_secs(1)),
            )
            .await?;
            Ok("retry")
        }
        "send_email" if n % 50 == 0 => {
            perm_fail(client, job.lease(), "mailbox does not exist").await?;
            Ok("failed")
        }
        "fan_out" => {
            let children: Vec<NewJob> = (0..10)
                .map(|c| NewJob::new("send_email", json!({ "n": 1000 + c, "from_fan_out": n })))
                .collect();
            replace(client, job.lease(), &children).await?;
            Ok("replaced")
        }
        _ => {
            complete(
                client,
                job.lease(),
                Some(&json!({ "ok": true, "attempt": job.attempt })),
            )
            .await?;
            Ok("completed")
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or("usage: demo <postgres url> (or set DATABASE_URL)")?;
    let producer = connect(&url).await?;

    let mut jobs = Vec::new();
    for n in 0..300 {
        let job_type = ["send_email", "resize_image", "build_report"][n % 3];
        let priority = if job_type == "build_report" { 10 } else { 0 };
        jobs.push(
            NewJob::new(job_type, json!({ "n": n })).with_options(EnqueueOptions {
                priority: Some(priority),
                ..EnqueueOptions::default()
            }),
        );
    }
    jobs.push(NewJob::new("fan_out", json!({ "n": 1 })));
    let ids = enqueue_many(&producer, &jobs).await?;
    println!(
        "enqueued {} jobs (ids {}..={})",
        ids.len(),
        ids[0],
        ids[ids.len() - 1]
    );

    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let client = connect(&url).await?;
        workers.push(tokio::spawn(async move {
            let request = GrabRequest {
                lease: Duration::from_secs(30),
                max_jobs: 5,
                worker: Some(format!("demo-worker-{w}")),
                ..GrabRequest::default()
            };
            let mut idle_rounds = 0;
            while idle_rounds < 30 {
                let batch = match grab(&client, &request).await {
                    Ok(batch) => batch,
                    Err(error) => {
                        eprintln!("worker {w}: grab failed: {error}");
                        return;
                    }
                };
                if batch.is_empty() {
                    idle_rounds += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                idle_rounds = 0;
                for job in &batch {
                    if let Err(error) = handle(&client, job).await {
                        eprintln!("worker {w}: job {} failed to report: {error}", job.id);
                    }
                }
            }
        }));
    }

    loop {
        let row = producer
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'waiting'), count(*) FILTER (WHERE state = 'running'),
                        count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state = 'failed'),
                        count(*) FILTER (WHERE state = 'replaced'), coalesce(sum(attempts - 1) FILTER (WHERE attempts > 1), 0)
                 FROM jobq.jobs WHERE id >= $1",
                &[&ids[0]],
            )
            .await?;
        let counts = (0..6)
            .map(|i| row.try_get::<_, i64>(i))
            .collect::<Result<Vec<_>, _>>()?;
        let [waiting, running, completed, failed, replaced, retries] = counts[..] else {
            return Err("the progress query returned the wrong number of columns".into());
        };
        println!(
            "[{:>5.1}s] waiting {waiting:>4}  running {running:>3}  completed {completed:>4}  failed {failed:>3}  \
             replaced {replaced}  retries {retries}",
            started.elapsed().as_secs_f64()
        );
        if waiting == 0 && running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for worker in workers {
        worker.abort();
    }
    let details = jobq_client::details(&producer, ids[7]).await?;
    println!(
        "\njq_details({}) of a job that was retried once:\n{}",
        ids[7],
        serde_json::to_string_pretty(&details)?
    );
    println!(
        "\nall jobs processed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
