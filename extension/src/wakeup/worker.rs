//! The wake-up worker: one background worker per database that uses jobq.
//!
//! Started by the launcher when the server begins to accept writes (see
//! [`super::launcher`]) and on demand by `jobq._ensure_wakeup_worker()`,
//! which every grab calls; never restarted by the postmaster: if it dies,
//! the next grab starts a new one. Each tick it sends the signals that
//! committed producers posted, and announces jobs that fell due by time
//! (scheduled run_at, retry delays, expired leases); the SQL of a tick is
//! `jobq._wakeup_tick`.

use super::board::{self, Channel};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::ffi::{c_char, CStr, CString};
use std::time::{Duration, Instant};

/// How long a new worker waits for CREATE EXTENSION to commit.
const EXTENSION_WAIT: Duration = Duration::from_secs(10);
/// Floor between ticks that send wake-ups: a wake-up goes out at once after a
/// quiet spell, and within this much of the last tick during a stream of
/// enqueues, so a busy worker runs at most a thousand small transactions a
/// second, not one per commit.
const MIN_WAKEUP_INTERVAL: Duration = Duration::from_millis(1);
/// Floor between ticks caused only by "new events" signals. Every grab and
/// completion writes events, so under load they arrive with nearly every
/// commit; they ride along with the next wake-up tick, or go out on their own
/// at most this often, and never make a wake-up wait. After a quiet spell the
/// first one goes out at once; during a drain this bounds the worker's own
/// commits to 20 a second (at 10 ms they were a fifth of the drain's commits).
const MIN_EVENTS_INTERVAL: Duration = Duration::from_millis(50);
/// Floor between scans for due jobs that producers asked for; the regular
/// scans follow the next known due time, at most a second apart.
const MIN_RESCAN_INTERVAL: Duration = Duration::from_millis(20);

const WORKER_FUNCTION: &str = "jobq_wakeup_worker_main";

/// Starts this database's wake-up worker unless one is alive. Returns true
/// when a worker is alive or was started; false without preloading.
#[pg_extern(volatile, strict, parallel_unsafe, name = "_ensure_wakeup_worker")]
#[search_path(jobq, pg_catalog, pg_temp)]
fn ensure_wakeup_worker() -> bool {
    if !board::is_preloaded() {
        return false;
    }
    // SAFETY: MyDatabaseId is set once at connection start.
    let database = unsafe { pg_sys::MyDatabaseId };
    start_wakeup_worker(database, false)
}

/// Set in a worker's argument when the launcher started it, not a grab: the
/// database need not have jobq, and the worker then leaves at once instead
/// of waiting for a CREATE EXTENSION to commit.
const LAUNCHED: u64 = 1 << 32;

/// Starts the wake-up worker of `database` unless one is alive. Returns true
/// when one is alive or was started.
pub(crate) fn start_wakeup_worker(database: pg_sys::Oid, launched: bool) -> bool {
    if board::worker_of(database.to_u32()).is_some() {
        return true;
    }
    let argument = u64::from(database.to_u32()) | if launched { LAUNCHED } else { 0 };
    let registered =
        BackgroundWorkerBuilder::new(&format!("jobq wakeup worker for database {database}"))
            .set_type("jobq wakeup worker")
            .set_library("jobq")
            .set_function(WORKER_FUNCTION)
            .set_argument(Some(pg_sys::Datum::from(argument)))
            .enable_spi_access()
            .set_restart_time(None)
            .load_dynamic()
            .is_ok();
    if !registered {
        // Producers fall back to NOTIFY meanwhile; the next grab tries again.
        log!("jobq: cannot start a wake-up worker for database {database}: raise max_worker_processes");
    }
    registered
}

/// Live wake-up workers, for operators: which database each serves.
#[pg_extern(volatile, strict, parallel_unsafe)]
#[search_path(jobq, pg_catalog, pg_temp)]
fn jq_wakeup_workers() -> TableIterator<'static, (name!(database_oid, i64), name!(pid, i32))> {
    let rows: Vec<(i64, i32)> = board::live_workers()
        .into_iter()
        .map(|w| (i64::from(w.database), w.pid))
        .collect();
    TableIterator::new(rows)
}

#[pg_guard]
unsafe extern "C-unwind" fn release_slot_on_exit(_code: i32, _arg: pg_sys::Datum) {
    // SAFETY: MyProcPid is this process's pid, set before any extension code runs.
    board::release_worker_slot(unsafe { pg_sys::MyProcPid });
}

