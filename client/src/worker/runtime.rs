//! The dispatcher: grabs jobs in batches, runs up to `concurrency` handlers,
//! hands their outcomes to the completer, and shuts down gracefully.
//!
//! Grabs ask for whatever the worker can take (`concurrency + prefetch`
//! minus what it runs, has prefetched and has asked for already), so under
//! load they batch themselves. A grab goes out once the prefetched jobs plus
//! those still on their way are down to half the prefetch; up to two are in
//! flight, pipelined on the grab connection, so the next batch is already
//! being leased while handlers run the last one and the grab connection never
//! idles for a round trip. A grab that came back full is followed at once;
//! one that came back short means nothing more is due, and the next waits
//! for a wake-up or a poll tick, unless a wake-up arrived while it ran.

use super::config::{WorkerConfig, MAX_GRAB};
use super::connection::{Backoff, Link, Recovery};
use super::handler::{error_message, panic_message, BoxError, Handler, JobContext, Outcome};
use super::leases::Leases;
use super::listener::Wakeups;
use crate::lease::{grab, GrabRequest, Lease, LeasedJob};
use crate::lease_batch::{release_many, ReleaseOutcome};
use crate::Result;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio::task::{JoinError, JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long after the grace period outcomes may still be retried on a broken
/// connection before the worker gives up on them.
const FLUSH_TIME: Duration = Duration::from_secs(10);

/// Grabs in flight at once. Two keep the grab connection busy (the next one
/// is queued behind the one executing) without splitting the batches further.
const GRABS_IN_FLIGHT: usize = 2;

pub(crate) type Handlers = HashMap<String, Arc<dyn Handler>>;

struct Prefetched {
    job: LeasedJob,
    lost: CancellationToken,
}

struct Running {
    lease: Lease,
    lost: CancellationToken,
}

/// A grab sent and not yet answered.
struct InFlight {
    task: JoinHandle<Result<Vec<LeasedJob>>>,
    /// The wake-up count when it was sent, and how many jobs it asked for.
    seq: u64,
    asked: usize,
    /// Its leases start later, when the database runs it.
    sent: std::time::Instant,
}

pub(crate) struct Dispatcher {
    pub config: WorkerConfig,
    pub handlers: Arc<Handlers>,
    pub request: GrabRequest,
    pub link: Arc<Link>,
    pub leases: Leases,
    pub wakeups: Arc<Wakeups>,
    /// Shared with the worker's connections: the server answers again.
    pub recovery: Arc<Recovery>,
    pub outcomes: Sender<(Lease, Outcome)>,
    /// Cancelled when shutdown starts; handlers see it in their context.
    pub shutdown: CancellationToken,
    /// Cancelled when the grace period is over: calls stop retrying.
    pub give_up: CancellationToken,
    /// The database's name when the worker serves several.
    pub database: Option<Arc<str>>,
}

struct State {
    prefetched: VecDeque<Prefetched>,
    running: HashMap<tokio::task::Id, Running>,
    tasks: JoinSet<Result<Outcome, BoxError>>,
    /// Oldest first; on one connection they are answered in that order.
    grabs: VecDeque<InFlight>,
    /// Jobs the grabs in flight asked for, together.
    asked: usize,
    /// Whether a grab may find something.
    maybe_due: bool,
    /// After a failed grab, not before this, unless the server came back
    /// (a new [`Recovery::generation`]) since.
    grab_after: Option<(Instant, u64)>,
    grab_backoff: Backoff,
}

impl Dispatcher {
    pub async fn run(self, stop: impl Future<Output = ()>) {
        let mut state = State {
            prefetched: VecDeque::new(),
            running: HashMap::new(),
            tasks: JoinSet::new(),
            grabs: VecDeque::new(),
            asked: 0,
            maybe_due: true,
            grab_after: None,
            grab_backoff: Backoff::new(self.config.reconnect_min, self.config.reconnect_max),
        };
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            self.start_handlers(&mut state);
            self.start_grab(&mut state);
            tokio::select! {
                () = &mut stop => break,
                Some(joined) = state.tasks.join_next_with_id() => self.finished(&mut state, joined).await,
                grabbed = oldest_grab(&mut state.grabs) => {
                    self.grabbed(&mut state, grabbed);
                }
                () = self.wakeups.notified() => state.maybe_due = true,
                _ = poll.tick() => state.maybe_due = true,
                () = sleep_until(state.grab_after.map(|(at, _)| at)) => state.grab_after = None,
                () = self.recovery.announced() => self.server_back(&mut state),
            }
        }
        self.drain(state).await;
    }

    fn start_handlers(&self, state: &mut State) {
        while state.running.len() < self.config.concurrency {
            let Some(Prefetched { job, lost }) = state.prefetched.pop_front() else {
                return;
            };
            if lost.is_cancelled() {
                continue;
            }
            let Some(handler) = self.handlers.get(&job.job_type) else {
                // jq_grab only returns the types asked for. Should one slip
                // through, stop extending its lease so that it runs elsewhere.
                tracing::error!(job_id = job.id, job_type = %job.job_type, "no handler for the job type");
                self.leases.forget(job.lease());
                continue;
            };
            let handler = Arc::clone(handler);
            let lease = job.lease();
            let span = tracing::info_span!("job", id = job.id, job_type = %job.job_type, attempt = job.attempt);
            let context = JobContext::new(
                Arc::new(job),
                lost.clone(),
                self.shutdown.clone(),
                self.database.clone(),
            );
            // The handler is called inside the task, so a panic while it
            // builds its future is caught like one while it runs.
            let task = state
                .tasks
                .spawn(async move { handler.call(context).await }.instrument(span));
            state.running.insert(task.id(), Running { lease, lost });
        }
    }

    /// Another connection got through after a loss: grab now rather than
    /// at the end of the backoff.
    fn server_back(&self, state: &mut State) {
        if state.grab_after.take().is_some() {
            tracing::info!("server answers again; grabbing");
        }
        state.grab_backoff.reset();
        state.maybe_due = true;
    }

    fn start_grab(&self, state: &mut State) {
        // An announcement missed between two turns of the loop.
        if state
            .grab_after
            .is_some_and(|(_, generation)| generation != self.recovery.generation())
        {
            self.server_back(state);
        }
        // What the grabs in flight asked for counts as held: together with
        // what runs and what is prefetched it never exceeds the capacity.
        let held = state.running.len() + state.prefetched.len() + state.asked;
        let capacity = self.config.capacity();
        if state.grabs.len() >= GRABS_IN_FLIGHT
            || !state.maybe_due
            || state.grab_after.is_some()
            || self.shutdown.is_cancelled()
            || held >= capacity
            // Top the prefetch up once it is half used, not job by job; jobs
            // on their way count as prefetched already.
            || state.prefetched.len() + state.asked > self.config.prefetch / 2
        {
            return;
        }
        let asked = (capacity - held).min(MAX_GRAB);
        let mut request = self.request.clone();
        request.max_jobs = i32::try_from(asked).unwrap_or(1);
        let link = Arc::clone(&self.link);
        let busy = link.busy();
        let task = tokio::spawn(async move {
            let grabbed = link
                .once(|client| async move { grab(&*client, &request).await })
                .await;
            drop(busy);
            grabbed
        });
        state.asked += asked;
        state.grabs.push_back(InFlight {
            task,
            seq: self.wakeups.seq(),
            asked,
            sent: std::time::Instant::now(),
        });
    }

    /// Takes the answer to the oldest grab in flight.
    fn grabbed(
        &self,
        state: &mut State,
        grabbed: std::result::Result<Result<Vec<LeasedJob>>, JoinError>,
    ) {
        let Some(sent) = state.grabs.pop_front() else {
            return;
        };
        state.asked -= sent.asked;
        let jobs = match grabbed {
            Ok(Ok(jobs)) => jobs,
            Ok(Err(error)) => {
                // The other grab in flight, if any, most likely failed the
                // same way: one backoff for both.
                if state.grab_after.is_none() {
                    let delay = state.grab_backoff.next_delay();
                    tracing::warn!(%error, ?delay, "grab failed");
                    state.grab_after = Some((Instant::now() + delay, self.recovery.generation()));
                }
                state.maybe_due = true;
                return;
            }
            Err(error) => {
                tracing::error!(%error, "grab task failed");
                if state.grab_after.is_none() {
                    let delay = state.grab_backoff.next_delay();
                    state.grab_after = Some((Instant::now() + delay, self.recovery.generation()));
                }
                state.maybe_due = true;
                return;
            }
        };
        state.grab_backoff.reset();
        // Full: more may be due, grab again as soon as there is room. Short:
        // nothing more was due when it ran, unless a wake-up came since it
        // was sent.
        state.maybe_due = jobs.len() >= sent.asked || self.wakeups.seq() != sent.seq;
        // Counted from when the grab was sent, before the lease started
        // (however long it waited behind the grab ahead of it).
        for job in jobs {
            let lost = self.leases.hold(&job, sent.sent);
            state.prefetched.push_back(Prefetched { job, lost });
        }
    }

    async fn finished(
        &self,
        state: &mut State,
        joined: std::result::Result<(tokio::task::Id, Result<Outcome, BoxError>), JoinError>,
    ) {
        let (task, result) = match joined {
            Ok((task, result)) => (task, Ok(result)),
            Err(error) => (error.id(), Err(error)),
        };
        let Some(Running { lease, lost }) = state.running.remove(&task) else {
            return;
        };
        let outcome = match result {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(error)) => Outcome::retry(error_message(&*error)),
            Err(error) if error.is_panic() => {
                let message = panic_message(&*error.into_panic());
                tracing::error!(job_id = lease.job_id, %message, "handler panicked");
                Outcome::retry(format!("handler panicked: {message}"))
            }
            Err(_cancelled) => Outcome::retry_in(
                "the worker shut down before the handler finished",
                Duration::ZERO,
            ),
        };
        if lost.is_cancelled() {
            tracing::warn!(
                job_id = lease.job_id,
                "handler finished after its lease was lost; outcome dropped"
            );
            return;
        }
        self.leases.finishing(lease);
        if self.outcomes.send((lease, outcome)).await.is_err() {
            tracing::error!(
                job_id = lease.job_id,
                "the completer stopped; outcome dropped"
            );
        }
    }

    /// Stop grabbing, hand back what never started, give running handlers
    /// the grace period, then stop the rest.
    async fn drain(&self, mut state: State) {
        self.shutdown.cancel();
        let deadline = Instant::now() + self.config.grace_period;
        let give_up = self.give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline + FLUSH_TIME).await;
            give_up.cancel();
        });
        tracing::info!(
            running = state.running.len(),
            prefetched = state.prefetched.len(),
            "shutting down"
        );
        // Grabs in flight may have leased jobs already; wait for them so
        // they can be handed back too.
        while !state.grabs.is_empty() {
            let grabbed = oldest_grab(&mut state.grabs).await;
            self.grabbed(&mut state, grabbed);
        }
        self.release(std::mem::take(&mut state.prefetched)).await;

        while !state.tasks.is_empty() {
            tokio::select! {
                Some(joined) = state.tasks.join_next_with_id() => self.finished(&mut state, joined).await,
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if !state.tasks.is_empty() {
            tracing::warn!(
                handlers = state.tasks.len(),
                "grace period over; stopping the handlers still running"
            );
            state.tasks.abort_all();
            while let Some(joined) = state.tasks.join_next_with_id().await {
                self.finished(&mut state, joined).await;
            }
        }
    }

    async fn release(&self, prefetched: VecDeque<Prefetched>) {
        let leases: Vec<Lease> = prefetched
            .iter()
            .filter(|p| !p.lost.is_cancelled())
            .map(|p| p.job.lease())
            .collect();
        if leases.is_empty() {
            return;
        }
        let released = self
            .link
            .call("release", &self.give_up, |client| {
                let leases = &leases;
                async move { release_many(&*client, leases).await }
            })
            .await;
        for lease in &leases {
            self.leases.forget(*lease);
        }
        match released {
            Ok(outcomes) => {
                let back = outcomes
                    .iter()
                    .filter(|(_, outcome)| *outcome == ReleaseOutcome::Released)
                    .count();
                tracing::info!(
                    jobs = back,
                    "handed back prefetched jobs that never started"
                );
            }
            Err(error) => tracing::warn!(%error, jobs = leases.len(),
                "cannot hand back prefetched jobs; they run again once their leases run out"),
        }
    }
}

/// The answer to the oldest grab in flight (which stays in the queue for
/// [`Dispatcher::grabbed`] to take); pending while none is.
async fn oldest_grab(
    grabs: &mut VecDeque<InFlight>,
) -> std::result::Result<Result<Vec<LeasedJob>>, JoinError> {
    match grabs.front_mut() {
        Some(sent) => (&mut sent.task).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
