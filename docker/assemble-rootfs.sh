#!/bin/sh
# Assemble the runtime root filesystem of the source-convex image (everything except the
# connector binary). Used in two places, so both images have the same layout:
#   - the `rootfs` stage of /Dockerfile (inside debian:bookworm-slim, after apt installs
#     busybox-static and ca-certificates), and
#   - scripts/image-test.sh (on the host, for the daemonless buildah build).
#
#   docker/assemble-rootfs.sh OUT_DIR [BUSYBOX] [CA_BUNDLE]
#
# Produces OUT_DIR/rootfs/ (copied to / by the runtime stage) and OUT_DIR/airbyte/ (an empty
# directory copied to /airbyte with --chown=1000:1000, the writable home and WORKDIR).
# POSIX sh on purpose: it runs under dash in the Debian stage.
set -eu

out=${1:?usage: assemble-rootfs.sh OUT_DIR [BUSYBOX] [CA_BUNDLE]}
busybox=${2:-/bin/busybox}
ca_bundle=${3:-/etc/ssl/certs/ca-certificates.crt}

die() { echo "assemble-rootfs: $*" >&2; exit 1; }
[ -x "$busybox" ] || die "no busybox at $busybox (Debian: apt-get install busybox-static)"
[ -s "$ca_bundle" ] || die "no CA bundle at $ca_bundle (Debian: apt-get install ca-certificates)"

root="$out/rootfs"
rm -rf "$root" "$out/airbyte"
mkdir -p "$root/bin" "$root/etc/ssl/certs" "$root/usr/local/bin" "$root/tmp" "$out/airbyte"

# busybox must be static: the image has no libc.so. (Debian's `busybox` package is dynamic,
# `busybox-static` is not.) `readelf` may be missing in slim images; then trust the package.
if command -v readelf >/dev/null 2>&1 && readelf -l "$busybox" | grep -q 'program interpreter'; then
    die "$busybox is dynamically linked; use the busybox-static package"
fi
cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"

# The platform's launcher runs a /bin/sh script using eval, [, echo, kill, wait (sh builtins
# or applets), sleep and mv; the rest is for people who `docker run --entrypoint sh` to debug.
for applet in sh ash sleep mv kill echo cat ls env touch rm mkdir cp chmod test [ pwd id \
    true false head tail grep wc ps printf sed date uname; do
    ln -s busybox "$root/bin/$applet"
done

cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
airbyte:x:1000:1000:airbyte:/airbyte:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
airbyte:x:1000:
nogroup:x:65534:
GROUP
# Static glibc has only the built-in `files` and `dns` NSS modules; say so explicitly.
cat > "$root/etc/nsswitch.conf" <<'NSS'
passwd: files
group: files
hosts: files dns
NSS

cp "$ca_bundle" "$root/etc/ssl/certs/ca-certificates.crt"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf" \
    "$root/etc/ssl/certs/ca-certificates.crt"
chmod 1777 "$root/tmp"
chmod 0755 "$out/airbyte"
