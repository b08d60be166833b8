#!/usr/bin/env bash
# The run command: sets up everything (setup.sh), installs jobq into a local
# Postgres and runs the demo worker on a batch of demo jobs, printing progress.
#
# By default it starts (or reuses) a throwaway cluster on 127.0.0.1:54331 and a
# fresh database jobq_demo in it, and leaves the cluster running so that you can
# look around in psql afterwards. With DATABASE_URL set, it uses that database
# instead and only creates the extension there if it is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
log() { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }

bash "$here/setup.sh"

if [ -z "${DATABASE_URL:-}" ]; then
    log "starting the demo cluster"
    # Restart so that the preloaded library is the one just installed.
    bash "$here/pg-cluster.sh" stop demo
    server_url="$(bash "$here/pg-cluster.sh" start demo 54331 \
        "shared_preload_libraries = 'jobq'" "max_worker_processes = 32")"
    psql "$server_url" -Xq -c "DROP DATABASE IF EXISTS jobq_demo WITH (FORCE)" -c "CREATE DATABASE jobq_demo"
    url="${server_url%/postgres}/jobq_demo"
else
    url="$DATABASE_URL"
fi
psql "$url" -Xq -v ON_ERROR_STOP=1 -c "CREATE EXTENSION IF NOT EXISTS jobq"

log "running the demo worker against $url"
cd "$root"
cargo run --quiet --release -p jobq-client --example demo -- "$url"

cat <<TXT

Look around:   psql $url
               SELECT state, count(*) FROM jobq.jobs GROUP BY state;
TXT
if [ -z "${DATABASE_URL:-}" ]; then
    echo "Stop the demo cluster:   bash tests/bin/pg-cluster.sh stop demo"
fi
