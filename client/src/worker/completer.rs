//! Records handlers' outcomes. Completions are the hot path: they are
//! collected for up to `complete_interval` (or until `complete_batch` of them
//! wait) and sent in one `jq_complete_many`, so a busy worker pays one commit
//! per batch instead of one per job. Retries, failures and replacements are
//! rarer and go one by one.

use super::connection::Link;
use super::handler::Outcome;
use super::leases::Leases;
use crate::lease::{
    complete, complete_many, perm_fail, replace, temp_fail, CompleteOutcome, Lease,
};
use crate::{Error, Result};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub(crate) struct Completer {
    pub link: Arc<Link>,
    pub leases: Leases,
    pub batch: usize,
    pub interval: Duration,
    /// Cancelled when retrying a broken connection must stop (the shutdown's
    /// deadline passed); what is unrecorded then runs again once its lease
    /// runs out.
    pub give_up: CancellationToken,
}

impl Completer {
    /// Runs until the sending side is dropped and everything sent is recorded.
    pub async fn run(self, mut outcomes: Receiver<(Lease, Outcome)>) {
        let mut completions: Vec<(Lease, Option<Value>)> = Vec::new();
        while let Some((lease, outcome)) = outcomes.recv().await {
            self.take(lease, outcome, &mut completions).await;
            let deadline = Instant::now() + self.interval;
            let mut closed = false;
            while completions.len() < self.batch {
                match tokio::time::timeout_at(deadline, outcomes.recv()).await {
                    Ok(Some((lease, outcome))) => self.take(lease, outcome, &mut completions).await,
                    Ok(None) => {
                        closed = true;
                        break;
                    }
                    Err(_elapsed) => break,
                }
            }
            self.flush(std::mem::take(&mut completions)).await;
            if closed {
                break;
            }
        }
    }

    async fn take(
        &self,
        lease: Lease,
        outcome: Outcome,
        completions: &mut Vec<(Lease, Option<Value>)>,
    ) {
        match outcome {
            Outcome::Complete(result) => completions.push((lease, result)),
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

    async fn flush(&self, completions: Vec<(Lease, Option<Value>)>) {
        if completions.is_empty() {
            return;
        }
        let outcomes = self
            .link
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
