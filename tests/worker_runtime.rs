//! The worker runtime in this process against a real server: a 50,000-job
//! drain, lease extension of a long handler, outcomes mapped to the lease
//! calls, panics, rolled-back enqueues, and reconnecting after the LISTEN
//! connection is killed.

#[path = "worker_common.rs"]
mod worker_common;

use jobq_client::worker::{Handler, HandlerFuture, JobContext, Outcome, Worker, WorkerConfig};
use jobq_client::{details, enqueue, enqueue_many, grab, Error, GrabRequest, JobType, NewJob};
use jobq_integration_tests::proxy::Proxy;
use jobq_integration_tests::{connect, count, TestDb};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::Client;
use worker_common::{init_logs, wait_until, RunningWorker};

/// Connections for handlers' own writes. Their commits need not be durable
/// here, and asynchronous commit keeps 50,000 of them from each waiting for
/// a disk flush.
async fn side_effect_pool(db: &TestDb, size: usize) -> Arc<Vec<Client>> {
    let mut pool = Vec::new();
    for _ in 0..size {
        let client = connect(&db.config).await;
        client
            .batch_execute("SET synchronous_commit = off")
            .await
            .expect("set synchronous_commit");
        pool.push(client);
    }
    Arc::new(pool)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_handlers_drain_fifty_thousand_jobs_once_each() {
    init_logs();
    const JOBS: i64 = 50_000;
    let db = TestDb::new("rt_drain").await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE side_effects (job_id bigint NOT NULL, attempt int NOT NULL)")
        .await
        .expect("side effect table");
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|n| NewJob::new("drain", json!({ "n": n })))
        .collect();
    for chunk in jobs.chunks(10_000) {
        enqueue_many(&client, chunk).await.expect("enqueue");
    }

    let pool = side_effect_pool(&db, 4).await;
    let worker = RunningWorker::start(
        Worker::builder(db.config.clone())
            .concurrency(16)
            .prefetch(64)
            .handler("drain", move |job: JobContext| {
                let pool = Arc::clone(&pool);
                async move {
                    let id = job.job().id;
                    let client = &pool[id as usize % pool.len()];
                    client
                        .execute(
                            "INSERT INTO side_effects (job_id, attempt) VALUES ($1, $2)",
                            &[&id, &job.job().attempt],
                        )
                        .await?;
                    Ok::<_, tokio_postgres::Error>(Outcome::complete())
                }
            }),
    );
    let name = worker.name.clone();
    wait_until(
        &client,
        "SELECT count(*) = 50000 FROM jobq.jobs WHERE state = 'completed'",
        Duration::from_secs(600),
    )
    .await;
    worker.stop().await;

    assert_eq!(count(&client, "SELECT count(*) FROM jobq.jobs").await, JOBS);
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.jobs WHERE state <> 'completed'"
        )
        .await,
        0,
        "none left waiting or running"
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM side_effects").await,
        count(&client, "SELECT sum(attempts)::bigint FROM jobq.jobs").await,
        "one side effect per attempt"
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.jobs j
             LEFT JOIN (SELECT job_id, count(*) AS effects, count(DISTINCT attempt) AS attempts
                        FROM side_effects GROUP BY job_id) s ON s.job_id = j.id
             WHERE j.attempts <> coalesce(s.effects, 0) OR j.attempts <> coalesce(s.attempts, 0)"
        )
        .await,
        0,
        "each job's side effects are exactly its attempts"
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM (SELECT job_id FROM jobq.events WHERE event = 'completed'
                                   GROUP BY job_id HAVING count(*) = 1) once"
        )
        .await,
        JOBS,
        "each job completed exactly once"
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.events WHERE event = 'completed'"
        )
        .await,
        JOBS
    );
    let workers: Vec<String> = client
        .query("SELECT DISTINCT worker FROM jobq.jobs", &[])
        .await
        .expect("workers")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(workers, vec![name.clone()]);
    let pid = std::process::id().to_string();
    assert!(
        name.contains(&format!(".{pid}@")),
        "worker name is hostname.pid@start: {name}"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_handler_longer_than_its_lease_keeps_the_job_and_completes_once() {
    init_logs();
    let db = TestDb::new("rt_long").await;
    let client = db.client().await;
    let id = enqueue(&client, &NewJob::new("long", json!({})))
        .await
        .expect("enqueue");
    let calls = Arc::new(AtomicUsize::new(0));
    let handler_calls = Arc::clone(&calls);
    let lease = Duration::from_millis(900);
    let worker = RunningWorker::start(Worker::builder(db.config.clone()).lease(lease).handler(
        "long",
        move |job: JobContext| {
            handler_calls.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(3_500)).await;
                Ok::<_, Error>(Outcome::complete_with(
                    json!({ "lost": job.is_lease_lost() }),
                ))
            }
        },
    ));

    // While the handler runs for about four leases, every grab (which also
    // reaps expired leases) must come back empty: the lease never ran out.
    wait_until(
        &client,
        &format!("SELECT state = 'running' FROM jobq.jobs WHERE id = {id}"),
        Duration::from_secs(10),
    )
    .await;
    let started = Instant::now();
    let thief = GrabRequest {
        job_types: Some(vec!["long".into()]),
        worker: Some("thief".into()),
        ..GrabRequest::default()
    };
    while started.elapsed() < Duration::from_millis(3_000) {
        let stolen = grab(&client, &thief).await.expect("grab");
        assert!(stolen.is_empty(), "the lease ran out: {stolen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until(
        &client,
        &format!("SELECT state = 'completed' FROM jobq.jobs WHERE id = {id}"),
        Duration::from_secs(30),
    )
    .await;
    worker.stop().await;

    let job = details(&client, id).await.expect("details");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["failures"], json!([]));
    assert_eq!(job["result"], json!({ "lost": false }));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let extended = count(
        &client,
        &format!("SELECT count(*) FROM jobq.events WHERE job_id = {id} AND event = 'extended'"),
    )
    .await;
    assert!(extended >= 3, "extended {extended} times");
    db.drop_db().await;
}

