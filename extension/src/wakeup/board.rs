//! The shared-memory board: signals waiting to be sent, and which process is
//! the wake-up worker of which database.

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};
use std::sync::atomic::{AtomicBool, Ordering};

/// Databases that can have a wake-up worker at once.
pub(crate) const MAX_DATABASES: usize = 128;
/// Distinct signals that can wait for a worker; beyond that a database is
/// marked as overflowed and its worker sends one catch-all wake-up.
pub(crate) const MAX_PENDING: usize = 256;
/// Longest payload kept: `{"queue": <=128 chars, "job_type": <=128 chars}`.
pub(crate) const MAX_PAYLOAD: usize = 300;

/// Channels a signal can go to; kept as a number to keep slots small.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Channel {
    Wakeup = 1,
    Events = 2,
    /// Not a notification: tells the worker that a due time it has not seen
    /// (a scheduled job, a retry) now exists, so it should look again.
    Rescan = 3,
}

impl Channel {
    pub(crate) fn from_name(name: &str) -> Option<Channel> {
        match name {
            "jobq_wakeup" => Some(Channel::Wakeup),
            "jobq_events" => Some(Channel::Events),
            "jobq_rescan" => Some(Channel::Rescan),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Channel::Wakeup => "jobq_wakeup",
            Channel::Events => "jobq_events",
            Channel::Rescan => "jobq_rescan",
        }
    }

    fn from_u8(value: u8) -> Option<Channel> {
        match value {
            1 => Some(Channel::Wakeup),
            2 => Some(Channel::Events),
            3 => Some(Channel::Rescan),
            _ => None,
        }
    }
}

#[derive(Copy, Clone)]
pub(crate) struct WorkerSlot {
    pub(crate) database: u32,
    pub(crate) pid: i32,
    /// Address of the worker's process latch. Shared memory is mapped at the
    /// same address in every backend, so the pointer is valid everywhere.
    pub(crate) latch: usize,
}

#[derive(Copy, Clone)]
struct PendingSignal {
    database: u32,
    channel: u8,
    len: u16,
    payload: [u8; MAX_PAYLOAD],
}

#[derive(Copy, Clone)]
pub(crate) struct Board {
    workers: [WorkerSlot; MAX_DATABASES],
    pending: [PendingSignal; MAX_PENDING],
    pending_len: usize,
    /// Databases that lost signals to a full board.
    overflowed: [u32; MAX_DATABASES],
}

// SAFETY: Board is plain old data (integers and byte arrays, no pointers that
// are dereferenced as Rust references), so any process may read and write it
// under the LWLock.
unsafe impl PGRXSharedMemory for Board {}

impl Default for Board {
    fn default() -> Self {
        Board {
            workers: [WorkerSlot {
                database: 0,
                pid: 0,
                latch: 0,
            }; MAX_DATABASES],
            pending: [PendingSignal {
                database: 0,
                channel: 0,
                len: 0,
                payload: [0; MAX_PAYLOAD],
            }; MAX_PENDING],
            pending_len: 0,
            overflowed: [0; MAX_DATABASES],
        }
    }
}

// SAFETY: the name is unique to this extension.
pub(crate) static BOARD: PgLwLock<Board> = unsafe { PgLwLock::new(c"jobq_wakeup_board") };

/// Set in the postmaster while preloading; forked backends inherit it. False
/// in a backend that loaded the library on demand, where BOARD is unusable.
static PRELOADED: AtomicBool = AtomicBool::new(false);

pub(crate) fn init_shared_memory() {
    pg_shmem_init!(BOARD);
    PRELOADED.store(true, Ordering::Relaxed);
}

pub(crate) fn is_preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc_kill(pid, 0) } == 0
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// The live wake-up worker of a database, if any.
pub(crate) fn worker_of(database: u32) -> Option<WorkerSlot> {
    if !is_preloaded() {
        return None;
    }
    let board = BOARD.share();
    board
        .workers
        .iter()
        .find(|w| w.database == database && process_alive(w.pid))
        .copied()
}

