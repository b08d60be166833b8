//! The durable event stream over real connections: the cursor of
//! `jq_events_since` never skips an event when transactions commit out of id
//! order, a subscriber that was away catches up from its saved cursor, and
//! LISTEN on `jobq_events` hears committed changes only.
//!
//! Transaction ids are cluster-wide, so a transaction of another test (in any
//! database) can hold events back for a moment. Reads therefore retry until a
//! deadline; a held-back event is late, never lost, and that is what the
//! assertions check.

use jobq_client::{enqueue, enqueue_many, NewJob};
use jobq_integration_tests::{collect_for, count, listen, TestDb};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

#[derive(Debug, Clone)]
struct Event {
    cursor: String,
    id: i64,
    job_id: i64,
    job_type: String,
    event: String,
}

/// One call of `jq_events_since`.
async fn read_page(client: &Client, cursor: Option<&str>, max_events: i32) -> Vec<Event> {
    client
        .query(
            "SELECT cursor, id, job_id, job_type, event FROM jobq.jq_events_since($1, $2)",
            &[&cursor, &max_events],
        )
        .await
        .expect("jq_events_since")
        .iter()
        .map(|row| Event {
            cursor: row.get(0),
            id: row.get(1),
            job_id: row.get(2),
            job_type: row.get(3),
            event: row.get(4),
        })
        .collect()
}