#[tokio::test]
async fn a_rolled_back_enqueue_leaves_no_job_and_runs_no_handler() {
    init_logs();
    let db = TestDb::new("rt_rollback").await;
    let mut client = db.client().await;
    let seen = Arc::new(Mutex::new(Vec::<i64>::new()));
    let handler_seen = Arc::clone(&seen);
    let worker = RunningWorker::start(Worker::builder(db.config.clone()).handler(
        "tx",
        move |job: JobContext| {
            handler_seen
                .lock()
                .expect("not poisoned")
                .push(job.job().id);
            async { Ok::<_, Error>(Outcome::complete()) }
        },
    ));

    let tx = client.transaction().await.expect("begin");
    let rolled_back = enqueue(&tx, &NewJob::new("tx", json!({ "rolled": "back" })))
        .await
        .expect("enqueue in the transaction");
    tx.rollback().await.expect("rollback");
    // A job committed after it: once the worker has run this one, it has
    // had every chance to see the rolled-back one.
    let committed = enqueue(&client, &NewJob::new("tx", json!({ "committed": true })))
        .await
        .expect("enqueue");
    wait_until(
        &client,
        &format!("SELECT state = 'completed' FROM jobq.jobs WHERE id = {committed}"),
        Duration::from_secs(30),
    )
    .await;
    worker.stop().await;

    assert!(matches!(
        details(&client, rolled_back).await,
        Err(Error::JobNotFound(_))
    ));
    assert_eq!(count(&client, "SELECT count(*) FROM jobq.jobs").await, 1);
    assert_eq!(*seen.lock().expect("not poisoned"), vec![committed]);
    db.drop_db().await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_temp_fail_with_the_panic_message() {
    init_logs();
    let db = TestDb::new("rt_panic").await;
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO jobq.job_types (job_type, backoff_base, backoff_max)
             VALUES ('panics', '50 milliseconds', '50 milliseconds')",
        )
        .await
        .expect("fast backoff");
    let id = enqueue(&client, &NewJob::new("panics", json!({})))
        .await
        .expect("enqueue");
    let worker = RunningWorker::start(Worker::builder(db.config.clone()).handler(
        "panics",
        |job: JobContext| async move {
            if job.job().attempt == 1 {
                panic!("boom in job {}", job.job().id);
            }
            Ok::<_, Error>(Outcome::complete())
        },
    ));
    wait_until(
        &client,
        &format!("SELECT state = 'completed' FROM jobq.jobs WHERE id = {id}"),
        Duration::from_secs(30),
    )
    .await;
    worker.stop().await;

    let job = details(&client, id).await.expect("details");
    assert_eq!(job["attempts"], 2);
    let failures = job["failures"].as_array().expect("failure history");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["kind"], "temp_fail");
    assert_eq!(failures[0]["attempt"], 1);
    let message = failures[0]["message"].as_str().expect("message");
    assert!(
        message.contains(&format!("boom in job {id}")),
        "panic message recorded: {message}"
    );
    db.drop_db().await;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Step {
    action: String,
}

