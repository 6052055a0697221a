"""PyAirbyte 0.71.3 end to end with `local_executable`: check, discover, select, three reads
into the default DuckDB cache (the second and third incremental, from the state PyAirbyte
stored), cache content compared with the emulator's live documents, deletes visible. And the
pip install path: `pip_url=<the release wheel>` (scripts/build-wheel.sh) installed by PyAirbyte
into its own venv, version found, one read checked the same way.
Each scenario runs pyairbyte_driver.py in a fresh interpreter with per-test AIRBYTE_* dirs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness import (IT_DIR, connector_bin, connector_wheel, crate_version, stream_name,
                     table_list)

pytestmark = pytest.mark.pyairbyte


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_driver(scenario: str, params: dict, tmp_path) -> dict:
    dirs = {name: tmp_path / name.lower() for name in
            ("AIRBYTE_PROJECT_DIR", "AIRBYTE_CACHE_ROOT", "AIRBYTE_LOGGING_ROOT",
             "AIRBYTE_TEMP_DIR")}
    for d in dirs.values():
        d.mkdir()
    proxy = f"http://127.0.0.1:{closed_port()}"  # any stray network call fails fast
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()},
           "AIRBYTE_OFFLINE_MODE": "1", "DO_NOT_TRACK": "1",
           "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy,
           "https_proxy": proxy, "NO_PROXY": "127.0.0.1,localhost",
           "no_proxy": "127.0.0.1,localhost",
           # PyAirbyte runs `uv` (or pip) from PATH to install a pip_url: this venv's, as when
           # the user's venv is active. uv's cache stays in the test's directory.
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "UV_CACHE_DIR": str(tmp_path / "uv-cache")}
    params_path = tmp_path / "params.json"
    params_path.write_text(json.dumps({**params, "binary": str(connector_bin())}))
    proc = subprocess.run([sys.executable, str(IT_DIR / "pyairbyte_driver.py"), scenario,
                           str(params_path)], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=600, cwd=tmp_path)
    logs = "\n".join(f"--- {p} ---\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(dirs["AIRBYTE_LOGGING_ROOT"].rglob("*")) if p.is_file())
    assert proc.returncode == 0, (f"driver {scenario} failed ({proc.returncode})\n"
                                  f"--- stdout ---\n{proc.stdout[-5000:]}\n"
                                  f"--- stderr ---\n{proc.stderr[-8000:]}\n{logs}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("components", [False, True], ids=["root", "components"])
def test_pyairbyte_full_cycle(emulator_factory, tmp_path, components):
    emu = emulator_factory(tables=3, docs=25, components=components, seed=13)
    expected = [stream_name(c, t) for c, t in table_list(emu)]
    result = run_driver("full_cycle", {"url": emu.url, "access_key": emu.access_key,
                                       "expected_streams": expected, "changes": 40}, tmp_path)
    assert result["reads"][0] == 25 * len(expected)
    assert result["reads"][1] == (5 if components else 4)


def test_pyairbyte_check_bad_key_raises(emulator_factory, tmp_path):
    emu = emulator_factory(tables=1, docs=2)
    result = run_driver("bad_key", {"url": emu.url, "access_key": emu.access_key}, tmp_path)
    assert result["raised"] == "AirbyteConnectorCheckFailedError"


def test_pyairbyte_pip_url_installs_the_wheel(emulator_factory, tmp_path):
    emu = emulator_factory(tables=2, docs=30, components=True, seed=21)
    expected = [stream_name(c, t) for c, t in table_list(emu)]
    wheel = connector_wheel()
    result = run_driver("pip_wheel", {"url": emu.url, "access_key": emu.access_key,
                                      "expected_streams": expected, "wheel": str(wheel),
                                      "version": crate_version()}, tmp_path)
    # The executable PyAirbyte ran is the wheel's copy in its venv, not the build output.
    assert Path(result["executable"]).resolve() != connector_bin()
    assert result["version"] == crate_version()
    assert result["records"] == 30 * len(expected)
    assert result["cached"] == {s: 30 for s in expected}
