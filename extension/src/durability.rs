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
        let inserted = end_of_inserted_wal(pg_sys::GetXLogInsertRecPtr());
        pg_sys::XLogFlush(inserted);
        // Returns at once without synchronous standbys or when they have it
        // already; a cancel ends the wait with a WARNING, as for a commit.
        pg_sys::SyncRepWaitForLSN(inserted, false);
    }
}

/// The end of the WAL inserted so far, given the insert position. When the
/// last record ended exactly at the end of a page, the insert position is
/// past the next page's header, which nobody has written yet: XLogFlush
/// refuses a request beyond what exists ("xlog flush request ... is not
/// satisfied"), so the request stops at the page boundary. (PostgreSQL 17
/// has GetXLogInsertEndRecPtr for this.)
pub(crate) fn end_of_inserted_wal(insert: pg_sys::XLogRecPtr) -> pg_sys::XLogRecPtr {
    const fn maxalign(n: usize) -> u64 {
        ((n + 7) & !7) as u64
    }
    let short_header = maxalign(std::mem::size_of::<pg_sys::XLogPageHeaderData>());
    let long_header = maxalign(std::mem::size_of::<pg_sys::XLogLongPageHeaderData>());
    // SAFETY: a GUC set at server start, read-only afterwards.
    let segment = u64::try_from(unsafe { pg_sys::wal_segment_size }).unwrap_or(0);
    if segment > 0 && insert % segment == long_header {
        insert - long_header
    } else if insert % u64::from(pg_sys::XLOG_BLCKSZ) == short_header {
        insert - short_header
    } else {
        insert
    }
}
