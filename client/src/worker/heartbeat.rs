//! Keeps the leases of held jobs alive: every lease / 3 it extends, in one
//! `jq_extend_many`, each lease not renewed for lease / 6 (so a job that
//! finishes within that costs no heartbeat at all, and no lease ever gets
//! below half its length before it is extended). A lease the database reports
//! lost is cancelled, which tells its handler.

use super::connection::Link;
use super::leases::{Leases, Lost};
use crate::lease::Lease;
use crate::lease_batch::{extend_many, ExtendOutcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Leases extended per statement at most.
const CHUNK: usize = 5_000;

pub(crate) async fn run(link: Arc<Link>, leases: Leases, lease: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(lease / 3);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        let due = leases.renewal_due(lease / 6);
        for chunk in due.chunks(CHUNK) {
            beat(&link, &leases, chunk, lease, &stop).await;
        }
    }
}

async fn beat(
    link: &Link,
    leases: &Leases,
    chunk: &[Lease],
    lease: Duration,
    stop: &CancellationToken,
) {
    // The lease runs from when the database sees the call, which is after it
    // was sent: counting from the send errs on the safe side.
    let sent = Instant::now();
    let outcomes = link
        .call("extend leases", stop, |client| async move {
            extend_many(&*client, chunk, lease).await
        })
        .await;
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(error) => {
            tracing::warn!(%error, jobs = chunk.len(), "cannot extend leases");
            return;
        }
    };
    for (held, (job_id, outcome)) in chunk.iter().zip(outcomes) {
        debug_assert_eq!(held.job_id, job_id);
        match outcome {
            ExtendOutcome::Extended(_) => leases.renewed(*held, sent),
            // Finished meanwhile (then it is no longer held), or truly lost.
            // The handler is told to stop the same way as for a lost lease;
            // the lease then runs out and the job ends as cancelled.
            ExtendOutcome::CancelRequested(_) => {
                if leases.lost(*held) == Lost::Active {
                    tracing::info!(
                        job_id,
                        "cancellation requested: the handler is told to stop"
                    );
                }
            }
            ExtendOutcome::LeaseLost | ExtendOutcome::NotFound => {
                if leases.lost(*held) == Lost::Active {
                    tracing::warn!(
                        job_id,
                        ?outcome,
                        "lease lost: the job may run elsewhere; its handler is told to stop"
                    );
                }
            }
        }
    }
}
