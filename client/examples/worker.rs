//! An example worker: sends (pretend) emails and fans reports out into
//! per-page jobs, 16 handlers at a time, until SIGTERM or ctrl-c.
//!
//!     cargo run -p jobq-client --example producer -- postgres://postgres@127.0.0.1:54331/jobq_demo
//!     cargo run -p jobq-client --example worker -- postgres://postgres@127.0.0.1:54331/jobq_demo
//!
//! `RUST_LOG=jobq_client=debug` shows what the runtime does.

use jobq_client::worker::{JobContext, Outcome, Worker};
use jobq_client::{JobType, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct SendEmail {
    to: String,
    subject: String,
}

impl JobType for SendEmail {
    const NAME: &'static str = "send_email";
}

#[derive(Debug, thiserror::Error)]
#[error("mail server unavailable")]
struct MailServerDown;

async fn send_email(email: SendEmail, job: JobContext) -> Result<Outcome, MailServerDown> {
    if email.to.ends_with("@invalid") {
        // Retrying cannot fix the address.
        return Ok(Outcome::fail(format!("no such mailbox: {}", email.to)));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    if job.job().attempt == 1 && email.subject.contains("flaky") {
        // An error is a temp_fail with its message; the job type's backoff
        // decides when the job runs again.
        return Err(MailServerDown);
    }
    Ok(Outcome::complete_with(
        json!({ "message_id": format!("<{}@example.com>", job.job().id) }),
    ))
}

/// A report becomes one job per page, atomically with the report's end.
async fn build_report(job: JobContext) -> Result<Outcome, jobq_client::Error> {
    let pages = job.job().args["pages"].as_i64().unwrap_or(1);
    let report = job.job().id;
    Ok(Outcome::replace(
        (1..=pages)
            .map(|page| NewJob::new("render_page", json!({ "report": report, "page": page })))
            .collect(),
    ))
}

async fn render_page(job: JobContext) -> Result<Outcome, jobq_client::Error> {
    // A long job would watch for its lease being lost, and for shutdown.
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(50)) => Ok(Outcome::complete()),
        () = job.lease_lost() => Ok(Outcome::retry("lease lost")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or("usage: worker <postgres url> (or set DATABASE_URL)")?;

    Worker::builder(url.parse()?)
        .concurrency(16)
        .lease(Duration::from_secs(30))
        .typed_handler(send_email)
        .handler("build_report", build_report)
        .handler("render_page", render_page)
        .build()?
        .run()
        .await?;
    Ok(())
}
