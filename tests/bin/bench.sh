#!/usr/bin/env bash
# Runs the benchmarks on a throwaway cluster (127.0.0.1:54333) with jobq
# preloaded, default durability (fsync=on, synchronous_commit=on).
#
#   bash tests/bin/bench.sh [enqueue]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
JOBQ_PROFILE=release bash "$here/setup.sh"
bash "$here/pg-cluster.sh" stop bench
server_url="$(bash "$here/pg-cluster.sh" start bench 54333 \
    "shared_preload_libraries = 'jobq'" "max_worker_processes = 32" "synchronous_commit = on")"
trap 'bash "$here/pg-cluster.sh" stop bench' EXIT
psql "$server_url" -Xq -c "DROP DATABASE IF EXISTS jobq_bench WITH (FORCE)" -c "CREATE DATABASE jobq_bench"
url="${server_url%/postgres}/jobq_bench"
psql "$url" -Xq -v ON_ERROR_STOP=1 -c "CREATE EXTENSION jobq"
cd "$root"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); $(psql "$url" -XAtc 'SELECT version()' | cut -d, -f1)"
cargo run --quiet --release -p jobq-bench -- "$url" "$@"
