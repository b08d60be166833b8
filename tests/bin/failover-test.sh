#!/usr/bin/env bash
# The failover test, with a real HA manager: pg_auto_failover runs a monitor,
# a primary and a standby (synchronous by default) on 127.0.0.1, as the
# postgres user, jobq preloaded on both nodes. Four producer processes
# enqueue 20,000 jobs and four worker processes (the Rust runtime) process
# them, all on one multi-host URL with target_session_attrs=read-write.
# Mid-run the primary crashes (its pg_autoctl is killed, then its server
# stopped in immediate mode) and the monitor promotes the standby. Then:
#   - the producers and workers carry on without a restart;
#   - every job a producer saw committed exists on the new primary and is
#     completed exactly once (its state, and exactly one 'completed' event);
#     none is stuck;
#   - the wake-up worker runs on the new primary with no grab needed;
#   - printed: how long after the new primary accepted writes the workers
#     completed jobs again, and (asynchronous mode) how many committed jobs
#     the failover lost.
#
#   bash tests/bin/failover-test.sh [sync|async] [--jobs N]
#
# sync (the default) must lose nothing and fails otherwise. async makes the
# standby asynchronous (replication-quorum false): jobs committed on the old
# primary but not yet streamed are lost, which the test reports instead of
# failing on.
#
#   JOBQ_PG_BIN       server binaries (default /usr/lib/postgresql/15/bin),
#                     with jobq installed (bash tests/bin/setup.sh)
#   JOBQ_FAILOVER_PORTS  monitor, node 1 and node 2 ports (default "54350 54351 54352")
#   CARGO_TARGET_DIR  where the load binary is built (default target/)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pg_bin="${JOBQ_PG_BIN:-/usr/lib/postgresql/15/bin}"
read -r monitor_port port1 port2 <<<"${JOBQ_FAILOVER_PORTS:-54350 54351 54352}"
mode=sync
jobs=20000
while [ $# -gt 0 ]; do
    case "$1" in
        sync|async) mode="$1" ;;
        --jobs) jobs="$2"; shift ;;
        *) echo "usage: $0 [sync|async] [--jobs N]" >&2; exit 2 ;;
    esac
    shift
done
producers=4
workers=4
per_producer=$((jobs / producers))
jobs=$((per_producer * producers))

log() { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31mfailover test FAILED: %s\033[0m\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }

command -v pg_autoctl >/dev/null ||
    die "pg_autoctl is not installed (Debian: apt-get install postgresql-15-auto-failover)"
base="${TMPDIR:-/tmp}/jobq-failover"
# pg_autoctl keeps its configuration and state under XDG directories: the
# test's own, so that nothing of the postgres user's is touched.
export XDG_CONFIG_HOME="$base/config" XDG_DATA_HOME="$base/share" XDG_RUNTIME_DIR="$base/run"
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- env "XDG_CONFIG_HOME=$XDG_CONFIG_HOME" "XDG_DATA_HOME=$XDG_DATA_HOME" \
            "XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR" "PATH=$pg_bin:$PATH" "$@"
    else
        env "PATH=$pg_bin:$PATH" "$@"
    fi
}
psql_at() {
    local url="$1"
    shift
    "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -d "$url" "$@"
}
value_at() { psql_at "$1" -At -c "$2"; }

log "building the load binary"
(cd "$root" && cargo build --quiet -p jobq-integration-tests --bin jobq-failover-load)
load="${CARGO_TARGET_DIR:-$root/target}/debug/jobq-failover-load"

pids=()
# Each `pg_autoctl run` in a session of its own (setsid), so that killing
# the session ends the keeper and every process it started.
sessions=()
cleanup() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for sid in "${sessions[@]}"; do kill -9 -- "-$sid" 2>/dev/null || true; done
    for node in node1 node2 monitor; do
        if [ -f "$base/$node/PG_VERSION" ]; then
            as_pg "$pg_bin/pg_ctl" -D "$base/$node" -m immediate stop >/dev/null 2>&1 || true
        fi
    done
}
trap cleanup EXIT
if [ -d "$base" ]; then
    # A previous run that was itself killed: its keepers' sessions.
    for sid in $(cat "$base/sessions" 2>/dev/null); do kill -9 -- "-$sid" 2>/dev/null || true; done
    for node in node1 node2 monitor; do
        [ -f "$base/$node/PG_VERSION" ] &&
            { as_pg "$pg_bin/pg_ctl" -D "$base/$node" -m immediate stop >/dev/null 2>&1 || true; }
    done
    rm -rf "$base"
fi
mkdir -p "$base/config" "$base/share" "$base/run" "$base/out"
chmod 700 "$base/run"
[ "$(id -u)" = 0 ] && chown -R postgres: "$base"

# Starts `pg_autoctl run` for a node in the background.
run_node() {
    setsid bash -c "$(declare -f as_pg); $(declare -p pg_bin); as_pg pg_autoctl run --pgdata '$base/$1'" \
        >"$base/out/$1.log" 2>&1 &
    sessions+=($!)
    echo "$!" >>"$base/sessions"
    eval "session_$1=$!"
}