impl JobType for Step {
    const NAME: &'static str = "step";
}

/// A handler as a type of its own rather than a closure.
struct Children;

impl Handler for Children {
    fn call(&self, job: JobContext) -> HandlerFuture {
        Box::pin(async move { Ok(Outcome::complete_with(job.job().args.clone())) })
    }
}

#[tokio::test]
async fn handler_outcomes_map_to_complete_retry_fail_and_replace() {
    init_logs();
    let db = TestDb::new("rt_outcomes").await;
    let client = db.client().await;
    let mut ids = HashMap::new();
    for action in [
        "complete",
        "retry_then_complete",
        "fail",
        "replace",
        "error",
    ] {
        let job = NewJob::typed(&Step {
            action: action.into(),
        })
        .expect("typed job");
        // One attempt only for the erroring job: its temp_fail then ends it.
        let job = if action == "error" {
            job.max_attempts(1)
        } else {
            job
        };
        ids.insert(action, enqueue(&client, &job).await.expect("enqueue"));
    }
    let bad_args = enqueue(&client, &NewJob::new("step", json!({ "wrong": 1 })))
        .await
        .expect("enqueue");

    let worker = RunningWorker::start(
        Worker::builder(db.config.clone())
            .typed_handler(|step: Step, job: JobContext| async move {
                let attempt = job.job().attempt;
                Ok::<_, std::io::Error>(match step.action.as_str() {
                    "complete" => Outcome::complete_with(json!({ "done": true })),
                    "retry_then_complete" if attempt == 1 => {
                        Outcome::retry_in("not yet", Duration::ZERO)
                    }
                    "retry_then_complete" => Outcome::complete(),
                    "fail" => Outcome::fail("hopeless"),
                    "replace" => Outcome::replace(
                        (0..3)
                            .map(|n| NewJob::new("child", json!({ "n": n })).queue("children"))
                            .collect(),
                    ),
                    _ => return Err(std::io::Error::other("disk on fire")),
                })
            })
            .register("child", Children),
    );
    wait_until(
        &client,
        "SELECT count(*) = 0 FROM jobq.jobs WHERE state IN ('waiting', 'running')",
        Duration::from_secs(30),
    )
    .await;
    worker.stop().await;

    let state = |job: &Value| job["state"].as_str().unwrap_or_default().to_owned();
    let completed = details(&client, ids["complete"]).await.expect("details");
    assert_eq!(state(&completed), "completed");
    assert_eq!(completed["result"], json!({ "done": true }));

    let retried = details(&client, ids["retry_then_complete"])
        .await
        .expect("details");
    assert_eq!(state(&retried), "completed");
    assert_eq!(retried["attempts"], 2);
    assert_eq!(retried["failures"][0]["message"], "not yet");

    let failed = details(&client, ids["fail"]).await.expect("details");
    assert_eq!(state(&failed), "failed");
    assert_eq!(failed["attempts"], 1);
    assert_eq!(failed["failures"][0]["kind"], "perm_fail");
    assert_eq!(failed["failures"][0]["message"], "hopeless");

    let replaced = details(&client, ids["replace"]).await.expect("details");
    assert_eq!(state(&replaced), "replaced");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.jobs WHERE job_type = 'child' AND queue = 'children'
               AND state = 'completed' AND result ? 'n'"
        )
        .await,
        3
    );

    let errored = details(&client, ids["error"]).await.expect("details");
    assert_eq!(state(&errored), "failed");
    assert_eq!(errored["failures"][0]["kind"], "temp_fail");
    assert_eq!(errored["failures"][0]["message"], "disk on fire");

    let mismatched = details(&client, bad_args).await.expect("details");
    assert_eq!(state(&mismatched), "failed");
    assert_eq!(mismatched["failures"][0]["kind"], "perm_fail");
    db.drop_db().await;
}

