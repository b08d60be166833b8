//! Many workers on real concurrent connections: every job is completed
//! exactly once, with its side effect committed in the same transaction.

use jobq_client::{complete_many, enqueue_many, grab, CompleteOutcome, GrabRequest, NewJob};
use jobq_integration_tests::{count, TestDb};
use serde_json::json;
use std::time::Duration;

const JOBS: i64 = 20_000;
const WORKERS: usize = 8;
const BATCH: i32 = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_complete_twenty_thousand_jobs_exactly_once() {
    let db = TestDb::new("concurrency").await;
    let setup = db.client().await;
    setup
        .batch_execute("CREATE TABLE side_effects (job_id bigint NOT NULL, worker int NOT NULL)")
        .await
        .expect("create side_effects");
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|n| NewJob::new("count_me", json!({ "n": n })))
        .collect();
    for chunk in jobs.chunks(5_000) {
        enqueue_many(&setup, chunk).await.expect("enqueue");
    }

    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let mut client = db.client().await;
        workers.push(tokio::spawn(async move {
            let request = GrabRequest {
                job_types: Some(vec!["count_me".into()]),
                lease: Duration::from_secs(60),
                max_jobs: BATCH,
                worker: Some(format!("worker-{worker}")),
                ..GrabRequest::default()
            };
            let mut done = 0usize;
            loop {
                let batch = grab(&client, &request).await.expect("grab");
                if batch.is_empty() {
                    return done;
                }
                let tx = client.transaction().await.expect("begin");
                for job in &batch {
                    tx.execute(
                        "INSERT INTO side_effects VALUES ($1, $2)",
                        &[&job.id, &(worker as i32)],
                    )
                    .await
                    .expect("side effect");
                }
                let leases: Vec<_> = batch.iter().map(|job| (job.lease(), None)).collect();
                let outcomes = complete_many(&tx, &leases).await.expect("complete_many");
                assert!(
                    outcomes
                        .iter()
                        .all(|(_, o)| *o == CompleteOutcome::Completed),
                    "{outcomes:?}"
                );
                tx.commit().await.expect("commit");
                done += batch.len();
            }
        }));
    }
    let mut per_worker = Vec::new();
    for worker in workers {
        per_worker.push(worker.await.expect("worker task"));
    }

    let check = db.client().await;
    assert_eq!(per_worker.iter().sum::<usize>() as i64, JOBS);
    assert_eq!(
        count(&check, "SELECT count(*) FROM side_effects").await,
        JOBS
    );
    assert_eq!(
        count(&check, "SELECT count(DISTINCT job_id) FROM side_effects").await,
        JOBS
    );
    assert_eq!(
        count(
            &check,
            "SELECT count(*) FROM jobq.jobs WHERE state = 'completed' AND attempts = 1"
        )
        .await,
        JOBS
    );
    assert_eq!(
        count(
            &check,
            "SELECT count(*) FROM jobq.jobs WHERE state IN ('waiting', 'running')"
        )
        .await,
        0
    );
    // Every job's side effect exists exactly once and belongs to a completed job.
    assert_eq!(
        count(
            &check,
            "SELECT count(*) FROM jobq.jobs j LEFT JOIN side_effects s ON s.job_id = j.id \
             WHERE s.job_id IS NULL OR j.state <> 'completed'"
        )
        .await,
        0
    );
    assert!(
        per_worker.iter().filter(|&&n| n > 0).count() > 1,
        "work was shared: {per_worker:?}"
    );
    db.drop_db().await;
}
