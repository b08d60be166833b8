//! Connections that come back: each role of the worker (grab, complete,
//! listen) has a [`Link`] that reconnects after the connection broke, and
//! retries transient failures with a growing delay.

use crate::{Error, Result};
use futures_util::future::BoxFuture;
use futures_util::stream::{poll_fn, StreamExt};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::{Mutex, Notify};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, Client, Config, Notification, Socket};
use tokio_util::sync::CancellationToken;

/// A new connection: the client, and the notifications it receives (only a
/// connection that LISTENs gets any).
pub(crate) struct Connected {
    pub client: Arc<Client>,
    pub notifications: UnboundedReceiver<Notification>,
}

/// Opens a connection for a role; the TLS type is erased here so the rest of
/// the worker is not generic over it.
pub(crate) type Connect =
    Arc<dyn Fn(&'static str) -> BoxFuture<'static, Result<Connected>> + Send + Sync>;

pub(crate) fn connector<T>(config: Config, tls: T) -> Connect
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    Arc::new(move |role: &'static str| {
        let mut config = config.clone();
        // Lets operators (and tests) tell the worker's connections apart in
        // pg_stat_activity.
        let application = match config.get_application_name() {
            Some(name) => format!("{name} {role}"),
            None => format!("jobq {role}"),
        };
        config.application_name(&application);
        let tls = tls.clone();
        Box::pin(async move {
            let (client, mut connection) = config.connect(tls).await?;
            let (sender, notifications) = unbounded_channel();
            tokio::spawn(async move {
                let mut messages = poll_fn(move |cx| connection.poll_message(cx));
                while let Some(message) = messages.next().await {
                    match message {
                        Ok(AsyncMessage::Notification(notification)) => {
                            if sender.send(notification).is_err() {
                                tracing::debug!(role, "notification after its receiver left");
                            }
                        }
                        Ok(AsyncMessage::Notice(notice)) => {
                            tracing::debug!(role, %notice, "server notice");
                        }
                        Ok(_) => {}
                        Err(error) => {
                            let error = crate::error::describe(&error);
                            tracing::warn!(role, %error, "database connection ended");
                            return;
                        }
                    }
                }
            });
            Ok(Connected {
                client: Arc::new(client),
                notifications,
            })
        })
    })
}

/// Delays between attempts: doubling from `min` up to `max`, each shortened
/// by up to a quarter at random so that many workers that lost the same
/// server do not all come back at the same instant.
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        let random = uuid::Uuid::new_v4().as_u128() as u16;
        delay.mul_f64(1.0 - 0.25 * f64::from(random) / f64::from(u16::MAX))
    }

    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Shared by every connection of one worker: announces that the server
/// answers again after a connection was lost, so that the others, waiting
/// out their backoff, try at once. After a failover the first connection
/// that reaches the new primary brings the rest along, instead of each
/// finding out on its own, up to `reconnect_max` later.
#[derive(Default)]
pub(crate) struct Recovery {
    announced: Notify,
    generation: AtomicU64,
}

impl Recovery {
    pub fn announce(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.announced.notify_waiters();
    }

    /// Resolves at the next announcement.
    pub async fn announced(&self) {
        self.announced.notified().await;
    }

    /// Counts announcements, for waits that cannot hold a future across
    /// them: a change means the server came back since.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

/// One role's connection, opened on first use and again after it broke.
///
/// Calls made concurrently on it are pipelined (tokio-postgres sends each
/// as soon as it is issued; the server runs them one after the other, each
/// in its own transaction). [`Link::busy`] lets the callers that care count
/// what they have queued on it.
pub(crate) struct Link {
    connect: Connect,
    role: &'static str,
    current: Mutex<Option<Arc<Client>>>,
    reconnect_min: Duration,
    reconnect_max: Duration,
    queued: Arc<AtomicUsize>,
    recovery: Arc<Recovery>,
    /// The connection broke (or a call on it failed transiently) and no new
    /// one has been opened since.
    lost: AtomicBool,
}

/// Counts one statement as queued on a [`Link`] until dropped.
pub(crate) struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Link {
    pub fn new(
        connect: Connect,
        role: &'static str,
        reconnect_min: Duration,
        reconnect_max: Duration,
        recovery: Arc<Recovery>,
    ) -> Self {
        Link {
            connect,
            role,
            current: Mutex::new(None),
            reconnect_min,
            reconnect_max,
            queued: Arc::new(AtomicUsize::new(0)),
            recovery,
            lost: AtomicBool::new(false),
        }
    }

    /// Counts a statement about to be sent until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.queued.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(&self.queued))
    }

    /// Statements counted by [`Link::busy`] now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// The open connection, or a new one (one attempt).
    pub async fn client(&self) -> Result<Arc<Client>> {
        let mut current = self.current.lock().await;
        if let Some(client) = current.as_ref() {
            if !client.is_closed() {
                return Ok(Arc::clone(client));
            }
            tracing::warn!(role = self.role, "database connection lost; reconnecting");
            self.lost.store(true, Ordering::SeqCst);
        }
        let connected = (self.connect)(self.role).await?;
        *current = Some(Arc::clone(&connected.client));
        if self.lost.swap(false, Ordering::SeqCst) {
            tracing::info!(role = self.role, "database connection back");
            self.recovery.announce();
        }
        Ok(connected.client)
    }

    /// Runs `op` once on the connection; a transient failure drops the
    /// connection so that the next call opens a fresh one.
    pub async fn once<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let client = self.client().await?;
        let result = op(Arc::clone(&client)).await;
        if result.as_ref().is_err_and(Error::is_transient) {
            let mut current = self.current.lock().await;
            if current
                .as_ref()
                .is_some_and(|open| Arc::ptr_eq(open, &client))
            {
                *current = None;
                self.lost.store(true, Ordering::SeqCst);
            }
        }
        result
    }

    /// Runs `op` until it succeeds or fails for a reason other than the
    /// connection, reconnecting with backoff in between; gives up (returning
    /// the last error) once `give_up` is cancelled. Only for calls that are
    /// safe to repeat: the lease calls are, because a repeat of one that
    /// already committed is fenced off as a lost lease.
    pub async fn call<T, F, Fut>(&self, what: &str, give_up: &CancellationToken, op: F) -> Result<T>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut backoff = Backoff::new(self.reconnect_min, self.reconnect_max);
        loop {
            match self.once(&op).await {
                Err(error) if error.is_transient() && !give_up.is_cancelled() => {
                    let delay = backoff.next_delay();
                    tracing::warn!(role = self.role, what, %error, ?delay, "database call failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.recovery.announced() => backoff.reset(),
                        () = give_up.cancelled() => return Err(error),
                    }
                }
                result => return result,
            }
        }
    }
}
