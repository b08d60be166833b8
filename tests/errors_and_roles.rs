//! Rejections reach Rust as typed errors with their SQLSTATE, and the three
//! roles can do what they are for and nothing else.

use jobq_client::{
    details, enqueue, enqueue_many, grab, EnqueueOptions, Error, GrabRequest, NewJob,
};
use jobq_integration_tests::{count, TestDb};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn bad_input_is_a_typed_error_and_changes_nothing() {
    let db = TestDb::new("errors").await;
    let client = db.client().await;
    enqueue(&client, &NewJob::new("ok", json!({})))
        .await
        .expect("good enqueue");

    let invalid: Vec<(NewJob, &str)> = vec![
        (NewJob::new("", json!({})), "JQ010"),
        (NewJob::new("x".repeat(129), json!({})), "JQ010"),
        (NewJob::new("bad type!", json!({})), "JQ010"),
        (NewJob::new("ok", json!([1, 2])), "JQ010"),
        (
            NewJob::new("ok", json!({ "blob": "a".repeat(1_100_000) })),
            "JQ011",
        ),
        (
            NewJob::new("ok", json!({})).with_options(EnqueueOptions {
                max_attempts: Some(0),
                ..EnqueueOptions::default()
            }),
            "JQ010",
        ),
        (
            NewJob::new("ok", json!({})).with_options(EnqueueOptions {
                queue: Some(String::new()),
                ..EnqueueOptions::default()
            }),
            "JQ010",
        ),
    ];
    for (job, sqlstate) in &invalid {
        let error = enqueue(&client, job).await.expect_err("must be rejected");
        assert_eq!(error.sqlstate(), Some(*sqlstate), "{error}");
        let many = enqueue_many(&client, &[NewJob::new("ok", json!({})), job.clone()])
            .await
            .expect_err("batch");
        assert_eq!(many.sqlstate(), Some(*sqlstate), "{many}");
        assert!(
            many.to_string().contains("jobs[1]"),
            "the error names the element: {many}"
        );
    }
    let bad_grab = GrabRequest {
        lease: Duration::from_secs(3 * 86_400),
        ..GrabRequest::default()
    };
    assert!(matches!(
        grab(&client, &bad_grab).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        details(&client, 987_654_321).await,
        Err(Error::JobNotFound(_))
    ));
    assert_eq!(
        count(&client, "SELECT count(*) FROM jobq.jobs").await,
        1,
        "nothing half-written"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn roles_grant_exactly_their_part() {
    let db = TestDb::new("roles").await;
    let client = db.client().await;
    client
        .batch_execute(
            "DROP ROLE IF EXISTS jobq_t_nobody; CREATE ROLE jobq_t_nobody NOLOGIN;
             DROP ROLE IF EXISTS jobq_t_producer; CREATE ROLE jobq_t_producer NOLOGIN IN ROLE jobq_producer;
             DROP ROLE IF EXISTS jobq_t_worker; CREATE ROLE jobq_t_worker NOLOGIN IN ROLE jobq_worker;",
        )
        .await
        .expect("roles");
    let job = NewJob::new("roles", json!({}));
    let grab_any = GrabRequest::default();

    client
        .batch_execute("SET ROLE jobq_t_nobody")
        .await
        .expect("set role");
    assert!(matches!(
        enqueue(&client, &job).await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        grab(&client, &grab_any).await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(matches!(
        details(&client, 1).await,
        Err(Error::PermissionDenied(_))
    ));

    client
        .batch_execute("SET ROLE jobq_t_producer")
        .await
        .expect("set role");
    let id = enqueue(&client, &job).await.expect("producer enqueues");
    assert_eq!(
        details(&client, id).await.expect("producer reads details")["state"],
        "waiting"
    );
    assert!(matches!(
        grab(&client, &grab_any).await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(
        client.query("SELECT * FROM jobq.jobs", &[]).await.is_err(),
        "no direct table access"
    );

    client
        .batch_execute("SET ROLE jobq_t_worker")
        .await
        .expect("set role");
    assert!(matches!(
        enqueue(&client, &job).await,
        Err(Error::PermissionDenied(_))
    ));
    let grabbed = grab(&client, &grab_any).await.expect("worker grabs");
    assert_eq!(grabbed.len(), 1);
    jobq_client::complete(&client, grabbed[0].lease(), None)
        .await
        .expect("worker completes");

    client
        .batch_execute("RESET ROLE; DROP ROLE jobq_t_nobody, jobq_t_producer, jobq_t_worker")
        .await
        .expect("reset");
    db.drop_db().await;
}
