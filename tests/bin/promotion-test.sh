#!/usr/bin/env bash
# The promotion test: a primary with jobq preloaded and a streaming standby
# made from it with pg_basebackup. The standby runs no wake-up worker while
# in recovery. The primary is stopped (immediate mode, as in a crash) with a
# job scheduled a few seconds ahead, the standby is promoted, and with no
# worker grabbing:
#   - jobq's launcher starts the wake-up worker of the database on the new
#     primary (the time from "accepts writes" to "worker runs" is printed);
#   - the scheduled job falls due there and a listener hears its wake-up;
#   - the job is still there, waiting, and a grab on the new primary gets it.
# Exits non-zero with a message on the first failure.
#
#   JOBQ_PG_BIN   server binaries (default /usr/lib/postgresql/15/bin), with
#                 jobq installed
#   JOBQ_PROMOTION_PORTS  two ports (default "54338 54339")
#
#   bash tests/bin/promotion-test.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
pg_bin="${JOBQ_PG_BIN:-/usr/lib/postgresql/15/bin}"
export JOBQ_PG_BIN="$pg_bin"
read -r primary_port standby_port <<<"${JOBQ_PROMOTION_PORTS:-54338 54339}"
tmp="${TMPDIR:-/tmp}"

log() { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31mpromotion test FAILED: %s\033[0m\n' "$*" >&2; exit 1; }
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
now_ms() { date +%s%3N; }

cleanup() {
    bash "$here/pg-cluster.sh" stop promotion-standby
    bash "$here/pg-cluster.sh" stop promotion-primary
}
trap cleanup EXIT
cleanup
rm -rf "$tmp/jobq-cluster-promotion-primary" "$tmp/jobq-cluster-promotion-standby"

conf=("shared_preload_libraries = 'jobq'" "max_worker_processes = 16")
primary="$(bash "$here/pg-cluster.sh" start promotion-primary "$primary_port" "${conf[@]}")"
primary="${primary%/postgres}/jobq_ha"
standby="postgres://postgres@127.0.0.1:$standby_port/jobq_ha"
psql_at() {
    local url="$1"
    shift
    "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -d "$url" "$@"
}
value_at() { psql_at "$1" -At -c "$2"; }
workers_of() {
    value_at "$1" "SELECT count(*) FROM jobq.jq_wakeup_workers()
                   WHERE database_oid = (SELECT oid FROM pg_database WHERE datname = current_database())"
}

psql_at "${primary%/jobq_ha}/postgres" -c "CREATE DATABASE jobq_ha"
psql_at "$primary" -c "CREATE EXTENSION jobq"

log "standby: pg_basebackup -R from the primary"
standby_base="$tmp/jobq-cluster-promotion-standby"
mkdir -p "$standby_base"
[ "$(id -u)" = 0 ] && chown postgres: "$standby_base"
as_owner "$pg_bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres \
    -D "$standby_base/data" -R -X stream -c fast
bash "$here/pg-cluster.sh" start promotion-standby "$standby_port" "${conf[@]}" >/dev/null
[ "$(value_at "$standby" "SELECT pg_is_in_recovery()")" = t ] || die "the standby is not in recovery"

# A job due 8 s from now: after the promotion below, not before.
job="$(value_at "$primary" "SELECT jobq.jq_enqueue('promoted', '{}', run_at => clock_timestamp() + interval '8 seconds')")"
lsn="$(value_at "$primary" "SELECT pg_current_wal_flush_lsn()")"
for _ in $(seq 100); do
    [ "$(value_at "$standby" "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ] && break
    sleep 0.1
done
[ "$(value_at "$standby" "SELECT count(*) FROM jobq.live_jobs WHERE id = $job")" = 1 ] ||
    die "the job did not reach the standby"
[ "$(workers_of "$standby")" = 0 ] || die "a wake-up worker runs on the standby while it is in recovery"

log "the primary stops (immediate), the standby is promoted; nobody grabs"
as_owner "$pg_bin/pg_ctl" -D "$tmp/jobq-cluster-promotion-primary/data" -m immediate -w stop >/dev/null
as_owner "$pg_bin/pg_ctl" -D "$standby_base/data" promote >/dev/null
for _ in $(seq 300); do
    [ "$(value_at "$standby" "SELECT pg_is_in_recovery()")" = f ] && break
    sleep 0.01
done
writable="$(now_ms)"
[ "$(value_at "$standby" "SELECT pg_is_in_recovery()")" = f ] || die "the standby was not promoted"
running=""
for _ in $(seq 1000); do
    if [ "$(workers_of "$standby")" = 1 ]; then
        running="$(now_ms)"
        break
    fi
    sleep 0.01
done
[ -n "$running" ] || die "no wake-up worker on the promoted standby within 10 s"
log "the wake-up worker ran $((running - writable)) ms after the promoted standby accepted writes"
[ $((running - writable)) -lt 3000 ] ||
    die "the wake-up worker started $((running - writable)) ms after the promotion (expected about 1 s at most)"

log "a listener on the new primary hears the scheduled job fall due"
heard="$("$pg_bin/psql" -X -d "$standby" -c "LISTEN jobq_wakeup" -c "SELECT pg_sleep(12)" 2>&1 || true)"
grep -q 'Asynchronous notification "jobq_wakeup"' <<<"$heard" ||
    die "no wake-up was heard on the new primary when the job fell due: $heard"
[ "$(value_at "$standby" "SELECT count(*) FROM jobq.jq_grab(ARRAY['promoted'], '1 minute', 10) WHERE id = $job")" = 1 ] ||
    die "a grab on the new primary did not get the job"
log "promotion test passed"
