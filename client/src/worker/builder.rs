//! Collects a worker's connection, settings and handlers, and checks them.

use super::connection::{connector, Connect};
use super::handler::{BoxError, Handler, JobContext, Outcome, Typed};
use super::runtime::Handlers;
use super::{Target, Worker, WorkerConfig, WorkerIdentity};
use crate::job::JobType;
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Config, NoTls, Socket};

/// Collects a worker's connection, settings and handlers.
pub struct WorkerBuilder {
    connect: Connect,
    /// Set by [`WorkerBuilder::databases`]: serve these instead.
    databases: Vec<(Arc<str>, Connect)>,
    config: WorkerConfig,
    handlers: Handlers,
}

impl WorkerBuilder {
    pub(crate) fn new(connect: Connect) -> Self {
        WorkerBuilder {
            connect,
            databases: Vec::new(),
            config: WorkerConfig::default(),
            handlers: Handlers::new(),
        }
    }

    /// Serves several jobq databases, by name (see [`crate::Databases`]),
    /// instead of the one given to [`Worker::builder`]: each with its own
    /// connections, wake-ups, backoff and `concurrency` handlers, so that
    /// every database gets its share and one that is down slows nothing
    /// else. Handlers see the job's database in
    /// [`JobContext::database`]. Connects without TLS (see
    /// [`WorkerBuilder::databases_tls`]).
    pub fn databases<I, S>(self, databases: I) -> Self
    where
        I: IntoIterator<Item = (S, Config)>,
        S: Into<String>,
    {
        self.databases_tls(databases, NoTls)
    }

    /// [`WorkerBuilder::databases`] with TLS.
    pub fn databases_tls<I, S, T>(mut self, databases: I, tls: T) -> Self
    where
        I: IntoIterator<Item = (S, Config)>,
        S: Into<String>,
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        self.databases = databases
            .into_iter()
            .map(|(name, config)| (Arc::from(name.into()), connector(config, tls.clone())))
            .collect();
        self
    }

    /// Connects with TLS, e.g. a `postgres_native_tls::MakeTlsConnector`.
    pub fn tls<T>(mut self, config: Config, tls: T) -> Self
    where
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        self.connect = connector(config, tls);
        self
    }

    /// Replaces every setting at once.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    pub fn concurrency(mut self, handlers: usize) -> Self {
        self.config.concurrency = handlers;
        self
    }

    pub fn prefetch(mut self, jobs: usize) -> Self {
        self.config.prefetch = jobs;
        self
    }

    pub fn lease(mut self, lease: Duration) -> Self {
        self.config.lease = lease;
        self
    }

    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.config.grace_period = grace;
        self
    }

    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.config.queues = Some(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Recorded as the lease holder instead of `hostname.pid@start`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.config.name = Some(name.into());
        self
    }

    /// Runs jobs of `job_type` with an async closure; a later registration
    /// for the same type replaces an earlier one.
    pub fn handler<F, Fut, E>(self, job_type: impl Into<String>, handler: F) -> Self
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Outcome, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.register(job_type, handler)
    }

    /// Runs jobs of `job_type` with any [`Handler`], e.g. a struct that holds
    /// its own resources.
    pub fn register<H: Handler>(mut self, job_type: impl Into<String>, handler: H) -> Self {
        self.handlers.insert(job_type.into(), Arc::new(handler));
        self
    }

    /// Runs jobs of `J::NAME` with `handler`, given the arguments as a `J`.
    /// A job whose arguments do not fit `J` fails for good.
    pub fn typed_handler<J, F, Fut, E>(self, handler: F) -> Self
    where
        J: JobType + DeserializeOwned + Send + 'static,
        F: Fn(J, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<Outcome, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        self.register(J::NAME, Typed::<J, F>::new(handler))
    }

    pub fn build(self) -> Result<Worker> {
        self.config.validate()?;
        if self.handlers.is_empty() {
            return Err(Error::Config("register at least one handler".into()));
        }
        let identity = WorkerIdentity::of_this_process();
        let name = match &self.config.name {
            Some(name) => name.clone(),
            // jq_grab refuses worker names over 256 characters; a long host
            // name must not stop the worker.
            None => identity.name().chars().take(256).collect(),
        };
        let mut names: Vec<&str> = self.databases.iter().map(|(name, _)| &**name).collect();
        names.sort_unstable();
        if names.iter().any(|name| name.is_empty()) || names.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Config(
                "database names must be non-empty and distinct".into(),
            ));
        }
        let targets = if self.databases.is_empty() {
            vec![Target {
                database: None,
                connect: self.connect,
            }]
        } else {
            self.databases
                .into_iter()
                .map(|(database, connect)| Target {
                    database: Some(database),
                    connect,
                })
                .collect()
        };
        Ok(Worker {
            targets,
            config: self.config,
            handlers: self.handlers,
            identity,
            name,
        })
    }
}
