"""The ternary decision with a binary model's say on normal vs pneumonia, and how it holds under acquisition shifts.

The ternary model (notebook 05) is good at normal vs pneumonia on images like its training folder, but a
magnified thorax makes it call a fifth to a third of the normals pneumonia; the binary ensemble (notebook 07) was
built for such shifts. `with_binary_normal` lets both speak on normal vs pneumonia and leaves bacterial vs viral to the
ternary model. Notebook 07 shows the evidence.

`predict` and the review app show one probability story instead (`with_calibrated_normal`, `ternary_labels`): the
binary model's calibrated P(pneumonia) is the whole pneumonia share, the ternary model only splits it, and the label
shown agrees with the binary call at the validation-chosen threshold.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The official test split's classes (Kermany et al. 2018: 234 normal, 242 bacterial, 148 viral of 624 images):
# validation accuracy reweighted to it, as the binary robustness table does with its 62.5% prevalence.
OFFICIAL_TEST_MIX = (234 / 624, 242 / 624, 148 / 624)


def _checked(probs, p_pneumonia) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) ternary and n binary probabilities as float64, or ValueError."""
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
    return probs, p


def _viral_share(probs: np.ndarray) -> np.ndarray:
    """The ternary model's P(viral) / (P(bacterial) + P(viral)): how it splits its own pneumonia probability."""
    return probs[:, 2] / np.clip(probs[:, 1] + probs[:, 2], 1e-12, None)


def with_binary_normal(probs, p_pneumonia) -> np.ndarray:
    """Ternary probabilities (normal, bacterial, viral) whose P(normal) is the mean of the ternary model's and
    1 − the binary model's P(pneumonia); the rest is split between bacterial and viral as the ternary model
    splits its own pneumonia probability. (Notebook 07's `ternary_with_ensemble`.)"""
    probs, p = _checked(probs, p_pneumonia)
    normal = (probs[:, 0] + 1 - p) / 2
    viral_share = _viral_share(probs)
    return np.column_stack([normal, (1 - normal) * (1 - viral_share), (1 - normal) * viral_share])


def with_calibrated_normal(probs, p_pneumonia) -> np.ndarray:
    """Ternary probabilities (normal, bacterial, viral) that tell the binary model's story: P(normal) is
    1 − `p_pneumonia` (the calibrated probability `predict` reports), and `p_pneumonia` is split between bacterial and
    viral in the ternary model's bacterial:viral ratio.

    Args:
        probs: (n, 3) the ternary model's own probabilities.
        p_pneumonia: n calibrated P(pneumonia) of the binary model.

    Returns:
        (n, 3) float64, rows summing to 1.
    """
    probs, p = _checked(probs, p_pneumonia)
    viral_share = _viral_share(probs)
    return np.column_stack([1 - p, p * (1 - viral_share), p * viral_share])


def ternary_labels(probs, pneumonia, classes) -> list[str]:
    """The ternary label to show beside each binary call, so the two never disagree: the normal class where the call
    is NORMAL, else the larger of the two pneumonia subtypes (whatever P(normal) is: below a threshold under 0.5 a
    PNEUMONIA call can leave P(normal) the largest).

    Args:
        probs: (n, 3) probabilities in the order of `classes` (normal first).
        pneumonia: n booleans, the binary calls (True: PNEUMONIA).
        classes: the three class names, e.g. ("normal", "bacteria", "virus").

    Returns:
        n class names.
    """
    probs = np.asarray(probs, dtype="float64")
    calls = np.asarray(pneumonia, dtype=bool).reshape(-1)
    if probs.ndim != 2 or probs.shape[1] != 3 or len(probs) != len(calls) or len(classes) != 3:
        raise ValueError(
            f"need (n, 3) probabilities, n calls and 3 classes, got {probs.shape}, {calls.shape}, {classes}"
        )
    subtype = np.where(probs[:, 1] >= probs[:, 2], 1, 2)
    return [classes[s] if call else classes[0] for s, call in zip(subtype, calls)]


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
