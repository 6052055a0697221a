#!/usr/bin/env bash
# Quickstart: see source-convex work end to end in a minute, with no Convex account.
#
#   scripts/quickstart.sh
#
# 1. builds the static release binaries (scripts/build-static.sh: source-convex, convex-emulator)
#    and packs source-convex into the release wheel (scripts/build-wheel.sh; no second compile);
# 2. creates/reuses the pinned Python venv with PyAirbyte (scripts/python-env.sh: airbyte==0.71.3);
# 3. starts the Convex emulator on 127.0.0.1 with sample data (3 tables + component tables);
# 4. runs scripts/quickstart.py, PyAirbyte's documented flow: get_source(pip_url=<the wheel>,
#    install_if_missing=True) (PyAirbyte pip-installs it into its own venv) -> check ->
#    get_available_streams -> select_all_streams -> read() into ab.get_default_cache() ->
#    cache[stream].to_pandas() -> changes applied on the emulator -> second, incremental read();
# and at the end stops the emulator (also on Ctrl-C or failure).
#
# Everything PyAirbyte writes (DuckDB cache, logs, temp files) goes under target/quickstart/
# (override with QUICKSTART_DIR). PyAirbyte runs offline: AIRBYTE_OFFLINE_MODE=1, DO_NOT_TRACK=1.
# Needs: a Rust toolchain (cargo >= 1.88) and Python 3.11 (on Debian as root the script
# installs libc6-dev / python3-venv itself).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="${QUICKSTART_DIR:-$ROOT/target/quickstart}"
EMU_PID=""

say() { printf '\n\033[1m== %s\033[0m\n' "$*" >&2; }
log() { echo "quickstart: $*" >&2; }

cleanup() {
    if [[ -n "$EMU_PID" ]] && kill -0 "$EMU_PID" 2>/dev/null; then
        log "stopping the emulator (pid $EMU_PID)"
        curl -fsS -m 2 -X POST "${EMU_URL:-}/_emulator/shutdown" >/dev/null 2>&1 || kill "$EMU_PID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$EMU_PID" 2>/dev/null || break; sleep 0.2; done
        kill "$EMU_PID" 2>/dev/null || true
        wait "$EMU_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- system packages (fresh Debian/Ubuntu as root) -------------------------------------------
if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    need=()
    [[ -e /usr/lib/x86_64-linux-gnu/libc.a ]] || need+=(libc6-dev)
    command -v cc >/dev/null 2>&1 || need+=(gcc)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v readelf >/dev/null 2>&1 || need+=(binutils)
    if [[ ${#need[@]} -gt 0 ]]; then
        log "apt-get install ${need[*]}"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
    fi
fi
command -v curl >/dev/null 2>&1 || { log "curl is required"; exit 1; }

say "1/4 Building static release binaries (scripts/build-static.sh) and the wheel (scripts/build-wheel.sh)"
BIN_DIR="$(scripts/build-static.sh)"
EMULATOR="$BIN_DIR/convex-emulator"
WHEEL="$(scripts/build-wheel.sh)"

say "2/4 Python venv with PyAirbyte (scripts/python-env.sh)"
VENV="$(scripts/python-env.sh)"
log "using $VENV"

say "3/4 Starting the Convex emulator with sample data"
rm -rf "$WORK"
mkdir -p "$WORK/tmp"
# shellcheck source=scripts/emulator.sh
source "$ROOT/scripts/emulator.sh"
start_emulator "$WORK/emulator.json" "$WORK/emulator.log" \
    "$EMULATOR" --port 0 --tables 3 --docs 500 --components --seed 42
EMU_URL="$("$VENV/bin/python" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$WORK/emulator.json" 2>/dev/null || true)"
if [[ -z "$EMU_URL" ]]; then
    log "the emulator did not start:"; cat "$WORK/emulator.log" >&2; exit 1
fi
log "emulator at $EMU_URL (log: ${WORK#"$ROOT"/}/emulator.log)"

say "4/4 PyAirbyte: check, discover, read, change data, incremental read"
# PyAirbyte reads these at import time. Offline mode skips the connector registry download
# (without it get_source() fails even with local_executable) and disables telemetry.
export AIRBYTE_OFFLINE_MODE=1 DO_NOT_TRACK=1
# get_source(pip_url=...) installs with `uv` (a PyAirbyte dependency) found on PATH, as in an
# activated venv. The connector's venv goes to $AIRBYTE_PROJECT_DIR/.venv-source-convex.
export PATH="$VENV/bin:$PATH"
export AIRBYTE_PROJECT_DIR="$WORK" AIRBYTE_CACHE_ROOT="$WORK/cache"
export AIRBYTE_LOGGING_ROOT="$WORK/logs" AIRBYTE_TEMP_DIR="$WORK/tmp"
"$VENV/bin/python" -W ignore scripts/quickstart.py \
    --wheel "$WHEEL" --emulator "$WORK/emulator.json"

say "Done"
cat >&2 <<EOF
The DuckDB cache is at ${AIRBYTE_CACHE_ROOT#"$ROOT"/}/default_cache/default_cache.duckdb.
Next: scripts/test.sh (full test suite), docs/convex.md (user guide), README.md (Docker, Airbyte).
EOF
