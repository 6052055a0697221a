#!/usr/bin/env bash
# Benchmark: source-convex vs. a transfer-only client vs. Airbyte's Python source-convex 0.4.51,
# all against convex-emulator on 127.0.0.1, measured in one run, incremental scenarios on both
# of Convex's APIs (streaming export and Data Sync). See BENCHMARKS.md.
#
#   bench/run.sh            full run (~10-20 min); regenerates BENCHMARKS.md
#   bench/run.sh --smoke    tiny data, ours + transfer-only only, no peer venv; checks the
#                           benchmark still works (non-zero exit if a program fails or record
#                           counts disagree), not how fast. Report: bench/out/BENCHMARKS.smoke.md
#
# Extra arguments are passed to bench/bench.py (e.g. --repeat 5, --latency-docs 40000).
# Environment:
#   SOURCE_CONVEX_BIN, CONVEX_EMULATOR_BIN   use these binaries, skip building them (both must
#                                            be set, or both are built)
#   TRANSFER_ONLY_BIN (+ BENCH_RUN_BIN next to it, or set it too)   use these, skip building
#                                            convex-bench
#   CARGO_TARGET_DIR   honoured: what is built is looked for in $CARGO_TARGET_DIR/<target>/release
#   BENCH_PEER_VENV   venv for the peer (default: <repo>/.venv-bench)
#   BENCH_NO_PEER=1   do not install or run the peer
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SMOKE=0
ARGS=()
for a in "$@"; do
    case "$a" in
        --smoke) SMOKE=1; ARGS+=("$a") ;;
        *) ARGS+=("$a") ;;
    esac
done
log() { echo "bench/run.sh: $*" >&2; }

TARGET=x86_64-unknown-linux-gnu
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release"

# ---- binaries: one static release build, shared with packaging (scripts/build-static.sh)
if [[ -z "${SOURCE_CONVEX_BIN:-}" || -z "${CONVEX_EMULATOR_BIN:-}" ]]; then
    if [[ -x scripts/build-static.sh ]]; then
        scripts/build-static.sh >/dev/null
    else
        RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
            cargo build --release --locked --target "$TARGET" -p source-convex -p convex-emulator
    fi
fi
if [[ -z "${TRANSFER_ONLY_BIN:-}" ]]; then
    # Same target and RUSTFLAGS as build-static.sh, so the dependency cache is shared.
    RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\"" \
        cargo build --release --locked --target "$TARGET" -p convex-bench --bin transfer-only --bin bench-run
fi
SOURCE_CONVEX_BIN="${SOURCE_CONVEX_BIN:-$OUT/source-convex}"
CONVEX_EMULATOR_BIN="${CONVEX_EMULATOR_BIN:-$OUT/convex-emulator}"
TRANSFER_ONLY_BIN="${TRANSFER_ONLY_BIN:-$OUT/transfer-only}"
BENCH_RUN_BIN="${BENCH_RUN_BIN:-$(dirname "$TRANSFER_ONLY_BIN")/bench-run}"
for b in "$SOURCE_CONVEX_BIN" "$CONVEX_EMULATOR_BIN" "$TRANSFER_ONLY_BIN" "$BENCH_RUN_BIN"; do
    [[ -x "$b" ]] || { log "missing binary $b"; exit 1; }
done

PY=python3
command -v python3.11 >/dev/null 2>&1 && PY=python3.11

# ---- the peer: airbyte-source-convex 0.4.51 from PyPI, in the benchmark's own venv
PEER_BIN=""
PEER_NOTE=""
PEER_PYV=""
mkdir -p bench/out
if [[ $SMOKE == 0 && "${BENCH_NO_PEER:-0}" != 1 ]]; then
    VENV="${BENCH_PEER_VENV:-$ROOT/.venv-bench}"
    if [[ ! -x "$VENV/bin/source-convex" ]]; then
        if ! command -v python3.11 >/dev/null 2>&1; then
            PEER_NOTE="not run: python3.11 not found (the peer supports Python < 3.12 only)"
        elif ! { python3.11 -m venv "$VENV" &&
                 "$VENV/bin/pip" install --disable-pip-version-check -q 'airbyte-source-convex==0.4.51'; } \
                 >bench/out/peer-pip.log 2>&1; then
            PEER_NOTE="not run: \`pip install airbyte-source-convex==0.4.51\` failed: $(tail -n 5 bench/out/peer-pip.log | tr '\n' ' ' | tr '|' '/')"
        fi
    fi
    if [[ -z "$PEER_NOTE" && -x "$VENV/bin/source-convex" ]]; then
        PEER_BIN="$VENV/bin/source-convex"
        PEER_PYV="$("$VENV/bin/python" --version 2>&1), airbyte-source-convex $("$VENV/bin/pip" show airbyte-source-convex 2>/dev/null | sed -n 's/^Version: //p'), airbyte-cdk $("$VENV/bin/pip" show airbyte-cdk 2>/dev/null | sed -n 's/^Version: //p')"
        PEER_NOTE="$PEER_PYV, installed with pip into $VENV"
    fi
    [[ -n "$PEER_NOTE" ]] && log "peer: $PEER_NOTE"
elif [[ $SMOKE == 0 ]]; then
    PEER_NOTE="not run (BENCH_NO_PEER=1)"
fi

if [[ $SMOKE == 1 ]]; then
    REPORT="bench/out/BENCHMARKS.smoke.md"
else
    REPORT="BENCHMARKS.md"
fi

exec "$PY" bench/bench.py \
    --ours-bin "$SOURCE_CONVEX_BIN" --emulator-bin "$CONVEX_EMULATOR_BIN" \
    --transfer-bin "$TRANSFER_ONLY_BIN" --runner-bin "$BENCH_RUN_BIN" --peer-bin "$PEER_BIN" --peer-note "$PEER_NOTE" \
    --peer-python-version "$PEER_PYV" --output "$REPORT" "${ARGS[@]}"