/// Entry point of the worker process; the argument is the database OID, with
/// [`LAUNCHED`] set when the launcher started it.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn jobq_wakeup_worker_main(argument: pg_sys::Datum) {
    let database = pg_sys::Oid::from(argument.value() as u32);
    let launched = argument.value() as u64 & LAUNCHED != 0;
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    // The launcher starts one worker per database, and most databases of a
    // cluster do not use jobq: leave before taking a slot of the board, and
    // without a log line each.
    if launched && !jobq_installed() {
        return;
    }

    // SAFETY: process globals, set before the worker's main runs.
    let (pid, latch) = unsafe { (pg_sys::MyProcPid, pg_sys::MyLatch) };
    if !board::claim_worker_slot(database.to_u32(), pid, latch) {
        // Another worker serves this database (two grabs may each start
        // one), or every slot of the board is taken.
        log!("jobq wakeup worker for database {database} not needed or no free slot; exiting");
        return;
    }
    // SAFETY: registering a plain function pointer; it runs at process exit,
    // including after an ERROR, so the slot never points at a dead process.
    unsafe { pg_sys::on_shmem_exit(Some(release_slot_on_exit), pg_sys::Datum::from(0)) };

    // A grab in the transaction that runs CREATE EXTENSION may start this worker:
    // give it a moment to become visible before concluding jobq is absent.
    let started = Instant::now();
    while !jobq_installed() {
        if started.elapsed() > EXTENSION_WAIT
            || !BackgroundWorker::wait_latch(Some(Duration::from_millis(50)))
        {
            log!(
                "jobq wakeup worker for database {database}: jobq is not installed there; exiting"
            );
            return;
        }
    }

    // Notifications carry nothing worth a disk flush (the tick's SQL says the
    // same for its own transactions); this covers the ticks that send
    // signals without a query.
    if let Err(error) = BackgroundWorker::transaction(|| Spi::run("SET synchronous_commit = off")) {
        log!("jobq wakeup worker for database {database}: cannot configure itself: {error}");
        return;
    }

    let mut scanned_until: Option<TimestampWithTimeZone> = None;
    let now = Instant::now();
    let mut next_scan = now;
    let mut last_scan = now - MIN_RESCAN_INTERVAL;
    let mut last_tick = now - MIN_EVENTS_INTERVAL;
    let mut rescan_requested = false;
    // A "new events" signal taken from the board but not sent yet.
    let mut events_held = false;
    let mut sleep = Duration::ZERO;
    while BackgroundWorker::wait_latch(Some(sleep)) {
        let (mut signals, mut overflowed) = board::take(database.to_u32());
        let mut wakeups = signals.iter().any(|(c, _)| *c == Channel::Wakeup);
        if wakeups || overflowed {
            // During a stream of enqueues, let what arrives within the floor
            // share this tick.
            let since_tick = last_tick.elapsed();
            if since_tick < MIN_WAKEUP_INTERVAL {
                std::thread::sleep(MIN_WAKEUP_INTERVAL - since_tick);
                let (more, more_overflowed) = board::take(database.to_u32());
                signals.extend(more);
                overflowed |= more_overflowed;
            }
        }
        rescan_requested |= signals.iter().any(|(c, _)| *c == Channel::Rescan);
        events_held |= signals.iter().any(|(c, _)| *c == Channel::Events);
        signals.retain(|(channel, _)| *channel == Channel::Wakeup);
        wakeups = !signals.is_empty();

        let now = Instant::now();
        let events_due = events_held && now >= last_tick + MIN_EVENTS_INTERVAL;
        let scan = now >= next_scan || (rescan_requested && now >= last_scan + MIN_RESCAN_INTERVAL);
        if !wakeups && !overflowed && !events_due && !scan {
            sleep = wait_until(
                now,
                next_scan,
                rescan_requested.then_some(last_scan + MIN_RESCAN_INTERVAL),
                events_held.then_some(last_tick + MIN_EVENTS_INTERVAL),
            );
            continue;
        }
        // Held events ride along with any tick.
        if events_held {
            signals.push((Channel::Events, String::new()));
            events_held = false;
        }
        let since = scanned_until;
        report_activity(true);
        // Every tick sends the signals as pg_notify() would, without a query;
        // a scanning tick then looks for due jobs in the same transaction.
        let tick = BackgroundWorker::transaction(|| {
            notify_now(&signals, overflowed);
            if !scan {
                return Ok((None, None));
            }
            Spi::get_two_with_args::<TimestampWithTimeZone, i32>(
                "SELECT scanned_until, sleep_ms FROM jobq._wakeup_tick($1)",
                &[match since {
                    Some(t) => DatumWithOid::from(t),
                    None => DatumWithOid::null::<TimestampWithTimeZone>(),
                }],
            )
        });
        report_activity(false);
        last_tick = Instant::now();
        match tick {
            Ok((until, sleep_ms)) => {
                if scan {
                    scanned_until = until.or(scanned_until);
                    last_scan = now;
                    rescan_requested = false;
                    let wait_ms = sleep_ms.unwrap_or(1000).clamp(1, 1000) as u64;
                    next_scan = now + Duration::from_millis(wait_ms);
                }
            }
            Err(error) => {
                // The extension was dropped or the tick failed: leave; the
                // next grab starts a fresh worker if jobq is still there.
                log!("jobq wakeup worker stops: {error}");
                return;
            }
        }
        sleep = wait_until(
            Instant::now(),
            next_scan,
            rescan_requested.then_some(last_scan + MIN_RESCAN_INTERVAL),
            None,
        );
    }
}

