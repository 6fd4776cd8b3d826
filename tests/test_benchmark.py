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
    from pneumonia_cxr.runner import cpu_model

    assert f"CPU cores, {cpu_model()}." in text  # speeds mean little without the processor


@pytest.mark.real_data
def test_decode_consistency_compares_both_decodings_of_every_sample_image(
    real_224, real_fullres, tmp_path, monkeypatch
):
    import pandas as pd

    from pneumonia_cxr.models import build_dense_baseline
    from pneumonia_cxr.train import save_model

    blind = build_dense_baseline(16, units=4)  # all weights zero: the same output whatever the image
    blind.set_weights([w * 0 for w in blind.get_weights()])
    save_model(
        blind,
        tmp_path / "tiny.keras",
        image_size=16,
        resize="squash",
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=0.5,
    )
    out = tmp_path / "decode_consistency.csv"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "decode_consistency.py",
            "--models-dir",
            str(tmp_path),
            "--models",
            "tiny",
            "--originals",
            str(real_fullres),
            "--release",
            str(real_224),
            "--out",
            str(out),
        ],
    )
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / "benchmarks" / "decode_consistency.py"), run_name="__main__")
    assert done.value.code == 0
    row = pd.read_csv(out).iloc[0]
    assert row["model"] == "tiny" and row["images"] == len(list(real_fullres.glob("*/*/*.jpeg")))
    # a model blind to the image decides both decodings alike: any change would be a misaligned pair of images
    assert row["decisions_changed"] == 0 and row["mean_abs_probability_change"] == 0


@pytest.mark.real_data
def test_aspect_offset_ablation_sits_beside_notebook_03s_model_on_validation(real_224, tmp_path):
    import pandas as pd

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from aspect_offset_ablation import SHIFTS, WITH, WITHOUT, main

    reports = tmp_path / "reports"
    args = [
        "--data-dir",
        str(real_224),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output-dir",
        str(reports),
        "--profile",
        "smoke",
    ]
    with pytest.raises(SystemExit, match="scratch_cnn_val_robustness.csv: not found; run notebook 03 first"):
        main(args)
    (reports / "metrics").mkdir(parents=True)
    scratch = pd.DataFrame(
        {
            "shift": SHIFTS + ["blur r=1.5"],
            "roc_auc": 0.9,
            "sensitivity": 0.95,
            "specificity": [0.8, 0.5, 0.7, 0.6, 0.1],
        }
    )
    scratch.to_csv(reports / "metrics" / "scratch_cnn_val_robustness.csv", index=False)
    assert main(args) == 0
    table = pd.read_csv(reports / "metrics" / "aspect_offset_ablation.csv")
    assert table["model"].unique().tolist() == [WITHOUT, WITH]
    assert table.loc[table["model"] == WITH, "shift"].tolist() == SHIFTS
    assert table.loc[table["model"] == WITHOUT, "specificity"].tolist() == [0.8, 0.5, 0.7, 0.6]  # notebook 03's rows
    offset = table.loc[table["model"] == WITH, ["roc_auc", "sensitivity", "specificity"]]
    assert offset.notna().all().all() and ((offset >= 0) & (offset <= 1)).all().all()
    assert (table["epochs"] == 1).all() and (table["kept_epoch"] == 1).all()  # the smoke profile's ablation_epochs
    assert (table["seed"] == 42).all()


