"""scripts/quickstart.py, the README's quickstart, run as written against the emulator data
scripts/quickstart.sh starts: PyAirbyte installs the release wheel from `pip_url`, reads twice,
and the cache is exact. With typed columns PyAirbyte types every column (the script fails on
any "Could not determine airbyte type") and the pandas preview has numeric dtypes."""

from __future__ import annotations

import json
import re

import pytest

from harness import REPO_ROOT, connector_wheel
from pyairbyte_run import pyairbyte_env, run_python

pytestmark = pytest.mark.pyairbyte


def test_quickstart_reads_typed_columns(emulator_factory, tmp_path):
    emu = emulator_factory(tables=3, docs=500, components=True, seed=42)
    emulator_file = tmp_path / "emulator.json"
    emulator_file.write_text(json.dumps({"url": emu.url, "access_key": emu.access_key}) + "\n")
    proc = run_python(["-W", "ignore", REPO_ROOT / "scripts" / "quickstart.py",
                       "--wheel", connector_wheel(), "--emulator", emulator_file],
                      pyairbyte_env(tmp_path), tmp_path, timeout=900)
    out = proc.stdout
    assert proc.returncode == 0, f"{out[-6000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
    assert "Could not determine airbyte type" not in out + proc.stderr
    # Piped, as here: PyAirbyte's terminal progress (its summary), not a notebook's display objects.
    assert "IPython.core.display" not in out, out[:3000]
    assert "typed: PyAirbyte gave every column its SQL type" in out
    assert "exact: every live document once" in out
    dtypes = dict(re.findall(r"(\w+)=(\w+)", out.split("column dtypes: ", 1)[1].splitlines()[0]))
    # The preview is the generated `orders` table: an int64 quantity, float64 totals and
    # (nullable) discounts, a boolean.
    assert dtypes["quantity"] == "int64", dtypes
    assert dtypes["total"] == "float64", dtypes
    assert dtypes["discount"] == "float64", dtypes
    assert dtypes["shipped"] == "bool", dtypes
    assert dtypes["_ab_cdc_lsn"] == "int64", dtypes
    assert dtypes["_ab_cdc_updated_at"].startswith("datetime64"), dtypes
