//! Latency from an enqueue's commit to its handler's start, with a worker in
//! this process (so both ends read the same clock), events on.
//!
//! Two ways of spacing the enqueues:
//! - random (the default, what the report uses): arrivals apart by a uniform
//!   0–5 ms, whether or not the previous job has started, so they fall at
//!   every phase of any periodic work on the server;
//! - fixed: one job at a time, the next 5 ms after the previous one started.

use crate::db::{connect, reset_jobq};
use crate::BenchResult;
use jobq_client::worker::{JobContext, Outcome, Worker};
use jobq_client::{enqueue, NewJob};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Samples measured, after WARM_UP ones that are not.
pub const SAMPLES: usize = 2000;
const WARM_UP: usize = 20;
const MAX_GAP_US: u64 = 5000;
const FIXED_GAP: Duration = Duration::from_millis(5);

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    Random,
    Fixed,
}

pub struct Latency {
    pub samples: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// xorshift64*: enough randomness for arrival times, without a crate.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Rng(nanos | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Sleeps precisely (tokio's timer has 1 ms granularity) without blocking
/// the runtime's threads.
async fn sleep_precisely(duration: Duration) -> BenchResult<()> {
    tokio::task::spawn_blocking(move || std::thread::sleep(duration)).await?;
    Ok(())
}

pub async fn enqueue_to_start(url: &str, spacing: Spacing, samples: usize) -> BenchResult<Latency> {
    let producer = connect(url).await?;
    reset_jobq(&producer, true).await?;
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

    let total = WARM_UP + samples;
    let mut latencies = Vec::with_capacity(samples);
    match spacing {
        Spacing::Fixed => {
            for n in 0..total {
                let id = enqueue(&producer, &NewJob::new("latency", json!({ "n": n }))).await?;
                let committed = Instant::now();
                let (started_id, started_at) =
                    tokio::time::timeout(Duration::from_secs(5), started_rx.recv())
                        .await?
                        .ok_or("worker stopped")?;
                if started_id != id {
                    return Err(format!("expected job {id}, handler started {started_id}").into());
                }
                if n >= WARM_UP {
                    latencies.push(started_at.saturating_duration_since(committed));
                }
                // Idle again before the next one.
                tokio::time::sleep(FIXED_GAP).await;
            }
        }
        Spacing::Random => {
            let mut rng = Rng::seeded();
            let mut committed = HashMap::with_capacity(total);
            let mut started = HashMap::with_capacity(total);
            for n in 0..total {
                sleep_precisely(Duration::from_micros(rng.below(MAX_GAP_US + 1))).await?;
                let id = enqueue(&producer, &NewJob::new("latency", json!({ "n": n }))).await?;
                committed.insert(id, (n, Instant::now()));
                while let Ok((id, at)) = started_rx.try_recv() {
                    started.insert(id, at);
                }
            }
            while started.len() < total {
                let (id, at) = tokio::time::timeout(Duration::from_secs(10), started_rx.recv())
                    .await?
                    .ok_or("worker stopped")?;
                started.insert(id, at);
            }
            for (id, (n, at)) in committed {
                let start = started
                    .get(&id)
                    .ok_or_else(|| format!("job {id} never started"))?;
                if n >= WARM_UP {
                    latencies.push(start.saturating_duration_since(at));
                }
            }
        }
    }
    stop.send(()).map_err(|()| "the worker stopped early")?;
    worker_task.await??;
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Ok(Latency {
        samples: latencies.len(),
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: at(1.0),
    })
}
