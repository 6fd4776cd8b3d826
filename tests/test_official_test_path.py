"""Pointed at a dataset folder that has an official test/ split, the same code evaluates on it: real X-rays."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pneumonia_cxr.data.discover import parse_patient

ROOT = Path(__file__).resolve().parents[1]


def kaggle_folder_with_test(real_224: Path, real_fullres: Path, root: Path) -> tuple[int, set]:
    """train/ = chest_xray_224/train minus the patients of the full-resolution sample; test/ = those patients'
    original-resolution JPEGs. Files are linked, never copied; patients are disjoint by construction."""
    held = {path: parse_patient(path.name) for path in (real_fullres / "train").glob("*/*.jpeg")}
    patients = set(held.values())
    for path in held:
        (root / "test" / path.parent.name).mkdir(parents=True, exist_ok=True)
        os.symlink(path, root / "test" / path.parent.name / path.name)
    for path in (real_224 / "train").glob("*/*.jpeg"):
        if parse_patient(path.name) not in patients:
            (root / "train" / path.parent.name).mkdir(parents=True, exist_ok=True)
            os.symlink(path, root / "train" / path.parent.name / path.name)
    return len(held), patients


@pytest.mark.real_data
@pytest.mark.slow
def test_smoke_run_evaluates_on_the_official_test_folder(real_224, real_fullres, tmp_path):
    """Every notebook on the smoke profile, unchanged: the test split is test/, read as it is."""
    import pandas as pd

    data = tmp_path / "chest_xray"
    n_test, test_patients = kaggle_folder_with_test(real_224, real_fullres, data)
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "pneumonia_cxr.runner",
        "--profile",
        "smoke",
        "--data-dir",
        str(data),
        "--cache-dir",
        str(out / "cache"),
        "--output-dir",
        str(out / "reports"),
        "--models-dir",
        str(out / "models"),
        "--executed-dir",
        str(out / "notebooks"),
    ]
    weights = real_224.parents[1] / "weights"
    if weights.is_dir():
        cmd += ["--weights-dir", str(weights)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = out / "reports" / "metrics"
    assert "test" in json.loads((metrics / "eda.json").read_text())["official_split_counts"]
    for name in ("scratch_cnn", "transfer", "tuned_cnn", "ensemble", "ternary"):
        result = json.loads((metrics / f"{name}.json").read_text())
        rows = pd.read_csv(out / "reports" / "predictions" / f"{name}_test.csv")
        assert result["test"]["n"] == len(rows) > 0
        assert rows["relpath"].str.startswith("test/").all(), "every test prediction is of the official test/ folder"
        assert set(rows["patient"]) <= test_patients and len(rows) <= n_test
    # re-running one notebook keeps what run.json says of the others: their times, commits and the run's peak memory
    before = json.loads((metrics / "run.json").read_text())
    again = subprocess.run(cmd + ["--only", "final"], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    after = json.loads((metrics / "run.json").read_text())
    assert after["notebooks"]["03_scratch_cnn"] == before["notebooks"]["03_scratch_cnn"]
    assert after["peak_memory_mb"] == before["peak_memory_mb"]  # training peaks higher than the final notebook
    assert set(after["notebooks"]) == set(before["notebooks"])
    codes = {nb: entry["code"] for nb, entry in after["notebooks"].items()}
    assert all(len(c) == 12 for c in codes.values()) and codes["03_scratch_cnn"] != codes["04_transfer_learning"]
    assert all(entry["cpu"] for entry in after["notebooks"].values()), "each notebook's seconds name their processor"
    assert (metrics / "subgroups.csv").exists()
    up_to_date = subprocess.run(cmd + ["--stale"], cwd=ROOT, capture_output=True, text=True)  # a complete run
    assert up_to_date.returncode == 0 and "nothing to run" in up_to_date.stdout, up_to_date.stdout + up_to_date.stderr
