//! Job control over real connections (issue 5): unique enqueue under
//! concurrent rollbacks, dependencies (fan-out/join, failure cascades),
//! concurrency limits under racing grabbers, cancellation of waiting and
//! running jobs, retry, pause/resume, expiry, notes, and retention with
//! maintenance (also the wake-up worker's periodic run).

use jobq_client::{
    complete, details, enqueue, extend, grab, perm_fail, temp_fail, EnqueueOptions, GrabRequest,
    LeasedJob, NewJob,
};
use jobq_integration_tests::{collect_for, count, listen, TestDb};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Barrier;
use tokio_postgres::Client;

fn request(job_types: &[&str], max_jobs: i32, worker: &str) -> GrabRequest {
    GrabRequest {
        job_types: Some(job_types.iter().map(|t| (*t).to_owned()).collect()),
        lease: Duration::from_secs(60),
        max_jobs,
        worker: Some(worker.into()),
        ..GrabRequest::default()
    }
}

async fn grab_one(client: &Client, job_type: &str) -> Option<LeasedJob> {
    grab(client, &request(&[job_type], 1, "control-test"))
        .await
        .expect("grab")
        .pop()
}

async fn state(client: &Client, id: i64) -> String {
    details(client, id).await.expect("details")["state"]
        .as_str()
        .expect("state is a string")
        .to_owned()
}

async fn sql_value(client: &Client, sql: &str) -> Value {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_unique_enqueues_with_rollbacks_leave_exactly_one_job() {
    const CONNECTIONS: usize = 32;
    let db = TestDb::new("ctl_unique").await;
    let barrier = Arc::new(Barrier::new(CONNECTIONS));
    let mut tasks = Vec::new();
    for n in 0..CONNECTIONS {
        let mut client = db.client().await;
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let tx = client.transaction().await.expect("begin");
            barrier.wait().await;
            let row = tx
                .query_one(
                    "SELECT id, created FROM jobq.jq_enqueue_unique('report', \
                     jsonb_build_object('n', $1::int), unique_key => 'daily-report')",
                    &[&(n as i32)],
                )
                .await
                .expect("enqueue_unique");
            let (id, created): (i64, bool) = (row.get(0), row.get(1));
            // Keep the transactions open together, so that the key is
            // contended while some of its holders roll back.
            tokio::time::sleep(Duration::from_millis(20 + (n as u64 % 7) * 5)).await;
            let commits = n % 2 == 0;
            if commits {
                tx.commit().await.expect("commit");
            } else {
                tx.rollback().await.expect("rollback");
            }
            (commits, id, created)
        }));
    }
    let mut committed = Vec::new();
    for task in tasks {
        let (commits, id, created) = task.await.expect("task");
        if commits {
            committed.push((id, created));
        }
    }

    let client = db.client().await;
    let jobs = client
        .query(
            "SELECT id FROM jobq.jobs WHERE job_type = 'report' AND unique_key = 'daily-report'",
            &[],
        )
        .await
        .expect("jobs");
    assert_eq!(jobs.len(), 1, "exactly one job holds the key");
    let id: i64 = jobs[0].get(0);
    assert_eq!(committed.len(), CONNECTIONS / 2);
    assert!(
        committed.iter().all(|(got, _)| *got == id),
        "every committed enqueue got the one job: {committed:?}"
    );
    assert_eq!(
        committed.iter().filter(|(_, created)| *created).count(),
        1,
        "exactly one committed enqueue says it created the job: {committed:?}"
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM jobq.jobs").await,
        1,
        "rolled-back inserts left nothing"
    );
    db.drop_db().await;
}

