//! Producer side: keep a transaction's signals until it commits, then post
//! them to the board. A rolled-back transaction signals nothing.

use super::board::{self, Channel, MAX_PAYLOAD};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{register_xact_callback, PgXactCallbackEvent};
use std::cell::RefCell;

thread_local! {
    /// Signals of the current transaction; `Some` once its callbacks are registered.
    static PENDING: RefCell<Option<Vec<(Channel, String)>>> = const { RefCell::new(None) };
}

fn current_database() -> u32 {
    // SAFETY: MyDatabaseId is set once at connection start and only read here.
    unsafe { pg_sys::MyDatabaseId }.to_u32()
}

/// Takes over a notification until commit when a wake-up worker serves this
/// database, and says whether it did. When it returns false the caller sends
/// the notification itself with pg_notify.
#[pg_extern(volatile, strict, parallel_unsafe, name = "_defer_notify")]
#[search_path(jobq, pg_catalog, pg_temp)]
fn defer_notify(channel: &str, payload: &str) -> bool {
    let Some(channel) = Channel::from_name(channel) else {
        return false;
    };
    if payload.len() > MAX_PAYLOAD {
        return false;
    }
    let database = current_database();
    if board::worker_of(database).is_none() {
        return false;
    }
    PENDING.with(|pending| {
        let mut pending = pending.borrow_mut();
        if pending.is_none() {
            register_callbacks(database);
        }
        let signals = pending.get_or_insert_with(Vec::new);
        if !signals.iter().any(|(c, p)| *c == channel && p == payload) {
            signals.push((channel, payload.to_owned()));
        }
    });
    true
}

fn take_pending() -> Option<Vec<(Channel, String)>> {
    PENDING.with(|pending| pending.borrow_mut().take())
}

fn register_callbacks(database: u32) {
    // Commit fires after the transaction is visible to others, so a woken
    // worker finds the jobs. The callback must not raise: post() cannot.
    register_xact_callback(PgXactCallbackEvent::Commit, move || {
        if let Some(signals) = take_pending() {
            board::post(database, &signals);
        }
    });
    register_xact_callback(PgXactCallbackEvent::Abort, || {
        take_pending();
    });
    // A prepared transaction commits later, elsewhere; its jobs are found by
    // the workers' polling instead.
    register_xact_callback(PgXactCallbackEvent::Prepare, || {
        take_pending();
    });
}
