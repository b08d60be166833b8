//! What producers hand to jobq: job types, their arguments and options.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::Duration;

/// A job type whose arguments are a serde-serialisable struct.
///
/// ```
/// #[derive(serde::Serialize)]
/// struct SendEmail { to: String }
/// impl jobq_client::JobType for SendEmail { const NAME: &'static str = "send_email"; }
/// ```
pub trait JobType: Serialize {
    /// The job type name workers grab by.
    const NAME: &'static str;
}

/// Optional settings of a job; every `None` means the database's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnqueueOptions {
    /// Queue name (default `default`).
    pub queue: Option<String>,
    /// Lower runs first (default 0).
    pub priority: Option<i16>,
    /// Not before this time.
    pub run_at: Option<DateTime<Utc>>,
    /// Not before this long after enqueue, measured on the database clock.
    /// Ignored when `run_at` is set.
    pub delay: Option<Duration>,
    /// Attempts before the job fails for good (default: the job type's setting).
    pub max_attempts: Option<i32>,
    /// At most one waiting or running job per job type and key.
    pub unique_key: Option<String>,
    /// Not after this time: a job not started by then ends as `expired`.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A job ready to be enqueued: its type, JSON arguments and options.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub job_type: String,
    pub args: Value,
    pub options: EnqueueOptions,
}

impl NewJob {
    /// A job of the given type with JSON arguments (a JSON object).
    pub fn new(job_type: impl Into<String>, args: Value) -> Self {
        NewJob {
            job_type: job_type.into(),
            args,
            options: EnqueueOptions::default(),
        }
    }

    /// A job from a typed value.
    pub fn typed<J: JobType>(job: &J) -> crate::Result<Self> {
        Ok(NewJob::new(J::NAME, serde_json::to_value(job)?))
    }

    /// The same job with other options.
    pub fn with_options(mut self, options: EnqueueOptions) -> Self {
        self.options = options;
        self
    }

    /// The job object that `jq_enqueue_many` and `jq_replace` take. A delay
    /// becomes `run_in_ms`, turned into `run_at` by the database clock in
    /// the statement that sends the batch.
    pub(crate) fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("job_type".into(), Value::from(self.job_type.clone()));
        object.insert("args".into(), self.args.clone());
        let o = &self.options;
        if let Some(queue) = &o.queue {
            object.insert("queue".into(), Value::from(queue.clone()));
        }
        if let Some(priority) = o.priority {
            object.insert("priority".into(), Value::from(priority));
        }
        if let Some(run_at) = o.run_at {
            object.insert("run_at".into(), Value::from(run_at.to_rfc3339()));
        }
        if let Some(max_attempts) = o.max_attempts {
            object.insert("max_attempts".into(), Value::from(max_attempts));
        }
        if let Some(key) = &o.unique_key {
            object.insert("unique_key".into(), Value::from(key.clone()));
        }
        if let Some(expires_at) = o.expires_at {
            object.insert("expires_at".into(), Value::from(expires_at.to_rfc3339()));
        }
        Value::Object(object)
    }

    /// Milliseconds to add to the database clock for `run_at`, when a delay
    /// applies.
    pub(crate) fn delay_ms(&self) -> Option<f64> {
        match (self.options.run_at, self.options.delay) {
            (None, Some(delay)) => Some(delay.as_secs_f64() * 1000.0),
            _ => None,
        }
    }
}
