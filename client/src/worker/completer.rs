//! Records handlers' outcomes without waiting for one call before sending
//! the next: tokio-postgres pipelines the calls issued concurrently on one
//! client, each still its own transaction.
//!
//! Completions are the hot path. They are collected until `complete_batch`
//! of them wait, or the oldest has waited `complete_interval`, and then sent
//! in one `jq_complete_many`, so a busy worker pays one commit per batch
//! instead of one per job. A batch goes to the complete connection, unless
//! the grab connection has less queued on it: recording a job costs the
//! database more than grabbing it, so a worker that only used the complete
//! connection for it would leave the grab connection idle and be limited to
//! what one backend can complete. Each connection gets at most
//! [`QUEUED_PER_LINK`] statements of this worker at a time (grabs count on
//! theirs); while all are taken, completions gather for the next batch,
//! which goes out as soon as one is answered. Retries, failures and
//! replacements are rarer and go one by one on the complete connection, each
//! sent as soon as it arrives, at most [`OTHERS_IN_FLIGHT`] at a time.
//!
//! Once a full batch waits (or the single-job calls are all busy), the
//! completer stops taking outcomes: the channel from the dispatcher fills and
//! the dispatcher stops grabbing until the database catches up, so unrecorded
//! outcomes (and their leases) never pile up.

use super::connection::Link;
use super::handler::Outcome;
use super::leases::Leases;
use crate::lease::{
    complete, complete_many, perm_fail, replace, temp_fail, CompleteOutcome, Lease,
};
use crate::{Error, Result};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Statements queued on a connection at once before a batch waits for one
/// of them: two keep its backend busy (the next is there when one ends).
const QUEUED_PER_LINK: usize = 2;
/// Single-job outcome calls in flight at once; more wait their turn, so that
/// a burst of failures cannot queue up far ahead of completions and lease
/// extensions on the connection.
const OTHERS_IN_FLIGHT: usize = 32;

pub(crate) struct Completer {
    /// The complete connection.
    pub link: Arc<Link>,
    /// The grab connection, which takes batches when it has less queued.
    pub spare: Arc<Link>,
    pub leases: Leases,
    pub batch: usize,
    pub interval: Duration,
    /// Cancelled when retrying a broken connection must stop (the shutdown's
    /// deadline passed); what is unrecorded then runs again once its lease
    /// runs out.
    pub give_up: CancellationToken,
}

type Completion = (Lease, Option<Value>);

impl Completer {
    /// Runs until the sending side is dropped and everything sent is recorded.
    pub async fn run(self, mut outcomes: Receiver<(Lease, Outcome)>) {
        let this = Arc::new(self);
        let mut pending: Vec<Completion> = Vec::new();
        // When the oldest pending completion arrived.
        let mut oldest: Option<Instant> = None;
        let mut flushes: JoinSet<()> = JoinSet::new();
        let mut others: JoinSet<()> = JoinSet::new();
        let mut queued: VecDeque<(Lease, Outcome)> = VecDeque::new();
        let mut open = true;
        loop {
            while others.len() < OTHERS_IN_FLIGHT {
                let Some((lease, outcome)) = queued.pop_front() else {
                    break;
                };
                let this = Arc::clone(&this);
                others.spawn(async move { this.record_other(lease, outcome).await });
            }
            let due = !open
                || pending.len() >= this.batch
                || oldest.is_some_and(|at| at.elapsed() >= this.interval);
            while due && !pending.is_empty() {
                let Some(link) = this.pick() else {
                    break;
                };
                let take = pending.len().min(this.batch);
                let completions: Vec<Completion> = pending.drain(..take).collect();
                let this = Arc::clone(&this);
                let busy = link.busy();
                flushes.spawn(async move {
                    this.flush(&link, completions).await;
                    drop(busy);
                });
            }
            // What is left keeps the oldest arrival time, so it goes as soon
            // as a statement finishes.
            if pending.is_empty() {
                oldest = None;
            }
            if !open
                && pending.is_empty()
                && queued.is_empty()
                && flushes.is_empty()
                && others.is_empty()
            {
                return;
            }
            let deadline = oldest.map(|at| at + this.interval);
            tokio::select! {
                // No more than one statement's worth waits here (see above).
                received = outcomes.recv(), if open && pending.len() < this.batch && queued.is_empty() => match received {
                    Some((lease, Outcome::Complete(result))) => {
                        pending.push((lease, result));
                        oldest.get_or_insert_with(Instant::now);
                    }
                    Some(other) => queued.push_back(other),
                    None => open = false,
                },
                Some(joined) = flushes.join_next() => report_panic("complete_many", joined),
                Some(joined) = others.join_next() => report_panic("outcome", joined),
                // With both connections taken, a batch of ours ends first.
                () = sleep_until(deadline), if this.pick().is_some() => {}
            }
        }
    }

