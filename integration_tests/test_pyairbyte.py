"""PyAirbyte 0.71.3 end to end with `local_executable`: check, discover, select, three reads
into the default DuckDB cache (the second and third incremental, from the state PyAirbyte
stored), cache content compared with the emulator's live documents, deletes visible.
Each scenario runs pyairbyte_driver.py in a fresh interpreter with per-test AIRBYTE_* dirs."""

from __future__ import annotations

import pytest

from harness import stream_name, table_list
from pyairbyte_run import run_driver

pytestmark = pytest.mark.pyairbyte


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
