//! The jobq extension.
//!
//! The public API is SQL (see `sql/` at the repository root): each function
//! there is a statement or two over the job tables, so it is written in SQL and
//! PL/pgSQL rather than as Rust that would only wrap SPI calls. Rust holds what
//! needs the server's internals.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod durability;
mod wakeup;

/// Runs when the library is loaded: at server start with
/// `shared_preload_libraries = 'jobq'`, or on first use otherwise.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    wakeup::init();
}

extension_sql_file!("../../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!(
    "../../sql/internal.sql",
    name = "internal",
    requires = ["schema"]
);
extension_sql_file!(
    "../../sql/events.sql",
    name = "events",
    requires = ["internal"]
);
extension_sql_file!(
    "../../sql/history.sql",
    name = "history",
    requires = ["events"]
);
extension_sql_file!(
    "../../sql/enqueue.sql",
    name = "enqueue",
    requires = ["history"]
);
extension_sql_file!(
    "../../sql/worker.sql",
    name = "worker",
    requires = ["history"]
);
extension_sql_file!(
    "../../sql/views.sql",
    name = "views",
    requires = ["history"]
);
extension_sql_file!(
    "../../sql/details.sql",
    name = "details",
    requires = ["views"]
);
extension_sql_file!(
    "../../sql/notify.sql",
    name = "notify",
    requires = ["enqueue", "worker", "details"]
);
extension_sql_file!(
    "../../sql/dependencies.sql",
    name = "dependencies",
    requires = ["notify"]
);
extension_sql_file!(
    "../../sql/control.sql",
    name = "control",
    requires = ["dependencies"]
);
extension_sql_file!(
    "../../sql/maintenance.sql",
    name = "maintenance",
    requires = ["control"]
);
extension_sql_file!(
    "../../sql/limits.sql",
    name = "limits",
    requires = ["maintenance"]
);
extension_sql_file!(
    "../../sql/backup.sql",
    name = "backup",
    requires = ["limits"]
);
extension_sql_file!("../../sql/security.sql", name = "security", finalize);

/// The version of the loaded library. It must equal the installed SQL
/// version; `jobq.jq_library_version()` lets operators and tests check that after an
/// upgrade.
#[pg_extern(immutable, parallel_safe, strict)]
#[search_path(jobq, pg_catalog, pg_temp)]
fn jq_library_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[cfg(any(test, feature = "pg_test"))]
mod unit_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
