"""The user's path: `pip install <the release wheel>` into a fresh venv, that venv's bin on
PATH, then PyAirbyte 0.71.3 with NO pip_url / local_executable:
`ab.get_source("source-convex", install_if_missing=True, config=config)`.

With AIRBYTE_OFFLINE_MODE=1, PyAirbyte's `get_connector_executor` gets no registry metadata
and, as no install method was given, takes `local_executable = name` when
`which("source-convex")` (shutil.which) finds it on PATH; `_get_local_executor` then builds a
`PathExecutor` on that absolute path. The tests assert that this is the wheel's copy.

Also executes examples/quickstart.ipynb with nbclient (kernel: this venv's python) the same
way, and checks its group-by output and chart. Each run is a fresh interpreter with per-test
AIRBYTE_* dirs (see pyairbyte_run.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import REPO_ROOT, connector_bin, connector_wheel
from pyairbyte_run import pyairbyte_env, run_python

pytestmark = pytest.mark.pyairbyte

NOTEBOOK = REPO_ROOT / "examples" / "quickstart.ipynb"
UNTYPED = "Could not determine airbyte type"

# The seed flow, verbatim, plus what the test needs to know about its result.
SEED_DRIVER = r'''
import json, os, shutil, sys
from pathlib import Path
import airbyte as ab

p = json.loads(Path(sys.argv[1]).read_text())
config = {"deployment_url": p["url"], "access_key": p["access_key"]}

source = ab.get_source("source-convex", install_if_missing=True, config=config)
source.check()
streams = source.get_available_streams()
source.select_all_streams()
cache = ab.get_default_cache()
result = source.read(cache=cache)
frames = {stream: cache[stream].to_pandas() for stream in streams}

executor = source.executor
out = {
    "executor_class": type(executor).__name__,
    "executor_path": str(getattr(executor, "path", "")),
    "cli0": executor._cli[0],
    "which": shutil.which("source-convex"),
    "streams": sorted(streams),
    "processed_records": result.processed_records,
    "rows": {s: len(df) for s, df in frames.items()},
    "dtypes": {s: {c: str(t) for c, t in df.dtypes.items()} for s, df in frames.items()},
}
print("RESULT " + json.dumps(out))
'''

NOTEBOOK_RUNNER = r'''
import sys
import nbformat
from nbclient import NotebookClient

nb = nbformat.read(sys.argv[1], as_version=4)
client = NotebookClient(nb, kernel_name="python3", timeout=600,
                        resources={"metadata": {"path": sys.argv[3]}})
try:
    client.execute()
finally:
    nbformat.write(nb, sys.argv[2])
'''


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh venv with only the release wheel installed (offline, no dependencies)."""
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                   stdin=subprocess.DEVNULL, timeout=300)
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index",
                           "--no-deps", "--disable-pip-version-check", "--no-input",
                           str(connector_wheel())],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exe = venv / "bin" / "source-convex"
    assert exe.is_file() and os.access(exe, os.X_OK), sorted(p.name for p in exe.parent.iterdir())
    # A copy, not a link to the build output.
    assert not exe.is_symlink() and exe.resolve() != connector_bin()
    return venv


def user_env(tmp_path: Path, venv: Path) -> dict:
    """The environment of a user whose venv holds the wheel: its bin first on PATH, PyAirbyte
    offline, per-test AIRBYTE_* / Jupyter / matplotlib dirs, no network beyond loopback."""
    return pyairbyte_env(tmp_path, bin_dir=venv / "bin",
                         extra_dirs=("JUPYTER_RUNTIME_DIR", "IPYTHONDIR", "MPLCONFIGDIR"),
                         drop=("SOURCE_CONVEX_EXECUTABLE", "VIRTUAL_ENV", "PYTHONPATH"))