/// Claims the worker slot of a database for the calling process. False when
/// another live process holds it or no slot is free.
pub(crate) fn claim_worker_slot(database: u32, pid: i32, latch: *mut pg_sys::Latch) -> bool {
    let mut board = BOARD.exclusive();
    if board
        .workers
        .iter()
        .any(|w| w.database == database && w.pid != pid && process_alive(w.pid))
    {
        return false;
    }
    let free = board
        .workers
        .iter()
        .position(|w| w.database == database)
        .or_else(|| {
            board
                .workers
                .iter()
                .position(|w| w.pid == 0 || !process_alive(w.pid))
        });
    match free {
        Some(i) => {
            board.workers[i] = WorkerSlot {
                database,
                pid,
                latch: latch as usize,
            };
            true
        }
        None => false,
    }
}

pub(crate) fn release_worker_slot(pid: i32) {
    let mut board = BOARD.exclusive();
    for slot in board.workers.iter_mut().filter(|w| w.pid == pid) {
        *slot = WorkerSlot {
            database: 0,
            pid: 0,
            latch: 0,
        };
    }
}

/// Posts a committed transaction's signals and wakes the database's worker.
/// Runs in a commit callback, where an ERROR would abort the backend: it must
/// not fail, so oversized or duplicate signals are dropped or coalesced.
pub(crate) fn post(database: u32, signals: &[(Channel, String)]) {
    let mut board = BOARD.exclusive();
    for (channel, payload) in signals {
        let bytes = payload.as_bytes();
        let len = board.pending_len;
        let duplicate = board.pending[..len].iter().any(|p| {
            p.database == database
                && p.channel == *channel as u8
                && &p.payload[..p.len as usize] == bytes
        });
        if duplicate {
            continue;
        }
        if len == MAX_PENDING || bytes.len() > MAX_PAYLOAD {
            mark_overflowed(&mut board, database);
            continue;
        }
        let mut slot = PendingSignal {
            database,
            channel: *channel as u8,
            len: bytes.len() as u16,
            payload: [0; MAX_PAYLOAD],
        };
        slot.payload[..bytes.len()].copy_from_slice(bytes);
        board.pending[len] = slot;
        board.pending_len = len + 1;
    }
    if let Some(worker) = board
        .workers
        .iter()
        .find(|w| w.database == database && w.pid != 0)
    {
        // SAFETY: the latch lives in the worker's PGPROC in shared memory; a
        // stale pointer still points at a PGPROC latch, where a spurious set
        // is harmless.
        unsafe { pg_sys::SetLatch(worker.latch as *mut pg_sys::Latch) };
    }
}

fn mark_overflowed(board: &mut Board, database: u32) {
    if board.overflowed.contains(&database) {
        return;
    }
    if let Some(slot) = board.overflowed.iter_mut().find(|d| **d == 0) {
        *slot = database;
    }
}

/// Takes the database's pending signals off the board. The flag says the
/// database overflowed, so a catch-all wake-up is due.
pub(crate) fn take(database: u32) -> (Vec<(Channel, String)>, bool) {
    let mut board = BOARD.exclusive();
    let mut taken = Vec::new();
    let mut kept = 0;
    for i in 0..board.pending_len {
        let signal = board.pending[i];
        if signal.database == database {
            if let Some(channel) = Channel::from_u8(signal.channel) {
                let payload =
                    String::from_utf8_lossy(&signal.payload[..signal.len as usize]).into_owned();
                taken.push((channel, payload));
            }
        } else {
            board.pending[kept] = signal;
            kept += 1;
        }
    }
    board.pending_len = kept;
    let overflowed = match board.overflowed.iter().position(|d| *d == database) {
        Some(i) => {
            board.overflowed[i] = 0;
            true
        }
        None => false,
    };
    (taken, overflowed)
}

/// Which databases have a live worker, for `jq_wakeup_workers()`.
pub(crate) fn live_workers() -> Vec<WorkerSlot> {
    if !is_preloaded() {
        return Vec::new();
    }
    let board = BOARD.share();
    board
        .workers
        .iter()
        .filter(|w| w.pid != 0 && process_alive(w.pid))
        .copied()
        .collect()
}
