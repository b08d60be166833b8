//! Helpers shared by the worker runtime tests.

use jobq_client::worker::WorkerBuilder;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// A worker running in this process until `stop` is called.
pub struct RunningWorker {
    stop: oneshot::Sender<()>,
    task: JoinHandle<jobq_client::Result<()>>,
    pub name: String,
}

impl RunningWorker {
    pub fn start(builder: WorkerBuilder) -> RunningWorker {
        let worker = builder.build().expect("worker configuration");
        let name = worker.name().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run_until(async move {
            // A dropped sender (a failed test) stops the worker too.
            stopped.await.unwrap_or_default();
        }));
        RunningWorker { stop, task, name }
    }

    /// Shuts the worker down gracefully and checks that it ended cleanly.
    pub async fn stop(self) {
        self.stop.send(()).expect("worker still running");
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("worker shut down within a minute")
            .expect("worker task did not panic")
            .expect("worker ended without error");
    }
}

/// Waits until `sql` (returning one boolean) is true; panics after `limit`,
/// a bound for correctness (the thing must happen), not a speed target.
pub async fn wait_until(client: &Client, sql: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let done: bool = client.query_one(sql, &[]).await.expect("wait query").get(0);
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not true within {limit:?}: {sql}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs of the runtime (RUST_LOG=jobq_client=debug) in failing tests' output.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "jobq_client=info".into());
    // Every test of the binary calls this; only the first call installs it
    // and the others find it installed, which is what they want.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init()
        .unwrap_or(());
}