/// A worker of the workflow tests: grabs jobs of the workflow's types until
/// `stop` is set. The root fans out into 100 leaves and a join through
/// jq_replace; every other job logs its start and end (by the database clock)
/// and how many leaves it saw completed when it started, in the transaction
/// that completes it. A leaf whose args say so fails for good.
async fn run_worker(mut client: Client, stop: Arc<AtomicBool>, name: String) {
    let request = request(&["root", "leaf", "join", "after"], 5, &name);
    while !stop.load(Ordering::SeqCst) {
        let jobs = grab(&client, &request).await.expect("grab");
        if jobs.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        for job in jobs {
            if job.args["fail"] == json!(true) {
                perm_fail(&client, job.lease(), "leaf broke")
                    .await
                    .expect("perm_fail");
                continue;
            }
            if job.job_type == "root" {
                let mut new_jobs: Vec<Value> = (0..100)
                    .map(|n| {
                        json!({"job_type": "leaf",
                               "args": {"n": n, "fail": job.args["fail_leaf"] == json!(n)}})
                    })
                    .collect();
                new_jobs.push(json!({
                    "job_type": "join",
                    "depends_on_index": (0..100).collect::<Vec<i32>>(),
                    "run_anyway": job.args["join_anyway"],
                }));
                client
                    .execute(
                        "SELECT jobq.jq_replace($1, $2, $3)",
                        &[&job.id, &job.lease_token, &Value::from(new_jobs)],
                    )
                    .await
                    .expect("replace");
                continue;
            }
            let tx = client.transaction().await.expect("begin");
            tx.execute(
                "INSERT INTO run_log (job_id, job_type, started, leaves_done) \
                 SELECT $1, $2, clock_timestamp(), count(*) FROM jobq.jobs \
                 WHERE job_type = 'leaf' AND state = 'completed'",
                &[&job.id, &job.job_type],
            )
            .await
            .expect("log start");
            tokio::time::sleep(Duration::from_millis(job.id as u64 % 3)).await;
            tx.execute(
                "UPDATE run_log SET finished = clock_timestamp() WHERE job_id = $1",
                &[&job.id],
            )
            .await
            .expect("log end");
            complete(&tx, job.lease(), None).await.expect("complete");
            tx.commit().await.expect("commit");
        }
    }
}

