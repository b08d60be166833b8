//! Many databases: producers spread jobs over three jobq databases and one
//! worker drains all three; one database goes away for 10 s mid-run (a TCP
//! proxy in front of it is cut) and the other two keep going.

use jobq_client::worker::{JobContext, Outcome, Worker, WorkerConfig};
use jobq_client::{Databases, JobRef, NewJob};
use jobq_integration_tests::proxy::Proxy;
use jobq_integration_tests::{count, TestDb};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NAMES: [&str; 3] = ["east", "north", "west"];

/// How many times the handler ran each job.
type Runs = Arc<Mutex<HashMap<JobRef, u32>>>;
/// What the producers were told: each job's database and id.
type Enqueued = Arc<Mutex<Vec<(Arc<str>, i64)>>>;

fn runs_in(runs: &Runs, database: &str) -> usize {
    runs.lock()
        .expect("runs")
        .keys()
        .filter(|job| &*job.database == database)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_drains_three_databases_and_one_that_is_down_slows_nothing_else() {
    let mut dbs = Vec::new();
    let mut proxies = Vec::new();
    for name in NAMES {
        let db = TestDb::new(&format!("multi_{name}")).await;
        proxies.push(Proxy::start(&db.config).await);
        dbs.push(db);
    }
    let configs: Vec<(String, tokio_postgres::Config)> = NAMES
        .iter()
        .zip(dbs.iter().zip(&proxies))
        .map(|(name, (db, proxy))| (name.to_string(), proxy.config(&db.config)))
        .collect();

    // Keys pick a database and always the same one.
    let producers = Arc::new(Databases::new(configs.clone()).expect("databases"));
    for key in ["customer-1", "customer-2", "customer-3", "customer-4"] {
        let job = producers
            .enqueue_by_key(key, &NewJob::new("keyed", json!({ "key": key })))
            .await
            .expect("keyed enqueue");
        assert_eq!(&*job.database, producers.for_key(key));
        assert_eq!(
            producers.details(&job).await.expect("details")["args"]["key"],
            key
        );
    }

    let runs: Runs = Arc::default();
    let worker_runs = Arc::clone(&runs);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::builder(configs[0].1.clone())
        .databases(configs.clone())
        .config(WorkerConfig {
            concurrency: 8,
            prefetch: 64,
            ..WorkerConfig::default()
        })
        .handler("multi", move |job: JobContext| {
            let runs = Arc::clone(&worker_runs);
            async move {
                let job = job
                    .job_ref()
                    .expect("a job of a worker of several databases");
                *runs.lock().expect("runs").entry(job).or_default() += 1;
                Ok::<_, std::io::Error>(Outcome::complete())
            }
        })
        .handler("keyed", |_job: JobContext| async {
            Ok::<_, std::io::Error>(Outcome::complete())
        })
        .build()
        .expect("worker");
    let worker = tokio::spawn(worker.run_until(async move {
        stopped.await.unwrap_or_default();
    }));

    // 30,000 jobs in batches of 100, round-robin over the databases, from
    // four producer tasks; the third database goes away for 10 s once a
    // third of them are in.
    let total = 30_000;
    let enqueued: Enqueued = Arc::default();
    let mut tasks = Vec::new();
    for producer in 0..4 {
        let producers = Arc::clone(&producers);
        let enqueued = Arc::clone(&enqueued);
        tasks.push(tokio::spawn(async move {
            for batch in 0..total / 100 / 4 {
                let jobs: Vec<NewJob> = (0..100)
                    .map(|n| NewJob::new("multi", json!({ "p": producer, "b": batch, "n": n })))
                    .collect();
                // A batch whose call broke when its database went away may
                // or may not have committed there: sent again (to another
                // database), it may exist twice, under two JobRefs.
                let (database, ids) = loop {
                    match producers.enqueue_many(&jobs).await {
                        Ok(done) => break done,
                        Err(error) if error.is_transient() => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err(error) => panic!("enqueue: {error}"),
                    }
                };
                enqueued
                    .lock()
                    .expect("enqueued")
                    .extend(ids.into_iter().map(|id| (Arc::clone(&database), id)));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    while enqueued.lock().expect("enqueued").len() < total / 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxies[2].down();
    let down_at = Instant::now();
    let before: Vec<usize> = NAMES.iter().map(|name| runs_in(&runs, name)).collect();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during: Vec<usize> = NAMES
        .iter()
        .zip(&before)
        .map(|(name, was)| runs_in(&runs, name) - was)
        .collect();
    proxies[2].up().await;
    let outage = down_at.elapsed();
    println!(
        "jobs run during the {outage:?} outage of {}: {during:?}",
        NAMES[2]
    );
    for task in tasks {
        task.await.expect("producer");
    }
    let enqueued = enqueued.lock().expect("enqueued").clone();
    assert_eq!(enqueued.len(), total);
    for (i, name) in NAMES.iter().enumerate().take(2) {
        assert!(
            during[i] >= 1_000,
            "{name} ran {} jobs while {} was down: it must not wait for it",
            during[i],
            NAMES[2]
        );
    }

    // Everything completes, each job exactly once, in the database it was
    // enqueued in.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let mut left = 0;
        for db in &dbs {
            left += count(
                &db.client().await,
                "SELECT count(*) FROM jobq.live_jobs WHERE job_type = 'multi'",
            )
            .await;
        }
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} jobs not completed after 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send(()).expect("worker still running");
    tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("worker stopped")
        .expect("worker task")
        .expect("worker ended without error");
    let runs = runs.lock().expect("runs").clone();
    assert!(runs.values().all(|&n| n == 1), "no job ran twice");
    for (database, id) in &enqueued {
        let job = JobRef {
            database: Arc::clone(database),
            id: *id,
        };
        assert_eq!(runs.get(&job), Some(&1), "{job} ran once");
    }
    for (name, db) in NAMES.iter().zip(&dbs) {
        let client = db.client().await;
        let completed = count(
            &client,
            "SELECT count(*) FROM jobq.job_history WHERE job_type = 'multi' AND state = 'completed'",
        )
        .await;
        let ran = runs.keys().filter(|job| &*job.database == *name).count();
        assert_eq!(completed as usize, ran, "{name}: every job there ran once");
        let seen = enqueued.iter().filter(|(d, _)| &**d == *name).count();
        assert!(
            seen > 0 && seen <= ran,
            "{name}: {seen} jobs enqueued, {ran} ran"
        );
    }
    for db in dbs {
        db.drop_db().await;
    }
}
