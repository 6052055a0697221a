#!/usr/bin/env bash
# A throwaway PostgreSQL server for the PyAirbyte Postgres-cache test (integration_tests/
# test_exact_cache.py): loopback only, in a fresh temp directory, as a non-root OS user.
#
#   scripts/postgres.sh start     # prints one JSON line: {"host","port","user","password","database","dir"}
#   scripts/postgres.sh stop DIR  # stops the server started in DIR and removes DIR
#
# Finds the server binaries of Debian's `postgresql` package (/usr/lib/postgresql/<ver>/bin,
# or pg_ctl on PATH); when they are missing and we are root with apt-get, installs the
# package. PostgreSQL refuses to run as root, so as root the server runs as the `postgres`
# user the package creates. Authentication is `trust` on 127.0.0.1 only: the server lives
# for one test run, holds test data only, and its socket directory is private.
# Any failure exits non-zero with the reason on stderr: the test then fails, never skips.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }
die() { log "$*"; exit 1; }

bindir() {
    local d
    d="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    if [[ -n "$d" && -x "$d/pg_ctl" && -x "$d/initdb" ]]; then echo "$d"; return 0; fi
    if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"; return 0
    fi
    return 1
}

ensure_installed() {
    bindir >/dev/null && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing the Debian package postgresql"
        if ! { apt-get update -qq >&2 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2; }; then
            die "apt-get install postgresql failed"
        fi
    fi
    bindir >/dev/null || die "PostgreSQL server binaries not found (install the Debian package postgresql, or put pg_ctl and initdb on PATH)"
}

# Runs a command as the server's OS user: ourselves, or `postgres` when we are root.
as_db_user() {
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' OS user to run the server as"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    ensure_installed
    local bin dir port
    bin="$(bindir)"
    # Not under pytest's basetemp: its parents are mode 0700, closed to the postgres user.
    dir="$(mktemp -d "${TMPDIR:-/tmp}/source-convex-pg.XXXXXX")"
    chmod 0755 "$dir"
    mkdir "$dir/data" "$dir/run"
    [[ "$(id -u)" == 0 ]] && chown -R postgres: "$dir"
    as_db_user "$bin/initdb" -D "$dir/data" -U airbyte --auth=trust -E UTF8 --no-locale \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    local tries=0
    while :; do
        port="$(free_port)"
        if as_db_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/run -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >&2; then
            break
        fi
        tries=$((tries + 1))
        if [[ $tries -ge 3 ]]; then
            cat "$dir/server.log" >&2 || true
            die "the server did not start (log above)"
        fi
    done
    as_db_user "$bin/createdb" -h 127.0.0.1 -p "$port" -U airbyte convex_cache >&2 \
        || { "$0" stop "$dir" || true; die "createdb failed"; }
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
    printf '{"host":"127.0.0.1","port":%s,"user":"airbyte","password":"unused-trust-auth","database":"convex_cache","dir":"%s"}\n' \
        "$port" "$dir"
}

stop() {
    local dir="${1:?usage: postgres.sh stop DIR}"
    [[ -d "$dir/data" ]] || die "$dir is not a directory started by postgres.sh"
    local bin
    bin="$(bindir)" || die "PostgreSQL binaries not found"
    as_db_user "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2 || log "pg_ctl stop failed"
    rm -rf "$dir"
}

case "${1:-}" in
    start) start ;;
    stop) shift; stop "$@" ;;
    *) echo "usage: $0 start | stop DIR" >&2; exit 2 ;;
esac
