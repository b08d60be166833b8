//! Wake-ups over real LISTEN connections, delivered by the wake-up worker
//! (the test server preloads jobq): on enqueue, when scheduled times pass, and
//! never for rolled-back work; coalesced per queue; never from the producer.

use jobq_client::{enqueue, enqueue_many, grab, temp_fail, EnqueueOptions, GrabRequest, NewJob};
use jobq_integration_tests::{collect_for, count, listen, wakeup_worker_pid, TestDb};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn queue_of(payload: &str) -> String {
    let value: Value = serde_json::from_str(payload).expect("wake-up payload is JSON");
    assert!(value.get("args").is_none());
    value["queue"]
        .as_str()
        .expect("payload names the queue")
        .to_owned()
}

#[tokio::test]
async fn enqueue_wakes_a_listener_within_100ms_and_rollback_wakes_nobody() {
    let db = TestDb::new("wakeup_enqueue").await;
    let mut producer = db.client().await;
    let worker_pid = wakeup_worker_pid(&producer).await;
    let producer_pid = count(&producer, "SELECT pg_backend_pid()::bigint").await as i32;
    let (_listener, mut wakeups) = listen(&db.config, &["jobq_wakeup"]).await;
    collect_for(&mut wakeups, Duration::from_millis(200)).await;

    let started = Instant::now();
    enqueue(
        &producer,
        &NewJob::new("mail", json!({"secret": "x"})).with_options(EnqueueOptions {
            queue: Some("outbox".into()),
            ..EnqueueOptions::default()
        }),
    )
    .await
    .expect("enqueue");
    let wakeup = tokio::time::timeout(Duration::from_secs(2), wakeups.recv())
        .await
        .expect("a wake-up arrives")
        .expect("listener alive");
    let latency = started.elapsed();
    assert!(
        latency < Duration::from_millis(100),
        "wake-up took {latency:?}"
    );
    assert_eq!(wakeup.channel(), "jobq_wakeup");
    let payload: Value = serde_json::from_str(wakeup.payload()).expect("JSON payload");
    assert_eq!(
        payload,
        json!({"queue": "outbox", "job_type": "mail"}),
        "no args in the payload"
    );
    assert_eq!(
        wakeup.process_id(),
        worker_pid,
        "sent by the wake-up worker, not the producer"
    );
    assert_ne!(wakeup.process_id(), producer_pid);

    let tx = producer.transaction().await.expect("begin");
    enqueue(&tx, &NewJob::new("mail", json!({})))
        .await
        .expect("enqueue in tx");
    tx.rollback().await.expect("rollback");
    let after_rollback = collect_for(&mut wakeups, Duration::from_millis(500)).await;
    assert!(
        after_rollback.is_empty(),
        "rolled-back enqueue woke someone: {after_rollback:?}"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn scheduled_retry_and_expired_lease_wake_listeners_when_due() {
    let db = TestDb::new("wakeup_due").await;
    let client = db.client().await;
    wakeup_worker_pid(&client).await;
    let in_queue = |queue: &str| EnqueueOptions {
        queue: Some(queue.into()),
        ..EnqueueOptions::default()
    };

    // A job that fails with a 2 s retry, and one whose 2 s lease will run out.
    enqueue(
        &client,
        &NewJob::new("retry", json!({})).with_options(in_queue("retrying")),
    )
    .await
    .expect("enqueue");
    enqueue(
        &client,
        &NewJob::new("lease", json!({})).with_options(in_queue("leased")),
    )
    .await
    .expect("enqueue");
    let grab_from = |queue: &str, lease_ms| GrabRequest {
        queues: Some(vec![queue.into()]),
        lease: Duration::from_millis(lease_ms),
        ..GrabRequest::default()
    };
    let retrying = grab(&client, &grab_from("retrying", 60_000))
        .await
        .expect("grab")
        .remove(0);
    let (_listener, mut wakeups) = listen(&db.config, &["jobq_wakeup"]).await;
    collect_for(&mut wakeups, Duration::from_millis(200)).await;

    let started = Instant::now();
    grab(&client, &grab_from("leased", 2_000))
        .await
        .expect("grab with a 2 s lease");
    temp_fail(
        &client,
        retrying.lease(),
        "try later",
        Some(Duration::from_secs(2)),
    )
    .await
    .expect("temp_fail");
    enqueue(
        &client,
        &NewJob::new("later", json!({})).with_options(EnqueueOptions {
            queue: Some("scheduled".into()),
            delay: Some(Duration::from_secs(2)),
            ..EnqueueOptions::default()
        }),
    )
    .await
    .expect("enqueue scheduled");

    // Nobody polls: only the wake-up worker knows these times.
    let mut heard: HashMap<String, Duration> = HashMap::new();
    while heard.len() < 3 && started.elapsed() < Duration::from_secs(5) {
        if let Ok(Some(wakeup)) =
            tokio::time::timeout(Duration::from_millis(100), wakeups.recv()).await
        {
            heard
                .entry(queue_of(wakeup.payload()))
                .or_insert(started.elapsed());
        }
    }
    for queue in ["retrying", "leased", "scheduled"] {
        let at = heard
            .get(queue)
            .unwrap_or_else(|| panic!("no wake-up for {queue}: {heard:?}"));
        assert!(
            *at >= Duration::from_millis(1_900),
            "{queue} woke before it was due: {at:?}"
        );
        assert!(
            *at <= Duration::from_millis(3_000),
            "{queue} woke late: {at:?}"
        );
    }
    db.drop_db().await;
}

#[tokio::test]
async fn ten_thousand_jobs_in_one_statement_send_one_wakeup_per_queue() {
    let db = TestDb::new("wakeup_batch").await;
    let client = db.client().await;
    wakeup_worker_pid(&client).await;
    let (_listener, mut wakeups) = listen(&db.config, &["jobq_wakeup"]).await;
    collect_for(&mut wakeups, Duration::from_millis(200)).await;

    let jobs: Vec<NewJob> = (0..10_000)
        .map(|n| {
            NewJob::new("bulk", json!({ "n": n })).with_options(EnqueueOptions {
                queue: Some(if n % 2 == 0 { "even" } else { "odd" }.into()),
                ..EnqueueOptions::default()
            })
        })
        .collect();
    assert_eq!(
        enqueue_many(&client, &jobs)
            .await
            .expect("enqueue_many")
            .len(),
        10_000
    );

    let heard = collect_for(&mut wakeups, Duration::from_millis(700)).await;
    let mut per_queue: HashMap<String, usize> = HashMap::new();
    for wakeup in &heard {
        *per_queue.entry(queue_of(wakeup.payload())).or_default() += 1;
    }
    assert_eq!(
        per_queue,
        HashMap::from([("even".to_owned(), 1), ("odd".to_owned(), 1)])
    );
    db.drop_db().await;
}

#[tokio::test]
async fn without_a_worker_the_producer_notifies_itself_and_the_next_grab_restarts_it() {
    let db = TestDb::new("wakeup_fallback").await;
    let client = db.client().await;
    let worker_pid = wakeup_worker_pid(&client).await;
    client
        .execute("SELECT pg_terminate_backend($1)", &[&worker_pid])
        .await
        .expect("terminate worker");
    let deadline = Instant::now() + Duration::from_secs(5);
    let this_database_workers = "SELECT count(*) FROM jobq.jq_wakeup_workers() \
         WHERE database_oid = (SELECT oid FROM pg_database WHERE datname = current_database())";
    while count(&client, this_database_workers).await > 0 {
        assert!(Instant::now() < deadline, "the worker did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_listener, mut wakeups) = listen(&db.config, &["jobq_wakeup"]).await;
    let producer_pid = count(&client, "SELECT pg_backend_pid()::bigint").await as i32;

    enqueue(&client, &NewJob::new("fallback", json!({})))
        .await
        .expect("enqueue");
    let wakeup = tokio::time::timeout(Duration::from_secs(2), wakeups.recv())
        .await
        .expect("a wake-up arrives")
        .expect("listener alive");
    assert_eq!(
        wakeup.process_id(),
        producer_pid,
        "the fallback is a plain NOTIFY from the producer"
    );

    grab(&client, &GrabRequest::default()).await.expect("grab");
    let restarted = wakeup_worker_pid(&client).await;
    assert_ne!(restarted, worker_pid);
    db.drop_db().await;
}

#[tokio::test]
async fn the_wakeup_worker_reports_its_activity_and_statistics() {
    let db = TestDb::new("wakeup_stats").await;
    let client = db.client().await;
    let worker_pid = wakeup_worker_pid(&client).await;
    // Only the worker's maintenance deletes from event_batches: an event row
    // past its retention, pruned by the background run.
    client
        .batch_execute(
            "SELECT jobq.jq_enqueue('stats'); \
             UPDATE jobq.event_batches SET at = now() - interval '40 days'; \
             UPDATE jobq.maintenance SET every = '1 second', last_run_at = NULL",
        )
        .await
        .expect("setup");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // A fresh statistics snapshot each time round.
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .expect("clear snapshot");
        let deleted = count(
            &client,
            "SELECT n_tup_del FROM pg_stat_user_tables \
             WHERE relid = 'jobq.event_batches'::regclass",
        )
        .await;
        if deleted >= 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker's deletes never reached pg_stat_user_tables (gone: {})",
            count(&client, "SELECT count(*) FROM jobq.event_batches").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // pg_stat_activity shows what it last ran.
    let row = client
        .query_one(
            "SELECT backend_type, datname::text, query FROM pg_stat_activity WHERE pid = $1",
            &[&worker_pid],
        )
        .await
        .expect("the worker is in pg_stat_activity");
    assert_eq!(row.get::<_, String>(0), "jobq wakeup worker");
    assert_eq!(row.get::<_, String>(1), db.name);
    assert!(
        row.get::<_, String>(2).contains("_wakeup_tick"),
        "query: {}",
        row.get::<_, String>(2)
    );
    db.drop_db().await;
}
