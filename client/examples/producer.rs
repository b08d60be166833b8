//! An example producer: enqueues jobs for examples/worker.rs, one inside the
//! application's own transaction (it exists only if the transaction commits)
//! and a batch in one statement.
//!
//!     cargo run -p jobq-client --example producer -- postgres://postgres@127.0.0.1:54331/jobq_demo

use jobq_client::{enqueue, enqueue_many, JobType, NewJob};
use serde::Serialize;
use serde_json::json;
use std::time::Duration;
use tokio_postgres::NoTls;

#[derive(Serialize)]
struct SendEmail {
    to: String,
    subject: String,
}

impl JobType for SendEmail {
    const NAME: &'static str = "send_email";
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or("usage: producer <postgres url> (or set DATABASE_URL)")?;
    let (mut client, connection) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("connection ended: {error}");
        }
    });

    // The welcome email commits or rolls back with the signup.
    let tx = client.transaction().await?;
    tx.batch_execute("CREATE TEMP TABLE IF NOT EXISTS signups (email text)")
        .await?;
    tx.execute(
        "INSERT INTO signups (email) VALUES ($1)",
        &[&"ada@example.com"],
    )
    .await?;
    let welcome = NewJob::typed(&SendEmail {
        to: "ada@example.com".into(),
        subject: "welcome".into(),
    })?
    .queue("default")
    .delay(Duration::from_secs(1)) // measured on the database clock
    .unique_key("welcome:ada@example.com");
    let id = enqueue(&tx, &welcome).await?;
    tx.commit().await?;
    println!("welcome email: job {id}");

    // A batch, all or nothing, in one statement.
    let mut jobs = vec![NewJob::new("build_report", json!({ "pages": 5 })).priority(-1)];
    for n in 0..20 {
        let subject = if n % 5 == 0 { "flaky news" } else { "news" };
        jobs.push(NewJob::typed(&SendEmail {
            to: format!("reader{n}@example.com"),
            subject: subject.into(),
        })?);
    }
    jobs.push(NewJob::typed(&SendEmail {
        to: "nobody@invalid".into(),
        subject: "news".into(),
    })?);
    let ids = enqueue_many(&client, &jobs).await?;
    println!("enqueued {} more jobs: {:?}", ids.len(), ids);
    Ok(())
}