async fn workflow(db: &TestDb, root_args: Value) -> (i64, i64) {
    let client = db.client().await;
    client
        .batch_execute(
            "DROP TABLE IF EXISTS run_log; \
             CREATE TABLE run_log (job_id bigint PRIMARY KEY, job_type text, started timestamptz, \
                                   finished timestamptz, leaves_done bigint)",
        )
        .await
        .expect("run_log");
    let root = enqueue(&client, &NewJob::new("root", root_args))
        .await
        .expect("enqueue root");
    // Enqueued separately, before the fan-out exists: it waits for the root,
    // and through jq_replace for everything the root was replaced by.
    let after = client
        .query_one(
            "SELECT jobq.jq_enqueue('after', depends_on => ARRAY[$1::bigint], run_anyway => true)",
            &[&root],
        )
        .await
        .expect("enqueue after")
        .get(0);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for n in 0..4 {
        workers.push(tokio::spawn(run_worker(
            db.client().await,
            stop.clone(),
            format!("flow-{n}"),
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let open = count(
            &client,
            "SELECT count(*) FROM jobq.jobs WHERE state IN ('blocked', 'waiting', 'running')",
        )
        .await;
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "workflow did not finish");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("worker");
    }
    (root, after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fan_out_and_join_run_in_order() {
    let db = TestDb::new("ctl_fanout").await;
    let client = db.client().await;
    let (root, after) = workflow(&db, json!({})).await;

    assert_eq!(state(&client, root).await, "replaced");
    let leaves = client
        .query_one(
            "SELECT count(*), max(finished) FROM run_log WHERE job_type = 'leaf'",
            &[],
        )
        .await
        .expect("leaves");
    assert_eq!(leaves.get::<_, i64>(0), 100, "all 100 leaves ran once");
    let last_leaf: chrono::DateTime<chrono::Utc> = leaves.get(1);
    let join = client
        .query_one(
            "SELECT count(*), min(started), min(leaves_done), max(finished) FROM run_log WHERE job_type = 'join'",
            &[],
        )
        .await
        .expect("join");
    assert_eq!(join.get::<_, i64>(0), 1, "the join ran once");
    let join_started: chrono::DateTime<chrono::Utc> = join.get(1);
    assert!(
        join_started > last_leaf,
        "the join started after the last leaf finished"
    );
    assert_eq!(
        join.get::<_, i64>(2),
        100,
        "the join saw all 100 leaves completed"
    );
    let join_finished: chrono::DateTime<chrono::Utc> = join.get(3);
    // The job that depended on the root waited for the whole fan-out.
    assert_eq!(state(&client, after).await, "completed");
    let after_started: chrono::DateTime<chrono::Utc> = client
        .query_one("SELECT started FROM run_log WHERE job_type = 'after'", &[])
        .await
        .expect("after")
        .get(0);
    assert!(after_started > join_finished, "after ran after the join");
    // Nothing else ran, and no dependency row is left behind.
    assert_eq!(count(&client, "SELECT count(*) FROM run_log").await, 102);
    assert_eq!(
        count(&client, "SELECT count(*) FROM jobq.job_dependencies").await,
        0
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_parent_cancels_its_dependants_unless_they_run_anyway() {
    let db = TestDb::new("ctl_cascade").await;
    let client = db.client().await;

    // Leaf 7 fails for good: the join is cancelled, and never runs.
    let (_, after) = workflow(&db, json!({"fail_leaf": 7})).await;
    let join: i64 = client
        .query_one("SELECT id FROM jobq.jobs WHERE job_type = 'join'", &[])
        .await
        .expect("join")
        .get(0);
    assert_eq!(state(&client, join).await, "cancelled");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM run_log WHERE job_type = 'join'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM run_log WHERE job_type = 'leaf'"
        )
        .await,
        99
    );
    // "after" runs anyway: a cancelled join does not hold it back.
    assert_eq!(state(&client, after).await, "completed");
    let events: Vec<String> = client
        .query(
            "SELECT event FROM jobq.jq_events_for_job($1) ORDER BY id",
            &[&join],
        )
        .await
        .expect("events")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(events, ["enqueued", "cancelled"]);

    // With run_anyway the join runs after the failure.
    client
        .batch_execute("DELETE FROM jobq.live_jobs; DELETE FROM jobq.job_history")
        .await
        .expect("clean");
    workflow(&db, json!({"fail_leaf": 3, "join_anyway": true})).await;
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM run_log WHERE job_type = 'join'"
        )
        .await,
        1
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_limit_of_three_holds_under_eight_racing_grabbers() {
    const JOBS: i64 = 60;
    const LIMIT: usize = 3;
    let db = TestDb::new("ctl_limit").await;
    let setup = db.client().await;
    setup
        .batch_execute(&format!(
            "INSERT INTO jobq.job_types (job_type, max_running) VALUES ('limited', {LIMIT}); \
             SELECT count(*) FROM jobq.jq_enqueue_many((SELECT jsonb_agg(jsonb_build_object('job_type', 'limited')) \
                                                        FROM generate_series(1, {JOBS})))"
        ))
        .await
        .expect("setup");

    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let most_in_db = Arc::new(AtomicUsize::new(0));
    let mut grabbers = Vec::new();
    for n in 0..8 {
        let client = db.client().await;
        let (running, most, most_in_db) = (running.clone(), most.clone(), most_in_db.clone());
        grabbers.push(tokio::spawn(async move {
            let request = request(&["limited"], 2, &format!("grabber-{n}"));
            let mut done = 0;
            let mut idle_since = Instant::now();
            loop {
                let jobs = grab(&client, &request).await.expect("grab");
                if jobs.is_empty() {
                    // Others may still hold the last jobs; stop once all are done.
                    let open = count(
                        &client,
                        "SELECT count(*) FROM jobq.jobs WHERE state <> 'completed'",
                    )
                    .await;
                    if open == 0 || idle_since.elapsed() > Duration::from_secs(30) {
                        return done;
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                }
                idle_since = Instant::now();
                for job in jobs {
                    // The handler: count itself in, look, work, count itself out.
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let in_db = count(
                        &client,
                        "SELECT count(*) FROM jobq.jobs WHERE job_type = 'limited' AND state = 'running'",
                    )
                    .await as usize;
                    most_in_db.fetch_max(in_db, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(3 + job.id as u64 % 5)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    complete(&client, job.lease(), None).await.expect("complete");
                    done += 1;
                }
            }
        }));
    }
    let mut total = 0;
    for grabber in grabbers {
        total += grabber.await.expect("grabber");
    }
    assert_eq!(total, JOBS, "every job was completed once");
    assert_eq!(
        count(
            &setup,
            "SELECT count(*) FROM jobq.jobs WHERE state = 'completed'"
        )
        .await,
        JOBS
    );
    let most = most.load(Ordering::SeqCst);
    let most_in_db = most_in_db.load(Ordering::SeqCst);
    assert!(most <= LIMIT, "{most} handlers ran at once");
    assert!(
        most_in_db <= LIMIT,
        "{most_in_db} jobs were running at once"
    );
    assert!(most >= 2, "the grabbers did run jobs concurrently ({most})");
    db.drop_db().await;
}

#[tokio::test]
async fn cancel_a_waiting_and_a_running_job() {
    let db = TestDb::new("ctl_cancel").await;
    let client = db.client().await;

    // waiting: cancelled at once, never grabbed
    let waiting = enqueue(&client, &NewJob::new("cancel_me", json!({})))
        .await
        .expect("enqueue");
    let result: String = client
        .query_one("SELECT jobq.jq_cancel($1)", &[&waiting])
        .await
        .expect("cancel")
        .get(0);
    assert_eq!(result, "cancelled");
    assert!(grab_one(&client, "cancel_me").await.is_none());
    assert_eq!(state(&client, waiting).await, "cancelled");

    // running: the worker learns it at its next heartbeat and stops
    let id = enqueue(&client, &NewJob::new("long_job", json!({})))
        .await
        .expect("enqueue");
    let job = grab_one(&client, "long_job").await.expect("grab");
    extend(&client, job.lease(), Duration::from_secs(60))
        .await
        .expect("heartbeat before the request");
    let operator = db.client().await;
    let result: String = operator
        .query_one("SELECT jobq.jq_cancel($1)", &[&id])
        .await
        .expect("cancel")
        .get(0);
    assert_eq!(result, "cancel_requested");
    assert_eq!(state(&client, id).await, "running");
    let heartbeat = extend(&client, job.lease(), Duration::from_secs(60)).await;
    let error = heartbeat.expect_err("the heartbeat reports the cancellation");
    assert_eq!(error.sqlstate(), Some("JQ004"), "{error}");
    // The batch heartbeat says it per job.
    let outcome: String = client
        .query_one(
            "SELECT outcome FROM jobq.jq_extend_many(ARRAY[$1::bigint], ARRAY[$2::uuid])",
            &[&id, &job.lease_token],
        )
        .await
        .expect("extend_many")
        .get(0);
    assert_eq!(outcome, "cancel_requested");
    // The worker stops and reports; the job ends cancelled, not retried.
    temp_fail(&client, job.lease(), "stopped: cancelled", None)
        .await
        .expect("report");
    let job_details = details(&client, id).await.expect("details");
    assert_eq!(job_details["state"], "cancelled");
    assert_eq!(job_details["failures"][0]["message"], "stopped: cancelled");
    assert!(grab_one(&client, "long_job").await.is_none());

    // Cancelling it again says so; a completed job cannot be cancelled (JQ003).
    let again: String = client
        .query_one("SELECT jobq.jq_cancel($1)", &[&id])
        .await
        .expect("cancel again")
        .get(0);
    assert_eq!(again, "cancelled");
    let done = enqueue(&client, &NewJob::new("quick", json!({})))
        .await
        .expect("enqueue");
    let job = grab_one(&client, "quick").await.expect("grab");
    complete(&client, job.lease(), None)
        .await
        .expect("complete");
    let error = client
        .query_one("SELECT jobq.jq_cancel($1)", &[&done])
        .await
        .expect_err("completed");
    assert_eq!(error.code().map(|c| c.code()), Some("JQ003"));
    db.drop_db().await;
}

#[tokio::test]
async fn retry_gives_a_failed_job_fresh_attempts_and_keeps_its_history() {
    let db = TestDb::new("ctl_retry").await;
    let client = db.client().await;
    let id = enqueue(
        &client,
        &NewJob::new("fragile", json!({})).with_options(EnqueueOptions {
            max_attempts: Some(1),
            ..EnqueueOptions::default()
        }),
    )
    .await
    .expect("enqueue");
    let job = grab_one(&client, "fragile").await.expect("grab");
    perm_fail(&client, job.lease(), "out of disk")
        .await
        .expect("perm_fail");
    assert_eq!(state(&client, id).await, "failed");

    let new_state: String = client
        .query_one("SELECT jobq.jq_retry($1, 2)", &[&id])
        .await
        .expect("retry")
        .get(0);
    assert_eq!(new_state, "waiting");
    let again = grab_one(&client, "fragile").await.expect("grab again");
    assert_eq!(again.attempt, 2, "attempts go on counting");
    assert_eq!(again.max_attempts, 3, "two more attempts");
    complete(&client, again.lease(), None)
        .await
        .expect("complete");
    let job_details = details(&client, id).await.expect("details");
    assert_eq!(job_details["state"], "completed");
    assert_eq!(job_details["failures"][0]["message"], "out of disk");
    let events: Vec<String> = client
        .query("SELECT event FROM jobq.jq_events_for_job($1)", &[&id])
        .await
        .expect("events")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        events,
        [
            "enqueued",
            "grabbed",
            "perm_failed",
            "retried",
            "grabbed",
            "completed"
        ]
    );
    // A completed job cannot be retried: JQ003.
    let error = client
        .query_one("SELECT jobq.jq_retry($1)", &[&id])
        .await
        .expect_err("completed");
    assert_eq!(error.code().map(|c| c.code()), Some("JQ003"));
    db.drop_db().await;
}

#[tokio::test]
async fn pause_and_resume_a_queue() {
    let db = TestDb::new("ctl_pause").await;
    let client = db.client().await;
    let options = |queue: &str| EnqueueOptions {
        queue: Some(queue.into()),
        ..EnqueueOptions::default()
    };
    let paused = enqueue(
        &client,
        &NewJob::new("mail", json!({})).with_options(options("bulk")),
    )
    .await
    .expect("enqueue");
    client
        .execute("SELECT jobq.jq_pause_queue('bulk')", &[])
        .await
        .expect("pause");
    let other = enqueue(
        &client,
        &NewJob::new("mail", json!({})).with_options(options("urgent")),
    )
    .await
    .expect("enqueue");
    let jobs = grab(&client, &request(&["mail"], 10, "w"))
        .await
        .expect("grab");
    assert_eq!(
        jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        [other],
        "the paused queue is skipped"
    );

    let (_listener, mut wakeups) = listen(&db.config, &["jobq_wakeup"]).await;
    client
        .execute("SELECT jobq.jq_resume_queue('bulk')", &[])
        .await
        .expect("resume");
    let heard = collect_for(&mut wakeups, Duration::from_secs(2)).await;
    assert!(
        heard
            .iter()
            .any(|n| n.payload() == r#"{"queue": "bulk", "job_type": "*"}"#),
        "resume wakes the queue's workers: {:?}",
        heard.iter().map(|n| n.payload()).collect::<Vec<_>>()
    );
    let jobs = grab(&client, &request(&["mail"], 10, "w"))
        .await
        .expect("grab");
    assert_eq!(jobs.iter().map(|j| j.id).collect::<Vec<_>>(), [paused]);
    db.drop_db().await;
}

#[tokio::test]
async fn expired_jobs_end_through_maintenance_and_cancel_their_dependants() {
    let db = TestDb::new("ctl_expiry").await;
    let client = db.client().await;
    let id: i64 = client
        .query_one(
            "SELECT jobq.jq_enqueue('deadline', expires_at => clock_timestamp() + interval '100 ms')",
            &[],
        )
        .await
        .expect("enqueue")
        .get(0);
    let child: i64 = client
        .query_one(
            "SELECT jobq.jq_enqueue('after_deadline', depends_on => ARRAY[$1::bigint])",
            &[&id],
        )
        .await
        .expect("enqueue child")
        .get(0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let summary = sql_value(&client, "SELECT jobq.jq_maintain()").await;
    assert_eq!(summary["expired_jobs"], 1, "{summary}");
    assert_eq!(state(&client, id).await, "expired");
    assert_eq!(state(&client, child).await, "cancelled");
    assert!(grab_one(&client, "deadline").await.is_none());
    db.drop_db().await;
}

#[tokio::test]
async fn notes_merge_and_show_in_details_and_events() {
    let db = TestDb::new("ctl_notes").await;
    let client = db.client().await;
    let id = enqueue(&client, &NewJob::new("import", json!({})))
        .await
        .expect("enqueue");
    let job = grab_one(&client, "import").await.expect("grab");
    for note in [
        json!({"progress": 10, "file": "a.csv"}),
        json!({"progress": 90, "file": null}),
    ] {
        client
            .execute(
                "SELECT jobq.jq_note($1, $2, $3)",
                &[&id, &job.lease_token, &note],
            )
            .await
            .expect("note");
    }
    let job_details = details(&client, id).await.expect("details");
    assert_eq!(job_details["notes"], json!({"progress": 90}));
    let messages: Vec<Option<String>> = client
        .query(
            "SELECT message FROM jobq.jq_events_for_job($1) WHERE event = 'noted' ORDER BY id",
            &[&id],
        )
        .await
        .expect("events")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| serde_json::from_str(m.as_deref().expect("message")).expect("json"))
        .collect();
    assert_eq!(
        messages,
        [
            json!({"progress": 10, "file": "a.csv"}),
            json!({"progress": 90, "file": null})
        ]
    );
    db.drop_db().await;
}

#[tokio::test]
async fn pruning_keeps_what_is_within_retention_and_events_outlive_jobs() {
    let db = TestDb::new("ctl_prune").await;
    let client = db.client().await;
    client
        .batch_execute(
            "UPDATE jobq.maintenance SET every = '1 day', last_run_at = now(); \
             INSERT INTO jobq.job_types (job_type, retention, event_retention) \
             VALUES ('short', '1 hour', '2 days'), ('long', '30 days', '60 days'); \
             SELECT count(*) FROM jobq.jq_enqueue_many( \
                 '[{\"job_type\": \"short\"}, {\"job_type\": \"short\"}, \
                   {\"job_type\": \"long\"}, {\"job_type\": \"plain\"}, {\"job_type\": \"open\"}]')",
        )
        .await
        .expect("setup");
    let jobs = grab(&client, &request(&["short", "long", "plain"], 10, "w"))
        .await
        .expect("grab");
    for job in &jobs {
        complete(&client, job.lease(), None)
            .await
            .expect("complete");
    }
    // Finished three hours ago: only "short" (1 hour) is past its retention.
    client
        .batch_execute(
            "UPDATE jobq.job_history SET finished_at = now() - interval '3 hours' WHERE state = 'completed'",
        )
        .await
        .expect("age");
    // Past retention a job is gone from every function and view at once; its
    // row stays until its day's partition is older than the longest retention
    // ("long", 30 days), so maintenance deletes no rows here.
    let summary = sql_value(&client, "SELECT jobq.jq_maintain()").await;
    assert_eq!(summary["pruned_jobs"], 0, "{summary}");
    assert_eq!(
        count(&client, "SELECT count(*) FROM jobq.job_history").await,
        4
    );
    let left: Vec<String> = client
        .query("SELECT job_type FROM jobq.jobs ORDER BY job_type", &[])
        .await
        .expect("left")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(left, ["long", "open", "plain"]);
    // The pruned jobs' events stay until their own retention passes.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.events WHERE job_type = 'short'"
        )
        .await,
        6
    );
    client
        .batch_execute(
            "UPDATE jobq.event_batches SET at = now() - interval '3 days' WHERE job_type IN ('short', 'long')",
        )
        .await
        .expect("age events");
    let summary = sql_value(&client, "SELECT jobq.jq_maintain()").await;
    assert_eq!(summary["pruned_events"], 6, "{summary}");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.events WHERE job_type = 'long'"
        )
        .await,
        3,
        "long keeps its events (60 days)"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn the_wakeup_worker_runs_maintenance_periodically() {
    let db = TestDb::new("ctl_background").await;
    let client = db.client().await;
    jobq_integration_tests::wakeup_worker_pid(&client).await;
    // No partition exists before the database holds a job, and a job
    // finished 40 days ago sits in the default partition: the background run
    // makes the coming days' partitions and removes the old row.
    client
        .batch_execute(
            "UPDATE jobq.maintenance SET every = '1 second'; \
             SELECT jobq.jq_enqueue('old')",
        )
        .await
        .expect("setup");
    let job = grab_one(&client, "old").await.expect("grab");
    complete(&client, job.lease(), None)
        .await
        .expect("complete");
    client
        .batch_execute("UPDATE jobq.job_history SET finished_at = now() - interval '40 days'")
        .await
        .expect("age");
    assert_eq!(
        count(&client, "SELECT count(*) FROM jobq.job_history_default").await,
        1
    );
    // Days that have not begun: two or three of them, depending on the hour.
    let partitions = "SELECT count(*) FROM jobq._history_partitions() \
                      WHERE day > (now() AT TIME ZONE 'UTC')::date";
    let deadline = Instant::now() + Duration::from_secs(10);
    // A run that makes a partition may stop at its 100 ms budget; the next
    // one, a second later, then completes.
    while count(&client, "SELECT count(*) FROM jobq.job_history").await > 0
        || count(&client, partitions).await < 2
        || count(
            &client,
            "SELECT count(*) FROM jobq.maintenance WHERE (last_summary ->> 'complete')::boolean",
        )
        .await
            == 0
    {
        assert!(
            Instant::now() < deadline,
            "the background maintenance did not keep the history"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let summary = sql_value(&client, "SELECT last_summary FROM jobq.maintenance").await;
    assert_eq!(summary["complete"], true, "{summary}");
    // Never a partition for a day that has begun: attaching it would fail
    // the jobs finishing into it at that moment.
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq._history_partitions() \
             WHERE day <= (now() AT TIME ZONE 'UTC')::date"
        )
        .await,
        0
    );
    db.drop_db().await;
}
