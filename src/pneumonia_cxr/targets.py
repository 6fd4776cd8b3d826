"""The project's quality targets, and where a run stands against them.

The targets are set on the official 624-image test split, to beat the published model on every number without
choosing anything on test. A run measures itself on its own test split: the official one when the dataset has a
test/ folder, else a patient-level hold-out carved from train (easier). The verdict reads the patient-bootstrap
95% CI, not only the point value: "met" when the whole interval
clears the goal, "not met" when none of it does, "uncertain" when the goal lies inside it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .evaluate import patient_resamples
from .formatting import value_ci
from .selection import choose_model

REPORTED_TERNARY = "ternary_with_ensemble"  # the ternary probabilities `predict` gives (notebook 07)
MB_PER_GB = 1000  # "4 GB" read as 4,000 MB, the stricter reading

# (task, what, where the value is, goal, ">=" or "<=")
TARGETS = [
    ("normal vs pneumonia", "ROC AUC", ("binary", "roc_auc"), 0.985, ">="),
    ("normal vs pneumonia", "accuracy", ("binary", "accuracy"), 0.94, ">="),
    ("normal vs pneumonia", "sensitivity at the validation-chosen threshold", ("binary", "sensitivity"), 0.95, ">="),
    ("normal vs pneumonia", "specificity at the validation-chosen threshold", ("binary", "specificity"), 0.90, ">="),
    (
        "normal vs pneumonia",
        "ECE of calibrated probabilities, validation (cross-fitted)",
        ("calibration", "val_ece"),
        0.05,
        "<=",
    ),
    ("normal / bacterial / viral", "accuracy", ("ternary", "accuracy"), 0.88, ">="),
    ("normal / bacterial / viral", "macro one-vs-rest AUC", ("ternary", "macro_ovr_auc"), 0.965, ">="),
    ("normal / bacterial / viral", "bacterial-vs-viral AUC", ("ternary", "bacterial_vs_viral_auc"), 0.95, ">="),
    ("run", "wall time of the stages before the final notebook, min", ("run", "minutes"), 45, "<="),
    ("run", "peak memory, MB", ("run", "peak_memory_mb"), 4 * MB_PER_GB, "<="),
]


def ternary_name(metrics: dict[str, dict]) -> str | None:
    """The ternary model whose numbers a run reports: the ensemble-assisted decision where the run has it."""
    return next((n for n in (REPORTED_TERNARY, "ternary") if n in metrics), None)


def minutes_01_07(seconds: dict[str, float]) -> float:
    """Minutes of every notebook but the final one, which reads run.json: its own run must not move a row it writes."""
    return sum(s for nb, s in seconds.items() if nb != "final_notebook") / 60


def run_values(run: dict, metrics: dict[str, dict]) -> dict[tuple[str, str], float]:
    """Every targeted value of one run, on its own test split: its own chosen binary model, its reported ternary
    decision, and its time and peak memory (`run.json`)."""
    values = {}
    binary, ternary = choose_model(metrics), ternary_name(metrics)
    for key in ("roc_auc", "accuracy", "sensitivity", "specificity"):
        values[("binary", key)] = metrics[binary]["test"][key]
    if "calibration" in metrics[binary]:
        values[("calibration", "val_ece")] = metrics[binary]["calibration"]["val"]["ece_cross_fitted"]
    if ternary:
        for key in ("accuracy", "macro_ovr_auc"):
            values[("ternary", key)] = metrics[ternary]["test"][key]
        values[("ternary", "bacterial_vs_viral_auc")] = metrics[ternary]["test"]["bacterial_vs_viral"]["roc_auc"]
    if run.get("notebooks"):
        values[("run", "minutes")] = minutes_01_07(
            {nb: v["seconds"] for nb, v in run["notebooks"].items() if "seconds" in v}
        )
    if run.get("peak_memory_mb"):
        values[("run", "peak_memory_mb")] = run["peak_memory_mb"]
    return values


def _auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (a tie counts half): sklearn's `roc_auc_score` to the last digit or two,
    without its input checks, which took nine tenths of a 1,000-draw bootstrap.

    Args:
        positive: (N,) bool, which images are the positive class (both classes present).
        score: (N,) the score that should rank them first.

    Returns:
        The probability that a random positive outscores a random negative.
    """
    ranks = rankdata(score)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ternary_ci(pred_csv: str | Path, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, list]:
    """Percentile CIs of ternary accuracy, macro one-vs-rest AUC and bacterial-vs-viral AUC, resampling whole patients
    (as `bootstrap_ci`
    does for the binary metrics); a resample that lacks a class is skipped."""
    pred = pd.read_csv(pred_csv)
    y, probs = pred["y_true"].to_numpy(), pred[["p_normal", "p_bacteria", "p_virus"]].to_numpy()
    draws = {"accuracy": [], "macro_ovr_auc": [], "bacterial_vs_viral_auc": []}
    for idx in patient_resamples(pred["patient"], n_boot, seed):
        if len(np.unique(y[idx])) < 3:
            continue
        draws["accuracy"].append(float(np.mean(y[idx] == probs[idx].argmax(1))))
        draws["macro_ovr_auc"].append(float(np.mean([_auc(y[idx] == k, probs[idx, k]) for k in range(3)])))
        pneu = idx[y[idx] > 0]
        draws["bacterial_vs_viral_auc"].append(
            _auc(y[pneu] == 2, probs[pneu, 2] / np.clip(probs[pneu, 1] + probs[pneu, 2], 1e-9, None))
        )
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {
        k: [float(np.percentile(v, lo)), float(np.percentile(v, hi))] if v else [np.nan, np.nan]
        for k, v in draws.items()
    }


