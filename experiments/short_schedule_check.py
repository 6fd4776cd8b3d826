"""Fewer fine-tuning epochs for notebook 04's MobileNetV2, on validation only: can a cosine schedule with a warm-up
over fewer epochs replace the plateau schedule's 8 at no loss?

    python experiments/short_schedule_check.py [--fine-tune-epochs 5] [--peak-lr 2e-4]

Everything else as notebook 04 on the full profile (seed, data, frozen phase, augmentation, class weights, early
stopping on validation AUC). Writes reports/benchmarks/short_schedule_check.csv: validation AUC, the specificity at
the validation-chosen threshold (sensitivity >= the target), mean Youden's J under the acquisition shifts, and the
training seconds, beside the committed run's notebook 04 model (reports/metrics/transfer.json). The test split is
never read.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pandas as pd  # noqa: E402

from pneumonia_cxr.config import resolve_weights, settings  # noqa: E402
from pneumonia_cxr.data import class_weights, load_dataset, make_dataset  # noqa: E402
from pneumonia_cxr.evaluate import (  # noqa: E402
    binary_metrics,
    choose_threshold,
    shift_metrics,
    shift_predictions,
    shift_summary,
)
from pneumonia_cxr.io import read_json  # noqa: E402
from pneumonia_cxr.models import build_transfer_model, unfreeze_top  # noqa: E402
from pneumonia_cxr.predictions import predict_binary  # noqa: E402
from pneumonia_cxr.train import compile_model, fit, seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(SHARED / "data" / "chest_xray_224"))
    parser.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    parser.add_argument("--weights-dir", default=str(SHARED / "weights"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--fine-tune-epochs", type=int, default=5)
    parser.add_argument("--peak-lr", type=float, default=2e-4, help="after one warm-up epoch from a tenth of it")
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "short_schedule_check.csv"))
    args = parser.parse_args(argv)
    cfg = settings("full", seed=args.seed)
    seed_everything(args.seed)
    data = load_dataset(
        args.data_dir, cfg["transfer_size"], args.cache_dir, seed=args.seed, thorax_width=cfg["thorax_width"]
    )
    x_tr, y_tr, _ = data.split("train")
    x_va, y_va, _ = data.split("val")
    weights = resolve_weights("imagenet", cfg["backbone"], cfg["alpha"], args.weights_dir)
    model = compile_model(build_transfer_model(cfg["transfer_size"], cfg["backbone"], weights, cfg["alpha"]), 1e-3)
    steps = cfg["max_batches_per_epoch"]
    train_ds = make_dataset(
        x_tr, y_tr, cfg["batch_size"], training=True, seed=args.seed, augment=1.0, max_batches=steps
    )
    val_ds = make_dataset(x_va, y_va, 128)
    start = time.perf_counter()
    fit(model, train_ds, val_ds, cfg["transfer_epochs"], class_weights(y_tr), cfg["patience"])
    unfreeze_top(model, cfg["fine_tune_layers"])
    schedule = keras.optimizers.schedules.CosineDecay(
        args.peak_lr / 10,
        decay_steps=(args.fine_tune_epochs - 1) * steps,
        warmup_target=args.peak_lr,
        warmup_steps=steps,
    )
    compile_model(model, schedule)
    stop = keras.callbacks.EarlyStopping(
        monitor="val_auc", mode="max", patience=cfg["patience"], restore_best_weights=True
    )
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=args.fine_tune_epochs,
        class_weight=class_weights(y_tr),
        callbacks=[stop],
        verbose=2,
    )
    seconds = time.perf_counter() - start
    p_va = predict_binary(model, x_va)
    threshold = choose_threshold(y_va, p_va, cfg["target_sensitivity"])
    m = binary_metrics(y_va, p_va, threshold)
    raw = data.split("val", raw=True)[0]
    shifted = shift_predictions(lambda x: predict_binary(model, data.preprocess(x)), raw, y_va, given={"none": p_va})
    under = shift_summary(shift_metrics(shifted, y_va, threshold))
    committed = read_json(ROOT / "reports" / "metrics" / "transfer.json")
    rows = [
        {
            "model": f"cosine, warm-up, {args.fine_tune_epochs} fine-tuning epochs, peak {args.peak_lr:g}",
            "roc_auc": m["roc_auc"],
            "sensitivity": m["sensitivity"],
            "specificity": m["specificity"],
            "mean_youden_under_shifts": under["mean_youden"],
            "kept_fine_tuning_epoch": stop.best_epoch + 1,
            "fine_tuning_epochs_run": len(history.history["loss"]),
            "training_seconds": round(seconds, 1),
        },
        {
            "model": f"committed notebook 04 ({committed['epochs_trained']} epochs, plateau schedule)",
            "roc_auc": committed["val"]["roc_auc"],
            "sensitivity": committed["val"]["sensitivity"],
            "specificity": committed["val"]["specificity"],
            "mean_youden_under_shifts": committed["val_under_shifts"]["mean_youden"],
            "kept_fine_tuning_epoch": committed["kept_epoch"] - cfg["transfer_epochs"],
            "fine_tuning_epochs_run": committed["epochs_trained"] - cfg["transfer_epochs"],
            "training_seconds": None,
        },
    ]
    table = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.round(4).to_csv(args.out, index=False)
    print(table.round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
