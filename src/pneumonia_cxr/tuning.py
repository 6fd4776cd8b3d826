"""keras-tuner search over the scratch CNN's hyperparameters, on one machine or several.

One machine: notebook 06 calls `search` and runs every trial itself. Several (keras-tuner's own distributed mode):
every process runs the same search with the environment keras-tuner reads, `KERASTUNER_ORACLE_IP`,
`KERASTUNER_ORACLE_PORT` and `KERASTUNER_TUNER_ID`. The process whose id is `chief` (notebook 06) serves the oracle
and waits; each worker (`python -m pneumonia_cxr.tuning` with the notebook's settings, id `tuner0`, `tuner1`, ...)
asks it for trials, trains them and reports back. The chief then holds every trial, and notebook 06 goes on as on
one machine. docs/scaling.md has the commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import keras_tuner as kt
import pandas as pd

from .models import build_scratch_cnn
from .train import compile_model


def cnn_hypermodel(image_size: int, equalize: str | None, base_filters: tuple[int, ...]):
    """The search space: depth, width (first block's filters, one of `base_filters` (the profile's
    `tuner_base_filters`), doubling per block, at most 128), dropout and learning rate of build_scratch_cnn
    (`equalize` fixed)."""
    widths = [int(f) for f in base_filters]
    if not widths or min(widths) < 1:
        raise ValueError(f"base_filters must be positive filter counts, got {base_filters!r}")

    def build(hp: kt.HyperParameters):
        blocks = hp.Int("blocks", 3, 5)
        base = hp.Choice("base_filters", widths)
        filters = tuple(min(base * 2**i, 128) for i in range(blocks))
        model = build_scratch_cnn(
            image_size, filters, hp.Float("dropout", 0.1, 0.5, step=0.1), equalize=equalize, name="tuned_cnn"
        )
        return compile_model(model, hp.Choice("learning_rate", [3e-3, 1e-3, 3e-4]))

    return build


def role() -> str:
    """'single' (no oracle address in the environment), 'chief' or 'worker', as keras-tuner will act."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "single"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def search(build, train_ds, val_ds, max_trials: int, epochs: int, directory, seed: int, class_weight=None):
    """Bayesian optimisation of validation AUC; overwrite=True so a re-run starts clean.

    In distributed mode (`role()`), a worker keeps its trial checkpoints in its own sub-folder, so starting it
    never clears the chief's folder; the chief's call returns once every trial has ended.

    Returns:
        The tuner; on one machine or the chief, its oracle holds every trial.
    """
    directory = Path(directory)
    if role() == "worker":
        directory = directory / os.environ["KERASTUNER_TUNER_ID"]
    tuner = kt.BayesianOptimization(
        build,
        objective=kt.Objective("val_auc", direction="max"),
        max_trials=max_trials,
        seed=seed,
        directory=str(directory),
        project_name="scratch_cnn",
        overwrite=True,
    )
    tuner.search(train_ds, validation_data=val_ds, epochs=epochs, class_weight=class_weight, verbose=0)
    return tuner


def search_inputs(
    profile: str, data_dir, cache_dir, output_dir, seed: int, image_size=None, epochs=None, max_trials=None
):
    """Everything notebook 06's search uses, built the same way in the notebook and in each worker.

    Returns:
        (cfg, dirs, data, build, train_ds, val_ds, class_weight): settings, output folders, the dataset, the
        hypermodel, the training and validation pipelines and the class weights.
    """
    from .data import class_weights, make_dataset
    from .notebook import setup

    cfg, dirs, data = setup(
        profile,
        data_dir,
        cache_dir,
        output_dir,
        seed,
        "tuner_size",
        image_size,
        epochs=epochs,
        tuner_max_trials=max_trials,
    )
    x_tr, y_tr, _ = data.split("train")
    x_va, y_va, _ = data.split("val")
    train_ds = make_dataset(
        x_tr, y_tr, cfg["batch_size"], training=True, seed=seed, augment=1.0, max_batches=cfg["max_batches_per_epoch"]
    )
    val_ds = make_dataset(x_va, y_va, 128)
    build = cnn_hypermodel(cfg["image_size"], cfg["cnn_equalize"], cfg["tuner_base_filters"])
    return cfg, dirs, data, build, train_ds, val_ds, class_weights(y_tr)


def trials_table(tuner) -> pd.DataFrame:
    rows = [
        {"trial": t.trial_id, "status": t.status, **t.hyperparameters.values, "val_auc": t.score}
        for t in tuner.oracle.trials.values()
    ]
    return pd.DataFrame(rows).sort_values("val_auc", ascending=False, na_position="last").reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    """One process of a distributed search with notebook 06's settings (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="full")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--output-dir", default="reports")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-trials", type=int, default=None, help="default: the profile's (as notebook 06)")
    args = parser.parse_args(argv)
    if role() == "single":
        parser.error("set KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT and KERASTUNER_TUNER_ID (docs/scaling.md)")
    cfg, _, _, build, train_ds, val_ds, weights = search_inputs(
        args.profile,
        args.data_dir,
        args.cache_dir,
        args.output_dir,
        args.seed,
        max_trials=args.max_trials,
    )
    tuner = search(
        build,
        train_ds,
        val_ds,
        cfg["tuner_max_trials"],
        cfg["tuner_epochs"],
        Path(args.models_dir) / "tuner",
        args.seed,
        weights,
    )
    tuner_id = os.environ["KERASTUNER_TUNER_ID"]
    if role() == "chief":
        print(json.dumps({"tuner_id": tuner_id, "trials": trials_table(tuner).to_dict("records")}), flush=True)
    else:
        print(json.dumps({"tuner_id": tuner_id, "done": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
