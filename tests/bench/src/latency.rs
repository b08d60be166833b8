//! Latency from an enqueue's commit to its handler's start, with an idle
//! worker in this process (so both ends read the same clock).

use crate::db::connect;
use crate::BenchResult;
use jobq_client::worker::{JobContext, Outcome, Worker};
use jobq_client::{enqueue, NewJob};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const SAMPLES: usize = 500;

pub struct Latency {
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
}

pub async fn enqueue_to_start(url: &str) -> BenchResult<Latency> {
    let producer = connect(url).await?;
    producer.batch_execute("TRUNCATE jobq.jobs").await?;
    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<(i64, Instant)>();
    let worker = Worker::builder(url.parse()?)
        .concurrency(4)
        .handler("latency", move |job: JobContext| {
            let started_tx = started_tx.clone();
            async move {
                // A closed channel only means the benchmark is over.
                if started_tx.send((job.job().id, Instant::now())).is_err() {
                    return Ok::<_, std::convert::Infallible>(Outcome::fail("benchmark over"));
                }
                Ok(Outcome::complete())
            }
        })
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // A dropped sender stops the worker as well as a sent stop.
    let worker_task = tokio::spawn(async move {
        worker
            .run_until(async move { stopped.await.unwrap_or(()) })
            .await
    });
    // Let the worker connect, LISTEN and go idle.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut samples = Vec::with_capacity(SAMPLES);
    for n in 0..SAMPLES {
        let id = enqueue(&producer, &NewJob::new("latency", json!({ "n": n }))).await?;
        let committed = Instant::now();
        let (started_id, started_at) =
            tokio::time::timeout(Duration::from_secs(5), started_rx.recv())
                .await?
                .ok_or("worker stopped")?;
        if started_id != id {
            return Err(format!("expected job {id}, handler started {started_id}").into());
        }
        samples.push(started_at.saturating_duration_since(committed));
        // Idle again before the next one, as the benchmark promises.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).map_err(|()| "the worker stopped early")?;
    worker_task.await??;
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Ok(Latency {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    })
}
