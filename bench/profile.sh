#!/usr/bin/env bash
# Instruction profile of `source-convex read` with valgrind's callgrind (counts instructions,
# so it is repeatable on a noisy shared machine). Used for the analysis in BENCHMARKS.md.
#
#   bench/profile.sh [DOCS]     default 20000 documents of ~400 B, one table
#
# Prints: instructions of an incremental read with nothing new (fixed start-up cost), of a full
# refresh of DOCS documents, the difference per record, and the top functions (self and
# inclusive). Outputs stay in bench/out/profile/. Binaries: SOURCE_CONVEX_BIN,
# CONVEX_EMULATOR_BIN (default: target/release/, built with `cargo build --release`);
# COLUMN_TYPES=legacy profiles the Python connector's value encoding instead of typed columns.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCS="${1:-20000}"
OUT="$ROOT/bench/out/profile"
mkdir -p "$OUT"
cd "$OUT"
if [[ -z "${SOURCE_CONVEX_BIN:-}" || -z "${CONVEX_EMULATOR_BIN:-}" ]]; then
    (cd "$ROOT" && cargo build --release -p source-convex -p convex-emulator >&2)
fi
SC="${SOURCE_CONVEX_BIN:-$ROOT/target/release/source-convex}"
EM="${CONVEX_EMULATOR_BIN:-$ROOT/target/release/convex-emulator}"
command -v valgrind >/dev/null || { echo "valgrind not installed (apt-get install valgrind)" >&2; exit 1; }

"$EM" --port 0 --tables 1 --docs "$DOCS" --doc-size 400 --seed 7 >emu.json 2>emu.err &
EMU_PID=$!
trap 'kill $EMU_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do [[ -s emu.json ]] && break; sleep 0.1; done
python3 - "$OUT" "${COLUMN_TYPES:-typed}" "$ROOT" <<'PY'
import json, sys
out, column_types, root = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, f"{root}/integration_tests")
from emulator import Control  # the one Python client of the emulator
e = json.load(open(f"{out}/emu.json"))
url, key = e["url"], e["access_key"]
emu = Control(url)
t = next(t for c, t in emu.tables() if not c)
head = emu.head()
json.dump({"deployment_url": url, "access_key": key, "column_types": column_types},
          open(f"{out}/config.json", "w"))
def cat(mode):
    return {"streams": [{"stream": {"name": t, "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"],
            "source_defined_cursor": True, "default_cursor_field": ["_ts"], "source_defined_primary_key": [["_id"]]},
            "sync_mode": mode, "destination_sync_mode": "append" if mode == "incremental" else "overwrite"}]}
json.dump(cat("full_refresh"), open(f"{out}/catalog-full.json", "w"))
json.dump(cat("incremental"), open(f"{out}/catalog-incr.json", "w"))
json.dump([{"type": "STREAM", "stream": {"stream_descriptor": {"name": t}, "stream_state":
           {"snapshot_cursor": None, "snapshot_has_more": False, "delta_cursor": head}}}], open(f"{out}/state.json", "w"))
PY
# vg OUT STDOUT CMD...: prints the instruction total
vg() { valgrind --tool=callgrind --callgrind-out-file="$1" "${@:3}" >"$2" 2>"$1.log"; grep -o 'refs: *[0-9,]*' "$1.log" | tr -dc 0-9; }
I0=$(vg cg-nothing-new.out nothing-new.stdout "$SC" read --config config.json --catalog catalog-incr.json --state state.json)
I1=$(vg cg-full.out full.stdout "$SC" read --config config.json --catalog catalog-full.json)
N=$(grep -c '"type":"RECORD"' full.stdout || true)
echo "incremental, nothing new: $I0 instructions"
echo "full refresh of $N records: $I1 instructions; ($I1 - $I0) / $N = $(( (I1 - I0) / (N > 0 ? N : 1) )) instructions per record"
echo "--- top self cost, full refresh"
callgrind_annotate --inclusive=no cg-full.out 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -16 | cut -c1-170 || true
echo "--- top inclusive cost below the read task, full refresh"
callgrind_annotate --inclusive=yes cg-full.out 2>/dev/null | grep -E '^ *[0-9,]+ \(' | grep -E 'source_convex|serde_json|memchr|from_utf8' | head -16 | cut -c1-170 || true
echo "--- top self cost, nothing new"
callgrind_annotate --inclusive=no cg-nothing-new.out 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -8 | cut -c1-170 || true
