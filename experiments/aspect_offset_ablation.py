"""Notebook 03's ablation, outside the timed profile: the scratch CNN trained with a class aspect offset.

Pneumonia originals are wider than normal ones, so squashed to a square their chests look narrower (notebook 03). This
trains notebook 03's CNN, with its augmentation, plus that offset on purpose (`class_aspect=True`: every pneumonia image
widened by 1.52/1.21, its sides cropped) for the profile's `ablation_epochs`, sets its own validation threshold, and
puts it beside notebook 03's model (its `scratch_cnn_val_robustness.csv`) on the validation images as they are, with
each class squashed as if from the other's typical original (`aspect swapped`), and with every image's sides or top and
bottom cropped. Validation only: no test image is read. Compare how each model moves between the rows, not their levels.
It ran at the end of notebook 03 until 187739e; the 45-minute profile no longer pays its 2.5-3 minutes.

    python experiments/aspect_offset_ablation.py --data-dir ../shared/data/chest_xray_224
    # after notebook 03; about 3 minutes on 2 cores; writes reports/metrics/aspect_offset_ablation.csv
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd  # noqa: E402

from pneumonia_cxr.data import class_weights, make_dataset  # noqa: E402
from pneumonia_cxr.evaluate import choose_threshold, robustness_table  # noqa: E402
from pneumonia_cxr.models import build_scratch_cnn  # noqa: E402
from pneumonia_cxr.notebook import setup  # noqa: E402
from pneumonia_cxr.predictions import predict_binary  # noqa: E402
from pneumonia_cxr.train import compile_model, fit, kept_epoch, write_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIFTS = ["none", "aspect swapped", "width stretched x1.26", "height stretched x1.26"]
WITH = "with the offset (ablation)"
WITHOUT = "no offset (scratch_cnn)"  # the rows copied from notebook 03's scratch_cnn_val_robustness.csv
COLUMNS = ["roc_auc", "sensitivity", "specificity"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=ROOT.parent / "shared" / "data" / "chest_xray_224", type=Path)
    ap.add_argument("--cache-dir", default=ROOT / "data" / "cache", type=Path)
    ap.add_argument("--output-dir", default=ROOT / "reports", type=Path, help="the run notebook 03 wrote to")
    ap.add_argument("--profile", default="full", choices=["smoke", "full"])
    ap.add_argument("--seed", default=42, type=int)
    args = ap.parse_args(argv)
    scratch = args.output_dir / "metrics" / "scratch_cnn_val_robustness.csv"
    if not scratch.exists():
        raise SystemExit(
            f"{scratch}: not found; run notebook 03 first (its model is what the ablation is compared with)"
        )
    without = pd.read_csv(scratch).set_index("shift")
    missing = [s for s in SHIFTS if s not in without.index]
    if missing:
        raise SystemExit(f"{scratch}: no row for {missing}; made by another version of notebook 03, run it again")

    cfg, dirs, data = setup(args.profile, args.data_dir, args.cache_dir, args.output_dir, args.seed, "cnn_size")
    if data.synthetic:  # notebook 03's model beside a model of drawings would compare nothing
        raise SystemExit(f"{args.data_dir}: the synthetic demo dataset; the ablation needs the X-rays notebook 03 used")
    x_tr, y_tr, _ = data.split("train")
    x_va, y_va, _ = data.split("val")
    offset = compile_model(
        build_scratch_cnn(cfg["image_size"], equalize=cfg["cnn_equalize"], name="scratch_cnn_aspect_offset"), 1e-3
    )
    offset_ds = make_dataset(
        x_tr,
        y_tr,
        cfg["batch_size"],
        training=True,
        seed=args.seed,
        augment=1.0,
        class_aspect=True,
        max_batches=cfg["max_batches_per_epoch"],
    )
    history = fit(
        offset, offset_ds, make_dataset(x_va, y_va, 128), cfg["ablation_epochs"], class_weights(y_tr), cfg["patience"]
    )
    p_offset = predict_binary(offset, x_va)
    x_va_raw = data.split("val", raw=True)[0]  # shifts happen before the preprocessing, as in every robustness table
    with_offset = robustness_table(
        lambda x: predict_binary(offset, data.preprocess(x)),
        x_va_raw,
        y_va,
        choose_threshold(y_va, p_offset, cfg["target_sensitivity"]),
    ).set_index("shift")
    table = pd.concat(
        {WITHOUT: without.loc[SHIFTS, COLUMNS], WITH: with_offset.loc[SHIFTS, COLUMNS]}, names=["model", "shift"]
    ).reset_index()
    table["seed"], table["epochs"], table["kept_epoch"] = args.seed, len(history), kept_epoch(history)
    write_csv(dirs["metrics"] / "aspect_offset_ablation.csv", table)
    print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
