"""The end of every binary model's notebook, in the order that keeps test out of every choice:

threshold on validation -> validation under acquisition shifts (what `selection.choose_model` ranks on) -> save
with that threshold -> reload in safe mode (must predict the same) -> predict the test split once -> metrics with
CIs -> the test split under the same shifts (per image, and the robustness table).

Invariant: the test images are read only after the model file, its threshold and its calibration are written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .calibration import calibrate, fit_platt
from .data import XrayData
from .evaluate import assert_consistent, choose_threshold, shift_summary
from .predictions import predict_binary, save_shift_predictions, under_shifts
from .records import record_binary
from .train import load_model, save_model


def save_and_reload(model, path: Path, x_val: np.ndarray, p_val: np.ndarray, **meta):
    """Save a binary model with its metadata, load it back in safe mode, and check it predicts what it did.

    Args:
        model: the trained Keras model.
        path: the `.keras` file to write.
        x_val, p_val: the validation images and the model's predictions on them before saving.
        meta: the metadata `train.save_model` writes beside it.

    Returns:
        The file written and the reloaded model.
    """
    path = save_model(model, path, **meta)
    reloaded, _ = load_model(path)
    same = np.allclose(predict_binary(reloaded, x_val), p_val, atol=1e-5)
    assert same, f"{path}: reloaded model predicts differently"
    return path, reloaded


def save_and_record_binary(
    name: str, model, data: XrayData, dirs: dict, cfg: dict, models_dir, shifts: Callable | None = None, **extra
) -> tuple[dict, pd.DataFrame]:
    """Threshold, shifts on validation, save, reload, test once, metrics, shifts on test (the module's order).

    Args:
        name: the model's name in every file.
        model: the trained binary Keras model.
        data, dirs, cfg: the notebook's data, output folders and settings.
        models_dir: where `<name>.keras` goes.
        shifts: `shifts(split, raw_images, y)`, if given, makes the shifted predictions instead of the model (the
            ensemble averages its members' saved ones); its unshifted column must be what the model predicts.
        extra: more fields for the model's metadata and metrics file.

    Returns:
        The metrics as written, and the test split's robustness table.
    """
    x_va, y_va, rows_va = data.split("val")
    p_va = predict_binary(model, x_va)
    threshold = choose_threshold(y_va, p_va, cfg["target_sensitivity"])
    shifted = under_shifts(name, data, "val", model, p_va, shifts)
    val_shifts = save_shift_predictions(name, "val", rows_va, y_va, shifted, threshold, dirs)
    calibration = fit_platt(y_va, p_va)
    path, reloaded = save_and_reload(
        model,
        Path(models_dir) / f"{name}.keras",
        x_va,
        p_va,
        image_size=cfg["image_size"],
        resize="squash",
        thorax_width=data.thorax_width,
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=threshold,
        calibration=calibration,
        threshold_calibrated=float(calibrate([threshold], calibration)[0]),
        **extra,
    )
    x_te, y_te, rows_te = data.split("test")
    p_te = predict_binary(reloaded, x_te)
    result = record_binary(
        name,
        p_va,
        p_te,
        data,
        dirs,
        cfg,
        calibration,
        model_file=str(path),
        image_size=cfg["image_size"],
        val_under_shifts=shift_summary(val_shifts),
        **extra,
    )
    assert_consistent(result["test"])
    assert_consistent(result["val"])
    assert result["threshold"] == threshold
    shifted_te = under_shifts(name, data, "test", reloaded, p_te, shifts)
    return result, save_shift_predictions(name, "test", rows_te, y_te, shifted_te, threshold, dirs)
