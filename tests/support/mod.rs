//! Shared set-up for the integration tests: every test gets a database of its
//! own, with the extension created, on the server that `DATABASE_URL` names
//! (the test command starts a throwaway cluster and sets it).

use std::str::FromStr;
use tokio_postgres::{Client, Config, NoTls};

/// One test's own database.
pub struct TestDb {
    pub config: Config,
    admin: Config,
    name: String,
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
