"""A binary model's probabilities: plain, under every acquisition shift (`data/shifts.py`), and the per-image tables
of the shifted ones (`reports/predictions/<model>_<split>_shifts.csv`) with their metrics.

Invariant: a shift happens to the image as acquired, before the preprocessing (the thorax scale); the unshifted
column is always what the model itself predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .data import XrayData
from .data.shifts import SHIFTS
from .evaluate import shift_metrics, shift_predictions
from .inference import predict_batches
from .io import EXACT_FLOATS, write_csv


def predict_binary(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """P(pneumonia) of a one-output model, one per image.

    Args:
        model: a Keras model with one sigmoid output.
        images: the images as the model takes them.
        batch_size: images per forward pass.

    Returns:
        A flat array, in image order.
    """
    return predict_batches(model, images, batch_size).ravel()


def per_image(rows: pd.DataFrame, y, shifted: pd.DataFrame) -> pd.DataFrame:
    """A `*_shifts.csv`: each image's probabilities under every shift, beside its path, patient and label.

    Args:
        rows: the split's rows (`data.split`'s third item).
        y: their labels.
        shifted: one column per shift, one row per image in the same order.

    Returns:
        The table as written.
    """
    return pd.concat(
        [
            rows[["relpath", "patient"]].reset_index(drop=True),
            pd.DataFrame({"y_true": y}),
            shifted.reset_index(drop=True),
        ],
        axis=1,
    )


def under_shifts(
    name: str, data: XrayData, split: str, model, p_unshifted: np.ndarray, shifts: Callable | None = None
) -> pd.DataFrame:
    """A model's probabilities on one split under every acquisition shift.

    Args:
        name: the model's name (in the error).
        data: the run's data.
        split: "val" or "test".
        model: the model that predicts the shifted images (unused when `shifts` is given).
        p_unshifted: what the model predicts on the split's images as they are.
        shifts: `shifts(split, raw_images, y)` makes the shifted predictions instead of the model (the ensemble
            averages its members' saved ones); its unshifted column must be `p_unshifted`.

    Returns:
        One column per shift, one row per image; column "none" is `p_unshifted` itself.
    """
    raw, y = data.split(split, raw=True)[0], data.split(split)[1]
    if shifts is None:  # a shift happens to the image as acquired, before the preprocessing (thorax scale)
        return shift_predictions(
            lambda x: predict_binary(model, data.preprocess(x)), raw, y, given={"none": p_unshifted}
        )
    shifted = shifts(split, raw, y)
    assert np.allclose(shifted["none"], p_unshifted, atol=1e-5), f"{name}: shifted predictions of another model"
    return shifted.assign(none=p_unshifted)  # the model's own, which the threshold was chosen on


def save_shift_predictions(
    name: str, split: str, rows: pd.DataFrame, y, shifted: pd.DataFrame, threshold: float, dirs: dict
) -> pd.DataFrame:
    """Write a split's shifted predictions per image (`<name>_<split>_shifts.csv`: the final notebook bootstraps the
    model choice from validation's, notebook 07 reads the members' instead of predicting them again) and their
    metrics at `threshold` (`<name>_val_robustness.csv` for validation, `<name>_robustness.csv` for test).

    Args:
        name: the model's name in both files.
        split: "val" or "test".
        rows, y: the split's rows and labels.
        shifted: `under_shifts`' table.
        threshold: the model's threshold, chosen on validation.
        dirs: the notebook's output folders.

    Returns:
        The metrics under every shift, as written.
    """
    write_csv(dirs["predictions"] / f"{name}_{split}_shifts.csv", per_image(rows, y, shifted), EXACT_FLOATS)
    table = shift_metrics(shifted, y, threshold)
    write_csv(dirs["metrics"] / f"{name}{'_val' if split == 'val' else ''}_robustness.csv", table)
    return table


def ensemble_shift_predictions(
    members: dict, data: XrayData, predictions_dir: str | Path, image_size: int, split: str, raw: np.ndarray, y
) -> pd.DataFrame:
    """The ensemble's probabilities under every shift: the mean of its members'. A member trained at the ensemble's
    size saw these very images in its own notebook, which saved its shifted predictions (`<member>_<split>_shifts.csv`,
    read back); the others predict here, on the shifted image resized to their size, as inside the ensemble.

    Args:
        members: member name -> loaded Keras model.
        data: the run's data at the ensemble's image size.
        predictions_dir: where the members' per-image predictions are.
        image_size: the ensemble's input size.
        split, raw, y: the split's name, its decoded images and labels (`under_shifts`' `shifts` call).

    Returns:
        One column per shift, one row per image.
    """
    from .models import build_ensemble

    rows = data.split(split)[2]["relpath"].reset_index(drop=True)
    total = 0
    for name, model in members.items():
        saved = Path(predictions_dir) / f"{name}_{split}_shifts.csv"
        if model.input_shape[1] == image_size and saved.exists():
            table = pd.read_csv(saved)
            if not table["relpath"].equals(rows):
                raise ValueError(f"{saved}: not the images of the {split} split of this run")
            total = total + table[list(SHIFTS)]
        else:
            alone = build_ensemble([model], image_size, name=f"{name}_at_{image_size}")
            total = total + shift_predictions(lambda x, m=alone: predict_binary(m, data.preprocess(x)), raw, y)
    return total / len(members)
