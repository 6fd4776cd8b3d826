"""A model's record of a run: its metrics file (`reports/metrics/<model>.json`) and per-image predictions
(`reports/predictions/<model>_{val,test}.csv`), written once by the model's notebook and read back by everything else.

Invariant: the threshold and the calibration come from validation alone; test is only evaluated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .calibration import calibrate, calibration_report, fit_platt
from .data import TERNARY_CLASSES, XrayData
from .evaluate import evaluate_binary, ternary_metrics
from .io import read_json, write_json
from .train import save_predictions


def _header(name: str, task: str, data: XrayData, cfg: dict) -> dict:
    """The fields every metrics file starts with."""
    return {
        "model": name,
        "task": task,
        "profile": cfg["profile"],
        "synthetic": data.synthetic,
        "test_split": data.test_split,
    }


def record_binary(
    name: str, p_val, p_test, data: XrayData, dirs: dict, cfg: dict, calibration: dict | None = None, **extra
) -> dict:
    """Threshold on validation for the target sensitivity, Platt calibration fitted on validation, test metrics with
    patient-bootstrap CIs; writes `<name>.json` and the per-image predictions (raw and calibrated).

    Args:
        name: the model's name in every file.
        p_val, p_test: the model's P(pneumonia) on the validation and test images, in `data.split` order.
        data, dirs, cfg: the notebook's data, output folders and settings.
        calibration: Platt parameters already fitted on these validation predictions (else fitted here).
        extra: more fields for the metrics file.

    Returns:
        The metrics as written.
    """
    _, y_val, rows_val = data.split("val")
    _, y_test, rows_test = data.split("test")
    calibration = calibration or fit_platt(y_val, p_val)
    result = {
        **_header(name, "binary", data, cfg),
        **evaluate_binary(
            y_val,
            p_val,
            y_test,
            p_test,
            rows_test["patient"].to_numpy(),
            cfg.get("target_sensitivity", 0.95),
            cfg["n_boot"],
            cfg.get("seed", 0),
        ),
        "calibration": calibration_report(calibration, y_val, p_val, rows_val["patient"].to_numpy(), y_test, p_test),
        **extra,
    }
    result["threshold_calibrated"] = float(calibrate([result["threshold"]], calibration)[0])
    save_predictions(dirs["predictions"] / f"{name}_val.csv", rows_val, p_val, y_val, calibrate(p_val, calibration))
    save_predictions(
        dirs["predictions"] / f"{name}_test.csv", rows_test, p_test, y_test, calibrate(p_test, calibration)
    )
    write_json(dirs["metrics"] / f"{name}.json", result)
    return result


def record_ternary(name: str, probs_val, probs_test, data: XrayData, dirs: dict, cfg: dict, **extra) -> dict:
    """Validation and test metrics of a normal / bacterial / viral model; writes `<name>.json` and the per-image
    class probabilities.

    Args:
        name: the model's name in every file.
        probs_val, probs_test: (images, 3) class probabilities in `TERNARY_CLASSES` order, in `data.split` order.
        data, dirs, cfg: the notebook's data, output folders and settings.
        extra: more fields for the metrics file.

    Returns:
        The metrics as written.
    """
    _, y_val, rows_val = data.split("val", ternary=True)
    _, y_test, rows_test = data.split("test", ternary=True)
    result = {
        **_header(name, "ternary", data, cfg),
        "classes": list(TERNARY_CLASSES),
        "val": ternary_metrics(y_val, probs_val),
        "test": ternary_metrics(y_test, probs_test),
        **extra,
    }
    save_predictions(dirs["predictions"] / f"{name}_val.csv", rows_val, probs_val, y_val)
    save_predictions(dirs["predictions"] / f"{name}_test.csv", rows_test, probs_test, y_test)
    write_json(dirs["metrics"] / f"{name}.json", result)
    return result


def val_and_test(result: dict, keys=("roc_auc", "accuracy", "sensitivity", "specificity", "threshold")) -> pd.DataFrame:
    """A recorded model's validation and test numbers side by side, one row each (every notebook ends with it).

    Args:
        result: a binary model's metrics (`record_binary`'s return).
        keys: the metrics to show, in order.

    Returns:
        Rows "validation" and "test", one column per key.
    """
    return pd.DataFrame({"validation": result["val"], "test": result["test"]}).T[list(keys)]


def load_metrics(metrics_dir: str | Path) -> dict[str, dict]:
    """Every model's metrics JSON under `metrics_dir`, by model name (other JSON files there are skipped).

    Args:
        metrics_dir: a run's `reports/metrics`.

    Returns:
        model name -> its metrics, in file-name order.
    """
    out = {}
    for f in sorted(Path(metrics_dir).glob("*.json")):
        m = read_json(f)
        if isinstance(m, dict) and "task" in m:
            out[m["model"]] = m
    return out


def probabilities(pred_csv: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A binary model's per-image predictions read back.

    Args:
        pred_csv: a `<model>_<split>.csv` written by `record_binary`.

    Returns:
        The true labels and the raw P(pneumonia), in file order.
    """
    df = pd.read_csv(pred_csv)
    return df["y_true"].to_numpy(), df["p_pneumonia"].to_numpy()