def verdict(value: float, goal: float, direction: str, ci: list | None = None) -> str:
    meets = (lambda v: v >= goal) if direction == ">=" else (lambda v: v <= goal)
    if ci is None or np.isnan(ci).any():  # no CI (a time, a memory; or no resample held every class)
        return "met" if meets(value) else "not met"
    if meets(ci[0]) and meets(ci[1]):
        return "met"
    if not meets(ci[0]) and not meets(ci[1]):
        return "not met"
    return f"uncertain (point value {'meets' if meets(value) else 'misses'} it)"


def targets_table(
    runs: dict[int, tuple[dict, dict[str, dict]]], predictions_dir: str | Path, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """One row per target: the main run's value with its 95% CI and verdict, and how many of the runs (`seed_runs`:
    the main run first, then every comparable seed run) meet it at their point value."""
    _, main_metrics = next(iter(runs.values()))
    values = {s: run_values(r, m) for s, (r, m) in runs.items()}
    main = next(iter(values.values()))
    binary, ternary = choose_model(main_metrics), ternary_name(main_metrics)
    cis = {("binary", k): v for k, v in main_metrics[binary]["test_ci95"].items()}
    if ternary:
        cis |= {
            ("ternary", k): v
            for k, v in ternary_ci(Path(predictions_dir) / f"{ternary}_test.csv", n_boot, seed).items()
        }
    rows = []
    for task, what, key, goal, direction in TARGETS:
        if key not in main:
            continue
        value, ci = main[key], cis.get(key)
        model = {"binary": binary, "calibration": binary, "ternary": ternary}.get(key[0], "this run")
        meet = [v[key] >= goal if direction == ">=" else v[key] <= goal for v in values.values() if key in v]
        rows.append(
            {
                "task": task,
                "target": f"{what} {direction} {goal:g}",
                "model": model,
                "value": value,
                "ci_low": ci[0] if ci else np.nan,
                "ci_high": ci[1] if ci else np.nan,
                "verdict": verdict(value, goal, direction, ci),
                "runs meeting it": f"{sum(meet)} of {len(meet)}",
            }
        )
    return pd.DataFrame(rows)


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The table for reading: value and CI in one column."""
    text = [
        f"{v:.1f}" if lo != lo and v >= 10 else value_ci(v, lo, hi)  # no CI: minutes, say, to one decimal
        for v, lo, hi in zip(table["value"], table["ci_low"], table["ci_high"])
    ]
    return table.assign(**{"value [95% CI]": text})[
        ["task", "target", "model", "value [95% CI]", "verdict", "runs meeting it"]
    ]
