"""airbyte-cdk 7.39.1 Docker-path standard tests (DockerConnectorTestSuite), run offline through
integration_tests/fake_docker/docker, which executes the release binary in place of the image
airbyte/source-convex:dev. Scenarios come from /work/main/acceptance-test-config.yml; the
emulator behind integration_tests/config.json is the session fixture `fixed_emulator`.
Expected: 9 passing with the two configs of acceptance-test-config.yml (spec, check x3,
config matches spec x2, discover x2, read of `config` only: the CDK reads no other scenario)."""

import shutil
from pathlib import Path

import pytest
from airbyte_cdk.test.standard_tests.docker_base import DockerConnectorTestSuite

from harness import IT_DIR, REPO_ROOT


@pytest.fixture(autouse=True, scope="module")
def _emulator(fixed_emulator):
    yield fixed_emulator


def test_fake_docker_is_first_on_path():
    assert Path(shutil.which("docker")).resolve() == (IT_DIR / "fake_docker" / "docker").resolve()


class TestDockerImage(DockerConnectorTestSuite):
    @classmethod
    def get_connector_root_dir(cls) -> Path:
        return REPO_ROOT
