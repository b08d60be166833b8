//! What a handler is given (a [`JobContext`]) and what it returns (an
//! [`Outcome`]), and the [`Handler`] trait that async closures implement.

use crate::job::{JobType, NewJob};
use crate::lease::LeasedJob;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Any error a handler returns; its message (with its sources) becomes the
/// temp_fail message.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The future a [`Handler`] returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Outcome, BoxError>> + Send>>;

/// How a job ended, as far as its handler is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `jq_complete`, keeping the optional result.
    Complete(Option<Value>),
    /// `jq_temp_fail`: try again after `delay`, or after the job type's
    /// backoff when `None`; fails for good once attempts are used up.
    Retry {
        message: String,
        delay: Option<Duration>,
    },
    /// `jq_perm_fail`: no further attempts.
    Fail(String),
    /// `jq_replace`: the job ends and these jobs exist, atomically.
    Replace(Vec<NewJob>),
}

impl Outcome {
    pub fn complete() -> Self {
        Outcome::Complete(None)
    }

    pub fn complete_with(result: Value) -> Self {
        Outcome::Complete(Some(result))
    }

    /// Retry after the job type's backoff.
    pub fn retry(message: impl Into<String>) -> Self {
        Outcome::Retry {
            message: message.into(),
            delay: None,
        }
    }

    /// Retry after `delay`.
    pub fn retry_in(message: impl Into<String>, delay: Duration) -> Self {
        Outcome::Retry {
            message: message.into(),
            delay: Some(delay),
        }
    }

    pub fn fail(message: impl Into<String>) -> Self {
        Outcome::Fail(message.into())
    }

    pub fn replace(jobs: Vec<NewJob>) -> Self {
        Outcome::Replace(jobs)
    }
}

/// One leased job as its handler sees it, with the signals that tell the
/// handler to stop early.
#[derive(Debug, Clone)]
pub struct JobContext {
    job: Arc<LeasedJob>,
    lease_lost: CancellationToken,
    shutdown: CancellationToken,
    database: Option<Arc<str>>,
}

impl JobContext {
    pub(crate) fn new(
        job: Arc<LeasedJob>,
        lease_lost: CancellationToken,
        shutdown: CancellationToken,
        database: Option<Arc<str>>,
    ) -> Self {
        JobContext {
            job,
            lease_lost,
            shutdown,
            database,
        }
    }

    pub fn job(&self) -> &LeasedJob {
        &self.job
    }

    /// The name of the job's database when the worker serves several
    /// ([`super::WorkerBuilder::databases`]); `None` otherwise.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// The job as (database, id), when the worker serves several databases.
    pub fn job_ref(&self) -> Option<crate::JobRef> {
        self.database.as_ref().map(|database| crate::JobRef {
            database: Arc::clone(database),
            id: self.job.id,
        })
    }

    /// The job's arguments as `T`.
    pub fn args<T: DeserializeOwned>(&self) -> crate::Result<T> {
        Ok(T::deserialize(&self.job.args)?)
    }

    /// True once the worker knows the lease is gone (it ran out, e.g. while
    /// the database was unreachable): the job may already run elsewhere and
    /// whatever this handler reports will be rejected, so it should stop.
    pub fn is_lease_lost(&self) -> bool {
        self.lease_lost.is_cancelled()
    }

    /// Resolves when the lease is lost; for `tokio::select!` in long handlers.
    pub fn lease_lost(&self) -> WaitForCancellationFuture<'_> {
        self.lease_lost.cancelled()
    }

    /// True once the worker is shutting down. Handlers may finish (within
    /// the grace period) or return early, e.g. `Outcome::retry_in(.., 0)`.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Resolves when the worker starts shutting down.
    pub fn shutting_down(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }
}

/// Runs jobs of one type. Async closures `Fn(JobContext) -> impl Future<Output
/// = Result<Outcome, E>>` implement it, for any `E` that converts into a
/// [`BoxError`] (`String`, `&str`, any `std::error::Error`, `anyhow::Error`).
pub trait Handler: Send + Sync + 'static {
    fn call(&self, job: JobContext) -> HandlerFuture;
}

impl<F, Fut, E> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn call(&self, job: JobContext) -> HandlerFuture {
        let future = self(job);
        Box::pin(async move { future.await.map_err(Into::into) })
    }
}

/// A handler of typed arguments: deserializes them, then calls `F`.
pub(crate) struct Typed<J, F> {
    handler: F,
    _job: std::marker::PhantomData<fn() -> J>,
}

impl<J, F> Typed<J, F> {
    pub(crate) fn new(handler: F) -> Self {
        Typed {
            handler,
            _job: std::marker::PhantomData,
        }
    }
}

impl<J, F, Fut, E> Handler for Typed<J, F>
where
    J: JobType + DeserializeOwned + Send + 'static,
    F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn call(&self, job: JobContext) -> HandlerFuture {
        match job.args::<J>() {
            Ok(args) => {
                let future = (self.handler)(args, job);
                Box::pin(async move { future.await.map_err(Into::into) })
            }
            // Retrying cannot make the arguments fit the type.
            Err(error) => {
                let message = format!("arguments do not fit job type {}: {error}", J::NAME);
                Box::pin(async move { Ok(Outcome::Fail(message)) })
            }
        }
    }
}

/// An error's message followed by those of its sources, so that a wrapped
/// cause (e.g. the I/O error under a request error) reaches the failure history.
pub(crate) fn error_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The message a panic was raised with (`panic!` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
