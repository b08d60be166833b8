//! The job lifecycle through the client: fencing of expired leases, retries,
//! failure history, replace, search and ordering, transactional enqueue.

use jobq_client::{
    complete, details, enqueue, enqueue_many, extend, grab, perm_fail, replace, temp_fail,
    EnqueueOptions, Error, GrabRequest, LeasedJob, NewJob, TempFailOutcome, SQLSTATE_LEASE_LOST,
};
use jobq_integration_tests::{count, TestDb};
use serde_json::json;
use std::time::Duration;
use tokio_postgres::Client;

fn request(job_type: &str, lease: Duration, worker: &str) -> GrabRequest {
    GrabRequest {
        job_types: Some(vec![job_type.into()]),
        lease,
        max_jobs: 1,
        worker: Some(worker.into()),
        ..GrabRequest::default()
    }
}

async fn grab_one(
    client: &Client,
    job_type: &str,
    lease: Duration,
    worker: &str,
) -> Option<LeasedJob> {
    let mut jobs = grab(client, &request(job_type, lease, worker))
        .await
        .expect("grab");
    assert!(jobs.len() <= 1);
    jobs.pop()
}

fn assert_lease_lost<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(error @ Error::LeaseLost(_)) => assert_eq!(error.sqlstate(), Some(SQLSTATE_LEASE_LOST)),
        other => panic!("{what}: expected LeaseLost, got {other:?}"),
    }
}

