#!/usr/bin/env bash
# The test command. On a bare Debian bookworm machine it installs what is
# missing (setup.sh), then runs every level of tests:
#   1. cargo fmt --check and cargo clippy -D warnings
#   2. #[pg_test] units inside a Postgres backend (cargo pgrx test)
#   3. SQL suites: pg_regress and pg_isolation_regress; then the upgrade,
#      backup, promotion and failover tests (tests/bin/*-test.sh, each with
#      servers of its own where it needs them)
#   4. Rust integration tests over real connections (tests/*.rs)
# Levels 3 and 4 use a throwaway cluster started here with jobq preloaded, or
# the server named by DATABASE_URL when it is set (jobq must be installed and in
# its shared_preload_libraries: the wake-up tests need the background worker).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
log() { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }

bash "$here/setup.sh"
cd "$root"

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

log "pg_test units (cargo pgrx test)"
pgrx_data="${TMPDIR:-/tmp}/jobq-pgrx-test"
if [ "$(id -u)" = 0 ]; then
    mkdir -p "$pgrx_data" && chown postgres: "$pgrx_data"
    (cd extension && cargo pgrx test pg15 --runas postgres --pgdata "$pgrx_data")
else
    (cd extension && cargo pgrx test pg15)
fi
# cargo pgrx test installed a build with the test schema; put the plain one back.
bash "$here/setup.sh"

if [ -z "${DATABASE_URL:-}" ]; then
    log "starting a throwaway cluster"
    # Restart so that the preloaded library is the one just installed.
    bash "$here/pg-cluster.sh" stop test
    DATABASE_URL="$(bash "$here/pg-cluster.sh" start test 54329 \
        "shared_preload_libraries = 'jobq'" "max_worker_processes = 64")"
    trap 'bash "$here/pg-cluster.sh" stop test' EXIT
fi
export DATABASE_URL
case "$(psql "$DATABASE_URL" -XAtc 'SHOW shared_preload_libraries')" in
    *jobq*) ;;
    *) echo "jobq is not in shared_preload_libraries of $DATABASE_URL; the wake-up tests need it" >&2
       exit 1 ;;
esac
read -r host port < <(psql "$DATABASE_URL" -XAtF ' ' \
    -c "SELECT coalesce(host(inet_server_addr()), '/var/run/postgresql'), current_setting('port')")

log "SQL suites (pg_regress, pg_isolation_regress) on $host:$port"
bash "$here/sql-tests.sh" "$host" "$port"
bash "$here/upgrade-test.sh"
bash "$here/backup-test.sh"
bash "$here/promotion-test.sh"
bash "$here/failover-test.sh" sync

log "integration tests on $DATABASE_URL"
cargo test --workspace --exclude jobq

log "all tests passed"
