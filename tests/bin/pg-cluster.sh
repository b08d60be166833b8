#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL cluster for tests, benchmarks and the
# demo. initdb and postgres refuse to run as root, so as root the cluster runs
# as the "postgres" system user.
#
#   pg-cluster.sh start NAME PORT [extra postgresql.conf lines...]
#       creates the cluster if needed, starts it, prints its connection URL
#   pg-cluster.sh stop NAME
set -euo pipefail

pg_bin="${JOBQ_PG_BIN:-/usr/lib/postgresql/15/bin}"
action="$1"
name="$2"
base="${TMPDIR:-/tmp}/jobq-cluster-$name"
data="$base/data"

as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
start)
    port="$3"
    shift 3
    if [ ! -f "$data/PG_VERSION" ]; then
        mkdir -p "$base"
        [ "$(id -u)" = 0 ] && chown postgres: "$base"
        as_owner "$pg_bin/initdb" -D "$data" --auth=trust --username=postgres \
            --encoding=UTF8 --locale=C >"$base/initdb.log"
    fi
    # Also for clusters made by older versions of this script.
    if ! grep -q "^include 'jobq-cluster.conf'" "$data/postgresql.conf"; then
        echo "include 'jobq-cluster.conf'" | as_owner tee -a "$data/postgresql.conf" >/dev/null
    fi
    # Rewritten at every start, so a re-used cluster gets this run's settings
    # (they apply at the next start; stop first to change a running one).
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$base'"
        echo "max_connections = 200"
        echo "shared_buffers = 256MB"
        echo "logging_collector = off"
        for line in "$@"; do echo "$line"; done
    } | as_owner tee "$data/jobq-cluster.conf" >/dev/null
    if ! as_owner "$pg_bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        as_owner "$pg_bin/pg_ctl" -D "$data" -l "$base/server.log" -w -t 60 start >/dev/null
    fi
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    if [ -f "$data/PG_VERSION" ]; then
        as_owner "$pg_bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    ;;
*)
    echo "usage: $0 start NAME PORT [conf lines...] | stop NAME" >&2
    exit 2
    ;;
esac
