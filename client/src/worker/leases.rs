//! The leases a worker holds: from grab until the job's outcome is recorded
//! (or the job is handed back). The heartbeat extends what is here; a lease
//! the database reports lost is cancelled here, which its handler sees.

use crate::lease::{Lease, LeasedJob};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Held {
    token: Uuid,
    lost: CancellationToken,
    /// When the last grab or extension that set the lease was sent.
    renewed: Instant,
    /// The handler is done and its outcome is on its way to the database.
    finishing: bool,
}

/// What a lease the database reported lost was doing here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// No longer held: its outcome was recorded meanwhile.
    NotHeld,
    /// Its outcome was being recorded, which is why the lease ended (or it
    /// ran out first, which the recording will report).
    Finishing,
    /// Waiting for a handler or being handled.
    Active,
}

#[derive(Clone, Default)]
pub(crate) struct Leases(Arc<Mutex<HashMap<i64, Held>>>);

impl Leases {
    fn map(&self) -> MutexGuard<'_, HashMap<i64, Held>> {
        // A panic elsewhere while holding the lock leaves the map consistent:
        // every operation here is a single insert, remove or read.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts tracking a freshly grabbed job; the token is cancelled if the
    /// lease is lost.
    pub fn hold(&self, job: &LeasedJob, grabbed: Instant) -> CancellationToken {
        let lost = CancellationToken::new();
        self.map().insert(
            job.id,
            Held {
                token: job.lease_token,
                lost: lost.clone(),
                renewed: grabbed,
                finishing: false,
            },
        );
        lost
    }

    /// Stops tracking a lease whose job was finished or handed back.
    pub fn forget(&self, lease: Lease) {
        let mut map = self.map();
        if map
            .get(&lease.job_id)
            .is_some_and(|h| h.token == lease.token)
        {
            map.remove(&lease.job_id);
        }
    }

    /// Leases last renewed longer than `age` ago.
    pub fn renewal_due(&self, age: Duration) -> Vec<Lease> {
        let now = Instant::now();
        self.map()
            .iter()
            .filter(|(_, held)| now.duration_since(held.renewed) >= age)
            .map(|(&job_id, held)| Lease {
                job_id,
                token: held.token,
            })
            .collect()
    }

    pub fn renewed(&self, lease: Lease, at: Instant) {
        if let Some(held) = self.map().get_mut(&lease.job_id) {
            if held.token == lease.token {
                held.renewed = at;
            }
        }
    }

    /// The handler is done; the lease stays held (and extended) until its
    /// outcome is recorded.
    pub fn finishing(&self, lease: Lease) {
        if let Some(held) = self.map().get_mut(&lease.job_id) {
            if held.token == lease.token {
                held.finishing = true;
            }
        }
    }

    /// Marks the lease lost (cancelling its token) and stops tracking it.
    pub fn lost(&self, lease: Lease) -> Lost {
        let mut map = self.map();
        match map.get(&lease.job_id) {
            Some(held) if held.token == lease.token => {
                held.lost.cancel();
                let finishing = held.finishing;
                map.remove(&lease.job_id);
                if finishing {
                    Lost::Finishing
                } else {
                    Lost::Active
                }
            }
            _ => Lost::NotHeld,
        }
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }
}