def test_aspect_offset_ablation_refuses_the_synthetic_demo(demo_root, tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from aspect_offset_ablation import SHIFTS, main

    (tmp_path / "reports" / "metrics").mkdir(parents=True)
    (tmp_path / "reports" / "metrics" / "scratch_cnn_val_robustness.csv").write_text(
        "shift,roc_auc,sensitivity,specificity\n" + "".join(f"{s},0.9,0.9,0.9\n" for s in SHIFTS)
    )
    with pytest.raises(SystemExit, match="synthetic demo dataset"):
        main(
            [
                "--data-dir",
                str(demo_root),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--output-dir",
                str(tmp_path / "reports"),
                "--profile",
                "smoke",
            ]
        )
    assert not (tmp_path / "reports" / "metrics" / "aspect_offset_ablation.csv").exists()


@pytest.mark.real_data
def test_mixup_check_scores_both_arms_on_validation_and_replaces_its_own_rows(real_224, tmp_path):
    import pandas as pd

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mixup_check import main

    reports = tmp_path / "reports"
    args = [
        "--model",
        "scratch",
        "--data-dir",
        str(real_224),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--output-dir",
        str(reports),
        "--profile",
        "smoke",
    ]
    (reports / "metrics").mkdir(parents=True)
    other = pd.DataFrame(
        {
            "model": ["transfer"],
            "seed": [7],
            "mixup_alpha": [0.2],
            "profile": ["full"],
            "cpu": ["x"],
            "mean_youden": [0.5],
        }
    )
    other.to_csv(reports / "metrics" / "mixup_check.csv", index=False)
    assert main(args) == 0
    first = pd.read_csv(reports / "metrics" / "mixup_check.csv")
    assert main(args) == 0  # made again: its own two rows replaced, not added, and the same numbers (same seed)
    table = pd.read_csv(reports / "metrics" / "mixup_check.csv")
    assert len(table) == 3 and table.loc[table["model"] == "transfer", "mean_youden"].tolist() == [0.5]
    ours = table[table["model"] == "scratch"]
    assert ours["mixup_alpha"].tolist() == [0.0, 0.2] and (ours["seed"] == 42).all()
    for col in ["val_auc", "val_sensitivity", "val_specificity", "min_sensitivity", "min_specificity"]:
        assert ((ours[col] >= 0) & (ours[col] <= 1)).all(), col
    pd.testing.assert_frame_equal(first.drop(columns="train_minutes"), table.drop(columns="train_minutes"))


def _shift_table(relpaths, p):
    """A member's predictions under every shift: p, moved by 0.01 more at each shift."""
    import pandas as pd

    from pneumonia_cxr.evaluate import SHIFTS

    return pd.DataFrame({"relpath": relpaths, **{s: p + 0.01 * k for k, s in enumerate(SHIFTS)}})


def test_mixup_check_finds_the_ensembles_other_members_in_a_committed_run(tmp_path):
    import json

    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from mixup_check import committed_run, others_in_ensemble

    from pneumonia_cxr.evaluate import SHIFTS

    rng = np.random.default_rng(0)
    relpaths = pd.Series([f"train/NORMAL/IM-{i:04d}-0001.jpeg" for i in range(20)])
    members = {m: rng.uniform(0, 0.9, 20) for m in ["scratch_cnn", "tuned_cnn", "transfer"]}
    run = tmp_path / "reports"
    (run / "metrics").mkdir(parents=True)
    (run / "predictions").mkdir()
    (run / "metrics" / "run.json").write_text(json.dumps({"seed": 42}))
    (run / "metrics" / "ensemble.json").write_text(json.dumps({"members": list(members)}))
    _shift_table(relpaths, members["transfer"]).to_csv(run / "predictions" / "transfer_val_shifts.csv", index=False)
    assert committed_run(run, 42, "transfer") is None  # no ensemble predictions kept: nothing to swap into
    mean = sum(_shift_table(relpaths, p)[list(SHIFTS)] for p in members.values()) / 3
    mean.insert(0, "relpath", relpaths)
    mean.to_csv(run / "predictions" / "ensemble_val_shifts.csv", index=False)
    assert committed_run(run, 42, "transfer") == run and committed_run(run, 7, "transfer") is None

    others, n = others_in_ensemble(run, "transfer", relpaths)
    assert n == 3 and list(others.columns) == list(SHIFTS)
    for k, shift in enumerate(SHIFTS):  # the two others' sum, each of them moved by 0.01 per shift
        assert np.allclose(others[shift], members["scratch_cnn"] + members["tuned_cnn"] + 0.02 * k), shift
    with pytest.raises(ValueError, match="other validation images"):
        others_in_ensemble(run, "transfer", relpaths[::-1])
    with pytest.raises(ValueError, match="not a member"):
        others_in_ensemble(run, "baseline_dense", relpaths)
    mean.assign(none=1.0).to_csv(run / "predictions" / "ensemble_val_shifts.csv", index=False)
    with pytest.raises(ValueError, match="not the mean"):  # 3 x 1.0 less transfer's share leaves [0, 2]
        others_in_ensemble(run, "transfer", relpaths)
