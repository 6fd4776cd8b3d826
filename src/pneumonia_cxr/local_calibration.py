"""A site's local calibration (`local.json`, written by `pneumonia-cxr review calibrate`), checked before it is used.

The shipped model and its metadata are never changed: a local calibration is a separate file that `predict` and the
review app read only when given `--local FILE`. It maps the shipped calibrated P(pneumonia) to a locally calibrated
one, p_local = sigmoid(a * logit(p) + b) with a > 0 (a Platt fit, or a = 1 for a prior shift), and carries a local
threshold, stated on both scales: the decision is PNEUMONIA where the shipped calibrated P(pneumonia) reaches
`threshold_shipped`, which is where the local one reaches `threshold`. It is bound to the model it was fitted for (its
threshold and calibration are copied into the file): a file fitted for another model is refused.

Invariant: nothing uses a local calibration before it passed `read_local`: every field has the type and range the
calibrate command writes; anything else is a `LocalCalibrationError` naming the file and the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .calibration import calibrate
from .model_metadata import check_schema

FORMAT = "pneumonia_cxr/local-calibration/1"
METHODS = ("platt", "prior_shift")

Probability = Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class ShippedModel(BaseModel):
    """What the local calibration was fitted on top of: the shipped model's own operating point and calibration."""

    model_config = ConfigDict(strict=True, extra="allow")
    file: str
    threshold: Probability
    calibration_a: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    calibration_b: Finite | None = None


class LocalCalibration(BaseModel):
    """The fields of a local calibration file that scoring reads."""

    model_config = ConfigDict(strict=True, extra="allow")
    format: Literal[FORMAT]  # type: ignore[valid-type]
    method: Literal[METHODS]  # type: ignore[valid-type]
    a: Annotated[float, Field(gt=0, allow_inf_nan=False)]  # increasing: the order of the images is kept
    b: Finite
    threshold: Probability  # on the local scale
    threshold_shipped: Probability  # the same cut on the shipped calibrated scale
    target_sensitivity: Probability
    model: ShippedModel


class LocalCalibrationError(ValueError):
    """A local calibration file missing, unreadable, outside its schema or fitted for another model; the message
    names the file."""


def validate_local(data, path: str | Path) -> dict:
    """`data` (as read from `path`) checked against `LocalCalibration`.

    Args:
        data: the parsed JSON.
        path: its file, for the message.

    Returns:
        `data` unchanged (every field, checked or not).

    Raises:
        LocalCalibrationError: naming `path` and each field that breaks the schema.
    """
    check_schema(LocalCalibration, data, f"{path}: invalid local calibration", LocalCalibrationError)
    return data


def read_local(path: str | Path) -> dict:
    """The validated local calibration in `path`, with `path` added under "file".

    Args:
        path: a file written by `pneumonia-cxr review calibrate`.

    Returns:
        Its fields, and "file": `path` as given.

    Raises:
        LocalCalibrationError: the file missing, not JSON, not a local calibration or outside the schema; the
            message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise LocalCalibrationError(f"{path}: no local calibration file there")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LocalCalibrationError(f"{path}: unreadable local calibration ({exc})") from None
    if isinstance(data, dict) and data.get("format") != FORMAT:
        raise LocalCalibrationError(
            f"{path}: not a local calibration (format {data.get('format')!r}, expected {FORMAT!r}); "
            "write one with `pneumonia-cxr review calibrate`"
        )
    return {**validate_local(data, path), "file": str(path)}


def shipped_model(model_path: str | Path, meta: dict) -> dict:
    """The `model` block of a local calibration: the shipped model's file name, threshold and calibration."""
    calibration = meta.get("calibration") or {}
    return {
        "file": Path(model_path).name,
        "threshold": float(meta["threshold"]),
        "calibration_a": calibration.get("a"),
        "calibration_b": calibration.get("b"),
        "git_commit": meta.get("git_commit"),
    }


def check_fits_model(local: dict, model_path: str | Path, meta: dict) -> None:
    """Refuse a local calibration fitted on top of another model than `model_path` (another threshold or calibration:
    the local scale would be wrong).

    Raises:
        LocalCalibrationError: naming the local file, the field that differs and both values.
    """
    expected = shipped_model(model_path, meta)
    for field in ("threshold", "calibration_a", "calibration_b"):
        mine, theirs = local["model"].get(field), expected[field]
        same = (mine is None and theirs is None) or (
            mine is not None and theirs is not None and math.isclose(mine, theirs, rel_tol=1e-9, abs_tol=1e-12)
        )
        if not same:
            raise LocalCalibrationError(
                f"{local.get('file', 'local calibration')}: fitted for a model with {field} {mine} "
                f"({local['model']['file']}), but {model_path} has {theirs}; fit it again for this model with "
                "`pneumonia-cxr review calibrate`"
            )


def apply_local(p_shipped, local: dict) -> np.ndarray:
    """The shipped calibrated P(pneumonia) -> the local one (increasing: decisions keep their order)."""
    return calibrate(p_shipped, {"a": local["a"], "b": local["b"]})


def local_decision(p_shipped, local: dict) -> np.ndarray:
    """True where the local threshold calls PNEUMONIA, from the shipped calibrated P(pneumonia)."""
    return np.asarray(p_shipped, dtype=np.float64).reshape(-1) >= local["threshold_shipped"]
