"""Which binary model a run reports and `predict` ships, chosen on validation only, by a rule fixed before test is read.

The rule: **the ensemble unless another model clearly beats it.** The ensemble (the mean probability of the scratch,
tuned and fine-tuned CNNs) is the pre-declared default: averaging models that learned from different sizes and
starts lowers the variance of every prediction, which is what an unseen hospital or batch of images tests. Another
model replaces it only when, on validation, its score beats the ensemble's by at least `MIN_MARGIN` and in at least
`MIN_WIN_SHARE` of bootstrap resamples of the validation patients (the same resamples for both: a paired
comparison). The score is Youden's J (sensitivity + specificity - 1) at the model's own validation threshold,
averaged over the acquisition shifts of `shifts.SHIFTS` (validation AUC alone is saturated near 0.99 for every CNN).
A rule that takes the highest score flips with noise: two models 0.001 apart win 56% and 44% of resamples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data.shifts import SHIFTS
from .evaluate import choose_threshold, patient_resamples

DEFAULT_MODEL = "ensemble"
MIN_WIN_SHARE = 0.9  # of paired validation resamples in which a challenger must score above the default
MIN_MARGIN = 0.01  # of mean J under shifts on all validation images


def mean_youden_under_shifts(y, shifted: np.ndarray, target_sensitivity: float = 0.95) -> float:
    """The choice's score from per-image probabilities (columns in the order of `SHIFTS`): the threshold for the
    target sensitivity on the unshifted images, then Youden's J averaged over the shifts."""
    y = np.asarray(y).astype(bool)
    called = shifted >= choose_threshold(y, shifted[:, list(SHIFTS).index("none")], target_sensitivity)
    return float(np.mean(called[y].mean(0) + (~called[~y]).mean(0) - 1))


def _val_shift_tables(predictions_dir: str | Path, models: list[str]) -> tuple[np.ndarray, np.ndarray, dict]:
    tables = {m: pd.read_csv(Path(predictions_dir) / f"{m}_val_shifts.csv") for m in models}
    first = tables[models[0]]
    for m, t in tables.items():
        if not t["relpath"].equals(first["relpath"]):
            raise ValueError(f"{m}_val_shifts.csv: not the same validation images as {models[0]}_val_shifts.csv")
    return (
        first["y_true"].to_numpy().astype(bool),
        first["patient"].to_numpy(),
        {m: t[list(SHIFTS)].to_numpy() for m, t in tables.items()},
    )


def choice_bootstrap(
    predictions_dir: str | Path,
    models: list[str],
    target_sensitivity: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    default: str = DEFAULT_MODEL,
) -> pd.DataFrame:
    """How sure the choice is, from the per-image validation predictions under shifts (`*_val_shifts.csv`).

    Args:
        predictions_dir: the run's predictions folder.
        models: the candidates, the default among them.
        target_sensitivity: the threshold rule's target.
        n_boot: bootstrap resamples of the validation patients (threshold re-chosen in each).
        seed: the resamples' seed.
        default: the pre-declared default.

    Returns:
        One row per model: its mean J under shifts with a 95% interval, its margin over the default, the share of
        paired resamples in which it scores above the default, and the share in which it scores highest of all
        (what a highest-score rule would pick).
    """
    y, patients, shifted = _val_shift_tables(predictions_dir, models)
    draws = []
    for idx in patient_resamples(patients, n_boot, seed):
        yb = y[idx]
        if yb.all() or not yb.any():
            continue
        draws.append({m: mean_youden_under_shifts(yb, p[idx], target_sensitivity) for m, p in shifted.items()})
    draws = pd.DataFrame(draws)
    full = pd.Series({m: mean_youden_under_shifts(y, p, target_sensitivity) for m, p in shifted.items()})
    base = default if default in draws else full.idxmax()
    return pd.DataFrame(
        {
            "mean J under shifts": full,
            "J 2.5%": draws.quantile(0.025),
            "J 97.5%": draws.quantile(0.975),
            f"margin over {base}": full - full[base],
            f"above {base} in resamples": draws.gt(draws[base], axis=0).mean(),
            "highest in resamples": draws.idxmax(axis=1)
            .value_counts(normalize=True)
            .reindex(draws.columns)
            .fillna(0.0),
        }
    ).sort_values("mean J under shifts", ascending=False)


def apply_rule(table: pd.DataFrame, default: str = DEFAULT_MODEL) -> dict:
    """The rule on `choice_bootstrap`'s table: {"chosen_model", "default", "rule", "challengers"}."""
    margin, share = f"margin over {default}", f"above {default} in resamples"
    clear = table[(table.index != default) & (table[margin] >= MIN_MARGIN) & (table[share] >= MIN_WIN_SHARE)]
    chosen = clear[margin].idxmax() if len(clear) else default
    return {
        "chosen_model": chosen,
        "default": default,
        "rule": (
            f"{default} unless another model's mean Youden's J under shifts on validation beats it by "
            f">= {MIN_MARGIN} and in >= {MIN_WIN_SHARE:.0%} of paired patient resamples"
        ),
        "challengers": {
            m: {
                "mean_youden": float(r["mean J under shifts"]),
                "margin": float(r[margin]),
                "share_above_default": float(r[share]),
                "share_highest": float(r["highest in resamples"]),
            }
            for m, r in table.iterrows()
        },
    }


def choose_model(metrics: dict[str, dict]) -> str:
    """The binary model a run reports: the one its recorded choice names (notebook 07 records it in the default's
    metrics, `choice`); without a record, the default if the run has it, else the highest mean J under shifts."""
    binary = {k: m for k, m in metrics.items() if m["task"] == "binary"}
    if not binary:
        raise ValueError("no binary model metrics to choose from")
    if DEFAULT_MODEL in binary:
        return binary[DEFAULT_MODEL].get("choice", {}).get("chosen_model", DEFAULT_MODEL)
    return max(
        binary,
        key=lambda k: (binary[k].get("val_under_shifts", {}).get("mean_youden", -2.0), binary[k]["val"]["roc_auc"]),
    )


def record_choice(metrics_dir: str | Path, table: pd.DataFrame, default: str = DEFAULT_MODEL) -> dict:
    """Apply the rule to `choice_bootstrap`'s table and record it where every reader finds it: `model_choice.json`
    (with `chosen_model`) and the `choice` field of the default's metrics, which `choose_model` reads."""
    from .io import read_json, write_json

    choice = apply_rule(table, default)
    write_json(Path(metrics_dir) / "model_choice.json", choice)
    path = Path(metrics_dir) / f"{default}.json"
    write_json(path, {**read_json(path), "choice": choice})
    return choice