    /// The connection for the next batch, if one has room.
    fn pick(&self) -> Option<Arc<Link>> {
        let own = self.link.queued();
        let spare = self.spare.queued();
        if own < QUEUED_PER_LINK && own <= spare {
            Some(Arc::clone(&self.link))
        } else if spare < QUEUED_PER_LINK {
            Some(Arc::clone(&self.spare))
        } else {
            None
        }
    }

    async fn record_other(&self, lease: Lease, outcome: Outcome) {
        match outcome {
            Outcome::Complete(result) => self.complete_one(lease, result.as_ref()).await,
            Outcome::Retry { message, delay } => {
                let result = self
                    .link
                    .call("temp_fail", &self.give_up, |client| {
                        let message = message.clone();
                        async move { temp_fail(&*client, lease, &message, delay).await }
                    })
                    .await;
                self.recorded(lease, "temp_fail", result.map(drop));
            }
            Outcome::Fail(message) => self.perm_fail(lease, &message).await,
            Outcome::Replace(jobs) => {
                let result = self
                    .link
                    .call("replace", &self.give_up, |client| {
                        let jobs = jobs.clone();
                        async move { replace(&*client, lease, &jobs).await }
                    })
                    .await;
                match result {
                    // The replacements themselves were rejected: the job is
                    // still ours, and retrying lets a fixed handler succeed.
                    Err(error @ (Error::InvalidArgument(_) | Error::PayloadTooLarge(_))) => {
                        self.temp_fail_after_rejection(lease, "replace", &error)
                            .await
                    }
                    result => self.recorded(lease, "replace", result.map(drop)),
                }
            }
        }
    }

    async fn perm_fail(&self, lease: Lease, message: &str) {
        let result = self
            .link
            .call("perm_fail", &self.give_up, |client| async move {
                perm_fail(&*client, lease, message).await
            })
            .await;
        self.recorded(lease, "perm_fail", result);
    }

    async fn temp_fail_after_rejection(&self, lease: Lease, what: &str, error: &Error) {
        let message = format!("{what} rejected: {error}");
        let result = self
            .link
            .call("temp_fail", &self.give_up, |client| {
                let message = message.clone();
                async move { temp_fail(&*client, lease, &message, None).await }
            })
            .await;
        self.recorded(lease, "temp_fail", result.map(drop));
    }

    async fn flush(&self, link: &Link, completions: Vec<Completion>) {
        let outcomes = link
            .call("complete_many", &self.give_up, |client| {
                let completions = &completions;
                async move { complete_many(&*client, completions).await }
            })
            .await;
        match outcomes {
            Ok(outcomes) => {
                for ((lease, _), (job_id, outcome)) in completions.iter().zip(outcomes) {
                    self.leases.forget(*lease);
                    match outcome {
                        CompleteOutcome::Completed => {}
                        // After a retry on a new connection this may also be a
                        // completion that did commit before the old one broke.
                        CompleteOutcome::LeaseLost => tracing::warn!(
                            job_id,
                            "completion rejected: lease lost (the job runs again, or already did)"
                        ),
                        CompleteOutcome::NotFound => {
                            tracing::warn!(job_id, "completion rejected: no such job")
                        }
                    }
                }
            }
            // One bad result (too large) fails the whole statement: record
            // the jobs one by one so only that one is affected.
            Err(error @ (Error::InvalidArgument(_) | Error::PayloadTooLarge(_))) => {
                tracing::warn!(%error, jobs = completions.len(), "batch completion rejected; completing one by one");
                for (lease, result) in &completions {
                    self.complete_one(*lease, result.as_ref()).await;
                }
            }
            Err(error) => {
                tracing::error!(%error, jobs = completions.len(),
                    "cannot record completions; the jobs run again once their leases run out");
                for (lease, _) in &completions {
                    self.leases.forget(*lease);
                }
            }
        }
    }

    async fn complete_one(&self, lease: Lease, result: Option<&Value>) {
        let outcome = self
            .link
            .call("complete", &self.give_up, |client| async move {
                complete(&*client, lease, result).await
            })
            .await;
        match outcome {
            Err(error @ (Error::InvalidArgument(_) | Error::PayloadTooLarge(_))) => {
                // The same result would be rejected again.
                self.perm_fail(lease, &format!("result rejected: {error}"))
                    .await
            }
            outcome => self.recorded(lease, "complete", outcome),
        }
    }

    fn recorded(&self, lease: Lease, what: &str, result: Result<()>) {
        self.leases.forget(lease);
        match result {
            Ok(()) => {}
            Err(Error::LeaseLost(message)) => {
                tracing::warn!(job_id = lease.job_id, what, %message, "outcome rejected: lease lost")
            }
            Err(error) => {
                tracing::error!(job_id = lease.job_id, what, %error, "cannot record the outcome")
            }
        }
    }
}

fn report_panic(what: &str, joined: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(error) = joined {
        tracing::error!(task = what, %error, "recording outcomes failed");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
