"""The same code on both layouts, real X-rays: a folder with an official test/ split is evaluated on it (the committed
run and `make test`'s notebooks use ../shared/data/chest_xray_224, which has one); a folder without test/ gets a
patient-level hold-out carved from train, and every text the run writes says so."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def kaggle_folder_without_test(real_224: Path, root: Path) -> None:
    """train/ and val/ of chest_xray_224, linked, and no test/ folder (as a user who kept only the training data)."""
    for path in [*(real_224 / "train").glob("*/*.jpeg"), *(real_224 / "val").glob("*/*.jpeg")]:
        (root / path.parent.parent.name / path.parent.name).mkdir(parents=True, exist_ok=True)
        os.symlink(path, root / path.parent.parent.name / path.parent.name / path.name)


@pytest.mark.real_data
@pytest.mark.slow
def test_smoke_run_without_a_test_folder_carves_a_hold_out_and_says_so(real_224, tmp_path):
    """Every notebook on the smoke profile, unchanged, on a folder without test/."""
    import pandas as pd

    from pneumonia_cxr.report import results_markdown

    data = tmp_path / "chest_xray"
    kaggle_folder_without_test(real_224, data)
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
    assert "test" not in json.loads((metrics / "eda.json").read_text())["official_split_counts"]
    for name in ("scratch_cnn", "transfer", "tuned_cnn", "ensemble", "ternary"):
        result = json.loads((metrics / f"{name}.json").read_text())
        rows = pd.read_csv(out / "reports" / "predictions" / f"{name}_test.csv")
        assert result["test"]["n"] == len(rows) > 0 and result["test_split"] == "carved"
        assert rows["relpath"].str.startswith(("train/", "val/")).all(), "the hold-out is carved from the pool"
        val = pd.read_csv(out / "reports" / "predictions" / f"{name}_val.csv")
        assert not set(rows["patient"]) & set(val["patient"]), "no patient in both the hold-out and validation"
    text = results_markdown(out / "reports")
    assert "carved from train" in text and "official test split" not in text
    book = json.loads((out / "notebooks" / "final_notebook.ipynb").read_text())
    shown = json.dumps([c.get("outputs", []) for c in book["cells"] if c["cell_type"] == "code"])
    assert "carved from train" in shown and "the official test split, read once" not in shown
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