async fn listen_backend(client: &Client) -> Option<i32> {
    client
        .query_opt(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'jobq listen'",
            &[],
        )
        .await
        .expect("pg_stat_activity")
        .map(|row| row.get(0))
}

#[tokio::test]
async fn after_its_listen_connection_is_killed_the_worker_reconnects_and_polls_at_once() {
    init_logs();
    let db = TestDb::new("rt_relisten").await;
    let client = db.client().await;
    let poll_interval = Duration::from_secs(30);
    let worker = RunningWorker::start(
        Worker::builder(db.config.clone())
            .config(WorkerConfig {
                poll_interval,
                // Long enough that the job below is enqueued while nobody listens.
                reconnect_min: Duration::from_secs(2),
                reconnect_max: Duration::from_secs(10),
                ..WorkerConfig::default()
            })
            .handler("relisten", |_job: JobContext| async {
                Ok::<_, Error>(Outcome::complete())
            }),
    );
    wait_until(
        &client,
        "SELECT count(*) = 1 FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'jobq listen'
           AND wait_event = 'ClientRead'",
        Duration::from_secs(10),
    )
    .await;
    let old_pid = listen_backend(&client).await.expect("a listening backend");

    // Heard while listening: done long before the next poll.
    let started = Instant::now();
    let first = enqueue(&client, &NewJob::new("relisten", json!({})))
        .await
        .expect("enqueue");
    wait_until(
        &client,
        &format!("SELECT state = 'completed' FROM jobq.jobs WHERE id = {first}"),
        Duration::from_secs(20),
    )
    .await;
    assert!(started.elapsed() < poll_interval);

    client
        .execute("SELECT pg_terminate_backend($1)", &[&old_pid])
        .await
        .expect("terminate the LISTEN backend");
    wait_until(
        &client,
        &format!("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = {old_pid}"),
        Duration::from_secs(10),
    )
    .await;
    let started = Instant::now();
    let missed = enqueue(&client, &NewJob::new("relisten", json!({})))
        .await
        .expect("enqueue");
    assert_eq!(
        listen_backend(&client).await,
        None,
        "the job was enqueued while the worker was not listening"
    );
    wait_until(
        &client,
        &format!("SELECT state = 'completed' FROM jobq.jobs WHERE id = {missed}"),
        Duration::from_secs(20),
    )
    .await;
    assert!(
        started.elapsed() < poll_interval,
        "picked up by the poll after reconnecting, not by the periodic one"
    );
    let new_pid = listen_backend(&client).await.expect("listening again");
    assert_ne!(new_pid, old_pid);
    worker.stop().await;
    db.drop_db().await;
}

