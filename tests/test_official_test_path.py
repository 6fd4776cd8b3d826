"""The same code on both layouts: a folder with an official test/ split is evaluated on it; a folder without test/
gets a patient-level hold-out carved from train, and every text the run writes says so.

Each notebook runs once in `make test`. The committed run (`make all`) reads the official test/ of the dataset; so
that the other layout runs end to end too, `make nbval` runs every notebook under nbval on the smoke profile on
SMOKE_DATA with its test/ folder left out (train/ and val/ linked by this file, run as a script), then runs this file
with SMOKE_RUN=build/smoke to check what that run wrote. Under a plain `pytest tests` there is no such run: those
checks skip, saying so. The runner's record of a partial re-run is checked here with papermill replaced by a copy.

    python tests/test_official_test_path.py SRC DST   # DST: SRC's dataset without its test/ folder, linked
"""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("scratch_cnn", "transfer", "tuned_cnn", "ensemble", "ternary")


def link_without_test(src: str | Path, dst: str | Path) -> Path:
    """`dst`: the train/ and val/ folders of the dataset under `src`, linked (nothing is copied), and no test/.

    Args:
        src: a dataset folder in any layout `find_dataset_root` understands.
        dst: a folder that must not exist yet.
    Returns:
        dst.
    """
    from pneumonia_cxr.data.discover import find_dataset_root

    data_root, dst = find_dataset_root(src).resolve(), Path(dst)
    dst.mkdir(parents=True)
    for split in sorted(data_root.iterdir()):
        if split.is_dir() and split.name.lower() in {"train", "val"}:
            (dst / split.name).symlink_to(split, target_is_directory=True)
    return dst


@pytest.fixture(scope="module")
def smoke_run() -> Path:
    """The reports folder of the smoke run `make nbval` just made on a folder without test/."""
    where = os.environ.get("SMOKE_RUN")
    if not where:
        pytest.skip("checks the smoke run `make nbval` makes without a test/ folder (SMOKE_RUN=build/smoke)")
    reports = (ROOT / where / "reports").resolve()
    if not (reports / "metrics" / "eda.json").exists():
        pytest.fail(f"{reports}: no smoke run here (SMOKE_RUN={where}); `make nbval` makes it")
    return reports


def test_link_without_test_keeps_train_and_val_and_leaves_the_data_alone(demo_root, tmp_path):
    from pneumonia_cxr.data import build_manifest

    before = sorted(p.relative_to(demo_root) for p in demo_root.rglob("*"))
    dst = link_without_test(demo_root, tmp_path / "chest_xray")
    assert sorted(p.name for p in dst.iterdir()) == ["train", "val"] and all(p.is_symlink() for p in dst.iterdir())
    table = build_manifest(dst).table
    pool = build_manifest(demo_root).table.query("split != 'test'")
    assert set(table["split"]) == {"train", "val"} and table["relpath"].tolist() == pool["relpath"].tolist()
    assert sorted(p.relative_to(demo_root) for p in demo_root.rglob("*")) == before


def test_every_model_was_scored_on_a_hold_out_carved_from_the_pool(smoke_run):
    import pandas as pd

    metrics = smoke_run / "metrics"
    assert "test" not in json.loads((metrics / "eda.json").read_text())["official_split_counts"]
    for name in MODELS:
        result = json.loads((metrics / f"{name}.json").read_text())
        rows = pd.read_csv(smoke_run / "predictions" / f"{name}_test.csv")
        assert result["test"]["n"] == len(rows) > 0 and result["test_split"] == "carved", name
        assert rows["relpath"].str.startswith(("train/", "val/")).all(), "the hold-out is carved from the pool"
        val = pd.read_csv(smoke_run / "predictions" / f"{name}_val.csv")
        assert not set(rows["patient"]) & set(val["patient"]), "no patient in both the hold-out and validation"
    assert (metrics / "subgroups.csv").exists(), "the final notebook ran to its subgroup table"


def test_every_text_says_the_hold_out_was_carved(smoke_run):
    from pneumonia_cxr.model_card import model_card
    from pneumonia_cxr.report import results_markdown

    text = results_markdown(smoke_run)
    assert "carved from train" in text and "official test split" not in text
    card = model_card(smoke_run)
    assert "a patient-level hold-out carved from train" in card and "official test split" not in card


def test_a_partial_rerun_keeps_what_run_json_says_of_the_others(tmp_path, monkeypatch):
    """The final notebook again (`--only final`), papermill replaced by a copy: the other notebooks keep their
    entries and the run its peak memory, a training notebook's peak being higher than the final notebook's."""
    from pneumonia_cxr import runner
    from pneumonia_cxr.io import read_json, write_json

    monkeypatch.setattr(runner.pm, "execute_notebook", lambda src, dst, **kw: shutil.copy(src, dst))
    log = tmp_path / "reports" / "metrics" / "run.json"
    entry = {"seconds": 300.0, "git_commit": "abc1234", "code": "0123456789ab", "cpu": "a cpu"}
    before = {"profile": "smoke", "seed": 42, "notebooks": {"03_scratch_cnn": entry}, "peak_memory_mb": 1e6}
    write_json(log, before)
    args = ["--profile", "smoke", "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "reports")]
    assert runner.main([*args, "--executed-dir", str(tmp_path / "x"), "--only", "final"]) == 0
    after = read_json(log)
    assert after["notebooks"]["03_scratch_cnn"] == entry and after["peak_memory_mb"] == 1e6
    final = after["notebooks"]["final_notebook"]
    assert len(final["code"]) == 12 and final["code"] != entry["code"] and final["cpu"], final


if __name__ == "__main__":
    link_without_test(sys.argv[1], sys.argv[2])
