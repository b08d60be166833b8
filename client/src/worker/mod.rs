//! The worker runtime: register a handler per job type, then [`Worker::run`].
//!
//! ```no_run
//! use jobq_client::worker::{JobContext, Outcome, Worker};
//!
//! # async fn example() -> jobq_client::Result<()> {
//! let config: tokio_postgres::Config = "postgres://worker@localhost/app".parse()?;
//! Worker::builder(config)
//!     .concurrency(16)
//!     .handler("send_email", |job: JobContext| async move {
//!         let to = job.job().args["to"].as_str().unwrap_or_default().to_owned();
//!         // ... send it; an Err(e) is a temp_fail with e's message.
//!         Ok::<_, std::io::Error>(Outcome::complete_with(serde_json::json!({ "to": to })))
//!     })
//!     .build()?
//!     .run() // until SIGTERM or ctrl-c
//!     .await
//! # }
//! ```
//!
//! Inside, one task grabs (in batches, up to `concurrency + prefetch` jobs
//! held, the next batch already on its way while handlers run) on the grab
//! connection; one records outcomes (completions batched into one
//! statement) on the complete connection, and on the grab connection too
//! when that has less queued; one extends the leases of held jobs on the
//! complete connection; and one LISTENs for wake-ups on a third. Calls on a
//! connection are pipelined rather than waiting for each other, and each
//! connection reconnects after it was lost.

mod builder;
mod completer;
mod config;
pub(crate) mod connection;
mod handler;
mod heartbeat;
mod leases;
mod listener;
mod runtime;

pub use builder::WorkerBuilder;
pub use config::{WorkerConfig, WorkerIdentity};
pub use handler::{BoxError, Handler, HandlerFuture, JobContext, Outcome};

use crate::lease::GrabRequest;
use crate::{Error, Result};
use completer::Completer;
use connection::{connector, Connect, Link, Recovery};
use leases::Leases;
use listener::{Filter, Wakeups};
use runtime::{Dispatcher, Handlers};
use std::future::Future;
use std::sync::Arc;
use tokio_postgres::{Config, NoTls};
use tokio_util::sync::CancellationToken;

/// A configured worker; build one with [`Worker::builder`].
pub struct Worker {
    targets: Vec<Target>,
    config: WorkerConfig,
    handlers: Handlers,
    identity: WorkerIdentity,
    name: String,
}

impl Worker {
    /// A worker that connects with `config`, without TLS (see
    /// [`WorkerBuilder::tls`]).
    pub fn builder(config: Config) -> WorkerBuilder {
        WorkerBuilder::new(connector(config, NoTls))
    }

    pub fn identity(&self) -> &WorkerIdentity {
        &self.identity
    }

    /// Recorded as the holder of this worker's leases.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs until SIGTERM or ctrl-c (SIGINT), then shuts down gracefully.
    pub async fn run(self) -> Result<()> {
        let signals = shutdown_signal()?;
        self.run_until(signals).await
    }

    /// Runs until `stop` resolves, then shuts down gracefully: no more grabs,
    /// prefetched jobs that never started are handed back (grabbable at once),
    /// running handlers get the grace period, and every outcome is recorded
    /// before this returns.
    ///
    /// With one database it fails only at start, when the database cannot
    /// be reached; later connection losses are retried. With several
    /// ([`WorkerBuilder::databases`]) it serves each on its own: connections,
    /// wake-ups, backoff and handlers (`concurrency` each), so that one
    /// database that is down, also at start, slows nothing else.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<()> {
        let Worker {
            targets,
            config,
            handlers,
            name,
            ..
        } = self;
        if targets.len() == 1 {
            let target = targets
                .into_iter()
                .next()
                .ok_or_else(|| Error::Config("a worker needs a database".into()))?;
            return run_database(target, config, handlers, name, true, stop).await;
        }
        let stopping = CancellationToken::new();
        let runs = targets.into_iter().map(|target| {
            run_database(
                target,
                config.clone(),
                handlers.clone(),
                name.clone(),
                false,
                stopping.clone().cancelled_owned(),
            )
        });
        let all = futures_util::future::join_all(runs);
        tokio::pin!(all);
        tokio::pin!(stop);
        let results = tokio::select! {
            results = &mut all => results,
            () = &mut stop => {
                stopping.cancel();
                all.await
            }
        };
        results.into_iter().collect()
    }
}

/// One database a worker serves: its name when the worker serves several
/// (handlers see it in [`JobContext::database`]), and how to connect.
pub(crate) struct Target {
    pub database: Option<Arc<str>>,
    pub connect: Connect,
}

