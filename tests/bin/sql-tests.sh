#!/usr/bin/env bash
# Runs the SQL-level suites against a running server that has jobq installed:
# pg_regress (tests/regress) and pg_isolation_regress (tests/isolation).
# Each suite gets a fresh database (pg_regress drops and recreates it) with
# CREATE EXTENSION jobq already run.
#
#   sql-tests.sh HOST PORT
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pgxs="$(dirname "$(${JOBQ_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config} --pgxs)")/.."
host="$1"
port="$2"
out="$root/target/sql-tests"
mkdir -p "$out/regress" "$out/isolation"

shopt -s nullglob
regress_tests=("$root"/tests/regress/sql/*.sql)
isolation_tests=("$root"/tests/isolation/specs/*.spec)
names() { for f in "$@"; do basename "${f%.*}"; done; }

# pg_regress drops its database without FORCE, which fails while jobq's
# wake-up worker is connected to it (a re-run on a running cluster).
for db in jobq_regress jobq_isolation; do
    psql -X -q -h "$host" -p "$port" -U postgres -d postgres \
        -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
done

status=0
if [ "${#regress_tests[@]}" -gt 0 ]; then
    "$pgxs/test/regress/pg_regress" --host="$host" --port="$port" --user=postgres \
        --inputdir="$root/tests/regress" --outputdir="$out/regress" \
        --dbname=jobq_regress --load-extension=jobq \
        $(names "${regress_tests[@]}") || { status=1; cat "$out/regress/regression.diffs" >&2 || true; }
fi
if [ "${#isolation_tests[@]}" -gt 0 ]; then
    "$pgxs/test/isolation/pg_isolation_regress" --host="$host" --port="$port" --user=postgres \
        --inputdir="$root/tests/isolation" --outputdir="$out/isolation" \
        --dbname=jobq_isolation --load-extension=jobq \
        $(names "${isolation_tests[@]}") || { status=1; cat "$out/isolation/regression.diffs" >&2 || true; }
fi
exit "$status"
