#!/usr/bin/env bash
# Pushes N jobs through a jobq database and reports the size of the live
# table, the history and the events before and after, and what maintenance
# did (README "Retention and maintenance").
#
#   churn.sh URL [JOBS=1000000] [CLIENTS=2]
#
# URL names a database with jobq installed (it is used as is: run it on a
# scratch database). Each pgbench round enqueues 1,000 jobs of type "churn"
# with jq_enqueue_many, then grabs and completes them 100 at a time with
# jq_grab and jq_complete_many, every statement its own transaction, with
# synchronous_commit off. Set the retention first to see pruning under load,
# e.g. UPDATE jobq.job_types SET retention = '0' WHERE job_type = '*'.
set -euo pipefail

url="$1"
jobs="${2:-1000000}"
clients="${3:-2}"
pgbench="${JOBQ_PG_BIN:-/usr/lib/postgresql/15/bin}/pgbench"
script="$(mktemp)"
trap 'rm -f "$script"' EXIT

{
    echo "SELECT count(*) FROM jobq.jq_enqueue_many((SELECT jsonb_agg(jsonb_build_object('job_type', 'churn', 'args', jsonb_build_object('n', n))) FROM generate_series(1, 1000) n));"
    for _ in $(seq 10); do
        # pgbench substitutes variables as text: quote the arrays here.
        echo "SELECT quote_literal(array_agg(id)) AS ids, quote_literal(array_agg(lease_token)) AS toks FROM jobq.jq_grab(ARRAY['churn'], '5 minutes', 100, 'churner') \\gset"
        echo "SELECT count(*) FROM jobq.jq_complete_many(:ids::bigint[], :toks::uuid[]);"
    done
} >"$script"

sizes() {
    psql "$url" -XAtF ' | ' -c "
        SELECT '$1', 'live heap ' || pg_size_pretty(pg_relation_size('jobq.live_jobs')),
               'live indexes ' || pg_size_pretty(pg_indexes_size('jobq.live_jobs')),
               'history ' || pg_size_pretty((SELECT sum(pg_total_relation_size(t.relid))
                                             FROM pg_partition_tree('jobq.job_history') t)),
               'events ' || pg_size_pretty(pg_total_relation_size('jobq.event_batches')),
               'live rows ' || (SELECT count(*) FROM jobq.live_jobs),
               'history rows ' || (SELECT count(*) FROM jobq.job_history),
               'live dead ' || coalesce((SELECT n_dead_tup FROM pg_stat_user_tables
                                         WHERE relid = 'jobq.live_jobs'::regclass), 0)"
}

sizes before
start=$(date +%s)
PGOPTIONS='-c synchronous_commit=off' "$pgbench" -n -c "$clients" -j "$clients" \
    -t $((jobs / 1000 / clients)) -f "$script" "$url" | grep -E 'tps|failed'
echo "$jobs jobs in $(($(date +%s) - start)) s"
sizes after
psql "$url" -XAt -c "SELECT 'last maintenance: ' || last_summary::text FROM jobq.maintenance"