#[tokio::test]
async fn connection_failures_are_transient_and_a_worker_without_a_server_fails_at_start() {
    let db = TestDb::new("rt_transient").await;
    let client = db.client().await;
    let nowhere: tokio_postgres::Config = "postgres://postgres@127.0.0.1:1/nowhere"
        .parse()
        .expect("a valid URL");
    let refused = nowhere
        .connect(tokio_postgres::NoTls)
        .await
        .map(drop)
        .expect_err("nothing listens on port 1");
    let refused = Error::from(refused);
    assert!(refused.is_transient(), "{refused:?}");

    let rejected = enqueue(&client, &NewJob::new("bad name!", json!({})))
        .await
        .expect_err("invalid job type");
    assert!(matches!(rejected, Error::InvalidArgument(_)));
    assert!(!rejected.is_transient());
    let unconvertible = client
        .query_one("SELECT 'text'::text", &[])
        .await
        .expect("query")
        .try_get::<_, i32>(0)
        .expect_err("text is no i32");
    assert!(!Error::from(unconvertible).is_transient());

    let worker = Worker::builder(nowhere)
        .handler("never", |_job: JobContext| async {
            Ok::<_, Error>(Outcome::complete())
        })
        .build()
        .expect("configuration");
    let started = worker.run_until(std::future::pending()).await;
    assert!(
        matches!(started, Err(ref e) if e.is_transient()),
        "{started:?}"
    );
    assert!(matches!(
        Worker::builder(db.config.clone()).build(),
        Err(Error::Config(_))
    ));
    db.drop_db().await;
}

#[tokio::test]
async fn after_its_grab_and_complete_connections_are_killed_mid_drain_the_worker_carries_on() {
    init_logs();
    let db = TestDb::new("rt_reconnect").await;
    let client = db.client().await;
    let jobs: Vec<NewJob> = (0..300)
        .map(|n| NewJob::new("steady", json!({ "n": n })))
        .collect();
    enqueue_many(&client, &jobs).await.expect("enqueue");
    let worker = RunningWorker::start(
        Worker::builder(db.config.clone())
            .concurrency(4)
            // Short, so a grab whose reply was lost with its connection
            // costs only this long.
            .lease(Duration::from_secs(2))
            .handler("steady", |_job: JobContext| async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, Error>(Outcome::complete())
            }),
    );
    wait_until(
        &client,
        "SELECT count(*) >= 50 FROM jobq.jobs WHERE state = 'completed'",
        Duration::from_secs(30),
    )
    .await;
    let killed = count(
        &client,
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database()
           AND application_name IN ('jobq grab', 'jobq complete')) t",
    )
    .await;
    assert_eq!(killed, 2);
    wait_until(
        &client,
        "SELECT count(*) = 300 FROM jobq.jobs WHERE state = 'completed'",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
               AND application_name IN ('jobq grab', 'jobq complete')"
        )
        .await,
        2,
        "both connections are back"
    );
    worker.stop().await;
    assert_eq!(
        count(
            &client,
            "SELECT count(DISTINCT job_id) FROM jobq.events WHERE event = 'completed'"
        )
        .await,
        300
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.events WHERE event = 'completed'"
        )
        .await,
        300,
        "each job completed exactly once"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn a_handler_whose_lease_is_lost_is_told_and_its_outcome_is_not_recorded() {
    init_logs();
    let db = TestDb::new("rt_lost").await;
    let client = db.client().await;
    let id = enqueue(&client, &NewJob::new("lost", json!({})))
        .await
        .expect("enqueue");
    let (told, mut told_rx) = tokio::sync::mpsc::unbounded_channel::<i64>();
    let worker = RunningWorker::start(
        Worker::builder(db.config.clone())
            .lease(Duration::from_millis(600))
            .handler("lost", move |job: JobContext| {
                let told = told.clone();
                async move {
                    tokio::select! {
                        () = job.lease_lost() => {
                            told.send(job.job().id).expect("test listening");
                        }
                        () = tokio::time::sleep(Duration::from_secs(60)) => {}
                    }
                    Ok::<_, Error>(Outcome::complete_with(json!({ "by": "old holder" })))
                }
            }),
    );
    wait_until(
        &client,
        &format!("SELECT state = 'running' FROM jobq.jobs WHERE id = {id}"),
        Duration::from_secs(10),
    )
    .await;
    // What a worker sees when its lease ran out and someone else took the
    // job: the token it holds is no longer the job's.
    client
        .execute(
            "UPDATE jobq.live_jobs SET lease_token = gen_random_uuid(), locked_until = clock_timestamp() + interval '1 hour'
             WHERE id = $1",
            &[&id],
        )
        .await
        .expect("take the lease away");
    let heard = tokio::time::timeout(Duration::from_secs(10), told_rx.recv())
        .await
        .expect("the handler is told within a few heartbeats");
    assert_eq!(heard, Some(id));
    worker.stop().await;
    let job = details(&client, id).await.expect("details");
    assert_eq!(job["state"], "running", "still the new holder's");
    assert_eq!(job["result"], json!(null));
    db.drop_db().await;
}

