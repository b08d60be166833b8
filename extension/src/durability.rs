//! Reading only what a crash cannot take back.
//!
//! A grab may commit without waiting for its WAL to reach disk
//! (`jq_grab(..., durable => false)`): a crash can then undo it, which only
//! puts the job back to waiting (it runs again; delivery is at least once in
//! any case). But an event subscriber must never read an event that a crash
//! can undo: the stream's order and event ids could be reused afterwards, and
//! its cursor would skip what replaced them. `jq_events_since` therefore
//! flushes the WAL first, so that every commit its snapshot can see is on disk,
//! and, where replication is synchronous, waits until the synchronous
//! standbys have it too: a failover cannot take it back either.

use pgrx::pg_sys;
use pgrx::prelude::*;

/// Flushes the WAL up to what has been inserted so far, and waits for the
/// synchronous standbys (if any, and if the session's synchronous_commit
/// asks for them) to have flushed it as well. Cheap when nothing is pending
/// (the common case: synchronous commits flushed and replicated already).
#[pg_extern(volatile, strict, parallel_unsafe, name = "_flush_wal")]
#[search_path(jobq, pg_catalog, pg_temp)]
fn flush_wal() {
    // SAFETY: plain calls into the WAL subsystem from a backend, inside a
    // transaction. A standby replays only WAL its primary flushed and cannot
    // insert any, so there is nothing to flush there.
    unsafe {
        if pg_sys::RecoveryInProgress() {
            return;
        }
        let inserted = pg_sys::GetXLogInsertRecPtr();
        pg_sys::XLogFlush(inserted);
        // Returns at once without synchronous standbys or when they have it
        // already; a cancel ends the wait with a WARNING, as for a commit.
        pg_sys::SyncRepWaitForLSN(inserted, false);
    }
}
