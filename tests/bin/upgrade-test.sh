#!/usr/bin/env bash
# The upgrade test: for every released version of jobq (the table below), it
# installs that version's SQL as built from git history, fills a database with
# jobs in every state through that version's API (tests/upgrade/fill.sql),
# records everything the API shows (tests/upgrade/capture.sql), runs
# ALTER EXTENSION jobq UPDATE, and checks that
#   - the extension is at the installed default version, which equals the
#     loaded library's (jobq.jq_library_version());
#   - everything recorded is unchanged: every job's jq_details, the whole
#     event stream, a subscriber's saved cursor, each job's events, settings,
#     the operator views (a readable diff on a mismatch);
#   - unique keys, leases, dependencies, paused queues and retries of the old
#     jobs still work, and a full lifecycle runs (tests/upgrade/post.sql);
#   - the upgraded schema is the same as a fresh CREATE EXTENSION jobq of the
#     current version (tests/upgrade/catalog.sql), and PUBLIC may execute
#     nothing in it.
# It exits non-zero with a message on the first failure; the captures and
# catalogs stay in $CARGO_TARGET_DIR/upgrade-test/ and the databases are
# dropped only when every check passed.
#
#   DATABASE_URL      postgres://user@host:port/db of a server that has the
#                     current jobq installed and preloaded (required); the
#                     test creates and drops databases jobq_upgrade_* on it
#   JOBQ_PG_CONFIG    pg_config of that server's installation (default PG15's):
#                     the old versions' scripts are written into its
#                     sharedir/extension (as root, or with sudo)
#   CARGO_TARGET_DIR  the workspace's target dir (default: target/); building
#                     an old version reuses its compiled dependencies, and the
#                     built scripts are cached in its upgrade-cache/
#   JOBQ_UPGRADE_FROM only these old versions (space-separated)
#   tests/upgrade/ignore-from-VERSION.sed, when present: sed -E expressions
#                     applied to both captures of the upgrade from VERSION, to
#                     mask changes of the API's output that the release
#                     documents (none so far)
#   JOBQ_UPGRADE_SKIP_LIBRARY_VERSION=1
#                     skip the check that the library's version equals the
#                     extension's; only for trying the harness with a scratch
#                     version whose library is an older build
#
#   bash tests/bin/upgrade-test.sh
set -euo pipefail

# Released versions and the commits they were released from. Add a line for
# each release; its upgrade script sql/upgrades/jobq--A--B.sql goes with it.
released=(
    "0.1.0 ecab8bbf7464f03dbd3fffc35c0e2637c7cffd5f"
    "0.2.0 9267845088995f0c7f556b855e25320502999453"
)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
upgrade_dir="$root/tests/upgrade"
pg_config="${JOBQ_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
cache_dir="$target_dir/upgrade-cache"
out="$target_dir/upgrade-test"

log() { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[1;31mupgrade test FAILED: %s\033[0m\n' "$*" >&2; exit 1; }
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

[ -n "${DATABASE_URL:-}" ] || die "DATABASE_URL is not set (a server with the current jobq installed and preloaded)"
# The URL of another database on the same server: the path part replaced.
url_base="${DATABASE_URL%%\?*}"
url_query="${DATABASE_URL#"$url_base"}"
[[ "$url_base" =~ ^postgres(ql)?://[^/]+/ ]] ||
    die "DATABASE_URL must look like postgres://user@host:port/database, not $DATABASE_URL"
url_of() { printf '%s/%s%s' "${url_base%/*}" "$1" "$url_query"; }

psql_in() {
    local db="$1"
    shift
    PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
        psql -X -q -v ON_ERROR_STOP=1 -d "$(url_of "$db")" "$@"
}
value_in() { psql_in "$1" -At -c "$2"; }
admin_db="${url_base##*/}"

recreate_db() {
    # Collation C: the captures and catalogs sort the same on any server.
    psql_in "$admin_db" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" \
        -c "CREATE DATABASE $1 TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C'"
}

pg_major="$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
extension_dir="$("$pg_config" --sharedir)/extension"
current="$(value_in "$admin_db" "SELECT default_version FROM pg_available_extensions WHERE name = 'jobq'")"
[ -n "$current" ] || die "jobq is not installed on the server of $DATABASE_URL"
[ -f "$extension_dir/jobq--$current.sql" ] ||
    die "$extension_dir has no jobq--$current.sql: is $pg_config the server's pg_config?"
rm -rf "$out"
mkdir -p "$cache_dir" "$out"

# Prints the path of version $1's install script, built from commit $2 with
# `cargo pgrx schema` the first time and cached by commit and PG major.
old_script() {
    local version="$1" commit="$2"
    local cached="$cache_dir/$commit-pg$pg_major.sql"
    if [ -s "$cached" ]; then
        echo "$cached"
        return
    fi
    git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null ||
        die "commit $commit of jobq $version is not in this clone (shallow? run: git fetch --unshallow)"
    local src
    src="$(mktemp -d "${TMPDIR:-/tmp}/jobq-upgrade-src.XXXXXX")"
    # -m: the files get the time of extraction, not of the commit. Cargo's
    # fingerprint of the crate does not depend on the directory, so with the
    # commit's times it could take an earlier build's output as up to date.
    git -C "$root" archive "$commit" | tar -x -m -C "$src"
    # Built in the workspace's target dir, so the dependencies (pgrx, its
    # bindings) are the ones `cargo pgrx install` compiled already, but under
    # another library name: the cdylib's file name carries no hash, so the
    # old build would otherwise overwrite the current libjobq.so and leave
    # cargo believing it is up to date. The name appears in nothing that the
    # script uses except comments, which get the real crate name back below.
    sed -i 's/^\[lib\]$/[lib]\nname = "jobq_upgrade_build"/' "$src/extension/Cargo.toml"
    grep -q '^name = "jobq_upgrade_build"' "$src/extension/Cargo.toml" ||
        die "cannot rename the library in $commit's extension/Cargo.toml (no [lib] section?)"
    log "building jobq $version ($commit) for its install script (cargo pgrx schema)"
    local started=$SECONDS
    (cd "$src/extension" && CARGO_TARGET_DIR="$target_dir" \
        cargo pgrx schema --no-default-features --features "pg$pg_major" --out "$src/schema.sql" >&2) ||
        { rm -rf "$src"; die "cargo pgrx schema failed for jobq $version ($commit)"; }
    sed 's/\bjobq_upgrade_build::/jobq::/g' "$src/schema.sql" >"$cached.tmp"
    mv "$cached.tmp" "$cached"
    rm -rf "$src"
    log "built jobq--$version.sql in $((SECONDS - started)) s (cached as $cached)"
    echo "$cached"
}

# The definition of schema jobq in a database, and what PUBLIC may use there.
catalog_of() { psql_in "$1" -At -F $'\t' -f "$upgrade_dir/catalog.sql"; }
public_grants() {
    value_in "$1" "
        SELECT string_agg(x, ', ' ORDER BY x) FROM (
            SELECT p.oid::regprocedure::text AS x
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
            WHERE n.nspname = 'jobq' AND a.grantee = 0
            UNION ALL
            SELECT c.oid::regclass::text || ' (' || a.privilege_type || ')'
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
            WHERE n.nspname = 'jobq' AND a.grantee = 0
            UNION ALL
            SELECT 'schema jobq (' || a.privilege_type || ')'
            FROM pg_namespace n
            CROSS JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
            WHERE n.nspname = 'jobq' AND a.grantee = 0) s"
}

# What the API shows of the jobs in database $1 (tests/upgrade/capture.sql).
capture() { psql_in "$1" -At -F $'\t' -f "$upgrade_dir/capture.sql"; }

# Fails with a unified diff when two files differ.
same_or_die() {
    local before="$1" after="$2" what="$3"
    if ! diff -u --label "$4" --label "$5" "$before" "$after" >"$after.diff"; then
        cat "$after.diff" >&2
        die "$what (diff above; also in $after.diff)"
    fi
}

log "jobq $current is installed in $extension_dir; the upgrade test starts from each older release"
fresh_db=jobq_upgrade_fresh
recreate_db "$fresh_db"
psql_in "$fresh_db" -c "CREATE EXTENSION jobq"
catalog_of "$fresh_db" >"$out/catalog-fresh.txt"
[ -z "$(public_grants "$fresh_db")" ] ||
    die "a fresh CREATE EXTENSION jobq lets PUBLIC use: $(public_grants "$fresh_db")"

tested=0
for line in "${released[@]}"; do
    read -r version commit <<<"$line"
    if [ -n "${JOBQ_UPGRADE_FROM:-}" ] && [[ " $JOBQ_UPGRADE_FROM " != *" $version "* ]]; then
        continue
    fi
    if [ "$version" = "$current" ]; then
        log "skipping $version: it is the installed version (nothing to upgrade to)"
        continue
    fi
    started=$SECONDS
    script="$(old_script "$version" "$commit")"
    if ! cmp -s "$script" "$extension_dir/jobq--$version.sql"; then
        as_root install -m 644 "$script" "$extension_dir/jobq--$version.sql"
    fi
    path="$(value_in "$admin_db" "SELECT path FROM pg_extension_update_paths('jobq')
                                  WHERE source = '$version' AND target = '$current'")"
    [ -n "$path" ] ||
        die "no upgrade path from $version to $current in $extension_dir (sql/upgrades/jobq--$version--*.sql, installed by setup.sh)"
    log "upgrade $path: fill a jobq $version database with jobs in every state"
    db="jobq_upgrade_from_${version//[^0-9a-zA-Z]/_}"
    recreate_db "$db"
    # The old version's functions bind to the current library's symbols:
    # CREATE EXTENSION fails here if one of them is gone.
    psql_in "$db" -c "CREATE EXTENSION jobq VERSION '$version'" ||
        die "CREATE EXTENSION jobq VERSION '$version' failed against the current library"
    psql_in "$db" -o /dev/null -c "SELECT jobq.jq_library_version(), jobq._ensure_wakeup_worker()" \
        -c "SELECT * FROM jobq.jq_wakeup_workers()"
    psql_in "$db" -o /dev/null -f "$upgrade_dir/fill.sql" || die "filling the jobq $version database failed"

    capture "$db" >"$out/before-$version.txt" || die "capturing the jobq $version database failed"
    psql_in "$db" -c "INSERT INTO jq_upgrade.saved VALUES ('upgraded_at', clock_timestamp()::text)"

    log "ALTER EXTENSION jobq UPDATE ($path)"
    psql_in "$db" -c "ALTER EXTENSION jobq UPDATE" || die "ALTER EXTENSION jobq UPDATE from $version failed"
    ext_version="$(value_in "$db" "SELECT extversion FROM pg_extension WHERE extname = 'jobq'")"
    [ "$ext_version" = "$current" ] || die "after the update from $version, jobq is at $ext_version, not $current"
    lib_version="$(value_in "$db" "SELECT jobq.jq_library_version()")"
    if [ "${JOBQ_UPGRADE_SKIP_LIBRARY_VERSION:-0}" = 1 ]; then
        log "not comparing the library version ($lib_version) with $ext_version (JOBQ_UPGRADE_SKIP_LIBRARY_VERSION=1)"
    else
        [ "$lib_version" = "$ext_version" ] ||
            die "the extension is at $ext_version but the loaded library is $lib_version"
    fi

    log "compare what the API shows before and after the update ($(wc -l <"$out/before-$version.txt") facts)"
    capture "$db" >"$out/after-$version.txt" || die "capturing the upgraded database failed"
    # A change of what the API shows that the release documents (say, a key
    # of jq_details) is masked by sed expressions in this file, on both sides.
    ignore="$upgrade_dir/ignore-from-$version.sed"
    compared=txt
    if [ -f "$ignore" ]; then
        log "masking the documented changes listed in $ignore"
        compared=masked.txt
        sed -E -f "$ignore" "$out/before-$version.txt" >"$out/before-$version.$compared"
        sed -E -f "$ignore" "$out/after-$version.txt" >"$out/after-$version.$compared"
    fi
    same_or_die "$out/before-$version.$compared" "$out/after-$version.$compared" \
        "the data seen through the API changed in the update from $version" \
        "before (jobq $version)" "after (jobq $current)"

    # Before the behaviour: a function the upgrade script left behind shows
    # here as a diff of its body rather than as a failing call below.
    log "compare the upgraded schema with a fresh CREATE EXTENSION jobq"
    catalog_of "$db" >"$out/catalog-from-$version.txt"
    same_or_die "$out/catalog-fresh.txt" "$out/catalog-from-$version.txt" \
        "the schema upgraded from $version differs from a fresh install of $current" \
        "fresh install of $current" "upgraded from $version"
    grants="$(public_grants "$db")"
    [ -z "$grants" ] || die "after the update from $version, PUBLIC may use: $grants"
    # The catalogs leave partitions out; pg_dump needs the dated ones outside
    # the extension (it would skip their rows) and each with its own index.
    partitions="$(value_in "$db" "SELECT count(*) FROM jobq._history_partitions()")"
    members="$(value_in "$db" "
        SELECT count(*) FROM jobq._history_partitions() p
        JOIN pg_depend d ON d.objid = format('jobq.%I', p.name)::regclass
        WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
          AND d.deptype = 'e'")"
    indexed="$(value_in "$db" "
        SELECT count(*) FROM jobq._history_partitions() p
        WHERE EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = format('jobq.%I', p.name)::regclass)")"
    [ "$members" = 0 ] ||
        die "after the update from $version, $members dated history partitions still belong to the extension"
    [ "$indexed" = "$partitions" ] ||
        die "after the update from $version, only $indexed of $partitions dated history partitions have an index"

    log "checks on the upgraded jobs and a full lifecycle"
    psql_in "$db" -o /dev/null -f "$upgrade_dir/post.sql" || die "the checks after the update from $version failed"

    psql_in "$admin_db" -c "DROP DATABASE $db WITH (FORCE)"
    log "upgrade from $version passed ($((SECONDS - started)) s)"
    tested=$((tested + 1))
done
psql_in "$admin_db" -c "DROP DATABASE $fresh_db WITH (FORCE)"
log "upgrade test passed: $tested upgrade path(s) to $current"
