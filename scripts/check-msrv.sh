#!/usr/bin/env bash
# Is the declared rust-version (Cargo.toml [workspace.package]) still true for the lock file?
#
#   scripts/check-msrv.sh        # exit 0: every locked dependency builds with the declared version
#
# Reads `cargo metadata --locked` (every package in Cargo.lock, all platforms) and compares each
# dependency's own `rust-version` with the one every workspace member declares. Fails, naming the
# packages, when a lock update raised the floor above the declared version, or when the members
# disagree. A dependency that declares no rust-version cannot be checked and is listed as such.
# Needs cargo and python3 (any 3.x; only the standard library).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"

cargo metadata --locked --format-version 1 --manifest-path "$ROOT/Cargo.toml" | python3 -c '
import json, sys

def key(v):  # "1.88" and "1.88.0" are the same version
    parts = [int(x) for x in v.split(".")]
    return tuple((parts + [0, 0])[:3])

def show(k):
    return ".".join(map(str, k[:2] if k[2] == 0 else k))

meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
declared = {p["name"]: p.get("rust_version") for p in meta["packages"] if p["id"] in members}
versions = set(declared.values())
if len(versions) != 1 or None in versions:
    sys.exit(f"check-msrv: workspace members must all declare the same rust-version: {declared}")
floor = key(versions.pop())

deps = [p for p in meta["packages"] if p["id"] not in members]
unknown = sorted(p["name"] for p in deps if not p.get("rust_version"))
above = sorted(((key(p["rust_version"]), p["name"], p["version"]) for p in deps
                if p.get("rust_version") and key(p["rust_version"]) > floor), reverse=True)
need = max((key(p["rust_version"]) for p in deps if p.get("rust_version")), default=(0,))
if above:
    names = ", ".join(f"{n} {v} (rust-version {show(r)})" for r, n, v in above)
    sys.exit(f"check-msrv: Cargo.lock needs Rust {show(above[0][0])}, but Cargo.toml declares "
             f"rust-version = \"{show(floor)}\": {names}. Raise rust-version in Cargo.toml "
             "[workspace.package] (and the docs that quote it), or pin the older dependency.")
print(f"check-msrv: ok, rust-version {show(floor)} covers all {len(deps)} locked dependencies "
      f"(the highest a dependency declares: {show(need)}); {len(unknown)} declare none")
'
