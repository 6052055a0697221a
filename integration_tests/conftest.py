"""Shared fixtures of the conformance suite.

Environment set here, before any test module imports airbyte or airbyte_cdk:
- integration_tests/fake_docker first on PATH (the CDK Docker-path suite runs `docker run`);
- AIRBYTE_OFFLINE_MODE / DO_NOT_TRACK (no registry, no telemetry);
- NO_PROXY for loopback, so a proxy in the environment never sees test traffic.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from emulator import Emulator
from harness import FIXED_ACCESS_KEY, FIXED_PORT, IT_DIR, REPO_ROOT, emulator_bin, require_binaries

os.environ["PATH"] = f"{IT_DIR / 'fake_docker'}{os.pathsep}{os.environ.get('PATH', '')}"
os.environ.setdefault("AIRBYTE_OFFLINE_MODE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var), "127.0.0.1", "localhost"]))

# The data set behind integration_tests/config.json (CDK standard tests). Every stream must
# have at least one record (basic_read requires records per stream).
CDK_DATASET = {"tables": 3, "docs": 40, "components": True, "seed": 11}


def pytest_collection_modifyitems(config, items):
    deselected, kept = [], []
    for item in items:
        name = item.originalname if hasattr(item, "originalname") else item.name
        # Downloads the published spec from the registry: impossible offline.
        needs_registry = name == "test_docker_image_spec_backward_compatibility"
        # SourceTestSuiteBase inherits the Docker-path tests; those run once, in
        # test_cdk_standard_docker.py.
        inherited_docker = (item.get_closest_marker("image_tests") is not None
                            and "test_cdk_standard_docker" not in item.nodeid)
        if needs_registry or inherited_docker:
            deselected.append(item)
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


@pytest.fixture(scope="session")
def binaries():
    require_binaries()


@pytest.fixture
def emulator_factory(binaries, tmp_path):
    """Start emulators with per-test settings; all are stopped at teardown."""
    started = []

    def start(**kwargs) -> Emulator:
        kwargs.setdefault("log_dir", tmp_path)
        emu = Emulator(emulator_bin(), **kwargs)
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on 127.0.0.1 for the session (scripts/postgres.sh installs
    the Debian package when it is missing). Cannot start: the test fails, never skips."""
    script = REPO_ROOT / "scripts" / "postgres.sh"
    proc = subprocess.run([str(script), "start"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"PostgreSQL could not be started for the Postgres-cache test "
                    f"({script} start exited {proc.returncode}):\n{proc.stderr[-4000:]}",
                    pytrace=False)
    server = json.loads(proc.stdout.strip().splitlines()[-1])
    try:
        yield server
    finally:
        subprocess.run([str(script), "stop", server["dir"]], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=120)


def _wait_port_free(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
                return
            except OSError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"127.0.0.1:{port} stays busy: integration_tests/"
                                       "config.json needs it for the emulator") from e
                time.sleep(0.5)


@pytest.fixture(scope="session")
def fixed_emulator(binaries, tmp_path_factory):
    """The emulator that integration_tests/config.json points at (127.0.0.1:18731).

    A lock file serialises concurrent test runs on one machine (they share the port)."""
    lock_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"source-convex-it-{FIXED_PORT}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _wait_port_free(FIXED_PORT, 30)
        emu = Emulator(emulator_bin(), port=FIXED_PORT, access_key=FIXED_ACCESS_KEY,
                       log_dir=tmp_path_factory.mktemp("fixed-emulator"), **CDK_DATASET)
        try:
            assert emu.url == f"http://127.0.0.1:{FIXED_PORT}", emu.url
            yield emu
        finally:
            emu.stop()


# -- guard against the CDK suites passing vacuously -------------------------------------------
# Passing standard tests expected per file when it runs unfiltered, with the scenarios of
# acceptance-test-config.yml (config.json = typed columns, config_legacy.json, invalid_config):
# airbyte-cdk 7.39.1's Docker-path suite runs spec once, check 3 times, config-matches-spec,
# discover 2 each, read once (it reads only a scenario named `config`), plus our check that the
# fake docker comes first on PATH; its in-process suite runs spec once, check 3 times,
# config-matches-spec, discover, basic_read and fail_read_with_bad_catalog 2 each.
EXPECTED_CDK_PASSES = {"test_cdk_standard_docker.py": 1 + 3 + 2 + 2 + 1 + 1,
                       "test_cdk_standard_inprocess.py": 1 + 3 + 2 + 2 + 2 + 2}
_cdk_collected: dict = {}
_cdk_passed: dict = {}


def _cdk_file(nodeid: str):
    name = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
    return name if name in EXPECTED_CDK_PASSES else None


def pytest_collection_finish(session):
    for item in session.items:
        f = _cdk_file(item.nodeid)
        if f:
            _cdk_collected[f] = _cdk_collected.get(f, 0) + 1


def pytest_runtest_logreport(report):
    f = _cdk_file(report.nodeid)
    if f and report.when == "call" and report.passed:
        _cdk_passed[f] = _cdk_passed.get(f, 0) + 1


def pytest_sessionfinish(session, exitstatus):
    if session.config.getoption("keyword") or session.config.getoption("markexpr"):
        return  # a filtered run: counts are not comparable
    problems = [f"{f}: {_cdk_passed.get(f, 0)} passed, expected {n}"
                for f, n in EXPECTED_CDK_PASSES.items()
                if f in _cdk_collected and _cdk_passed.get(f, 0) < n]
    if problems and exitstatus == 0:
        session.config.get_terminal_writer().line(
            "airbyte-cdk standard tests ran fewer tests than expected (skipped?): "
            + "; ".join(problems), red=True)
        session.exitstatus = 1
