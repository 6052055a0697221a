"""Running PyAirbyte in a fresh interpreter: PyAirbyte reads the AIRBYTE_* directories when
`airbyte` is imported, so each run gets its own (and with them a new default DuckDB cache),
offline, with no network beyond loopback.

pytest side: `run_driver` (a scenario of pyairbyte_driver.py), `run_python` (any script),
`pyairbyte_env`. Driver side: `driver_main`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import IT_DIR, connector_bin

AIRBYTE_DIRS = ("AIRBYTE_PROJECT_DIR", "AIRBYTE_CACHE_ROOT", "AIRBYTE_LOGGING_ROOT",
                "AIRBYTE_TEMP_DIR")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pyairbyte_env(tmp_path: Path, *, bin_dir: Path | None = None, extra_dirs: Sequence[str] = (),
                  drop: Sequence[str] = ()) -> dict:
    """The environment of a fresh PyAirbyte interpreter: per-run AIRBYTE_* dirs (and
    `extra_dirs`, e.g. Jupyter's) under `tmp_path`, offline, any stray network call failing
    fast on a closed port. PATH starts with `bin_dir` (default: this interpreter's, so
    PyAirbyte runs this venv's `uv` or pip to install a pip_url, as when the user's venv is
    active); `drop`: variables left out."""
    dirs = {name: tmp_path / name.lower() for name in (*AIRBYTE_DIRS, *extra_dirs)}
    for d in dirs.values():
        d.mkdir()
    proxy = f"http://127.0.0.1:{closed_port()}"
    bin_dir = bin_dir or Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update({k: str(v) for k, v in dirs.items()})
    env.update({"AIRBYTE_OFFLINE_MODE": "1", "DO_NOT_TRACK": "1",
                "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy,
                "https_proxy": proxy, "NO_PROXY": "127.0.0.1,localhost",
                "no_proxy": "127.0.0.1,localhost",
                "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                # uv's cache stays in the test's directory.
                "UV_CACHE_DIR": str(tmp_path / "uv-cache")})
    return env


def airbyte_logs(env: dict, tail: int | None = None) -> str:
    """PyAirbyte's log files of a run (each cut to its last `tail` characters)."""
    root = Path(env["AIRBYTE_LOGGING_ROOT"])
    return "\n".join(f"--- {p} ---\n{p.read_text(errors='replace')[-(tail or 0):]}"
                     for p in sorted(root.rglob("*")) if p.is_file())


@dataclass
class PythonRun:
    returncode: int
    stdout: str
    stderr: str
    logs: str

    def output(self, limit: int = 12000) -> str:
        """stdout, stderr and PyAirbyte's logs, for a failure message."""
        return (f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}\n"
                f"{self.logs}")[-limit:]

    def result(self) -> dict:
        """The last `RESULT <json>` line the script printed."""
        line = [ln for ln in self.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        return json.loads(line[len("RESULT "):])


def run_python(args: Sequence[str], env: dict, cwd: Path, *, timeout: float = 600,
               log_tail: int | None = None) -> PythonRun:
    """`python ARGS` (this venv's interpreter) with `env`, in `cwd`."""
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=timeout, cwd=cwd)
    return PythonRun(proc.returncode, proc.stdout, proc.stderr, airbyte_logs(env, log_tail))


def run_driver(scenario: str, params: dict, tmp_path: Path, *, timeout: float = 600,
               output: bool = False) -> dict:
    """Runs `pyairbyte_driver.py SCENARIO PARAMS.json` in a fresh interpreter
    (`pyairbyte_env`); returns its RESULT line, or fails with its output and PyAirbyte's
    logs. `output`: the result also carries the process's `_stdout` and `_stderr` (what
    PyAirbyte printed)."""
    env = pyairbyte_env(tmp_path)
    params_path = tmp_path / "params.json"
    params_path.write_text(json.dumps({**params, "binary": str(connector_bin())}))
    run = run_python([IT_DIR / "pyairbyte_driver.py", scenario, params_path], env, tmp_path,
                     timeout=timeout, log_tail=3000)
    assert run.returncode == 0, (f"driver {scenario} failed ({run.returncode})\n"
                                 f"--- stdout ---\n{run.stdout[-5000:]}\n"
                                 f"--- stderr ---\n{run.stderr[-8000:]}\n{run.logs}")
    result = run.result()
    if output:
        result.update(_stdout=run.stdout, _stderr=run.stderr)
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
