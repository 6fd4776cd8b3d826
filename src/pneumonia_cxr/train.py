"""Fit with seeds and callbacks; save a model with the metadata it needs; save predictions."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from .io import EXACT_FLOATS, git_commit, read_json, write_csv, write_json

__all__ = ["EXACT_FLOATS", "git_commit", "read_json", "write_csv", "write_json"]  # notebooks import them from here too

MODEL_FORMAT = "pneumonia_cxr/1"  # marks metadata written by this project


def seed_everything(seed: int) -> None:
    """Python, NumPy and TF seeds, and deterministic TF ops: same seed and data, same metrics."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def compile_model(model: keras.Model, learning_rate: float, n_classes: int = 2, label_smoothing: float = 0.0):
    if n_classes <= 2:
        loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
        metrics = [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        metrics = [keras.metrics.AUC(name="auc", multi_label=True), keras.metrics.CategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
    return model


def fit(model, train_ds, val_ds, epochs: int, class_weight=None, patience: int = 3, monitor: str = "val_auc"):
    """Train with early stopping on validation (never test); keep the best epoch's weights.

    Returns the history, one row per epoch run, with `kept` True on the epoch whose weights the model ends with.
    """
    stop = keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience, restore_best_weights=True)
    callbacks = [
        stop,
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=0.3, patience=max(1, patience - 1)),
    ]
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=2,
    )
    table = pd.DataFrame(history.history).rename_axis("epoch").reset_index()
    table["kept"] = table["epoch"] == stop.best_epoch  # Keras 3 restores the best weights even without a stop
    return table


def kept_epoch(history: pd.DataFrame) -> int:
    """The 1-based epoch whose weights the model ends with; for phases concatenated in order, the last phase's."""
    kept = history.loc[history["kept"], "epoch"]
    if kept.empty:
        raise ValueError("history has no kept epoch")
    return int(kept.iloc[-1]) + 1


def metadata_path(model_path: str | Path) -> Path:
    return Path(model_path).with_suffix(".json")


def save_model(
    model: keras.Model,
    path: str | Path,
    *,
    image_size: int,
    resize: str,
    task: str,
    classes: list[str],
    threshold: float | None = None,
    **extra,
) -> Path:
    """Save `model` (.keras) and, beside it, the preprocessing and threshold it must be used with."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)
    meta = {
        "format": MODEL_FORMAT,
        "task": task,
        "classes": classes,
        "image_size": image_size,
        "resize": resize,
        "threshold": threshold,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        **extra,
    }
    write_json(metadata_path(path), meta)
    return path


class ModelFileError(ValueError):
    """A model file is missing, unreadable, or not one of this project's."""


_LOADING = threading.Lock()


@contextlib.contextmanager
def _sequential_built_once():
    """While a model loads, a `keras.Sequential` in it gets all its layers first and is built once, as
    `keras.Sequential(layers)` builds it. Keras 3.15's `Sequential.from_config` rebuilds the whole stack after every
    layer it adds, tracing a 25-layer CNN about 25 times: 1.7 of the ensemble's 2.6 s to load. Same model, same
    weights; Keras' own method is back in place when loading ends, failed or not."""
    from keras.src.saving import serialization_lib

    original = keras.Sequential.from_config

    def from_config(cls, config, custom_objects=None):
        layers = [
            serialization_lib.deserialize_keras_object(layer, custom_objects=custom_objects)
            for layer in config["layers"]
        ]
        model = cls(layers, name=config["name"])
        if not model.built and config.get("build_input_shape"):
            model.build(config["build_input_shape"])
        return model

    with _LOADING:
        keras.Sequential.from_config = classmethod(from_config)
        try:
            yield
        finally:
            keras.Sequential.from_config = original


def load_model(path: str | Path) -> tuple[keras.Model, dict]:
    """Load a saved model in safe mode with its metadata; clear errors for wrong files."""
    import pneumonia_cxr.models  # noqa: F401  (registers the custom layers)

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file does not exist")
    meta_file = metadata_path(path)
    if not meta_file.is_file():
        raise ModelFileError(f"{path}: no metadata file {meta_file.name} beside it; not a pneumonia_cxr model")
    try:
        meta = read_json(meta_file)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{meta_file}: unreadable metadata ({exc})") from exc
    if meta.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{meta_file}: not pneumonia_cxr metadata (format {meta.get('format')!r})")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a complete .keras archive (truncated or another kind of file)")
    try:
        with _sequential_built_once():
            model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises many types for a bad archive
        raise ModelFileError(f"{path}: cannot load Keras model ({type(exc).__name__}: {exc})") from exc
    check_metadata(model, meta, meta_file)
    return model, meta


def check_metadata(model: keras.Model, meta: dict, meta_file: Path) -> None:
    """The metadata must describe the model it sits beside: its input size and its number of outputs."""
    height, width = model.input_shape[1:3]
    if meta.get("image_size") not in (height, None) or height != width:
        raise ModelFileError(
            f"{meta_file}: image_size {meta.get('image_size')} but the model takes {height}x{width} images"
        )
    outputs = model.output_shape[-1]
    classes = meta.get("classes") or []
    if (outputs == 1 and len(classes) != 2) or (outputs > 1 and outputs != len(classes)):
        raise ModelFileError(f"{meta_file}: {len(classes)} classes {classes} but the model has {outputs} outputs")


def save_predictions(
    path: str | Path,
    rows: pd.DataFrame,
    probabilities: np.ndarray,
    y_true: np.ndarray,
    calibrated: np.ndarray | None = None,
) -> Path:
    """One CSV row per image: relpath, patient, assigned split, true label, predicted probabilities (and, for a
    binary model, the calibrated P(pneumonia) in `p_calibrated`)."""
    out = rows[["relpath", "patient", "split_assigned", "subtype"]].reset_index(drop=True).copy()
    out["y_true"] = y_true
    p = np.asarray(probabilities)
    if p.ndim == 1 or p.shape[1] == 1:
        out["p_pneumonia"] = p.reshape(-1)
        if calibrated is not None:
            out["p_calibrated"] = np.asarray(calibrated).reshape(-1)
    else:
        for i, name in enumerate(["normal", "bacteria", "virus"][: p.shape[1]]):
            out[f"p_{name}"] = p[:, i]
    return write_csv(path, out, EXACT_FLOATS)
