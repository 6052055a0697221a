#!/usr/bin/env bash
# Build the release binaries once, fully static, for everything that needs them:
# the image (Dockerfile runtime stage / scripts/image-test.sh), the quickstart, the
# conformance suite and the benchmark.
#
#   scripts/build-static.sh                  # build source-convex + convex-emulator, verify, print dir
#   scripts/build-static.sh source-convex    # only the listed packages (the Dockerfile does this)
#   scripts/build-static.sh --print-dir      # only print the output directory (no build)
#
# Output: target/x86_64-unknown-linux-gnu/release/{source-convex,convex-emulator}
# (CARGO_TARGET_DIR is honoured.)
#
# Why static glibc (+crt-static) rather than musl: the stock x86_64-unknown-linux-gnu
# toolchain can do it with no extra target or C toolchain, and the result runs in a
# FROM-scratch image that holds only busybox and a CA bundle. TLS is rustls (no OpenSSL).
# Name resolution in a static glibc binary: glibc >= 2.34 has the `files` and `dns`
# NSS modules built in, so /etc/hosts and /etc/resolv.conf work without libnss_*.so;
# other NSS sources (e.g. mdns, ldap) in /etc/nsswitch.conf are not available.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/static-flags.sh
source "$ROOT/scripts/static-flags.sh"
TARGET="$STATIC_TARGET"
OUT="${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/release"

if [[ "${1:-}" == "--print-dir" ]]; then
    echo "$OUT"
    exit 0
fi

log() { echo "build-static: $*" >&2; }

packages=("$@")
[[ ${#packages[@]} -gt 0 ]] || packages=(source-convex convex-emulator)
for p in "${packages[@]}"; do
    case "$p" in
        source-convex|convex-emulator) ;;
        *) log "unknown package '$p' (expected source-convex and/or convex-emulator)"; exit 2 ;;
    esac
done

if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        log "cargo not found. Install a Rust toolchain (https://rustup.rs, rust-version >= 1.88) or use the Docker image (see README.md)."
        exit 1
    fi
fi

# The static link needs glibc's static archives (libc.a), shipped by libc6-dev on Debian.
if [[ ! -e /usr/lib/x86_64-linux-gnu/libc.a ]] && command -v dpkg >/dev/null 2>&1; then
    log "libc.a missing: install libc6-dev (apt-get install -y libc6-dev)"
    exit 1
fi

cd "$ROOT"
# Flags: scripts/static-flags.sh (shared with scripts/build-wheel.sh). The separate
# target/<triple>/ directory keeps this build from invalidating the ordinary
# `cargo build`/`cargo test` cache. One cargo invocation per package: cargo unifies dependency
# features across the packages of one invocation, and source-convex built alone gets the same
# dependency builds (and the same binary) as the wheel (maturin builds only it) and the image.
for p in "${packages[@]}"; do
    log "cargo build --release --locked --target $TARGET -p $p (static)"
    RUSTFLAGS="$STATIC_RUSTFLAGS" cargo build --release --locked --target "$TARGET" -p "$p"
done

for bin in "${packages[@]}"; do
    path="$OUT/$bin"
    [[ -x "$path" ]] || { log "missing $path"; exit 1; }
    # A static-pie binary has no PT_INTERP and no NEEDED entries.
    if command -v readelf >/dev/null 2>&1; then
        if readelf -l "$path" | grep -q 'Requesting program interpreter' \
            || readelf -d "$path" | grep -q '(NEEDED)'; then
            log "$bin is not statically linked:"
            readelf -d "$path" | grep NEEDED >&2 || true
            exit 1
        fi
    elif command -v file >/dev/null 2>&1; then
        file -L "$path" | grep -Eq 'static(ally)?[- ]linked|static-pie' || {
            log "$bin is not statically linked: $(file -L "$path")"; exit 1; }
    fi
done

# Smoke test: `spec` must print exactly one SPEC message and exit 0.
[[ -x "$OUT/source-convex" ]] || { log "ok: static binaries in $OUT"; echo "$OUT"; exit 0; }
spec_out="$("$OUT/source-convex" spec)"
if [[ "$(printf '%s\n' "$spec_out" | grep -Ec '"type": *"SPEC"')" != 1 ]]; then
    log "source-convex spec did not print one SPEC message:"
    printf '%s\n' "$spec_out" >&2
    exit 1
fi

log "ok: static binaries in $OUT"
echo "$OUT"
