"""Running a PyAirbyte driver script (pyairbyte_driver.py, exact_driver.py) in a fresh
interpreter: PyAirbyte reads the AIRBYTE_* directories when `airbyte` is imported, so each
run gets its own (and with them a new default DuckDB cache)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from harness import IT_DIR, connector_bin


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pyairbyte_env(tmp_path: Path) -> tuple[dict, dict]:
    """The environment of a fresh PyAirbyte interpreter: per-run AIRBYTE_* dirs under
    `tmp_path`, offline, no network beyond loopback. Returns (env, the AIRBYTE_* dirs)."""
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
    return env, dirs


def run_driver(scenario: str, params: dict, tmp_path: Path, *,
               script: str = "pyairbyte_driver.py", timeout: float = 600,
               output: bool = False) -> dict:
    """Runs `script SCENARIO PARAMS.json` in a fresh interpreter with per-run AIRBYTE_* dirs
    under `tmp_path`, no network beyond loopback; returns its RESULT line, or fails with
    its output and PyAirbyte's logs. `output`: the result also carries the process's
    `_stdout` and `_stderr` (what PyAirbyte printed)."""
    env, dirs = pyairbyte_env(tmp_path)
    params_path = tmp_path / "params.json"
    params_path.write_text(json.dumps({**params, "binary": str(connector_bin())}))
    proc = subprocess.run([sys.executable, str(IT_DIR / script), scenario,
                           str(params_path)], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=timeout, cwd=tmp_path)
    logs = "\n".join(f"--- {p} ---\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted(dirs["AIRBYTE_LOGGING_ROOT"].rglob("*")) if p.is_file())
    assert proc.returncode == 0, (f"driver {scenario} failed ({proc.returncode})\n"
                                  f"--- stdout ---\n{proc.stdout[-5000:]}\n"
                                  f"--- stderr ---\n{proc.stderr[-8000:]}\n{logs}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    if output:
        result.update(_stdout=proc.stdout, _stderr=proc.stderr)
    return result


def driver_main(scenarios: dict) -> int:
    """The `main` of a driver script: `script SCENARIO PARAMS.json` runs `scenario_SCENARIO`
    of `scenarios` (the driver's globals) and prints its result as one `RESULT <json>` line."""
    scenario, params_path = sys.argv[1], sys.argv[2]
    with open(params_path, encoding="utf-8") as f:
        params = json.load(f)
    result = scenarios[f"scenario_{scenario}"](params)
    print("RESULT " + json.dumps(result, default=str))
    return 0