/// The whole runtime for one database.
async fn run_database(
    target: Target,
    config: WorkerConfig,
    handlers: Handlers,
    name: String,
    fail_fast: bool,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let Target { database, connect } = target;
    let db = database.as_deref().unwrap_or("-").to_owned();
    let reconnect = (config.reconnect_min, config.reconnect_max);
    let recovery = Arc::new(Recovery::default());
    let grab_link = Arc::new(Link::new(
        Arc::clone(&connect),
        "grab",
        reconnect.0,
        reconnect.1,
        Arc::clone(&recovery),
    ));
    let complete_link = Arc::new(Link::new(
        Arc::clone(&connect),
        "complete",
        reconnect.0,
        reconnect.1,
        Arc::clone(&recovery),
    ));
    // A wrong URL or password should fail here, not be retried forever;
    // serving several databases, one that is down must not stop the rest.
    for link in [&grab_link, &complete_link] {
        match link.client().await {
            Ok(_) => {}
            Err(error) if fail_fast => return Err(error),
            Err(error) => {
                tracing::warn!(database = %db, %error, "database unreachable at start; retrying")
            }
        }
    }
    tracing::info!(worker = %name, database = %db, job_types = ?handlers.keys().collect::<Vec<_>>(),
            concurrency = config.concurrency, "worker started");

    let leases = Leases::default();
    let wakeups = Arc::new(Wakeups::default());
    let background = CancellationToken::new();
    let give_up = CancellationToken::new();
    let (outcomes, outcomes_rx) =
        tokio::sync::mpsc::channel(config.capacity() * 2 + config.complete_batch);

    let listener = config.listen.then(|| {
        let filter = Filter {
            job_types: handlers.keys().cloned().collect(),
            queues: config.queues.as_ref().map(|q| q.iter().cloned().collect()),
        };
        tokio::spawn(listener::run(
            Arc::clone(&connect),
            filter,
            Arc::clone(&wakeups),
            reconnect,
            Arc::clone(&recovery),
            background.clone(),
        ))
    });
    let heartbeat = tokio::spawn(heartbeat::run(
        Arc::clone(&complete_link),
        leases.clone(),
        config.lease,
        background.clone(),
    ));
    let completer = tokio::spawn(
        Completer {
            link: Arc::clone(&complete_link),
            spare: Arc::clone(&grab_link),
            leases: leases.clone(),
            batch: config.complete_batch,
            interval: config.complete_interval,
            give_up: give_up.clone(),
        }
        .run(outcomes_rx),
    );

    let request = GrabRequest {
        job_types: Some(handlers.keys().cloned().collect()),
        queues: config.queues.clone(),
        search: None,
        lease: config.lease,
        max_jobs: 1,
        worker: Some(name.clone()),
        // Each grab is a statement of its own: a crash that undoes one
        // only makes its jobs run again, and enqueue-to-start is a disk
        // flush shorter.
        durable: false,
    };
    Dispatcher {
        config,
        handlers: Arc::new(handlers),
        request,
        link: grab_link,
        leases: leases.clone(),
        wakeups,
        recovery,
        outcomes,
        shutdown: CancellationToken::new(),
        give_up,
        database,
    }
    .run(stop)
    .await;

    // The dispatcher (and with it the outcome sender) is gone: the
    // completer records what is left and stops.
    join("completer", completer).await;
    background.cancel();
    join("heartbeat", heartbeat).await;
    if let Some(listener) = listener {
        join("listener", listener).await;
    }
    tracing::info!(worker = %name, database = %db, unrecorded = leases.len(), "worker stopped");
    Ok(())
}

async fn join(what: &str, task: tokio::task::JoinHandle<()>) {
    if let Err(error) = task.await {
        tracing::error!(task = what, %error, "worker task failed");
    }
}

/// Resolves at SIGTERM or ctrl-c. The handlers are installed before it is
/// awaited, so a signal that arrives early is not lost.
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Config(format!("cannot handle SIGTERM: {e}")))?;
    Ok(async move {
        #[cfg(unix)]
        let terminated = terminate.recv();
        #[cfg(not(unix))]
        let terminated = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = terminated => tracing::info!("SIGTERM received"),
            result = tokio::signal::ctrl_c() => match result {
                Ok(()) => tracing::info!("interrupt received"),
                Err(error) => {
                    tracing::error!(%error, "cannot wait for ctrl-c; waiting for SIGTERM only");
                    std::future::pending::<()>().await;
                }
            },
        }
    })
}