/// Reads pages from `cursor` until `done` says so (or the deadline passes),
/// the way a subscriber does: every page advances the saved cursor. Returns
/// the pages read.
async fn read_until(
    client: &Client,
    cursor: &mut Option<String>,
    max_events: i32,
    seen: &mut Vec<Event>,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pages = Vec::new();
    while !done(seen) {
        assert!(
            Instant::now() < deadline,
            "events still missing after 30 s; seen {} so far",
            seen.len()
        );
        let page = read_page(client, cursor.as_deref(), max_events).await;
        match page.last() {
            Some(last) => {
                *cursor = Some(last.cursor.clone());
                pages.push(page.len());
                seen.extend(page);
            }
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    pages
}

#[tokio::test]
async fn out_of_order_commits_are_neither_skipped_nor_repeated() {
    let db = TestDb::new("events_out_of_order").await;
    let mut a = db.client().await;
    let mut b = db.client().await;
    let subscriber = db.client().await;

    // A takes its event id first and stays open; B takes the next and commits.
    let tx_a = a.transaction().await.expect("begin A");
    let job_a = enqueue(&tx_a, &NewJob::new("first", json!({})))
        .await
        .expect("enqueue in A");
    let tx_b = b.transaction().await.expect("begin B");
    let job_b = enqueue(&tx_b, &NewJob::new("second", json!({})))
        .await
        .expect("enqueue in B");
    tx_b.commit().await.expect("commit B");
    assert_eq!(
        count(
            &subscriber,
            &format!("SELECT count(*) FROM jobq.events WHERE job_id = {job_b}")
        )
        .await,
        1,
        "B's event is committed and visible"
    );

    // A plain "id > last" cursor would return B's event now, move past A's
    // lower id and never return A's. The cursor must not return B's yet.
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let page = read_page(&subscriber, cursor.as_deref(), 100).await;
        assert!(
            page.iter().all(|e| e.job_id != job_b),
            "B's event was returned while A, ordered before it, could still commit: {page:?}"
        );
        if let Some(last) = page.last() {
            cursor = Some(last.cursor.clone());
        }
        seen.extend(page);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.is_empty(), "A's event is not committed: {seen:?}");

    tx_a.commit().await.expect("commit A");
    read_until(&subscriber, &mut cursor, 100, &mut seen, |seen| {
        [job_a, job_b]
            .iter()
            .all(|job| seen.iter().any(|e| e.job_id == *job))
    })
    .await;
    // Nothing more arrives later either.
    tokio::time::sleep(Duration::from_millis(100)).await;
    seen.extend(read_page(&subscriber, cursor.as_deref(), 100).await);

    let summary: Vec<(i64, &str, &str)> = seen
        .iter()
        .map(|e| (e.job_id, e.job_type.as_str(), e.event.as_str()))
        .collect();
    assert_eq!(
        summary,
        vec![(job_a, "first", "enqueued"), (job_b, "second", "enqueued")],
        "both events once each, A's (the older transaction) first"
    );
    // The ids really were taken in one order and committed in the other.
    assert!(seen[0].id < seen[1].id);
    db.drop_db().await;
}

#[tokio::test]
async fn a_subscriber_catches_up_from_its_saved_cursor() {
    let db = TestDb::new("events_catch_up").await;
    let producer = db.client().await;

    // The subscriber reads what exists, saves its cursor and goes away.
    let warm_up = enqueue_many(
        &producer,
        &(0..5)
            .map(|n| NewJob::new("warm_up", json!({ "n": n })))
            .collect::<Vec<_>>(),
    )
    .await
    .expect("warm-up enqueue");
    let mut saved_cursor: Option<String> = None;
    {
        let subscriber = db.client().await;
        let mut seen = Vec::new();
        read_until(&subscriber, &mut saved_cursor, 300, &mut seen, |seen| {
            seen.len() >= warm_up.len()
        })
        .await;
        assert_eq!(seen.len(), warm_up.len());
        assert!(saved_cursor.is_some());
    } // the connection is dropped here

    // While it is away: 1,000 jobs in ten transactions, from two connections
    // whose transactions overlap, so ids and commits interleave.
    let other = db.client().await;
    let mut missed = Vec::new();
    let mut producer = producer;
    let mut other = other;
    for round in 0..5 {
        let jobs = |who: &str| {
            (0..100)
                .map(|n| NewJob::new("missed", json!({ "who": who, "round": round, "n": n })))
                .collect::<Vec<_>>()
        };
        let tx1 = producer.transaction().await.expect("begin");
        let tx2 = other.transaction().await.expect("begin");
        missed.extend(enqueue_many(&tx1, &jobs("p")).await.expect("enqueue p"));
        missed.extend(enqueue_many(&tx2, &jobs("o")).await.expect("enqueue o"));
        tx2.commit().await.expect("commit o");
        tx1.commit().await.expect("commit p");
    }
    assert_eq!(missed.len(), 1000);

    // It reconnects with the saved cursor and reads 300 at a time.
    let subscriber = db.client().await;
    let mut seen = Vec::new();
    let pages = read_until(&subscriber, &mut saved_cursor, 300, &mut seen, |seen| {
        seen.len() >= 1000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    seen.extend(read_page(&subscriber, saved_cursor.as_deref(), 300).await);

    assert!(pages.iter().all(|&n| n <= 300), "pages: {pages:?}");
    assert!(pages.len() >= 4, "1,000 events in pages of 300: {pages:?}");
    assert!(
        seen.iter()
            .all(|e| e.event == "enqueued" && e.job_type == "missed"),
        "nothing from before the saved cursor"
    );
    let mut per_job: HashMap<i64, usize> = HashMap::new();
    for e in &seen {
        *per_job.entry(e.job_id).or_default() += 1;
    }
    assert_eq!(seen.len(), 1000, "each event once");
    assert!(per_job.values().all(|&n| n == 1));
    assert_eq!(
        per_job.keys().copied().collect::<HashSet<_>>(),
        missed.iter().copied().collect::<HashSet<_>>(),
        "exactly the missed jobs"
    );
    let distinct_events: HashSet<i64> = seen.iter().map(|e| e.id).collect();
    assert_eq!(distinct_events.len(), 1000);
    db.drop_db().await;
}

#[tokio::test]
async fn listeners_hear_committed_events_only() {
    let db = TestDb::new("events_listen").await;
    let mut producer = db.client().await;
    let (_listener, mut notifications) = listen(&db.config, &["jobq_events"]).await;
    collect_for(&mut notifications, Duration::from_millis(200)).await;

    enqueue(
        &producer,
        &NewJob::new("heard", json!({"secret": "s3cr3t"})),
    )
    .await
    .expect("enqueue");
    let heard = tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("a notification arrives after a committed enqueue")
        .expect("listener alive");
    assert_eq!(heard.channel(), "jobq_events");
    assert_eq!(
        heard.payload(),
        "",
        "the payload only says that events exist"
    );
    collect_for(&mut notifications, Duration::from_millis(200)).await;

    // Nothing while the transaction is open, nothing when it rolls back.
    let tx = producer.transaction().await.expect("begin");
    enqueue(&tx, &NewJob::new("unheard", json!({})))
        .await
        .expect("enqueue in tx");
    let while_open = collect_for(&mut notifications, Duration::from_millis(300)).await;
    assert!(while_open.is_empty(), "heard before commit: {while_open:?}");
    tx.rollback().await.expect("rollback");
    let after_rollback = collect_for(&mut notifications, Duration::from_millis(300)).await;
    assert!(
        after_rollback.is_empty(),
        "a rolled-back enqueue was announced: {after_rollback:?}"
    );

    // And the same transaction, committed, is heard once it commits.
    let tx = producer.transaction().await.expect("begin");
    enqueue(&tx, &NewJob::new("heard_later", json!({})))
        .await
        .expect("enqueue in tx");
    tx.commit().await.expect("commit");
    tokio::time::timeout(Duration::from_secs(5), notifications.recv())
        .await
        .expect("a notification arrives after the commit")
        .expect("listener alive");
    db.drop_db().await;
}
