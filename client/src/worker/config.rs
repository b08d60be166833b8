//! How a worker runs, and who it says it is.

use crate::{Error, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt;
use std::time::Duration;

/// Settings of a [`Worker`](super::Worker); `WorkerConfig::default()` suits
/// most workers.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Handlers running at once (default 10).
    pub concurrency: usize,
    /// Jobs leased ahead of free handlers, so handlers need not wait for a
    /// grab (default: as many as `concurrency`). Prefetched jobs hold
    /// leases; at shutdown the ones that never started are handed back.
    pub prefetch: usize,
    /// Lease of each grabbed job (default 60 s). The worker extends the
    /// leases of the jobs it holds every `lease / 3`, so a live worker keeps
    /// its jobs however long they run, and a dead one loses them within one
    /// lease.
    pub lease: Duration,
    /// Grab even without a wake-up this often (default 1 s). Wake-ups only
    /// save latency; this bounds what a lost one costs.
    pub poll_interval: Duration,
    /// Only these queues; `None` means every queue (default).
    pub queues: Option<Vec<String>>,
    /// Time that running handlers get to finish after a shutdown request
    /// (default 30 s). A handler still running then is stopped and its job
    /// temp-failed, to run again elsewhere.
    pub grace_period: Duration,
    /// Completions sent in one `jq_complete_many` at most (default 500).
    pub complete_batch: usize,
    /// How long a completion may wait for others to share its statement
    /// (default 2 ms).
    pub complete_interval: Duration,
    /// First and longest wait between reconnection attempts (default
    /// 100 ms, doubling up to 1 s). The first of a worker's connections
    /// that gets through wakes the others, so after a failover the worker
    /// resumes within about `reconnect_max` of the new primary accepting
    /// writes; each attempt is one connection try (per host of a
    /// multi-host URL).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// LISTEN for wake-ups (default true); without, the worker only polls.
    pub listen: bool,
    /// Recorded as the lease holder (default [`WorkerIdentity::name`]).
    pub name: Option<String>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 10,
            prefetch: 10,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            queues: None,
            grace_period: Duration::from_secs(30),
            complete_batch: 500,
            complete_interval: Duration::from_millis(2),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(1),
            listen: true,
            name: None,
        }
    }
}

/// jq_grab leases at most this many jobs per call.
pub(crate) const MAX_GRAB: usize = 10_000;

impl WorkerConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        let problem = if self.concurrency == 0 {
            Some("concurrency must be at least 1".to_owned())
        } else if self.lease < Duration::from_millis(30) || self.lease > Duration::from_secs(86_400)
        {
            // Below that the heartbeat (every lease / 3) cannot keep up with
            // a round trip; above it the database rejects the lease.
            Some(format!(
                "lease must be between 30 ms and 1 day; got {:?}",
                self.lease
            ))
        } else if self.poll_interval.is_zero() {
            Some("poll_interval must be more than 0".to_owned())
        } else if self.complete_batch == 0 {
            Some("complete_batch must be at least 1".to_owned())
        } else if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            Some("reconnect_min must be more than 0 and at most reconnect_max".to_owned())
        } else if self.name.as_ref().is_some_and(|name| name.len() > 256) {
            Some("name must be at most 256 bytes (jq_grab's limit)".to_owned())
        } else if self.queues.as_ref().is_some_and(Vec::is_empty) {
            Some("queues must name at least one queue (None means every queue)".to_owned())
        } else {
            None
        };
        match problem {
            Some(problem) => Err(Error::Config(problem)),
            None => Ok(()),
        }
    }

    /// Jobs held at most: running plus prefetched.
    pub(crate) fn capacity(&self) -> usize {
        self.concurrency.saturating_add(self.prefetch)
    }
}

/// Who a worker process is: `hostname.pid`, and since when. Two runs of the
/// same pid (after a reboot, in containers) differ by their start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerIdentity {
    pub hostname: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
}

impl WorkerIdentity {
    pub(crate) fn of_this_process() -> Self {
        WorkerIdentity {
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            pid: std::process::id(),
            started_at: Utc::now(),
        }
    }

    /// `hostname.pid@start`, as recorded in jobs' lease holder and failure
    /// history.
    pub fn name(&self) -> String {
        format!(
            "{self}@{}",
            self.started_at.to_rfc3339_opts(SecondsFormat::Millis, true)
        )
    }
}

impl fmt::Display for WorkerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.hostname, self.pid)
    }
}
