"""The benchmark keeps working (tiny mode; no timings are asserted)."""

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.real_data
def test_benchmark_tiny_mode(real_224, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run.py", "--tiny", str(tmp_path)])
    runpy.run_path(str(ROOT / "benchmarks" / "run.py"), run_name="__main__")
    text = (tmp_path / "benchmarks.md").read_text()
    assert "first pass" in text and "project_pipeline" in text
