//! Shared set-up for the integration tests: every test gets a database of its
//! own, with the extension created, on the server that `DATABASE_URL` names
//! (the test command starts a throwaway cluster and sets it).

pub mod proxy;

use futures_util::stream::{poll_fn, StreamExt};
use std::str::FromStr;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification};

/// One test's own database.
pub struct TestDb {
    pub config: Config,
    admin: Config,
    pub name: String,
}

fn server_config() -> Config {
    let url = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL is not set: run the tests with `bash tests/bin/test.sh`, \
         or point DATABASE_URL at a PostgreSQL server with jobq installed",
    );
    Config::from_str(&url).expect("DATABASE_URL is not a valid connection string")
}

/// Opens a connection and drives it in the background.
pub async fn connect(config: &Config) -> Client {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .expect("cannot connect to the test server");
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("test connection ended: {error}");
        }
    });
    client
}

impl TestDb {
    /// Creates (or re-creates) the database `jobq_t_<name>` with jobq in it.
    pub async fn new(name: &str) -> TestDb {
        let admin = server_config();
        let db_name = format!("jobq_t_{name}");
        let server = connect(&admin).await;
        // Two calls: a multi-statement string runs as one implicit transaction,
        // which DROP/CREATE DATABASE refuse.
        server
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)"))
            .await
            .expect("cannot drop the old test database");
        server
            .batch_execute(&format!("CREATE DATABASE {db_name}"))
            .await
            .expect("cannot create the test database");
        let mut config = admin.clone();
        config.dbname(&db_name);
        let db = TestDb {
            config,
            admin,
            name: db_name,
        };
        db.client()
            .await
            .batch_execute("CREATE EXTENSION jobq")
            .await
            .expect("CREATE EXTENSION jobq failed");
        db
    }

    /// A new connection to this test's database.
    pub async fn client(&self) -> Client {
        connect(&self.config).await
    }

    /// Drops the database; called at the end of a passing test (a failing
    /// one leaves it behind to look at).
    pub async fn drop_db(self) {
        connect(&self.admin)
            .await
            .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("cannot drop the test database");
    }
}

/// Counts rows for a query returning one bigint.
pub async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .expect("count query failed")
        .get(0)
}

/// A connection LISTENing on `channels`, with its notifications in a channel.
pub async fn listen(
    config: &Config,
    channels: &[&str],
) -> (Client, UnboundedReceiver<Notification>) {
    let (client, mut connection) = config
        .connect(NoTls)
        .await
        .expect("cannot connect to the test server");
    let (sender, receiver) = unbounded_channel();
    tokio::spawn(async move {
        let mut messages = poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if sender.send(notification).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    eprintln!("listening connection ended: {error}");
                    return;
                }
            }
        }
    });
    for channel in channels {
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .expect("LISTEN failed");
    }
    (client, receiver)
}

/// Every notification that arrives within `window`.
pub async fn collect_for(
    receiver: &mut UnboundedReceiver<Notification>,
    window: Duration,
) -> Vec<Notification> {
    let deadline = Instant::now() + window;
    let mut got = Vec::new();
    while let Ok(Some(notification)) =
        tokio::time::timeout_at(deadline.into(), receiver.recv()).await
    {
        got.push(notification);
    }
    got
}

/// Waits until this database's wake-up worker runs (jobq preloaded) and
/// returns its pid. The first grab in a database starts it, as it would for
/// users (CREATE EXTENSION does not: see sql/security.sql).
pub async fn wakeup_worker_pid(client: &Client) -> i32 {
    let started = Instant::now();
    let mut nudged = false;
    loop {
        let row = client
            .query_opt(
                "SELECT pid FROM jobq.jq_wakeup_workers() \
                 WHERE database_oid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .expect("jq_wakeup_workers");
        if let Some(row) = row {
            return row.get(0);
        }
        if !nudged {
            client
                .batch_execute("SELECT count(*) FROM jobq.jq_grab(ARRAY['jobq-test-no-such-type'])")
                .await
                .expect("grab to start the wake-up worker");
            nudged = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no wake-up worker: is jobq in shared_preload_libraries of the test server?"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