log "pg_auto_failover monitor on port $monitor_port"
as_pg pg_autoctl create monitor --pgdata "$base/monitor" --pgport "$monitor_port" \
    --hostname 127.0.0.1 --auth trust --no-ssl --pgctl "$pg_bin/pg_ctl" >"$base/out/create-monitor.log" 2>&1 ||
    { cat "$base/out/create-monitor.log" >&2; die "pg_autoctl create monitor failed"; }
run_node monitor
monitor="postgres://autoctl_node@127.0.0.1:$monitor_port/pg_auto_failover?sslmode=disable"
for _ in $(seq 100); do value_at "$monitor" "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
# Detect a dead primary in about 3 s and promote 2 s later, instead of the
# defaults' 20 s and 30 s. The keepers' network_partition_timeout (below)
# stays under primary_demote_timeout, so an isolated old primary demotes
# itself before the standby is promoted (no two primaries).
psql_at "postgres://postgres@127.0.0.1:$monitor_port/pg_auto_failover?sslmode=disable" \
    -c "ALTER SYSTEM SET pgautofailover.health_check_period = 1000" \
    -c "ALTER SYSTEM SET pgautofailover.health_check_timeout = 500" \
    -c "ALTER SYSTEM SET pgautofailover.health_check_max_retries = 1" \
    -c "ALTER SYSTEM SET pgautofailover.health_check_retry_delay = 500" \
    -c "ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = 2000" \
    -c "ALTER SYSTEM SET pgautofailover.primary_demote_timeout = 3000" \
    -c "SELECT pg_reload_conf()" >/dev/null

create_node() {
    local node="$1" port="$2"
    shift 2
    as_pg pg_autoctl create postgres --pgdata "$base/$node" --pgport "$port" --hostname 127.0.0.1 \
        --auth trust --no-ssl --pgctl "$pg_bin/pg_ctl" --monitor "$monitor" --name "$node" "$@" \
        >"$base/out/create-$node.log" 2>&1 ||
        { cat "$base/out/create-$node.log" >&2; die "pg_autoctl create postgres ($node) failed"; }
    as_pg pg_autoctl config set --pgdata "$base/$node" timeout.network_partition_timeout 2 >/dev/null
}

log "node1 (the first primary) on port $port1, jobq preloaded"
create_node node1 "$port1"
# Replicated to node2 with the rest of the data directory by pg_basebackup.
cat >>"$base/node1/postgresql.conf" <<EOF
shared_preload_libraries = 'jobq'
max_worker_processes = 16
max_connections = 200
EOF
run_node node1
node1="postgres://postgres@127.0.0.1:$port1/postgres"
node2="postgres://postgres@127.0.0.1:$port2/postgres"

state_of() {
    value_at "$monitor" "SELECT reportedstate || '/' || goalstate FROM pgautofailover.node WHERE nodename = '$1'" 2>/dev/null || true
}
wait_state() {
    local node="$1" want="$2" limit="$3"
    for _ in $(seq $((limit * 10))); do
        [ "$(state_of "$node")" = "$want" ] && return 0
        sleep 0.1
    done
    die "$node is $(state_of "$node"), not $want, after $limit s (logs in $base/out)"
}
wait_state node1 single/single 60
wait_server() {
    for _ in $(seq 300); do
        value_at "$1" "SELECT 1" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    die "the server of $1 does not accept connections (logs in $base/out)"
}
wait_server "$node1"
[ "$(value_at "$node1" "SHOW shared_preload_libraries")" = jobq ] ||
    die "jobq is not preloaded on node1"

log "node2 (the standby) on port $port2 ($mode replication)"
quorum=true
[ "$mode" = async ] && quorum=false
create_node node2 "$port2" --replication-quorum "$quorum"
run_node node2
wait_state node1 primary/primary 90
wait_state node2 secondary/secondary 90
wait_server "$node2"
[ "$(value_at "$node2" "SHOW shared_preload_libraries")" = jobq ] ||
    die "jobq is not preloaded on node2"
sync_names="$(value_at "$node1" "SHOW synchronous_standby_names")"
if [ "$mode" = sync ]; then
    [ -n "$sync_names" ] || die "node1 does not replicate synchronously"
else
    [ -z "$sync_names" ] || die "node1 replicates synchronously in async mode ($sync_names)"
fi
log "replication: synchronous_standby_names = '${sync_names}'"

psql_at "$node1" -c "CREATE DATABASE jobq_ha"
psql_at "${node1%/postgres}/jobq_ha" -c "CREATE EXTENSION jobq"
url="postgres://postgres@127.0.0.1:$port1,127.0.0.1:$port2/jobq_ha?target_session_attrs=read-write&connect_timeout=2"

log "$workers workers and $producers producers ($jobs jobs) on $url"
worker_pids=()
for i in $(seq "$workers"); do
    "$load" work "$url" 8 >"$base/out/worker-$i.log" 2>&1 &
    worker_pids+=($!)
    pids+=($!)
