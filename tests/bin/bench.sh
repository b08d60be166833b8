#!/usr/bin/env bash
# Runs the benchmarks on a throwaway cluster with jobq preloaded and default
# durability (fsync=on, synchronous_commit=on). Builds and installs the
# extension first (release), like the other scripts.
#
#   bash tests/bin/bench.sh [all|drain|grabbers|latency|enqueue|history] [--jobs N] [--samples N] [--history]
#
# "all" (the default) takes about 6 minutes on 2 cores; --history adds the
# grab rate with 1,000,000 finished jobs retained (several minutes more).
#
#   JOBQ_BENCH_NO_SETUP=1   skip setup.sh: use the jobq already installed in
#                           the PostgreSQL of JOBQ_PG_BIN / JOBQ_PG_CONFIG
#   JOBQ_PG_BIN             server binaries (default /usr/lib/postgresql/15/bin)
#   JOBQ_PG_CONFIG          pg_config of that server (default: PG15's)
#   JOBQ_BENCH_CLUSTER      cluster name for pg-cluster.sh (default bench)
#   JOBQ_BENCH_PORT         its port (default 54333)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pg_bin="${JOBQ_PG_BIN:-/usr/lib/postgresql/15/bin}"
pg_config="${JOBQ_PG_CONFIG:-$pg_bin/pg_config}"
cluster="${JOBQ_BENCH_CLUSTER:-bench}"
port="${JOBQ_BENCH_PORT:-54333}"
export JOBQ_PG_BIN="$pg_bin"

if [ "${JOBQ_BENCH_NO_SETUP:-}" != 1 ]; then
    JOBQ_PROFILE=release JOBQ_PG_CONFIG="$pg_config" bash "$here/setup.sh"
fi
# Build before the cluster starts, so that compiling does not run beside it.
(cd "$root" && cargo build --quiet --release -p jobq-bench)
bench="${CARGO_TARGET_DIR:-$root/target}/release/jobq-bench"

bash "$here/pg-cluster.sh" stop "$cluster"
server_url="$(bash "$here/pg-cluster.sh" start "$cluster" "$port" \
    "shared_preload_libraries = 'jobq'" "max_worker_processes = 32" "synchronous_commit = on")"
trap 'bash "$here/pg-cluster.sh" stop "$cluster"' EXIT
psql=("$pg_bin/psql" -X -v ON_ERROR_STOP=1)
"${psql[@]}" "$server_url" -q -c "DROP DATABASE IF EXISTS jobq_bench WITH (FORCE)" -c "CREATE DATABASE jobq_bench"
url="${server_url%/postgres}/jobq_bench"
"${psql[@]}" "$url" -q -c "CREATE EXTENSION jobq"

library="$("$pg_config" --pkglibdir)/jobq.so"
if readelf -S "$library" 2>/dev/null | grep -q '\.debug_info'; then
    build="has debug info: a debug build, or release with debug info"
else
    build="no debug info: a release build"
fi
echo "jobq library: $library, $(stat -c %s "$library") bytes, $(date -u -r "$library" '+%Y-%m-%d %H:%M UTC'), $build"
echo "bench: $bench ${*:-all}"
"$bench" "$url" "$@"
