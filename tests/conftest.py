import os
import warnings
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REAL_224 = SHARED / "chest_xray_224"
REAL_FULLRES = SHARED / "chest_xray_fullres_sample"
WEIGHTS = SHARED.parent / "weights"


def _require(path: Path):
    if path.is_dir():
        return path
    msg = f"REAL DATA MISSING: {path} not found, the real-data tests did NOT run"
    if os.environ.get("CI"):
        pytest.fail(msg)  # in CI ../shared is always there: its absence is a failure
    warnings.warn(msg, stacklevel=2)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def real_224():
    return _require(REAL_224)


@pytest.fixture(scope="session")
def real_fullres():
    return _require(REAL_FULLRES)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    from pneumonia_cxr.data.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo"), seed=0, counts={"train": 24, "val": 2, "test": 8})


def pytest_terminal_summary(terminalreporter):
    if not REAL_224.is_dir() or not REAL_FULLRES.is_dir():
        terminalreporter.write_sep("!", f"REAL DATA MISSING ({SHARED}): real-data tests were skipped", red=True)
