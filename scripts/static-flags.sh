# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are for the scripts that source this file
# Sourced by scripts/build-static.sh and scripts/build-wheel.sh: the one definition of the static
# release build. Both scripts build with exactly these, so cargo's fingerprints match and the
# second build reuses the first one's artifacts instead of compiling again.
#
# RUSTFLAGS only reach the target crates because --target is explicit: build scripts and
# proc-macros stay dynamic, as they must. getrandom_backend: in a static binary getrandom
# cannot find glibc's getrandom() at run time and falls back to /dev/urandom, which a bare
# chroot may lack; call it directly instead (bench/run.sh uses the same flags).
STATIC_TARGET=x86_64-unknown-linux-gnu
STATIC_RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static --cfg getrandom_backend=\"linux_getrandom\""