done
producer_pids=()
for i in $(seq "$producers"); do
    "$load" produce "$url" $(((i - 1) * per_producer)) "$per_producer" "$base/out/ids-$i.txt" \
        >"$base/out/producer-$i.log" 2>&1 &
    producer_pids+=($!)
    pids+=($!)
done
seen() { cat "$base"/out/ids-*.txt 2>/dev/null | wc -l; }
for _ in $(seq 600); do
    [ "$(seen)" -ge $((jobs / 4)) ] && break
    sleep 0.1
done
[ "$(seen)" -ge $((jobs / 4)) ] || die "the producers did not get a quarter of the jobs in within 60 s"

log "node1 crashes with $(seen) jobs enqueued"
kill -9 -- "-$session_node1"
as_pg "$pg_bin/pg_ctl" -D "$base/node1" -m immediate stop >/dev/null 2>&1 || true
crashed="$(now_ms)"
writable=""
for _ in $(seq 1200); do
    # What target_session_attrs=read-write asks: pg_auto_failover promotes
    # the standby read-only and opens it for writes once the old primary
    # cannot be one any more.
    if [ "$(value_at "$node2" "SELECT NOT pg_is_in_recovery() AND NOT current_setting('transaction_read_only')::boolean" \
            2>/dev/null || true)" = t ]; then
        writable="$(now_ms)"
        break
    fi
    sleep 0.05
done
[ -n "$writable" ] || die "node2 was not promoted within 60 s (logs in $base/out)"
log "node2 accepts writes $((writable - crashed)) ms after the crash"
new="postgres://postgres@127.0.0.1:$port2/jobq_ha"

for pid in "${producer_pids[@]}"; do
    wait "$pid" || die "a producer failed (logs in $base/out)"
done
log "the producers are done: $(seen) jobs seen committed"
sort -k2,2n "$base"/out/ids-*.txt >"$base/out/ids.txt"
psql_at "$new" -c "CREATE TABLE seen (n bigint NOT NULL, id bigint PRIMARY KEY)"
psql_at "$new" -c "\\copy seen FROM '$base/out/ids.txt' WITH (DELIMITER ' ')"

lost="$(value_at "$new" "SELECT count(*) FROM seen s
                         WHERE NOT EXISTS (SELECT 1 FROM jobq.live_jobs j WHERE j.id = s.id)
                           AND NOT EXISTS (SELECT 1 FROM jobq.job_history h WHERE h.id = s.id)")"
log "jobs seen committed but absent from the new primary: $lost"
if [ "$mode" = sync ] && [ "$lost" != 0 ]; then
    die "$lost committed jobs were lost with synchronous replication"
fi
deadline=$((SECONDS + 120))
while [ "$(value_at "$new" "SELECT count(*) FROM jobq.live_jobs WHERE job_type = 'failover'")" != 0 ]; do
    [ $SECONDS -lt $deadline ] ||
        die "jobs are stuck: $(value_at "$new" "SELECT count(*) FROM jobq.live_jobs WHERE job_type = 'failover'") not completed after 120 s"
    sleep 0.5
done
not_once="$(value_at "$new" "
    WITH completions AS (
        SELECT u.job_id, count(*) AS n
        FROM jobq.event_batches e CROSS JOIN LATERAL unnest(e.job_ids) AS u(job_id)
        WHERE e.event = 'completed'
        GROUP BY u.job_id)
    SELECT count(*) FROM seen s
    JOIN jobq.job_history h ON h.id = s.id
    LEFT JOIN completions c ON c.job_id = s.id
    WHERE h.state <> 'completed' OR coalesce(c.n, 0) <> 1")"
[ "$not_once" = 0 ] || die "$not_once jobs were not completed exactly once"
completed="$(value_at "$new" "SELECT count(*) FROM seen s JOIN jobq.job_history h USING (id) WHERE h.state = 'completed'")"
log "completed exactly once: $completed of $(seen) seen committed"

resumed="$(value_at "$new" "
    SELECT round(extract(epoch FROM min(e.at) - to_timestamp($writable / 1000.0)) * 1000)
    FROM jobq.event_batches e
    WHERE e.event = 'completed' AND e.at >= to_timestamp($writable / 1000.0)")"
log "the workers completed jobs again $resumed ms after the new primary accepted writes"
[ "$(value_at "$new" "SELECT count(*) FROM jobq.jq_wakeup_workers()
                      WHERE database_oid = (SELECT oid FROM pg_database WHERE datname = 'jobq_ha')")" = 1 ] ||
    die "no wake-up worker runs on the new primary"

for pid in "${worker_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "a worker process did not survive the failover (logs in $base/out)"
    kill -TERM "$pid"
done
for pid in "${worker_pids[@]}"; do
    wait "$pid" || die "a worker did not shut down cleanly after the failover"
done
echo "failover ($mode): $jobs jobs, $(seen) seen committed, $lost lost, $completed completed exactly once;" \
     "promotion $((writable - crashed)) ms after the crash, workers completing again $resumed ms after it"
log "failover test passed ($mode)"
