"""The ternary decision with a binary model's say on normal vs pneumonia, and how it holds under acquisition shifts.

The ternary model (notebook 05) is good at normal vs pneumonia on images like its training folder, but a
magnified thorax makes it call a fifth to a third of the normals pneumonia; the binary ensemble (notebook 07) was
built for such shifts. `with_binary_normal` lets both speak on normal vs pneumonia and leaves bacterial vs viral to the
ternary model. Notebook 07 shows the evidence.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The official test split's classes (Kermany et al. 2018: 234 normal, 242 bacterial, 148 viral of 624 images):
# validation accuracy reweighted to it, as the binary robustness table does with its 62.5% prevalence.
OFFICIAL_TEST_MIX = (234 / 624, 242 / 624, 148 / 624)


def with_binary_normal(probs, p_pneumonia) -> np.ndarray:
    """Ternary probabilities (normal, bacterial, viral) whose P(normal) is the mean of the ternary model's and
    1 − the binary model's P(pneumonia); the rest is split between bacterial and viral as the ternary model
    splits its own pneumonia probability."""
    probs, p = np.asarray(probs, dtype="float64"), np.asarray(p_pneumonia, dtype="float64").reshape(-1)
    if probs.ndim != 2 or probs.shape[1] != 3 or len(probs) != len(p):
        raise ValueError(f"need (n, 3) ternary probabilities and n binary ones, got {probs.shape} and {p.shape}")
    if not (
        np.isfinite(probs).all()
        and np.isfinite(p).all()
        and 0 <= probs.min() <= probs.max() <= 1
        and 0 <= p.min() <= p.max() <= 1
    ):
        raise ValueError("probabilities must be finite and in [0, 1]")
    normal = (probs[:, 0] + 1 - p) / 2
    viral_share = probs[:, 2] / np.clip(probs[:, 1] + probs[:, 2], 1e-12, None)
    return np.column_stack([normal, (1 - normal) * (1 - viral_share), (1 - normal) * viral_share])


def shift_table(probs_by_shift: dict[str, np.ndarray], y_true, mix=OFFICIAL_TEST_MIX) -> pd.DataFrame:
    """One row per acquisition shift: accuracy, accuracy if the classes came in the proportions `mix` (the
    per-class recalls weighted by it), macro one-vs-rest AUC and the recall of each class."""
    from .evaluate import ternary_metrics  # here: `predict` needs only with_binary_normal

    rows = []
    for shift, probs in probs_by_shift.items():
        m = ternary_metrics(y_true, probs)
        recall = [m["per_class"][c]["recall"] for c in ("normal", "bacteria", "virus")]
        rows.append(
            {
                "shift": shift,
                "accuracy": m["accuracy"],
                "accuracy at test mix": float(np.dot(mix, recall)),
                "macro AUC": m["macro_ovr_auc"],
                **{f"{c} recall": r for c, r in zip(("normal", "bacterial", "viral"), recall)},
            }
        )
    return pd.DataFrame(rows)


def ternary_shift_summary(table: pd.DataFrame) -> dict:
    """A `shift_table` in a few numbers: means over the shifts, and the worst accuracy at the test mix and normal
    recall under any of them. (`evaluate.shift_summary` is the binary counterpart.)"""
    return {
        "mean accuracy": float(table["accuracy"].mean()),
        "mean accuracy at test mix": float(table["accuracy at test mix"].mean()),
        "worst accuracy at test mix": float(table["accuracy at test mix"].min()),
        "mean normal recall": float(table["normal recall"].mean()),
        "worst normal recall": float(table["normal recall"].min()),
        "mean macro AUC": float(table["macro AUC"].mean()),
    }


def decision_shift_table(
    ternary_by_shift: dict[str, np.ndarray], p_pneumonia_by_shift, y_true, binary_name: str = "ensemble"
) -> pd.DataFrame:
    """Both ternary decisions under every shift, in one long table (a `model` column, then `shift_table`'s): the
    ternary model alone, and `with_binary_normal` given the binary model's P(pneumonia) on the same shifted images
    (`p_pneumonia_by_shift[shift]`)."""
    combined = {s: with_binary_normal(T, p_pneumonia_by_shift[s]) for s, T in ternary_by_shift.items()}
    tables = {
        "ternary": shift_table(ternary_by_shift, y_true),
        f"ternary_with_{binary_name}": shift_table(combined, y_true),
    }
    return pd.concat(tables, names=["model"]).reset_index(level=0).reset_index(drop=True)


def summary_by_model(table: pd.DataFrame) -> pd.DataFrame:
    """A `decision_shift_table` (or its CSV) in a few numbers: one column per model, `ternary_shift_summary`'s
    rows, models in the table's order."""
    return pd.DataFrame({m: ternary_shift_summary(t) for m, t in table.groupby("model", sort=False)})
