//! Worker processes (tests/bin_test_worker.rs) killed mid-job: SIGKILL loses
//! the job only until its lease runs out, and SIGTERM drains gracefully.

#[path = "worker_common.rs"]
mod worker_common;

use jobq_client::worker::{JobContext, Outcome, Worker};
use jobq_client::{complete, details, enqueue_many, grab, Error, GrabRequest, Lease, NewJob};
use jobq_integration_tests::{count, TestDb};
use serde_json::json;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use uuid::Uuid;
use worker_common::{init_logs, wait_until, RunningWorker};

fn url(db: &TestDb) -> String {
    let config = &db.config;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("the tests need a TCP server, not {other:?}"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().expect("database name");
    match config.get_password() {
        Some(password) => format!(
            "postgres://{user}:{}@{host}:{port}/{dbname}",
            String::from_utf8_lossy(password)
        ),
        None => format!("postgres://{user}@{host}:{port}/{dbname}"),
    }
}

fn spawn_worker(
    db: &TestDb,
    job_type: &str,
    concurrency: usize,
    prefetch: usize,
    lease_ms: u64,
    handler_ms: u64,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_jobq-test-worker"))
        .args([
            url(db),
            job_type.into(),
            concurrency.to_string(),
            prefetch.to_string(),
            lease_ms.to_string(),
            handler_ms.to_string(),
        ])
        .spawn()
        .expect("start the test worker")
}

async fn wait_for_exit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("worker status") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "worker did not exit within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn marks_table(client: &Client) {
    client
        .batch_execute(
            "CREATE TABLE marks (job_id bigint NOT NULL, attempt int NOT NULL, mark text NOT NULL,
                                 pid int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        .await
        .expect("marks table");
}

#[tokio::test]
async fn a_job_of_a_killed_worker_is_completed_by_another_after_its_lease_and_the_old_lease_is_fenced(
) {
    init_logs();
    let db = TestDb::new("proc_kill").await;
    let client = db.client().await;
    marks_table(&client).await;
    let id = enqueue_many(&client, &[NewJob::new("killed", json!({}))])
        .await
        .expect("enqueue")[0];

    // A 1.5 s lease that the live worker keeps extending, and a handler that
    // would take ten minutes.
    let mut first = spawn_worker(&db, "killed", 1, 0, 1_500, 600_000);
    wait_until(
        &client,
        &format!("SELECT count(*) = 1 FROM marks WHERE job_id = {id} AND mark = 'started'"),
        Duration::from_secs(30),
    )
    .await;
    let row = client
        .query_one(
            "SELECT lease_token, worker FROM jobq.jobs WHERE id = $1 AND state = 'running'",
            &[&id],
        )
        .await
        .expect("the job is running");
    let old = Lease {
        job_id: id,
        token: row.get::<_, Uuid>(0),
    };
    let first_worker: String = row.get(1);
    first.kill().expect("SIGKILL the worker");
    first.wait().expect("reap the worker");

    let second = RunningWorker::start(Worker::builder(db.config.clone()).handler(
        "killed",
        |job: JobContext| async move {
            Ok::<_, Error>(Outcome::complete_with(
                json!({ "attempt": job.job().attempt }),
            ))
        },
    ));
    wait_until(
        &client,
        &format!("SELECT state = 'completed' FROM jobq.jobs WHERE id = {id}"),
        Duration::from_secs(30),
    )
    .await;
    let second_worker = second.name.clone();
    second.stop().await;

    let job = details(&client, id).await.expect("details");
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["result"], json!({ "attempt": 2 }));
    assert_eq!(job["failures"].as_array().map(Vec::len), Some(1));
    assert_eq!(job["failures"][0]["kind"], "lease_expired");
    assert_eq!(job["failures"][0]["worker"], first_worker.as_str());
    assert_ne!(first_worker, second_worker);
    assert_eq!(job["worker"], second_worker.as_str());

    // The killed worker's completion, had it come late, is refused.
    match complete(&client, old, Some(&json!({ "late": true }))).await {
        Err(Error::LeaseLost(_)) => {}
        other => panic!("a late completion with the old lease: {other:?}"),
    }
    let job = details(&client, id).await.expect("details");
    assert_eq!(job["result"], json!({ "attempt": 2 }));
    db.drop_db().await;
}

#[tokio::test]
async fn sigterm_lets_running_handlers_finish_and_hands_back_prefetched_jobs_at_once() {
    init_logs();
    let db = TestDb::new("proc_term").await;
    let client = db.client().await;
    marks_table(&client).await;
    let jobs: Vec<NewJob> = (0..20)
        .map(|n| NewJob::new("drained", json!({ "n": n })))
        .collect();
    enqueue_many(&client, &jobs).await.expect("enqueue");

    // Two handlers of three seconds each, four jobs prefetched, and a lease
    // of a minute: anything grabbable right after the exit was handed back,
    // not reaped.
    let mut worker = spawn_worker(&db, "drained", 2, 4, 60_000, 3_000);
    wait_until(
        &client,
        "SELECT (SELECT count(*) FROM marks WHERE mark = 'started') = 2
            AND (SELECT count(*) FROM jobq.jobs WHERE state = 'running') = 6",
        Duration::from_secs(30),
    )
    .await;
    let prefetched: Vec<i64> = client
        .query(
            "SELECT id FROM jobq.jobs WHERE state = 'running'
               AND id NOT IN (SELECT job_id FROM marks) ORDER BY id",
            &[],
        )
        .await
        .expect("prefetched jobs")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(prefetched.len(), 4);
    let status = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(status.success());
    let exit = wait_for_exit(&mut worker, Duration::from_secs(60)).await;
    assert!(exit.success(), "worker exited with {exit:?}");

    let started = count(&client, "SELECT count(*) FROM marks WHERE mark = 'started'").await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM marks WHERE mark = 'finished'"
        )
        .await,
        started,
        "every handler that started finished"
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.jobs WHERE state = 'completed'"
        )
        .await,
        started
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.jobs WHERE state = 'completed'
               AND id NOT IN (SELECT job_id FROM marks WHERE mark = 'finished')"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.jobs WHERE state = 'running'"
        )
        .await,
        0
    );
    for id in &prefetched {
        let job = details(&client, *id).await.expect("details");
        assert_eq!(job["state"], "waiting", "job {id}");
        assert_eq!(job["attempts"], 0, "the handed-back grab is not an attempt");
        assert_eq!(job["failures"], json!([]), "handing back is no failure");
    }

    let everything = grab(
        &client,
        &GrabRequest {
            job_types: Some(vec!["drained".into()]),
            max_jobs: 100,
            worker: Some("next".into()),
            ..GrabRequest::default()
        },
    )
    .await
    .expect("grab");
    assert_eq!(everything.len() as i64, 20 - started);
    for id in &prefetched {
        assert!(
            everything
                .iter()
                .any(|job| job.id == *id && job.attempt == 1),
            "handed-back job {id} is grabbable at once, as a first attempt"
        );
    }
    db.drop_db().await;
}