def numeric_users_fields(emu) -> dict:
    """The `users` fields whose export_json values are all numbers: 'int64' when no value has
    a dot or exponent (Convex int64), else 'float64'."""
    docs = list(emu.documents("", "users").values())
    assert docs
    kinds: dict = {}
    for doc in docs:
        for field, value in doc.items():
            if field.startswith("_"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                kinds[field] = None
            elif kinds.get(field, "") is not None:
                raw = json.dumps(value)
                kind = "float64" if ("." in raw or "e" in raw.lower()) else "int64"
                kinds[field] = "float64" if "float64" in (kind, kinds.get(field)) else kind
    found = {f: k for f, k in kinds.items() if k}
    assert "int64" in found.values() and "float64" in found.values(), found
    return found


def test_get_source_finds_the_wheel_executable_on_path(emulator_factory, tmp_path, wheel_venv):
    emu = emulator_factory(tables=2, docs=40, seed=31)
    numeric = numeric_users_fields(emu)
    env = user_env(tmp_path, wheel_venv)
    driver = tmp_path / "seed_flow.py"
    driver.write_text(SEED_DRIVER)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"url": emu.url, "access_key": emu.access_key}))
    # A fresh interpreter of this suite's venv (it has airbyte; the wheel's venv has not).
    proc = run_python([driver, params], env, tmp_path)
    output = proc.output(limit=10**9)
    assert proc.returncode == 0, proc.output()
    result = proc.result()

    wheel_exe = wheel_venv / "bin" / "source-convex"
    assert result["which"] == str(wheel_exe), result["which"]
    assert result["executor_class"] == "PathExecutor", result
    assert Path(result["executor_path"]) == wheel_exe, result
    assert Path(result["cli0"]) == wheel_exe, result
    # PyAirbyte's own message (rich may wrap it).
    assert (f"Using local `source-convex` executable: {wheel_exe}"
            in " ".join(proc.stderr.split())), proc.stderr[-3000:]

    assert result["streams"] == ["messages", "users"], result["streams"]
    assert result["processed_records"] == 80
    assert result["rows"] == {"messages": 40, "users": 40}, result["rows"]
    dtypes = result["dtypes"]["users"]
    for field, kind in numeric.items():
        # int64 may be a nullable Int64 (pandas' extension dtype) when PyAirbyte uses Arrow.
        assert dtypes.get(field, "").lower().startswith(kind[:-2]), (field, kind, dtypes)
    assert UNTYPED not in output, output[-12000:]


def test_quickstart_notebook_runs(emulator_factory, tmp_path, wheel_venv):
    emu = emulator_factory(tables=2, docs=40, seed=32)
    numeric_users_fields(emu)  # the notebook aggregates `score`, a float field of `users`
    env = user_env(tmp_path, wheel_venv)
    chart = tmp_path / "chart.png"
    env.update({"CONVEX_URL": emu.url, "CONVEX_DEPLOY_KEY": emu.access_key,
                "CHART_PATH": str(chart), "MPLBACKEND": "Agg"})
    runner = tmp_path / "run_notebook.py"
    runner.write_text(NOTEBOOK_RUNNER)
    executed = tmp_path / "executed.ipynb"
    proc = run_python([runner, NOTEBOOK, executed, tmp_path], env, tmp_path, timeout=900)
    assert proc.returncode == 0, (f"--- stdout ---\n{proc.stdout[-5000:]}\n--- stderr ---\n"
                                  f"{proc.stderr[-10000:]}\n{proc.logs[-5000:]}")

    nb = json.loads(executed.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c.get("execution_count") for c in code), "a code cell did not run"
    errors = [o for c in code for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, errors

    def text(cell) -> str:
        parts = []
        for o in cell.get("outputs", []):
            parts.append("".join(o.get("text", "")))
            parts.append("".join(o.get("data", {}).get("text/plain", "")))
        return "".join(parts)

    all_text = "".join(text(c) for c in code)
    assert f"connector: {wheel_venv / 'bin' / 'source-convex'}" in all_text, all_text[-3000:]
    assert "80 records read" in all_text, all_text[-3000:]
    assert UNTYPED not in all_text, all_text[-3000:]

    groupby = [c for c in code if ".groupby(" in "".join(c["source"])]
    assert len(groupby) == 1
    out = text(groupby[0])
    assert "GROUPBY active -> score" in out and "mean" in out and "count" in out, out
    html = "".join("".join(o.get("data", {}).get("text/html", ""))
                   for o in groupby[0]["outputs"])
    assert "<table" in html, groupby[0]["outputs"]

    images = [o["data"]["image/png"] for c in code for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert len(images) == 1, "no chart image in the notebook's outputs"
    assert chart.is_file() and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.stat().st_size > 1000


def readme_python_block(section: str) -> str:
    """The first ```python block after the README heading `section`."""
    text = (REPO_ROOT / "README.md").read_text()
    after = text[text.index(section):]
    start = after.index("```python\n") + len("```python\n")
    return after[start:after.index("```", start)]


def test_the_readme_pyairbyte_snippet_runs_as_written(emulator_factory, tmp_path, wheel_venv):
    """README § PyAirbyte's first snippet, verbatim but for the deployment URL of its example
    (the emulator's), with the key in CONVEX_DEPLOY_KEY as the snippet reads it."""
    emu = emulator_factory(tables=2, docs=30, seed=37)
    snippet = readme_python_block("### PyAirbyte")
    example = "https://murky-swan-635.convex.cloud"
    assert example in snippet
    script = tmp_path / "readme_snippet.py"
    script.write_text(snippet.replace(example, emu.url))
    env = {**user_env(tmp_path, wheel_venv), "CONVEX_DEPLOY_KEY": emu.access_key}
    proc = run_python([script], env, tmp_path)
    output = proc.output()
    assert proc.returncode == 0, output
    # It prints the users table's dtypes: int64 columns come out as int64.
    assert "int64" in proc.stdout and "balance" in proc.stdout, output[-6000:]
    assert UNTYPED not in proc.stdout + proc.stderr
