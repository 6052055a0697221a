"""airbyte-cdk 7.39.1 in-process standard tests (SourceTestSuiteBase) through a `Source`
adapter that shells out to the release binary (subprocess_source.py). Expected: 12 passing
(spec, check x3, and config matches spec, discover, basic_read, fail_read_with_bad_catalog
for config.json and config_legacy.json each)."""

from pathlib import Path

import pytest
from airbyte_cdk.test.standard_tests import SourceTestSuiteBase

from harness import REPO_ROOT
from subprocess_source import SubprocessSource


@pytest.fixture(autouse=True, scope="module")
def _emulator(fixed_emulator):
    yield fixed_emulator


class TestInProcess(SourceTestSuiteBase):
    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return REPO_ROOT

    @classmethod
    def create_connector(cls, scenario):
        return SubprocessSource()
