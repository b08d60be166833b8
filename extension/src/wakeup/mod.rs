//! Wake-ups without making producers pay for NOTIFY.
//!
//! NOTIFY takes a cluster-wide lock at commit, so a producer that notifies
//! serialises its commit with every other notifying producer. Instead, when
//! jobq is in `shared_preload_libraries`, a producer's signals are kept in
//! backend memory during the transaction and, once it has committed, copied to
//! a board in shared memory ([`board`]). A background worker per database
//! ([`worker`]) drains the board and sends the notifications from its own
//! transaction: one notifying commit per tick, whatever the number of
//! producers. The same worker wakes listeners when scheduled jobs, retries and
//! expired leases fall due, which no producer commit announces.
//!
//! Without preloading, `jobq._defer_notify` says "not deferred" and the SQL
//! falls back to a plain `pg_notify` in the producer's transaction.

pub(crate) mod board;
pub(crate) mod defer;
pub(crate) mod launcher;
pub(crate) mod worker;

/// Called from `_PG_init`. Shared memory and the worker machinery exist only
/// when the library is preloaded; otherwise every signal falls back to NOTIFY.
pub(crate) fn init() {
    // SAFETY: reading a postmaster-set global during library load.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        board::init_shared_memory();
        launcher::register();
    }
}
