"""keras-tuner search over the scratch CNN's hyperparameters."""

from __future__ import annotations

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


def search(build, train_ds, val_ds, max_trials: int, epochs: int, directory, seed: int, class_weight=None):
    """Bayesian optimisation of validation AUC; overwrite=True so a re-run starts clean."""
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


def trials_table(tuner) -> pd.DataFrame:
    rows = [
        {"trial": t.trial_id, "status": t.status, **t.hyperparameters.values, "val_auc": t.score}
        for t in tuner.oracle.trials.values()
    ]
    return pd.DataFrame(rows).sort_values("val_auc", ascending=False, na_position="last").reset_index(drop=True)
