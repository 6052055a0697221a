#!/usr/bin/env bash
# THE test command of source-convex: everything CI runs, in order.
#
#   scripts/test.sh                    # full suite (what CI runs)
#   scripts/test.sh -- -k pyairbyte    # extra arguments after `--` go to pytest
#   scripts/test.sh --quick            # the inner loop: fmt, clippy, cargo test, module cycles
#                                      # and lint; no release build, no pytest
#
# Steps of the full suite: Python venv (scripts/python-env.sh: the pinned test venv, which also
# holds ruff and shellcheck) -> cargo fmt --check -> rust-version vs Cargo.lock
# (scripts/check-msrv.sh) -> cargo clippy -D warnings -> cargo test --workspace
# -> module-cycles (scripts/check-module-cycles.py: no Rust module depends on itself through
# others) -> client-alone (the Convex client crate builds on its own, with no workspace crate
# among its dependencies) -> lint (ruff check over the Python of integration_tests/, scripts/, bench/ as
# configured in pyproject.toml; shellcheck over every *.sh and .ci/run)
# -> release build -> release wheel (scripts/build-wheel.sh, packs the release build's binary)
# -> pytest integration_tests (checker unit tests, protocol smoke tests, airbyte-cdk standard
# tests, PyAirbyte with local_executable and with pip_url=<the wheel>, the exact-cache
# tests, whose Postgres-cache case starts a PostgreSQL server with scripts/postgres.sh,
# installing the Debian package when root and missing) -> scripts/image-test.sh and
# bench/run.sh --smoke when present. `--quick` runs python-env (for the linters; reused in
# well under a second once created), fmt, clippy, cargo-test, module-cycles, client-alone
# and lint. Every
# step runs even if an earlier one failed (unless it depends on it); the exit code is
# non-zero if any step failed.
#
# Binaries under test: $SOURCE_CONVEX_BIN / $CONVEX_EMULATOR_BIN, default $RELEASE_DIR/...,
# where RELEASE_DIR is the output of scripts/build-static.sh (static glibc build,
# target/x86_64-unknown-linux-gnu/release) when that script exists, else target/release.
# Set RELEASE_BUILD=plain to force the ordinary `cargo build --release`.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
[[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"

QUICK=0
PYTEST_ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1; shift ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        *) echo "usage: scripts/test.sh [--quick] [-- PYTEST_ARGS...]" >&2; exit 2 ;;
    esac
done

# ---- the release binaries: one place ---------------------------------------------------
if [[ "${RELEASE_BUILD:-}" != "plain" && -x scripts/build-static.sh ]]; then
    RELEASE_BUILD_CMD=(scripts/build-static.sh)
    RELEASE_DIR="$(scripts/build-static.sh --print-dir)"
else
    RELEASE_BUILD_CMD=(cargo build --release --locked -p source-convex -p convex-emulator)
    RELEASE_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
export SOURCE_CONVEX_BIN="${SOURCE_CONVEX_BIN:-$RELEASE_DIR/source-convex}"
export CONVEX_EMULATOR_BIN="${CONVEX_EMULATOR_BIN:-$RELEASE_DIR/convex-emulator}"

# ---- step bookkeeping --------------------------------------------------------------------
declare -a STEP_NAMES=() STEP_RESULTS=() STEP_TIMES=()
FAILED=0
SUITE_START=$(date +%s)
declare -A OK=()

step() {  # step NAME [requires=STEP,...] -- command...
    local name="$1"; shift
    local requires=""
    if [[ "${1:-}" == requires=* ]]; then requires="${1#requires=}"; shift; fi
    [[ "${1:-}" == "--" ]] && shift
    local start result dep
    start=$(date +%s)
    echo
    echo "=== [$name] $*"
    for dep in ${requires//,/ }; do
        if [[ "${OK[$dep]:-0}" != 1 ]]; then
            result="SKIPPED (needs $dep)"
            echo "=== [$name] $result"
            STEP_NAMES+=("$name"); STEP_RESULTS+=("$result"); STEP_TIMES+=(0)
            FAILED=1
            return 0
        fi
    done
    "$@"
    local rc=$?
    local secs=$(( $(date +%s) - start ))
    if [[ $rc -eq 0 ]]; then result="ok"; OK[$name]=1; else result="FAILED (exit $rc)"; FAILED=1; fi
    echo "=== [$name] $result in ${secs}s"
    STEP_NAMES+=("$name"); STEP_RESULTS+=("$result"); STEP_TIMES+=("$secs")
}

# ---- steps ---------------------------------------------------------------------------------
python_env() {
    VENV="$(scripts/python-env.sh)" || return 1
    export VENV
}

shell_scripts() {
    # Every shell script of the repository: *.sh, and .ci/run (no suffix).
    find . \( -path ./target -o -path ./.git -o -path './.venv*' -o -path ./.tools \
        -o -path ./bench/out -o -name node_modules \) -prune -o -name '*.sh' -type f -print \
        | sort
    [[ -f .ci/run ]] && echo .ci/run
}

lint() {
    local rc=0 scripts
    echo "ruff $("$VENV/bin/ruff" --version | cut -d' ' -f2): ruff check (pyproject.toml [tool.ruff])"
    "$VENV/bin/ruff" check --no-cache . || rc=1
    mapfile -t scripts < <(shell_scripts)
    echo "$("$VENV/bin/shellcheck" --version | sed -n 's/^version: /shellcheck /p'):" \
        "${#scripts[@]} scripts"
    "$VENV/bin/shellcheck" -x "${scripts[@]}" || rc=1
    return $rc
}

release_build() {
    "${RELEASE_BUILD_CMD[@]}" || return 1
    local b
    for b in "$SOURCE_CONVEX_BIN" "$CONVEX_EMULATOR_BIN"; do
        [[ -x "$b" ]] || { echo "missing binary $b" >&2; return 1; }
    done
}

build_wheel() {
    local wheel
    wheel="$(scripts/build-wheel.sh)" || return 1
    export SOURCE_CONVEX_WHEEL="$wheel"
}

integration() {
    # pytest exit 5 = no tests collected: a failure here.
    local tmp="${TMPDIR:-/tmp}/source-convex-pytest.$$"
    mkdir -p "$tmp"
    env AIRBYTE_OFFLINE_MODE=1 DO_NOT_TRACK=1 \
        "$VENV/bin/python" -m pytest integration_tests -p no:cacheprovider \
        --basetemp="$tmp/base" --junitxml="$tmp/junit.xml" "${PYTEST_ARGS[@]}"
    local rc=$?
    if [[ $rc -eq 5 ]]; then echo "pytest collected no tests" >&2; fi
    rm -rf "$tmp"
    return $rc
}

have_libc_a() {
    # The static build needs glibc's static archive (Debian libc6-dev).
    if [[ "${RELEASE_BUILD_CMD[0]}" == scripts/build-static.sh && ! -e /usr/lib/x86_64-linux-gnu/libc.a ]] \
        && command -v apt-get >/dev/null && [[ "$(id -u)" == 0 ]]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libc6-dev
    fi
    return 0
}

client_alone() {
    # The Convex client builds on its own, and nothing of this workspace is among its normal
    # dependencies: the compiler, not a text search, keeps the Convex layer free of Airbyte.
    cargo build -p convex-client --locked || return 1
    local ours
    ours="$(cargo tree -p convex-client -e normal --prefix none --locked \
        | grep -E '^(source-convex|convex-emulator|convex-bench) ' || true)"
    if [[ -n "$ours" ]]; then
        echo "convex-client depends on workspace crates: $ours" >&2
        return 1
    fi
}

step python-env -- python_env
step fmt -- cargo fmt --all -- --check --color never
if [[ $QUICK == 0 ]]; then
    step msrv -- scripts/check-msrv.sh
fi
step clippy -- cargo clippy --workspace --all-targets --locked -- -D warnings
step cargo-test -- cargo test --workspace --locked
step module-cycles -- python3 scripts/check-module-cycles.py
step client-alone -- client_alone
step lint requires=python-env -- lint
if [[ $QUICK == 0 ]]; then
    have_libc_a
    step release-build -- release_build
    step wheel requires=release-build -- build_wheel
    step integration requires=python-env,release-build -- integration
    if [[ -x scripts/image-test.sh ]]; then
        step image-test requires=release-build -- scripts/image-test.sh
    fi
    if [[ -x bench/run.sh ]]; then
        step bench-smoke requires=release-build -- bench/run.sh --smoke
    fi
fi

# ---- summary -------------------------------------------------------------------------------
TOTAL=$(( $(date +%s) - SUITE_START ))
MODE="test summary"
[[ $QUICK == 1 ]] && MODE="quick test summary (no release build, no pytest)"
echo
echo "================ source-convex $MODE ================"
printf '  %-16s %-28s %6s\n' STEP RESULT SECONDS
for i in "${!STEP_NAMES[@]}"; do
    printf '  %-16s %-28s %6s\n' "${STEP_NAMES[$i]}" "${STEP_RESULTS[$i]}" "${STEP_TIMES[$i]}"
done
[[ $QUICK == 0 ]] && echo "  binaries: $SOURCE_CONVEX_BIN, $CONVEX_EMULATOR_BIN"
if [[ $FAILED -ne 0 ]]; then
    echo "test.sh: FAILED after ${TOTAL}s"
    exit 1
fi
echo "test.sh: all ${#STEP_NAMES[@]} steps passed in ${TOTAL}s"