#[tokio::test]
async fn expired_lease_is_fenced_and_new_holder_wins() {
    let db = TestDb::new("fencing").await;
    let client = db.client().await;
    let id = enqueue(&client, &NewJob::new("fenced", json!({})))
        .await
        .expect("enqueue");

    let old = grab_one(&client, "fenced", Duration::from_millis(300), "old")
        .await
        .expect("first grab");
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Expired but not yet re-grabbed: the old holder is already fenced out.
    assert_lease_lost(
        complete(&client, old.lease(), None).await,
        "complete after expiry",
    );

    let new = grab_one(&client, "fenced", Duration::from_secs(60), "new")
        .await
        .expect("re-grab");
    assert_eq!(new.id, id);
    assert_eq!(new.attempt, 2);
    assert_ne!(new.lease_token, old.lease_token);

    let stale = old.lease();
    assert_lease_lost(
        complete(&client, stale, Some(&json!({"by": "old"}))).await,
        "complete",
    );
    assert_lease_lost(temp_fail(&client, stale, "old", None).await, "temp_fail");
    assert_lease_lost(perm_fail(&client, stale, "old").await, "perm_fail");
    assert_lease_lost(
        replace(&client, stale, &[NewJob::new("x", json!({}))]).await,
        "replace",
    );
    assert_lease_lost(
        extend(&client, stale, Duration::from_secs(60)).await,
        "extend",
    );
    assert_eq!(
        count(&client, "SELECT count(*) FROM jobq.jobs").await,
        1,
        "replace created nothing"
    );

    complete(&client, new.lease(), Some(&json!({"by": "new"})))
        .await
        .expect("new holder completes");
    let job = details(&client, id).await.expect("details");
    assert_eq!(job["state"], "completed");
    assert_eq!(job["result"], json!({"by": "new"}));
    assert_eq!(job["failures"][0]["kind"], "lease_expired");
    assert_eq!(job["failures"][0]["worker"], "old");
    assert!(
        job.get("lease_token").is_none(),
        "details never shows the token"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn temp_fail_waits_for_retry_then_fails_when_attempts_run_out() {
    let db = TestDb::new("retry").await;
    let client = db.client().await;
    let options = EnqueueOptions {
        max_attempts: Some(2),
        ..EnqueueOptions::default()
    };
    let id = enqueue(
        &client,
        &NewJob::new("flaky", json!({})).with_options(options),
    )
    .await
    .expect("enqueue");
    let lease = Duration::from_secs(60);

    let first = grab_one(&client, "flaky", lease, "w1")
        .await
        .expect("grab 1");
    let outcome = temp_fail(
        &client,
        first.lease(),
        "boom 1",
        Some(Duration::from_millis(1500)),
    )
    .await;
    assert!(
        matches!(outcome, Ok(TempFailOutcome::RetryAt(_))),
        "{outcome:?}"
    );
    assert!(
        grab_one(&client, "flaky", lease, "w2").await.is_none(),
        "not grabbable before its retry time"
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let second = grab_one(&client, "flaky", lease, "w2")
        .await
        .expect("grabbable after its retry time");
    assert_eq!(second.attempt, 2);

    let outcome = temp_fail(&client, second.lease(), "boom 2", None)
        .await
        .expect("temp_fail 2");
    assert_eq!(outcome, TempFailOutcome::Failed);
    assert!(grab_one(&client, "flaky", lease, "w3").await.is_none());

    let job = details(&client, id).await.expect("details");
    assert_eq!(job["state"], "failed");
    let failures = job["failures"].as_array().expect("failures array");
    assert_eq!(failures.len(), 2);
    for (n, (failure, worker)) in failures.iter().zip(["w1", "w2"]).enumerate() {
        assert_eq!(failure["attempt"], json!(n + 1));
        assert_eq!(failure["message"], format!("boom {}", n + 1));
        assert_eq!(failure["worker"], worker);
        assert!(failure["at"].is_string());
    }
    db.drop_db().await;
}

#[tokio::test]
async fn backoff_applies_when_no_retry_delay_is_given() {
    let db = TestDb::new("backoff").await;
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO jobq.job_types (job_type, backoff_base, backoff_max) VALUES ('slow', '1 hour', '2 hours')")
        .await
        .expect("type settings");
    enqueue(&client, &NewJob::new("slow", json!({})))
        .await
        .expect("enqueue");
    let job = grab_one(&client, "slow", Duration::from_secs(60), "w")
        .await
        .expect("grab");
    let TempFailOutcome::RetryAt(at) = temp_fail(&client, job.lease(), "later", None)
        .await
        .expect("temp_fail")
    else {
        panic!("the job has attempts left");
    };
    let delay = count(
        &client,
        &format!(
            "SELECT extract(epoch FROM '{}'::timestamptz - now())::bigint",
            at.to_rfc3339()
        ),
    )
    .await;
    // 1 hour base, up to 25% jitter off.
    assert!((2600..=3601).contains(&delay), "delay {delay}s");
    db.drop_db().await;
}

#[tokio::test]
async fn replace_is_all_or_nothing() {
    let db = TestDb::new("replace").await;
    let client = db.client().await;
    for size in [0usize, 1, 1000] {
        enqueue(&client, &NewJob::new("parent", json!({ "size": size })))
            .await
            .expect("enqueue");
        let parent = grab_one(&client, "parent", Duration::from_secs(60), "w")
            .await
            .expect("grab");
        let children: Vec<NewJob> = (0..size)
            .map(|n| NewJob::new(["a", "b", "c"][n % 3], json!({ "n": n })))
            .collect();

        let mut broken = children.clone();
        broken.push(NewJob::new("", json!({})));
        let before = count(&client, "SELECT count(*) FROM jobq.jobs").await;
        let error = replace(&client, parent.lease(), &broken)
            .await
            .expect_err("bad child");
        assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
        assert_eq!(
            count(&client, "SELECT count(*) FROM jobq.jobs").await,
            before,
            "nothing created"
        );
        assert_eq!(
            details(&client, parent.id).await.expect("details")["state"],
            "running"
        );

        let ids = replace(&client, parent.lease(), &children)
            .await
            .expect("replace");
        assert_eq!(ids.len(), size);
        let job = details(&client, parent.id).await.expect("details");
        assert_eq!(job["state"], "replaced");
        assert_eq!(
            job["replaced_by"].as_array().map(Vec::len).unwrap_or(0),
            size
        );
        for (n, id) in ids.iter().enumerate().step_by(97) {
            let child = details(&client, *id).await.expect("child");
            assert_eq!(child["job_type"], ["a", "b", "c"][n % 3]);
            assert_eq!(child["args"]["n"], json!(n));
            assert_eq!(child["state"], "waiting");
        }
    }
    db.drop_db().await;
}

#[tokio::test]
async fn search_priority_and_run_at_order() {
    let db = TestDb::new("order").await;
    let client = db.client().await;
    let job = |args, priority, delay_ms: Option<u64>| {
        NewJob::new("ordered", args).with_options(EnqueueOptions {
            priority: Some(priority),
            delay: delay_ms.map(Duration::from_millis),
            ..EnqueueOptions::default()
        })
    };
    let ids = enqueue_many(
        &client,
        &[
            job(json!({"n": 0, "tenant": {"id": 1}}), 5, None),
            job(json!({"n": 1, "tenant": {"id": 2}}), 1, None),
            job(json!({"n": 2, "tenant": {"id": 1}}), -3, None),
            job(json!({"n": 3, "tenant": {"id": 1}}), -9, Some(3_600_000)),
            job(json!({"n": 4, "tenant": {"id": 1}, "x": true}), 1, None),
        ],
    )
    .await
    .expect("enqueue");

    let mut search = request("ordered", Duration::from_secs(60), "w");
    search.max_jobs = 10;
    search.search = Some(json!({"tenant": {"id": 1}}));
    let found: Vec<i64> = grab(&client, &search)
        .await
        .expect("search grab")
        .iter()
        .map(|j| j.id)
        .collect();
    // Tenant 1 only, the scheduled job not yet, by priority then id.
    assert_eq!(found, vec![ids[2], ids[4], ids[0]]);

    let rest = grab(
        &client,
        &GrabRequest {
            search: None,
            ..search
        },
    )
    .await
    .expect("grab rest");
    assert_eq!(rest.iter().map(|j| j.id).collect::<Vec<_>>(), vec![ids[1]]);
    db.drop_db().await;
}

#[tokio::test]
async fn enqueue_in_a_rolled_back_transaction_leaves_no_job() {
    let db = TestDb::new("transactional").await;
    let mut client = db.client().await;
    let tx = client.transaction().await.expect("begin");
    enqueue(&tx, &NewJob::new("never", json!({})))
        .await
        .expect("enqueue in tx");
    tx.rollback().await.expect("rollback");
    let tx = client.transaction().await.expect("begin");
    enqueue(&tx, &NewJob::new("kept", json!({})))
        .await
        .expect("enqueue in tx");
    tx.commit().await.expect("commit");
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.jobs WHERE job_type = 'never'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM jobq.jobs WHERE job_type = 'kept'"
        )
        .await,
        1
    );
    db.drop_db().await;
}

#[tokio::test]
async fn an_expired_job_is_never_run_and_does_not_shorten_a_grab() {
    let db = TestDb::new("expiry").await;
    let client = db.client().await;
    let expiring = client
        .query_one(
            "SELECT jobq.jq_enqueue('exp', '{}', priority => -1, expires_at => clock_timestamp() + interval '300 ms')",
            &[],
        )
        .await
        .expect("enqueue expiring")
        .get::<_, i64>(0);
    let plain = enqueue(&client, &NewJob::new("exp", json!({})))
        .await
        .expect("enqueue plain");
    tokio::time::sleep(Duration::from_millis(400)).await;

    let got = grab_one(&client, "exp", Duration::from_secs(60), "w")
        .await
        .expect("the plain job is due");
    assert_eq!(
        got.id, plain,
        "the expired job, though first by priority, is skipped"
    );
    assert_eq!(
        details(&client, expiring).await.expect("details")["state"],
        "expired"
    );
    assert_eq!(
        details(&client, expiring).await.expect("details")["attempts"],
        0
    );
    db.drop_db().await;
}
