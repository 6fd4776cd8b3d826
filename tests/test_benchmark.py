"""The speed benchmarks keep working on a few images: what they measure is measured and shown (never how fast)."""

import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.real_data
@pytest.mark.slow
def test_benchmark_tiny_mode(real_224, tmp_path, monkeypatch):
    """Every figure of the table is a positive measured rate from the JSON beside it, for the images it names."""
    import json
    import math

    from pneumonia_cxr.runner import cpu_model

    monkeypatch.setattr(sys, "argv", ["run.py", "--tiny", str(tmp_path)])
    runpy.run_path(str(ROOT / "benchmarks" / "run.py"), run_name="__main__")
    r = json.loads((tmp_path / "benchmarks.json").read_text())
    text = (tmp_path / "benchmarks.md").read_text()
    assert [d["dataset"] for d in r["decode"]] == ["chest_xray_fullres_sample", "chest_xray_224"]
    for d in r["decode"]:
        assert d["images"] == 20, "tiny mode: ten training images of each class"
        rates = [d["first_pass_img_s"][k] for k in ("project", "pil_loop_1_thread", "pil_loop_all_cores")]
        assert all(math.isfinite(v) and v > 0 for v in [*rates, d["epoch_input_s"]["project_cached"]]), d
        assert d["first_pass_img_s"]["keras_stock"] is None, "not measured in tiny mode: null, not a number"
        row = f"| {d['dataset']} | 20 | 224 | {rates[0]:.0f} | {rates[1]:.0f} | {rates[2]:.0f} |"
        assert row in text, f"the table shows what the JSON holds: {row}"
    assert set(r["train"]) and all(t["train_img_s"] > 0 and t["input_only_img_s"] > 0 for t in r["train"].values())
    rows = sum(line.startswith("| ") for line in text.splitlines())
    assert rows == 1 + len(r["decode"]) + 1 + len(r["train"]), "each table: a header and a row per measurement"
    assert f"CPU cores, {cpu_model()}." in text  # speeds mean little without the processor


@pytest.mark.real_data
@pytest.mark.slow
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
