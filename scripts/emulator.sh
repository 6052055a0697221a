# shellcheck shell=bash
# Sourced by scripts/quickstart.sh and scripts/image-test.sh: the one way a shell script
# starts convex-emulator (Python starts it through integration_tests/emulator.py).
#
#   start_emulator OUT ERR BINARY ARGS...
#
# runs BINARY ARGS in the background (stdout to OUT, stderr to ERR), sets EMU_PID, and waits
# up to 10 s until the emulator has announced itself on OUT ({"url": ..., "access_key": ...})
# or has exited. The caller reads OUT and stops the emulator.
start_emulator() {
    local out="$1" err="$2" _
    shift 2
    "$@" > "$out" 2> "$err" &
    EMU_PID=$!
    for _ in $(seq 1 100); do
        [[ -s "$out" ]] && break
        kill -0 "$EMU_PID" 2>/dev/null || break
        sleep 0.1
    done
}
