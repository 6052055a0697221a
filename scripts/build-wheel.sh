#!/usr/bin/env bash
# Build the release wheel of source-convex: the Python package `airbyte-source-convex`, whose
# only content is the static binary, installed as the `source-convex` executable.
#
#   scripts/build-wheel.sh        # build, verify, print the wheel's path
#
# Output: target/wheels/airbyte_source_convex-<version>-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl
# (CARGO_TARGET_DIR is honoured). Install it with `pip install <wheel>`, or let PyAirbyte do it:
# `ab.get_source("source-convex", pip_url="<wheel path or URL>", install_if_missing=True)`.
#
# maturin (the version pinned in pyproject.toml's [build-system], installed into .venv-build
# from PyPI on first use) runs the same cargo build as scripts/build-static.sh: same target
# triple, release profile, --locked and RUSTFLAGS (scripts/static-flags.sh). After
# build-static.sh, cargo finds source-convex up to date and maturin only packs the binary.
#
# Tag: manylinux2014 (manylinux_2_17) x86-64. The binary is static (glibc linked in, no
# interpreter, no shared libraries), so it runs on any x86-64 Linux; maturin's audit
# (`--auditwheel check`) fails the build if the binary needs any shared library.
# Only x86-64: an aarch64 wheel needs the aarch64-unknown-linux-gnu Rust target and an aarch64
# glibc (libc.a) to link against, which this build does not install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/static-flags.sh
source "$ROOT/scripts/static-flags.sh"
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/wheels"
BUILD_VENV="${SOURCE_CONVEX_BUILD_VENV:-$ROOT/.venv-build}"
log() { echo "build-wheel: $*" >&2; }

[[ -d "$HOME/.cargo/bin" ]] && export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null 2>&1 || { log "cargo not found (Rust 1.88+ needed)"; exit 1; }

# --- maturin, at the version pyproject.toml pins --------------------------------------------
MATURIN_PIN="$(grep -Eo '"maturin==[0-9.]+"' pyproject.toml | tr -d '"')"
[[ -n "$MATURIN_PIN" ]] || { log "no maturin==X pin in pyproject.toml [build-system]"; exit 1; }
MATURIN="$BUILD_VENV/bin/maturin"
if [[ "$("$MATURIN" --version 2>/dev/null)" != "maturin ${MATURIN_PIN#maturin==}" ]]; then
    PY="${PYTHON:-python3}"
    log "installing $MATURIN_PIN into ${BUILD_VENV#"$ROOT"/} with $PY"
    rm -rf "$BUILD_VENV"
    "$PY" -m venv "$BUILD_VENV"
    "$BUILD_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        "$MATURIN_PIN" >&2
fi

# --- the wheel ---------------------------------------------------------------------------
VERSION="$(cargo metadata --locked --no-deps --format-version 1 \
    | "$BUILD_VENV/bin/python" -c 'import json, sys
print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "source-convex"))')"
mkdir -p "$OUT"
rm -f "$OUT"/airbyte_source_convex-"$VERSION"-*.whl
log "maturin build --release --target $STATIC_TARGET (static, flags of scripts/static-flags.sh)"
RUSTFLAGS="$STATIC_RUSTFLAGS" "$MATURIN" build --release --locked --target "$STATIC_TARGET" \
    --compatibility manylinux2014 --auditwheel check --out "$OUT" >&2

shopt -s nullglob
wheels=("$OUT"/airbyte_source_convex-"$VERSION"-py3-none-*.whl)
[[ ${#wheels[@]} -eq 1 ]] || { log "expected one wheel in $OUT, found: ${wheels[*]:-none}"; exit 1; }
WHEEL="${wheels[0]}"

# --- verify: the metadata PyAirbyte reads, and a static `source-convex` that prints its spec --
"$BUILD_VENV/bin/python" - "$WHEEL" "$VERSION" <<'PY'
import email, os, re, stat, subprocess, sys, tempfile, zipfile
wheel, version = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    meta = email.message_from_bytes(z.read(f"airbyte_source_convex-{version}.dist-info/METADATA"))
    script = f"airbyte_source_convex-{version}.data/scripts/source-convex"
    assert script in names, f"no {script} in the wheel: {names}"
    assert (meta["Name"], meta["Version"]) == ("airbyte-source-convex", version), \
        (meta["Name"], meta["Version"])
    with tempfile.TemporaryDirectory() as tmp:
        exe = z.extract(script, tmp)
        os.chmod(exe, os.stat(exe).st_mode | stat.S_IXUSR)
        with open(exe, "rb") as f:
            elf = f.read(1 << 16)
        # Static: no PT_INTERP (3) program header, i.e. no dynamic loader requested.
        assert elf[:5] == b"\x7fELF\x02", "not a 64-bit ELF"
        phoff = int.from_bytes(elf[0x20:0x28], "little")
        phentsize = int.from_bytes(elf[0x36:0x38], "little")
        phnum = int.from_bytes(elf[0x38:0x3A], "little")
        types = [int.from_bytes(elf[phoff + i * phentsize:][:4], "little") for i in range(phnum)]
        assert 3 not in types, "source-convex in the wheel is dynamically linked"
        out = subprocess.run([exe, "spec"], capture_output=True, text=True, timeout=30, check=True)
        assert len(re.findall(r'"type": *"SPEC"', out.stdout)) == 1, out.stdout[:500]
PY
log "ok: $WHEEL ($(du -h "$WHEEL" | cut -f1))"
echo "$WHEEL"
