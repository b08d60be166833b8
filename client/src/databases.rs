//! Many databases, one queue: jobq's way to outgrow one server, as
//! TheSchwartz did. Each database is a complete, independent jobq; producers
//! put each job in one of them and workers grab from all of them
//! ([`crate::worker::WorkerBuilder::databases`]). A job is named by its
//! database and its id ([`JobRef`]).
//!
//! What holds per database only: dependencies (parents and children live in
//! one database), unique keys, pauses, job type settings, the event stream
//! and its cursors. Producers that need related jobs together give them the
//! same key ([`Databases::enqueue_by_key`]).

use crate::worker::connection::{connector, Connect};
use crate::{enqueue, enqueue_many, Error, NewJob, Result};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Config, NoTls, Socket};

/// A job in a set of databases: the database's name and the job's id there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobRef {
    pub database: Arc<str>,
    pub id: i64,
}

impl std::fmt::Display for JobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.database, self.id)
    }
}

/// How long a database whose connection failed is passed over by
/// [`Databases::enqueue`] before it is tried again.
const DOWN_FOR: Duration = Duration::from_secs(1);

struct Member {
    name: Arc<str>,
    connect: Connect,
    client: Mutex<Option<Arc<Client>>>,
    /// Passed over by round-robin enqueues until then.
    down_until: std::sync::Mutex<Option<Instant>>,
}

impl Member {
    fn is_down(&self) -> bool {
        self.down_until
            .lock()
            .map(|until| until.is_some_and(|t| Instant::now() < t))
            .unwrap_or(false)
    }

    fn mark_down(&self) {
        if let Ok(mut until) = self.down_until.lock() {
            *until = Some(Instant::now() + DOWN_FOR);
        }
    }
}

/// A set of jobq databases for producers: one connection per database,
/// opened on first use and again after it broke.
pub struct Databases {
    members: Vec<Member>,
    next: AtomicUsize,
}

impl Databases {
    /// The databases by name (names are how [`JobRef`]s and keys refer to
    /// them: keep them stable). Connects without TLS (see
    /// [`Databases::with_tls`]).
    pub fn new<I, S>(databases: I) -> Result<Databases>
    where
        I: IntoIterator<Item = (S, Config)>,
        S: Into<String>,
    {
        Self::with_tls(databases, NoTls)
    }

    /// [`Databases::new`] with TLS, e.g. a
    /// `postgres_native_tls::MakeTlsConnector`.
    pub fn with_tls<I, S, T>(databases: I, tls: T) -> Result<Databases>
    where
        I: IntoIterator<Item = (S, Config)>,
        S: Into<String>,
        T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
    {
        let mut members: Vec<Member> = Vec::new();
        for (name, config) in databases {
            let name: String = name.into();
            if name.is_empty() || members.iter().any(|m| *m.name == *name) {
                return Err(Error::Config(format!(
                    "database names must be non-empty and distinct: {name:?}"
                )));
            }
            members.push(Member {
                name: name.into(),
                connect: connector(config, tls.clone()),
                client: Mutex::new(None),
                down_until: std::sync::Mutex::new(None),
            });
        }
        if members.is_empty() {
            return Err(Error::Config("name at least one database".into()));
        }
        Ok(Databases {
            members,
            next: AtomicUsize::new(0),
        })
    }