/// Whether this worker's database has jobq (in a transaction of its own).
fn jobq_installed() -> bool {
    let installed = BackgroundWorker::transaction(|| {
        Spi::get_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'jobq')",
        )
    });
    matches!(installed, Ok(Some(true)))
}

extern "C-unwind" {
    /// From commands/async.h, which pgrx's bindings leave out: what
    /// `pg_notify()` calls. It may raise an ERROR, so it is called through
    /// `pg_guard_ffi_boundary`.
    fn Async_Notify(channel: *const c_char, payload: *const c_char);
}

/// Queues one notification in the current transaction.
fn notify(channel: &CStr, payload: &CStr) {
    // SAFETY: called on the backend's main thread, inside a transaction (the
    // caller's BackgroundWorker::transaction); both pointers are
    // NUL-terminated strings that outlive the call, which copies them; an
    // ERROR becomes a Rust panic through the guard, as for pgrx's own calls.
    unsafe {
        pg_sys::ffi::pg_guard_ffi_boundary(|| Async_Notify(channel.as_ptr(), payload.as_ptr()))
    };
}

/// What `jobq._wakeup_payload('*', '*')` returns: anything may be available.
const OVERFLOW_PAYLOAD: &CStr = c"{\"queue\": \"*\", \"job_type\": \"*\"}";

/// Queues the signals as notifications of the current transaction, as
/// `pg_notify()` does; after an overflow of the board, "anything may be
/// available" and "new events" instead of what was lost.
fn notify_now(signals: &[(Channel, String)], overflowed: bool) {
    for (channel, payload) in signals {
        // Payloads are JSON text made by jobq; one with a NUL byte cannot be
        // sent, and a wake-up only saves latency: skip it.
        let (Ok(channel), Ok(payload)) =
            (CString::new(channel.name()), CString::new(payload.as_str()))
        else {
            continue;
        };
        notify(&channel, &payload);
    }
    if overflowed {
        notify(c"jobq_wakeup", OVERFLOW_PAYLOAD);
        notify(c"jobq_events", c"");
    }
}

/// Tells pg_stat_activity what the worker does, and flushes its statistics
/// (commits, and the tuples its maintenance deletes) to the cumulative
/// statistics after each tick, as contrib's worker_spi does: without it they
/// would never reach pg_stat_database, pg_stat_user_tables or autovacuum.
fn report_activity(running: bool) {
    // SAFETY: plain calls into the statistics subsystem of this backend, made
    // outside any transaction (before and after a tick); the query text is a
    // static NUL-terminated string.
    unsafe {
        if running {
            pg_sys::pgstat_report_activity(
                pg_sys::BackendState::STATE_RUNNING,
                c"SELECT jobq._wakeup_tick(...)".as_ptr(),
            );
        } else {
            pg_sys::pgstat_report_stat(false);
            pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
        }
    }
}

/// How long to sleep before the next scan (or the earliest allowed rescan, or
/// the time held events may go out).
fn wait_until(
    now: Instant,
    next_scan: Instant,
    rescan_at: Option<Instant>,
    events_at: Option<Instant>,
) -> Duration {
    let target = [rescan_at, events_at]
        .into_iter()
        .flatten()
        .fold(next_scan, Instant::min);
    target
        .saturating_duration_since(now)
        .max(Duration::from_millis(1))
}
