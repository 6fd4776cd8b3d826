"""Mixup for a binary CNN, checked on validation: the same model trained with and without it, outside the profile.

Trains notebook 03's scratch CNN or notebook 04's fine-tuned MobileNetV2 (`--model`), with their recipe and
augmentation, twice with the same seed: as in the notebook, and with `pneumonia_cxr.data.mixup` on the training
batches (class weights then become sample weights). Each sets its own validation threshold (sensitivity 0.95) and is
scored as `choose_model` scores the notebooks' models: Youden's J on validation averaged over the acquisition shifts,
with the worst sensitivity and specificity under any shift. Validation only: no test image is read. Both arms run on
the same host, since a model trained on another processor differs by itself (README, Reproducibility).

For the MobileNetV2, the check also scores notebook 07's ensemble with this member swapped, where the committed run
of the same seed saved the ensemble's and the member's validation predictions under every shift (the main run does; a
seed run keeps only metrics). The ensemble is the members' mean, so the other members' share is known without their
models, and each arm's predictions take the member's place (rows `model = ensemble`; `cpu` is this arm's host, the
other members are the committed run's, whichever host made them).

    python benchmarks/mixup_check.py --model transfer --seed 7
    # about 20 minutes for transfer, 10 for scratch, on 2 cores; adds its rows to reports/metrics/mixup_check.csv
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from pneumonia_cxr.config import resolve_weights  # noqa: E402
from pneumonia_cxr.data import class_weights, make_dataset  # noqa: E402
from pneumonia_cxr.data.mixup import mixup  # noqa: E402
from pneumonia_cxr.evaluate import (  # noqa: E402
    SHIFTS,
    choose_threshold,
    shift_metrics,
    shift_predictions,
    shift_summary,
)
from pneumonia_cxr.models import build_scratch_cnn, build_transfer_model, unfreeze_top  # noqa: E402
from pneumonia_cxr.notebook import setup  # noqa: E402
from pneumonia_cxr.results import predict_binary  # noqa: E402
from pneumonia_cxr.runner import cpu_model  # noqa: E402
from pneumonia_cxr.train import compile_model, fit, seed_everything, write_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = ["model", "seed", "mixup_alpha", "profile", "cpu"]


def train(kind: str, cfg: dict, train_ds, val_ds, class_weight, weights_dir):
    """Notebook 03's or 04's training, on the batches given."""
    if kind == "scratch":
        model = compile_model(build_scratch_cnn(cfg["image_size"], equalize=cfg["cnn_equalize"]), 1e-3)
        fit(model, train_ds, val_ds, cfg["epochs"], class_weight, cfg["patience"])
        return model
    weights = resolve_weights("imagenet", "MobileNetV2", 0.5, weights_dir)
    model = compile_model(build_transfer_model(cfg["image_size"], "MobileNetV2", weights, 0.5), 1e-3)
    fit(model, train_ds, val_ds, cfg["transfer_epochs"], class_weight, cfg["patience"])
    unfreeze_top(model, cfg["fine_tune_layers"])
    compile_model(model, 1e-4)
    fit(model, train_ds, val_ds, cfg["fine_tune_epochs"], class_weight, cfg["patience"])
    return model


def score(model: str, shifted: pd.DataFrame, y_va, target_sensitivity: float) -> dict:
    """A model's validation row: its threshold on the unshifted images, then the shifts at that threshold."""
    threshold = choose_threshold(y_va, shifted["none"].to_numpy(), target_sensitivity)
    table = shift_metrics(shifted, y_va, threshold)
    unshifted = table.set_index("shift").loc["none"]
    return {
        "model": model,
        "val_auc": roc_auc_score(y_va, shifted["none"]),
        "threshold": threshold,
        "val_sensitivity": unshifted["sensitivity"],
        "val_specificity": unshifted["specificity"],
        **shift_summary(table),
    }


def committed_run(reports: Path, seed: int, member: str) -> Path | None:
    """The committed run of this seed, by its run log, if it kept its validation predictions under the shifts (the
    main run does; a seed run keeps only its metrics)."""
    for run in [reports, reports / "seeds" / str(seed)]:
        log = run / "metrics" / "run.json"
        kept = all((run / "predictions" / f"{name}_val_shifts.csv").exists() for name in ["ensemble", member])
        if log.exists() and json.loads(log.read_text()).get("seed") == seed and kept:
            return run
    return None