    /// The names, in the order given.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| &*m.name)
    }

    /// The database that jobs with `key` go to. Rendezvous hashing: the
    /// same key always picks the same database, and adding a database moves
    /// only the keys that the new one wins (about 1 in N).
    pub fn for_key(&self, key: &str) -> &str {
        &self.members[self.index_for_key(key)].name
    }

    fn index_for_key(&self, key: &str) -> usize {
        let score = |member: &Member| {
            // Fixed keys: the choice must not change between processes or
            // releases.
            let mut hasher = SipHasher13::new_with_keys(0x6a6f_6271, 0x6b65_7973);
            hasher.write(member.name.as_bytes());
            hasher.write_u8(0xff);
            hasher.write(key.as_bytes());
            hasher.finish()
        };
        (0..self.members.len())
            .max_by_key(|&i| score(&self.members[i]))
            .unwrap_or(0)
    }

    /// A connection to the database `name`.
    pub async fn client(&self, name: &str) -> Result<Arc<Client>> {
        let member = self
            .members
            .iter()
            .find(|m| *m.name == *name)
            .ok_or_else(|| Error::Config(format!("no database named {name:?}")))?;
        Self::connect(member).await
    }

    async fn connect(member: &Member) -> Result<Arc<Client>> {
        let mut current = member.client.lock().await;
        if let Some(client) = current.as_ref() {
            if !client.is_closed() {
                return Ok(Arc::clone(client));
            }
        }
        let client = (member.connect)("produce").await?.client;
        *current = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Enqueues one job in the next database in turn, passing over one that
    /// cannot be connected to (or failed in the last second), so that a
    /// database that is down slows no enqueue. A call that broke after it
    /// was sent is not tried elsewhere, since it may have committed: its
    /// error is returned (transient, see [`Error::is_transient`]), as for a
    /// single database; retry it, with a unique key where a duplicate
    /// matters.
    pub async fn enqueue(&self, job: &NewJob) -> Result<JobRef> {
        let (database, id) = self
            .round_robin(|client| async move { enqueue(&*client, job).await })
            .await?;
        Ok(JobRef { database, id })
    }

    /// Enqueues jobs in one statement, all in the next database in turn
    /// (see [`Databases::enqueue`]).
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<(Arc<str>, Vec<i64>)> {
        self.round_robin(|client| async move { enqueue_many(&*client, jobs).await })
            .await
    }

    /// Enqueues one job in the database of `key` ([`Databases::for_key`]),
    /// so that related jobs (dependencies, one customer's work) land
    /// together. Fails if that database cannot be reached.
    pub async fn enqueue_by_key(&self, key: &str, job: &NewJob) -> Result<JobRef> {
        let member = &self.members[self.index_for_key(key)];
        let client = Self::connect(member).await?;
        let id = enqueue(&*client, job).await?;
        Ok(JobRef {
            database: Arc::clone(&member.name),
            id,
        })
    }

    /// `jq_details` of a job anywhere in the set.
    pub async fn details(&self, job: &JobRef) -> Result<serde_json::Value> {
        let client = self.client(&job.database).await?;
        crate::details(&*client, job.id).await
    }

    /// Runs `op` on the next database in turn (see [`Databases::enqueue`]);
    /// returns the database's name with the result.
    async fn round_robin<T, F, Fut>(&self, op: F) -> Result<(Arc<str>, T)>
    where
        F: Fn(Arc<Client>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let count = self.members.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        // The databases in turn, those that failed a moment ago last.
        let (up, down): (Vec<usize>, Vec<usize>) = (0..count)
            .map(|offset| (start + offset) % count)
            .partition(|&i| !self.members[i].is_down());
        let mut last_error = None;
        for i in up.into_iter().chain(down) {
            let member = &self.members[i];
            let client = match Self::connect(member).await {
                Ok(client) => client,
                Err(error) if error.is_transient() => {
                    tracing::warn!(database = %member.name, %error, "database unavailable; trying the next");
                    member.mark_down();
                    last_error = Some(error);
                    continue;
                }
                Err(error) => return Err(error),
            };
            return match op(client).await {
                Ok(value) => Ok((Arc::clone(&member.name), value)),
                // Sent, so it may have committed: trying another database
                // could enqueue the jobs twice. The caller decides (a unique
                // key resolves it, in the same database).
                Err(error) => {
                    if error.is_transient() {
                        member.mark_down();
                    }
                    Err(error)
                }
            };
        }
        Err(last_error.unwrap_or_else(|| Error::Config("no database could be tried".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::str::FromStr;

    fn set(names: &[&str]) -> Databases {
        Databases::new(names.iter().map(|name| {
            let config = Config::from_str(&format!("postgres://app@{name}/app")).expect("config");
            (name.to_string(), config)
        }))
        .expect("databases")
    }

    #[test]
    fn keys_spread_evenly_and_a_new_database_takes_only_its_share() {
        let three = set(&["east", "north", "west"]);
        let four = set(&["east", "north", "west", "south"]);
        let keys: Vec<String> = (0..6000).map(|n| format!("customer-{n}")).collect();
        let mut per_database: HashMap<&str, usize> = HashMap::new();
        let mut moved = 0;
        for key in &keys {
            let before = three.for_key(key);
            *per_database.entry(before).or_default() += 1;
            assert_eq!(
                three.for_key(key),
                before,
                "a key always picks the same database"
            );
            let after = four.for_key(key);
            if after != before {
                assert_eq!(after, "south", "a key moves only to the new database");
                moved += 1;
            }
        }
        for (database, count) in &per_database {
            assert!(
                (1600..2400).contains(count),
                "{database} got {count} of 6000 keys"
            );
        }
        assert!(
            (1200..1800).contains(&moved),
            "{moved} of 6000 keys moved to the fourth database"
        );
    }

    #[test]
    fn names_must_be_distinct_and_present() {
        let config = Config::from_str("postgres://app@h/app").expect("config");
        assert!(Databases::new([("a", config.clone()), ("a", config.clone())]).is_err());
        assert!(Databases::new([("", config)]).is_err());
        assert!(Databases::new(Vec::<(String, Config)>::new()).is_err());
    }
}
