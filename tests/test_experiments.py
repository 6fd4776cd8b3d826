"""The validation-only experiments (experiments/) keep working: each writes its table beside the run it checks."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.real_data
@pytest.mark.slow
def test_aspect_offset_ablation_sits_beside_notebook_03s_model_on_validation(real_224, tmp_path):
    import pandas as pd

    sys.path.insert(0, str(ROOT / "experiments"))
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
    sys.path.insert(0, str(ROOT / "experiments"))
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


def test_one_effective_resolution_removes_fine_detail_and_nothing_else():
    import numpy as np

    sys.path.insert(0, str(ROOT / "experiments"))
    from common_resolution import low_pass

    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(40, 200, 128), (128, 1))
    images = np.clip(ramp + rng.normal(0, 20, (3, 128, 128)), 0, 255).astype(np.uint8)
    assert low_pass(images, 0) is images
    out = low_pass(images, 32)
    assert out.shape == images.shape and out.dtype == np.uint8
    detail = lambda x: np.abs(np.diff(x.astype(float), axis=2)).mean()  # noqa: E731
    assert detail(out) < detail(images) / 3  # the pixel-to-pixel grain is gone
    assert abs(out.astype(float).mean() - images.astype(float).mean()) < 1.0  # exposure kept
    assert np.abs(out.astype(float) - ramp).mean() < 6  # the anatomy-scale gradient kept