def others_in_ensemble(run: Path, member: str, relpaths: pd.Series) -> tuple[pd.DataFrame, int]:
    """The sum of the other members' validation predictions under every shift in the run's ensemble, and the
    number of members: n x the ensemble's mean less this member's own (saved at the ensemble's size, as notebook
    07 reads it)."""
    members = json.loads((run / "metrics" / "ensemble.json").read_text())["members"]
    if member not in members:
        raise ValueError(f"{run}: {member} is not a member of the ensemble ({members})")
    tables = {}
    for name in ["ensemble", member]:
        path = run / "predictions" / f"{name}_val_shifts.csv"
        tables[name] = pd.read_csv(path)
        if not tables[name]["relpath"].equals(relpaths.reset_index(drop=True)):
            raise ValueError(f"{path}: other validation images than this split's (another seed or data?)")
    others = tables["ensemble"][list(SHIFTS)] * len(members) - tables[member][list(SHIFTS)]
    if not ((others >= -1e-4) & (others <= len(members) - 1 + 1e-4)).all().all():
        raise ValueError(
            f"{run}: the ensemble is not the mean of {members} (the others' sum leaves [0, {len(members) - 1}])"
        )
    return others.clip(0, len(members) - 1), len(members)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=["scratch", "transfer"], required=True)
    ap.add_argument("--alpha", default=0.2, type=float, help="Beta(alpha, alpha) of the blend weight")
    ap.add_argument("--data-dir", default=ROOT.parent / "shared" / "data" / "chest_xray_224", type=Path)
    ap.add_argument("--cache-dir", default=ROOT / "data" / "cache", type=Path)
    ap.add_argument("--weights-dir", default=None, type=Path, help="local Keras weight files; none: download")
    ap.add_argument("--output-dir", default=ROOT / "reports", type=Path)
    ap.add_argument("--profile", default="full", choices=["smoke", "full"])
    ap.add_argument("--seed", default=42, type=int)
    args = ap.parse_args(argv)

    size_key = "cnn_size" if args.model == "scratch" else "transfer_size"
    cfg, dirs, data = setup(args.profile, args.data_dir, args.cache_dir, args.output_dir, args.seed, size_key)
    if data.synthetic:
        raise SystemExit(f"{args.data_dir}: the synthetic demo dataset; the check needs X-rays")
    x_tr, y_tr, _ = data.split("train")
    x_va, y_va, rows_va = data.split("val")
    raw_va = data.split("val", raw=True)[0]
    rows, arms = [], {}
    for alpha in (0.0, args.alpha):
        seed_everything(args.seed)  # both arms start from the same state
        train_ds = make_dataset(
            x_tr,
            y_tr,
            cfg["batch_size"],
            training=True,
            seed=args.seed,
            augment=1.0,
            max_batches=cfg["max_batches_per_epoch"],
        )
        weights = class_weights(y_tr)
        if alpha > 0:
            train_ds, weights = mixup(train_ds, alpha, args.seed, class_weight=weights), None
        start = time.time()
        model = train(args.model, cfg, train_ds, make_dataset(x_va, y_va, 128), weights, args.weights_dir)
        minutes = (time.time() - start) / 60
        p_va = predict_binary(model, x_va)
        arms[alpha] = shift_predictions(
            lambda x, model=model: predict_binary(model, data.preprocess(x)), raw_va, y_va, given={"none": p_va}
        )
        rows.append(
            {
                **score(args.model, arms[alpha], y_va, cfg["target_sensitivity"]),
                "seed": args.seed,
                "mixup_alpha": alpha,
                "profile": args.profile,
                "cpu": cpu_model() or platform.machine(),
                "train_minutes": minutes,
            }
        )
        print(pd.Series(rows[-1]).to_string(), flush=True)

    run = committed_run(args.output_dir, args.seed, "transfer") if args.model == "transfer" else None
    if run is not None:  # the same arms inside the run's ensemble, its other members as they were
        others, n = others_in_ensemble(run, "transfer", rows_va["relpath"])
        for alpha, row in zip(arms, rows[: len(arms)]):  # each arm's row, its model and scores the ensemble's
            rows.append({**row, **score("ensemble", (others + arms[alpha]) / n, y_va, cfg["target_sensitivity"])})
            print(pd.Series(rows[-1]).to_string(), flush=True)
    elif args.model == "transfer":
        print(f"no committed run of seed {args.seed} with its predictions under {args.output_dir}: no ensemble rows")

    out = dirs["metrics"] / "mixup_check.csv"
    new = pd.DataFrame(rows)
    new = new[KEY + [c for c in new.columns if c not in KEY]]
    if out.exists():  # keep the other models' and seeds' rows; a check made again replaces its own
        old = pd.read_csv(out)
        old = old[~old[KEY].astype(str).apply(tuple, axis=1).isin(new[KEY].astype(str).apply(tuple, axis=1))]
        new = pd.concat([old, new], ignore_index=True)
    write_csv(out, new.sort_values(KEY, kind="stable").reset_index(drop=True))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
