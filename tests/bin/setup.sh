#!/usr/bin/env bash
# Installs everything jobq needs on a Debian bookworm machine (apt packages,
# cargo-pgrx, pgrx init against the system PostgreSQL) and then builds and
# installs the extension. Safe to re-run: each step is skipped when done.
#
#   JOBQ_PG_CONFIG   pg_config of the target PostgreSQL (default: PG15's)
#   JOBQ_PROFILE     "debug" (default) or "release" extension build
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pg_config="${JOBQ_PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
pgrx_version="0.18.0"

log() { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# postgresql-15-auto-failover: pg_autoctl, for tests/bin/failover-test.sh.
apt_packages=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang
              pkg-config sudo ca-certificates postgresql-15-auto-failover)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing apt packages: ${missing[*]}"
    as_root apt-get update -qq
    # Debian's postgresql package would start its own cluster on 5432; that is
    # harmless, and we never depend on it.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "cargo is not installed: install Rust (https://rustup.rs) first" >&2
    exit 1
fi
if [ "$(cargo pgrx --version 2>/dev/null || true)" != "cargo-pgrx $pgrx_version" ]; then
    log "installing cargo-pgrx $pgrx_version (takes a few minutes, once)"
    cargo install cargo-pgrx --version "$pgrx_version" --locked
fi

pgrx_home="${PGRX_HOME:-$HOME/.pgrx}"
pg_major="$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
if ! grep -qs "^pg$pg_major = \"$pg_config\"" "$pgrx_home/config.toml"; then
    log "cargo pgrx init --pg$pg_major $pg_config"
    cargo pgrx init "--pg$pg_major" "$pg_config"
fi

log "building and installing the jobq extension into $("$pg_config" --sharedir)"
profile_flag=()
[ "${JOBQ_PROFILE:-debug}" = release ] && profile_flag=(--release)
(cd "$root/extension" && as_root env "PATH=$PATH" "HOME=$HOME" "PGRX_HOME=$pgrx_home" \
    cargo pgrx install "${profile_flag[@]}" --pg-config "$pg_config" \
    --no-default-features --features "pg$pg_major" >/dev/null)

# Upgrade scripts (ALTER EXTENSION jobq UPDATE). cargo pgrx install copies only
# those in the crate's own directory (extension/sql/jobq--*--*.sql); ours live
# with the rest of the hand-written SQL in sql/upgrades/, so they are copied
# here, as they are (no @CARGO_VERSION@ substitution).
shopt -s nullglob
upgrade_scripts=("$root"/sql/upgrades/jobq--*--*.sql)
if [ "${#upgrade_scripts[@]}" -gt 0 ]; then
    as_root install -m 644 "${upgrade_scripts[@]}" "$("$pg_config" --sharedir)/extension/"
fi
