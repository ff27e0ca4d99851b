"""Shared fixtures: a sample SOUSA directory made by `sousa-builder sample`, and its prepared folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Keep the datasets / hub caches of a test run out of the user's home. Must precede their import.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="sousa-tests-hf-")
os.environ.pop("SOUSA_DATA_DIR", None)

import pytest  # noqa: E402
from s3_server import s3_fixture  # noqa: E402, F401  (one moto server for the session, whichever module asks)

from sousa_builder.prepare import prepare  # noqa: E402
from sousa_builder.sample import make_sample  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow (CI always does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow run in CI (CI=true) or with --run-slow; elsewhere they are skipped, saying so."""
    if config.getoption("--run-slow") or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (CI runs it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# 4 profiles x 3 rudiments x 1 tempo x 2 augmentations = 24 samples;
# profiles 0-1 train (12), profile 2 validation (6), profile 3 test (6).
SAMPLE_SPLIT_ROWS = {"train": 12, "validation": 6, "test": 6}


@pytest.fixture
def other_python() -> str:
    """The python of the environment with the other datasets version (3.6 vs 5.x), from SOUSA_OTHER_PYTHON (.ci/run
    sets it): a test that needs it fails in CI without it, and is skipped elsewhere."""
    other = os.environ.get("SOUSA_OTHER_PYTHON")
    if not other:
        if os.environ.get("CI"):
            pytest.fail("CI must set SOUSA_OTHER_PYTHON to the other environment's python (see .ci/run)")
        pytest.skip("set SOUSA_OTHER_PYTHON to the python of an environment with the other datasets version")
    return other


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only sample source: copy it (`source_copy`) before breaking it."""
    return make_sample(tmp_path_factory.mktemp("sample") / "data", profiles=4, rudiments=3, augmentations=2)


@pytest.fixture
def source_copy(sample_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the sample source, free to modify."""
    return Path(shutil.copytree(sample_dir, tmp_path / "data"))


@pytest.fixture(scope="session")
def prepared_dir(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample source prepared with every config; 2 shards per split, written by 2 processes."""
    out = tmp_path_factory.mktemp("prepared") / "sousa"
    prepare(sample_dir, out, num_proc=2, num_shards=2)
    return out
