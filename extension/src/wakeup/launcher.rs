//! The launcher: starts a wake-up worker for every database as soon as the
//! server accepts writes, so that due jobs are announced and maintenance runs
//! without waiting for some worker's first grab: after a restart, after
//! crash recovery, and on a standby the moment it is promoted.
//!
//! It is a static background worker (registered when jobq is preloaded)
//! with start time "recovery finished", which the postmaster honours on a
//! standby by starting it at promotion. It reads the list of databases from
//! the shared catalog without connecting to any of them, starts one wake-up
//! worker per database that accepts connections (a worker whose database has
//! no jobq leaves at once), and then idles: a launcher that exited would be
//! forgotten by the postmaster and not run again after a crash restart.

use super::worker;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::time::Duration;

/// Registers the launcher; called from `_PG_init` while preloading.
pub(crate) fn register() {
    BackgroundWorkerBuilder::new("jobq launcher")
        .set_type("jobq launcher")
        .set_library("jobq")
        .set_function("jobq_launcher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Entry point of the launcher process.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn jobq_launcher_main(_argument: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    // No database: the list of databases is a shared catalog.
    BackgroundWorker::connect_worker_to_spi(None, None);
    let databases = BackgroundWorker::transaction(connectable_databases);
    let mut started = 0;
    for database in &databases {
        if worker::start_wakeup_worker(*database, true) {
            started += 1;
        }
    }
    log!(
        "jobq launcher: {started} of {} databases got a wake-up worker (which leaves where jobq is not installed)",
        databases.len()
    );
    while BackgroundWorker::wait_latch(None) {}
}

/// The databases that accept connections, templates left out.
fn connectable_databases() -> Vec<pg_sys::Oid> {
    let mut databases = Vec::new();
    // SAFETY: inside a transaction (BackgroundWorker::transaction), as
    // autovacuum's launcher reads pg_database: the relation is opened and
    // closed with a lock, the scan uses a catalog snapshot, and each tuple
    // is read through GETSTRUCT as pg_database's fixed-size prefix, which
    // holds every field read here, before the next heap_getnext.
    unsafe {
        let relation = pg_sys::table_open(
            pg_sys::DatabaseRelationId,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let scan = pg_sys::table_beginscan_catalog(relation, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let form = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if form.datallowconn && !form.datistemplate {
                databases.push(form.oid);
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(relation, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
    }
    databases
}
