#!/usr/bin/env bash
# The backup test: a database with jobs in every state (the upgrade test's
# tests/upgrade/fill.sql, with the history in a dated partition), dumped
# with pg_dump and restored
#   1. with pg_restore (custom format) into a new database on the same
#      server, where jobq is preloaded, and
#   2. with psql in one transaction (plain format) into a new cluster where
#      jobq is installed but not preloaded, whose transaction ids are far
#      behind the source's (what a restore onto a new server meets);
# and in each restored database checks that
#   - the restore ran without a single error;
#   - everything the API shows is the same as in the source (every job's
#     jq_details, the whole event stream with its cursors, each job's
#     events, settings, paused queues, the operator views; a diff otherwise);
#   - the rows every installation has ('*', maintenance, the event clock)
#     exist once, with the dump's values, and the dated history partitions
#     came back as ordinary tables with their index (tests/backup/restored.sql);
#   - ids, unique keys, leases (they run out and are retried), dependencies
#     and the event stream continue: a subscriber's cursor from the source
#     reads exactly the events written after the restore, also where the
#     transaction ids are behind (tests/upgrade/post.sql, written for the
#     upgrade test, checks all of that on the restored jobs).
# Exits non-zero with a message on the first failure; the dumps and
# captures stay in $CARGO_TARGET_DIR/backup-test/.
#
#   DATABASE_URL    postgres://user@host:port/db of a server with the current
#                   jobq installed and preloaded (required); the test creates
#                   and drops databases jobq_backup_* on it
#   JOBQ_PG_BIN     server binaries (default /usr/lib/postgresql/15/bin):
#                   pg_dump, pg_restore, and the second cluster
#   JOBQ_BACKUP_PORT  port of the second cluster (default 54337)
#
#   bash tests/bin/backup-test.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pg_bin="${JOBQ_PG_BIN:-/usr/lib/postgresql/15/bin}"
export JOBQ_PG_BIN="$pg_bin"
upgrade_dir="$root/tests/upgrade"
backup_dir="$root/tests/backup"
out="${CARGO_TARGET_DIR:-$root/target}/backup-test"
second_port="${JOBQ_BACKUP_PORT:-54337}"

log() { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31mbackup test FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

[ -n "${DATABASE_URL:-}" ] || die "DATABASE_URL is not set (a server with the current jobq installed and preloaded)"
url_base="${DATABASE_URL%%\?*}"
[[ "$url_base" =~ ^postgres(ql)?://[^/]+/ ]] ||
    die "DATABASE_URL must look like postgres://user@host:port/database, not $DATABASE_URL"
# postgres://user@host:port of the main server, and of the second cluster.
main_server="${url_base%/*}"
admin_db="${url_base##*/}"

psql_at() {
    local url="$1"
    shift
    PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
        "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -d "$url" "$@"
}
value_at() { psql_at "$1" -At -c "$2"; }
recreate_db() {
    psql_at "$1/$admin_db" -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" \
        -c "CREATE DATABASE $2 TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
}
capture() { psql_at "$1" -At -F $'\t' -f "$upgrade_dir/capture.sql"; }
same_or_die() {
    if ! diff -u --label "$3" --label "$4" "$1" "$2" >"$2.diff"; then
        cat "$2.diff" >&2
        die "what the API shows changed in the restore into $4 (diff above; also in $2.diff)"
    fi
}

rm -rf "$out"
mkdir -p "$out"
# The dump files are read by the server-side tools running as the current
# user; nothing else needs them.

log "source: a database with jobs in every state"
src_db=jobq_backup_src
src="$main_server/$src_db"
recreate_db "$main_server" "$src_db"
psql_at "$src" -c "CREATE EXTENSION jobq"
# The history's partitions of yesterday, today and tomorrow, as maintenance
# makes them (fill.sql keeps maintenance from running: post.sql reaps the
# leases it leaves expired).
psql_at "$src" -o /dev/null -c "SELECT jobq._create_history_partitions(now() - interval '1 day', now() + interval '1 day')"
psql_at "$src" -o /dev/null -f "$upgrade_dir/fill.sql" || die "filling the source database failed"
# One finished job of two days ago, a day without a partition: its row is in
# the default partition, which belongs to the extension.
psql_at "$src" -o /dev/null -c "
    UPDATE jobq.job_history h SET finished_at = h.finished_at - interval '2 days'
    WHERE h.id = (SELECT min(o.id) FROM jobq.job_history o
                  WHERE o.state = 'completed' AND jobq._retained(o.job_type, o.finished_at - interval '3 days'))"
dated="$(value_at "$src" "SELECT count(*) FROM jobq._history_partitions() p,
                          LATERAL (SELECT count(*) AS n FROM jobq.job_history h
                                   WHERE h.tableoid = format('jobq.%I', p.name)::regclass) c
                          WHERE c.n > 0")"
[ "$dated" -ge 1 ] || die "the source has no dated history partition with rows to dump"
[ "$(value_at "$src" "SELECT count(*) FROM jobq.job_history_default")" = 1 ] ||
    die "the source's default history partition does not hold the one job meant for it"
capture "$src" >"$out/source.txt" || die "capturing the source failed"
psql_at "$src" -c "INSERT INTO jq_upgrade.saved VALUES ('upgraded_at', clock_timestamp()::text)"
src_xid="$(value_at "$src" "SELECT pg_current_xact_id()")"

log "pg_dump (custom and plain format)"
"$pg_bin/pg_dump" -Fc -f "$out/source.dump" "$src" || die "pg_dump -Fc failed"
"$pg_bin/pg_dump" -Fp -f "$out/source.sql" "$src" || die "pg_dump -Fp failed"
grep -q '^COPY jobq.live_jobs ' "$out/source.sql" || die "the dump has no rows of jobq.live_jobs"

# Checks one restored database: the same API view as the source, the rows
# and partitions the restore must get right, then life goes on.
check_restored() {
    local url="$1" label="$2" behind="$3"
    capture "$url" >"$out/$label.txt" || die "capturing the database restored into $label failed"
    same_or_die "$out/source.txt" "$out/$label.txt" "source" "$label"
    psql_at "$url" -o /dev/null -v behind="$behind" -f "$backup_dir/restored.sql" ||
        die "the restored rows and partitions are wrong in $label"
    psql_at "$url" -o /dev/null -f "$upgrade_dir/post.sql" ||
        die "the restored jobs do not carry on in $label (checks of tests/upgrade/post.sql)"
    psql_at "$url" -o /dev/null -v behind="$behind" <<'SQL' ||
SELECT jq_upgrade.check((SELECT NOT c.restored AND (c.shift > 0) = :'behind'::boolean FROM jobq.event_clock c),
                        'the event clock is shifted exactly when the restore went back in xids');
SQL
        die "the event clock of $label is not as the restore needs it"
}

log "restore 1: pg_restore into a new database on the same server (jobq preloaded)"
same_db=jobq_backup_same
recreate_db "$main_server" "$same_db"
"$pg_bin/pg_restore" --exit-on-error -d "$main_server/$same_db" "$out/source.dump" 2>"$out/same.log" ||
    { cat "$out/same.log" >&2; die "pg_restore into $same_db failed"; }
[ ! -s "$out/same.log" ] || { cat "$out/same.log" >&2; die "pg_restore into $same_db reported errors"; }
check_restored "$main_server/$same_db" same-server false

log "restore 2: psql --single-transaction into a new cluster (jobq not preloaded, xids behind)"
bash "$here/pg-cluster.sh" stop backup
rm -rf "${TMPDIR:-/tmp}/jobq-cluster-backup"
second_server="$(bash "$here/pg-cluster.sh" start backup "$second_port")"
second_server="${second_server%/*}"
trap 'bash "$here/pg-cluster.sh" stop backup' EXIT
new_db=jobq_backup_new
recreate_db "$second_server" "$new_db"
"$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 --single-transaction -d "$second_server/$new_db" \
    -f "$out/source.sql" >"$out/new.log" 2>&1 ||
    { cat "$out/new.log" >&2; die "restoring the plain dump into the new cluster failed"; }
! grep -q 'ERROR' "$out/new.log" || { cat "$out/new.log" >&2; die "the plain restore reported errors"; }
new_xid="$(value_at "$second_server/$new_db" "SELECT pg_current_xact_id()")"
[ "$new_xid" -lt "$src_xid" ] ||
    die "the new cluster's transaction ids ($new_xid) are not behind the source's ($src_xid): nothing to test"
log "the new cluster is at xid $new_xid, the source was at $src_xid"
check_restored "$second_server/$new_db" new-cluster true

psql_at "$main_server/$admin_db" -c "DROP DATABASE $same_db WITH (FORCE)" \
    -c "DROP DATABASE $src_db WITH (FORCE)"
log "backup test passed: pg_dump and two kinds of restore keep every job, event and setting"
