//! jq_extend_many, jq_release and jq_release_many through the client: per-job
//! outcomes, fencing of stale leases, and what a hand-back leaves behind.

use jobq_client::{
    details, enqueue_many, extend_many, grab, release, release_many, Error, ExtendOutcome,
    GrabRequest, Lease, LeasedJob, NewJob, ReleaseOutcome,
};
use jobq_integration_tests::TestDb;
use serde_json::json;
use std::time::Duration;
use tokio_postgres::Client;
use uuid::Uuid;

async fn grab_all(client: &Client, job_type: &str, lease: Duration) -> Vec<LeasedJob> {
    grab(
        client,
        &GrabRequest {
            job_types: Some(vec![job_type.into()]),
            lease,
            max_jobs: 100,
            worker: Some("batch-test".into()),
            ..GrabRequest::default()
        },
    )
    .await
    .expect("grab")
}

fn stale(job: &LeasedJob) -> Lease {
    Lease {
        job_id: job.id,
        token: Uuid::new_v4(),
    }
}

#[tokio::test]
async fn extend_many_reports_each_lease_and_moves_only_live_ones() {
    let db = TestDb::new("batch_extend").await;
    let client = db.client().await;
    let jobs: Vec<NewJob> = (0..3)
        .map(|n| NewJob::new("ext", json!({ "n": n })))
        .collect();
    enqueue_many(&client, &jobs).await.expect("enqueue");
    let held = grab_all(&client, "ext", Duration::from_secs(10)).await;
    assert_eq!(held.len(), 3);

    let leases = [
        held[0].lease(),
        stale(&held[1]),
        Lease {
            job_id: i64::MAX,
            token: Uuid::new_v4(),
        },
        held[2].lease(),
    ];
    let outcomes = extend_many(&client, &leases, Duration::from_secs(3600))
        .await
        .expect("extend_many");
    assert_eq!(outcomes.len(), 4);
    assert_eq!(outcomes[0].0, held[0].id);
    assert!(
        matches!(outcomes[0].1, ExtendOutcome::Extended(until) if until > held[0].locked_until + chrono::Duration::minutes(50))
    );
    assert_eq!(outcomes[1], (held[1].id, ExtendOutcome::LeaseLost));
    assert_eq!(outcomes[2], (i64::MAX, ExtendOutcome::NotFound));
    assert!(matches!(outcomes[3].1, ExtendOutcome::Extended(_)));

    let locked_until: chrono::DateTime<chrono::Utc> = client
        .query_one(
            "SELECT locked_until FROM jobq.jobs WHERE id = $1",
            &[&held[1].id],
        )
        .await
        .expect("locked_until")
        .get(0);
    assert_eq!(
        locked_until, held[1].locked_until,
        "a stale token extends nothing"
    );

    for bad in [
        "SELECT * FROM jobq.jq_extend_many(ARRAY[1, 2], ARRAY[gen_random_uuid()])",
        "SELECT * FROM jobq.jq_extend_many(ARRAY[1], ARRAY[gen_random_uuid()], '0 seconds')",
        "SELECT * FROM jobq.jq_release_many(ARRAY[1], ARRAY[]::uuid[])",
    ] {
        let error = client.query(bad, &[]).await.expect_err(bad);
        assert_eq!(
            Error::from(error).sqlstate(),
            Some(jobq_client::SQLSTATE_INVALID_ARGUMENT),
            "{bad}"
        );
    }
    db.drop_db().await;
}

#[tokio::test]
async fn release_hands_jobs_back_due_at_once_without_counting_the_attempt() {
    let db = TestDb::new("batch_release").await;
    let client = db.client().await;
    let jobs: Vec<NewJob> = (0..3)
        .map(|n| NewJob::new("rel", json!({ "n": n })))
        .collect();
    enqueue_many(&client, &jobs).await.expect("enqueue");
    let held = grab_all(&client, "rel", Duration::from_secs(3600)).await;
    assert_eq!(held.len(), 3);

    let outcomes = release_many(
        &client,
        &[held[0].lease(), stale(&held[1]), held[0].lease()],
    )
    .await
    .expect("release_many");
    assert_eq!(
        outcomes,
        vec![
            (held[0].id, ReleaseOutcome::Released),
            (held[1].id, ReleaseOutcome::LeaseLost),
            // The same lease twice: the job is released once.
            (held[0].id, ReleaseOutcome::LeaseLost),
        ]
    );
    release(&client, held[2].lease()).await.expect("release");
    assert!(matches!(
        release(&client, held[2].lease()).await,
        Err(Error::LeaseLost(_))
    ));
    assert!(matches!(
        release(&client, stale(&held[1])).await,
        Err(Error::LeaseLost(_))
    ));
    assert!(matches!(
        release(
            &client,
            Lease {
                job_id: i64::MAX,
                token: Uuid::new_v4()
            }
        )
        .await,
        Err(Error::JobNotFound(_))
    ));

    for job in [&held[0], &held[2]] {
        let d = details(&client, job.id).await.expect("details");
        assert_eq!(d["state"], "waiting");
        assert_eq!(d["attempts"], 0);
        assert_eq!(d["failures"], json!([]));
        assert_eq!(d["started_at"], json!(null));
    }
    // Due at once, though the lease had an hour to go; the third job is
    // still held under its live lease.
    let again = grab_all(&client, "rel", Duration::from_secs(60)).await;
    let mut ids: Vec<i64> = again.iter().map(|job| job.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![held[0].id, held[2].id]);
    assert!(again.iter().all(|job| job.attempt == 1));
    db.drop_db().await;
}

#[tokio::test]
async fn the_worker_role_may_extend_and_release() {
    let db = TestDb::new("batch_roles").await;
    let client = db.client().await;
    client
        .batch_execute(
            "DROP ROLE IF EXISTS jobq_t_batch_worker;
             CREATE ROLE jobq_t_batch_worker NOLOGIN IN ROLE jobq_worker;
             SET ROLE jobq_t_batch_worker;",
        )
        .await
        .expect("become a jobq_worker");
    client
        .execute(
            "SELECT jobq.jq_enqueue_many('[{\"job_type\": \"roles\"}]')",
            &[],
        )
        .await
        .expect_err("a worker is no producer");
    client.batch_execute("RESET ROLE").await.expect("reset");
    enqueue_many(&client, &[NewJob::new("roles", json!({}))])
        .await
        .expect("enqueue");
    client
        .batch_execute("SET ROLE jobq_t_batch_worker")
        .await
        .expect("set role");
    let held = grab_all(&client, "roles", Duration::from_secs(60)).await;
    let extended = extend_many(&client, &[held[0].lease()], Duration::from_secs(60))
        .await
        .expect("extend_many as jobq_worker");
    assert!(matches!(extended[0].1, ExtendOutcome::Extended(_)));
    let released = release_many(&client, &[held[0].lease()])
        .await
        .expect("release_many as jobq_worker");
    assert_eq!(released[0].1, ReleaseOutcome::Released);
    let held = grab_all(&client, "roles", Duration::from_secs(60)).await;
    release(&client, held[0].lease())
        .await
        .expect("release as jobq_worker");
    client
        .batch_execute("RESET ROLE; DROP ROLE jobq_t_batch_worker")
        .await
        .expect("reset");
    db.drop_db().await;
}