#[tokio::test]
async fn a_handler_still_running_after_the_grace_period_is_stopped_and_its_job_temp_failed() {
    init_logs();
    let db = TestDb::new("rt_grace").await;
    let client = db.client().await;
    let id = enqueue(&client, &NewJob::new("stubborn", json!({})))
        .await
        .expect("enqueue");
    let worker = RunningWorker::start(
        Worker::builder(db.config.clone())
            .grace_period(Duration::from_millis(300))
            .handler("stubborn", |_job: JobContext| async {
                // Ignores job.shutting_down().
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok::<_, Error>(Outcome::complete())
            }),
    );
    wait_until(
        &client,
        &format!("SELECT state = 'running' FROM jobq.jobs WHERE id = {id}"),
        Duration::from_secs(10),
    )
    .await;
    worker.stop().await;
    let job = details(&client, id).await.expect("details");
    assert_eq!(job["state"], "waiting");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["failures"][0]["kind"], "temp_fail");
    assert_eq!(
        job["failures"][0]["message"],
        "the worker shut down before the handler finished"
    );
    assert_eq!(
        count(
            &client,
            &format!(
                "SELECT count(*) FROM jobq.jobs WHERE id = {id} AND run_at <= clock_timestamp()"
            )
        )
        .await,
        1,
        "due again at once"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn after_the_server_was_away_the_worker_resumes_within_a_second_or_so() {
    init_logs();
    let db = TestDb::new("rt_outage").await;
    let client = db.client().await;
    let proxy = Proxy::start(&db.config).await;
    let worker = RunningWorker::start(
        Worker::builder(proxy.config(&db.config))
            .config(WorkerConfig {
                // Only the reconnection can bring the jobs below in time.
                poll_interval: Duration::from_secs(60),
                ..WorkerConfig::default()
            })
            .handler("outage", |_job: JobContext| async {
                Ok::<_, Error>(Outcome::complete())
            }),
    );
    let first = enqueue(&client, &NewJob::new("outage", json!({})))
        .await
        .expect("enqueue");
    wait_until(
        &client,
        &format!("SELECT state = 'completed' FROM jobq.jobs WHERE id = {first}"),
        Duration::from_secs(20),
    )
    .await;

    // Away for 12 s, as during a failover: every connection of the worker
    // is cut and each retries with its backoff. Doubling to 10 s, as the
    // runtime used to, the worker would come back 5 to 10 s after the
    // server; its connections now wait at most reconnect_max (1 s), and the
    // first that gets through brings the others along.
    proxy.down();
    let mut missed = Vec::new();
    for _ in 0..5 {
        missed.push(
            enqueue(&client, &NewJob::new("outage", json!({})))
                .await
                .expect("enqueue"),
        );
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    proxy.up().await;
    let back = Instant::now();
    let ids = missed
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    wait_until(
        &client,
        &format!("SELECT bool_and(state = 'completed') FROM jobq.jobs WHERE id IN ({ids})"),
        Duration::from_secs(30),
    )
    .await;
    let resumed = back.elapsed();
    assert!(
        resumed < Duration::from_secs(3),
        "the jobs enqueued while the server was away completed {resumed:?} after it came back"
    );
    worker.stop().await;
}
