"""PyAirbyte 0.71.3 end to end with `local_executable`: check, discover, select, three reads
into the default DuckDB cache (the second and third incremental, from the state PyAirbyte
stored) and a full refresh, cache content compared with the emulator's live documents by the
oracle, deletes visible. And the pip install path: `pip_url=<the release wheel>`
(scripts/build-wheel.sh) installed by PyAirbyte into its own venv, version found, one read
checked the same way. Each scenario runs pyairbyte_driver.py in a fresh interpreter with
per-test AIRBYTE_* dirs (pyairbyte_run.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import connector_bin, connector_wheel, crate_version
from pyairbyte_run import run_driver

pytestmark = pytest.mark.pyairbyte


@pytest.mark.parametrize("components,column_types",
                         [(False, "typed"), (True, "typed"), (False, "legacy")],
                         ids=["root", "components", "root-legacy"])
def test_pyairbyte_full_cycle(emulator_factory, tmp_path, components, column_types):
    """Typed columns (the default; the cache compared with the export_json documents) and,
    once, `column_types: legacy` (compared with the json documents, as before)."""
    emu = emulator_factory(tables=3, docs=25, components=components, seed=13)
    expected = emu.streams()
    params = {"url": emu.url, "access_key": emu.access_key, "expected_streams": expected,
              "changes": 40}
    if column_types == "legacy":
        params["column_types"] = "legacy"
    result = run_driver("full_cycle", params, tmp_path)
    assert result["reads"][0] == 25 * len(expected)
    assert result["reads"][1] == (5 if components else 4)


def test_pyairbyte_check_bad_key_raises(emulator_factory, tmp_path):
    emu = emulator_factory(tables=1, docs=2)
    result = run_driver("bad_key", {"url": emu.url, "access_key": emu.access_key}, tmp_path)
    assert result["raised"] == "AirbyteConnectorCheckFailedError"


def test_pyairbyte_pip_url_installs_the_wheel(emulator_factory, tmp_path):
    emu = emulator_factory(tables=2, docs=30, components=True, seed=21)
    expected = emu.streams()
    wheel = connector_wheel()
    result = run_driver("pip_wheel", {"url": emu.url, "access_key": emu.access_key,
                                      "expected_streams": expected, "wheel": str(wheel),
                                      "version": crate_version()}, tmp_path)
    # The executable PyAirbyte ran is the wheel's copy in its venv, not the build output.
    assert Path(result["executable"]).resolve() != connector_bin()
    assert result["version"] == crate_version()
    assert result["records"] == 30 * len(expected)
    assert result["cached"] == dict.fromkeys(expected, 30)


def test_pyairbyte_sees_rate_limits_and_convexs_progress(emulator_factory, tmp_path,
                                                         monkeypatch):
    """A 429 on the Data Sync API (the default) is waited out and shown as the streams'
    RATE_LIMITED status, which PyAirbyte takes; progress lines carry Convex's own counts
    (list_active_syncs) into PyAirbyte's log; the cache is exact."""
    emu = emulator_factory(tables=2, docs=40, seed=23, faults=[
        {"endpoint": "data_sync", "kind": "rate_limit", "retry_after_secs": 1, "times": 1}],
        extra_args=["--data-sync-progress-write-interval-ms", "0"])
    monkeypatch.setenv("SOURCE_CONVEX_PROGRESS_MS", "0")
    result = run_driver("rate_limited", {"url": emu.url, "access_key": emu.access_key},
                        tmp_path)
    assert result["records"] == 80
    assert result["limited"] == ["data_sync"], result["limited"]
    assert result["progress"], "no progress line with Convex's numbers reached PyAirbyte's log"
