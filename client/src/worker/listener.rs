//! LISTEN jobq_wakeup on a connection of its own, and wake the dispatcher
//! for wake-ups about this worker's queues and job types. After the
//! connection is lost it reconnects, LISTENs again, and then wakes the
//! dispatcher once: whatever was announced while nobody listened is only
//! found by a grab.

use super::connection::{Backoff, Connect, Recovery};
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(crate) const CHANNEL: &str = "jobq_wakeup";

/// Wake-up signals for the dispatcher. The sequence number lets a grab that
/// found nothing tell whether a wake-up arrived while it ran (and so may
/// have been missed by it).
#[derive(Default)]
pub(crate) struct Wakeups {
    seq: AtomicU64,
    notify: Notify,
}

impl Wakeups {
    pub fn wake(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        // Keeps a permit when the dispatcher is busy, so no wake-up is lost.
        self.notify.notify_one();
    }

    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    pub async fn notified(&self) {
        self.notify.notified().await;
    }
}

/// Which wake-ups concern this worker.
pub(crate) struct Filter {
    pub job_types: HashSet<String>,
    pub queues: Option<HashSet<String>>,
}

#[derive(Deserialize)]
struct Payload {
    queue: String,
    job_type: String,
}

impl Filter {
    fn matches(&self, payload: &str) -> bool {
        // A payload this version does not understand may still mean work.
        let Ok(payload) = serde_json::from_str::<Payload>(payload) else {
            return true;
        };
        let queue_ok = payload.queue == "*"
            || self
                .queues
                .as_ref()
                .is_none_or(|queues| queues.contains(&payload.queue));
        let type_ok = payload.job_type == "*" || self.job_types.contains(&payload.job_type);
        queue_ok && type_ok
    }
}

pub(crate) async fn run(
    connect: Connect,
    filter: Filter,
    wakeups: Arc<Wakeups>,
    reconnect: (Duration, Duration),
    recovery: Arc<Recovery>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(reconnect.0, reconnect.1);
    let mut connected_before = false;
    loop {
        let listening = async {
            let connected = connect("listen").await?;
            connected
                .client
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .await?;
            Ok::<_, crate::Error>(connected)
        };
        let connected = tokio::select! {
            connected = listening => connected,
            () = stop.cancelled() => return,
        };
        match connected {
            Ok(mut connected) => {
                if connected_before {
                    tracing::info!("listening for wake-ups again");
                    recovery.announce();
                }
                connected_before = true;
                backoff.reset();
                // Poll once now that nothing can be missed any more.
                wakeups.wake();
                loop {
                    tokio::select! {
                        notification = connected.notifications.recv() => match notification {
                            Some(n) if filter.matches(n.payload()) => wakeups.wake(),
                            Some(_) => {}
                            None => break,
                        },
                        () = stop.cancelled() => return,
                    }
                }
                tracing::warn!("wake-up connection lost; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "cannot LISTEN for wake-ups"),
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = recovery.announced() => backoff.reset(),
            () = stop.cancelled() => return,
        }
    }
}
