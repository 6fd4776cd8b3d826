"""Metrics, a threshold chosen on validation, patient-level bootstrap CIs, robustness under acquisition shifts."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from .data.shifts import SHIFTS, apply_shift


def binary_metrics(y_true, p, threshold: float) -> dict:
    """Sensitivity and specificity together, with AUCs and the confusion matrix they come from."""
    y_true = np.asarray(y_true).astype(int)
    p = np.asarray(p, dtype=float).reshape(-1)
    y_pred = (p >= threshold).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel()
    both = len(np.unique(y_true)) == 2
    return {
        "n": int(len(y_true)),
        "threshold": float(threshold),
        "accuracy": (tp + tn) / len(y_true),
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "f1": skm.f1_score(y_true, y_pred, zero_division=0),
        "roc_auc": skm.roc_auc_score(y_true, p) if both else float("nan"),
        "average_precision": skm.average_precision_score(y_true, p) if both else float("nan"),
        "brier": skm.brier_score_loss(y_true, p),
        "tn": int(tn),
        "fp": int(fp),
        "fn": int(fn),
        "tp": int(tp),
    }


def assert_consistent(m: dict) -> None:
    """Metrics lie in [0, 1] and agree with the confusion matrix they are computed from."""
    tp, tn, fp, fn = m["tp"], m["tn"], m["fp"], m["fn"]
    assert tp + tn + fp + fn == m["n"], m
    for k in ("accuracy", "sensitivity", "specificity", "roc_auc", "average_precision", "brier"):
        assert np.isnan(m[k]) or -1e-9 <= m[k] <= 1 + 1e-9, (k, m[k])
    assert np.isclose(m["accuracy"], (tp + tn) / m["n"])
    if tp + fn:
        assert np.isclose(m["sensitivity"], tp / (tp + fn))
    if tn + fp:
        assert np.isclose(m["specificity"], tn / (tn + fp))


def choose_threshold(y_val, p_val, target_sensitivity: float = 0.95) -> float:
    """Highest threshold whose validation sensitivity reaches the target (fewest false alarms)."""
    # Every threshold: by default roc_curve drops the points along a vertical stretch of the curve, and the
    # first kept point past the target can sit at a lower threshold with more sensitivity than asked for.
    fpr, tpr, thresholds = skm.roc_curve(
        np.asarray(y_val).astype(int), np.asarray(p_val).reshape(-1), drop_intermediate=False
    )
    ok = np.flatnonzero(tpr >= target_sensitivity)
    return float(min(thresholds[ok[0]], 1.0))


def patient_resamples(groups, n_boot: int = 1000, seed: int = 0):
    """Bootstrap resamples of whole patients (images of one patient are not independent): for each draw, the
    indices of the images of the patients drawn."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def bootstrap_ci(
    y_true, p, threshold: float, groups=None, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Percentile CIs, resampling whole patients."""
    y_true, p = np.asarray(y_true), np.asarray(p).reshape(-1)
    groups = np.arange(len(y_true)) if groups is None else groups
    names = ["accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc"]
    draws = {k: [] for k in names}
    for idx in patient_resamples(groups, n_boot, seed):
        if len(np.unique(y_true[idx])) < 2:
            continue
        m = binary_metrics(y_true[idx], p[idx], threshold)
        for k in names:
            draws[k].append(m[k])
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    return {k: [float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))] for k, v in draws.items()}


def rate_ci(hits, groups, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """A rate within one class (sensitivity on viral pneumonias, say) and its percentile CI, from the same
    patient resamples as `bootstrap_ci`."""
    hits = np.asarray(hits, dtype=float)
    if not len(hits):
        return float("nan"), float("nan"), float("nan")
    rates = [hits[idx].mean() for idx in patient_resamples(groups, n_boot, seed)]
    lo, hi = np.percentile(rates, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(hits.mean()), float(lo), float(hi)


def evaluate_binary(
    y_val, p_val, y_test, p_test, test_groups, target_sensitivity: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Threshold from validation only, then test metrics with bootstrap 95% CIs."""
    threshold = choose_threshold(y_val, p_val, target_sensitivity)
    return {
        "target_sensitivity": target_sensitivity,
        "threshold": threshold,
        "val": binary_metrics(y_val, p_val, threshold),
        "val_at_0.5": binary_metrics(y_val, p_val, 0.5),
        "test": binary_metrics(y_test, p_test, threshold),
        "test_ci95": bootstrap_ci(y_test, p_test, threshold, test_groups, n_boot, seed),
    }


def at_prevalence(m: dict, prevalence: float) -> dict:
    """Accuracy, PPV and NPV if pneumonia had `prevalence`; sensitivity and specificity do not move."""
    se, sp, pi = m["sensitivity"], m["specificity"], prevalence
    ppv_den = pi * se + (1 - pi) * (1 - sp)
    npv_den = (1 - pi) * sp + pi * (1 - se)
    return {
        "prevalence": pi,
        "sensitivity": se,
        "specificity": sp,
        "accuracy": pi * se + (1 - pi) * sp,
        "ppv": pi * se / ppv_den if ppv_den else float("nan"),
        "npv": (1 - pi) * sp / npv_den if npv_den else float("nan"),
    }


def ternary_metrics(y_true, probs, classes=("normal", "bacteria", "virus")) -> dict:
    """Per-class precision/recall, macro one-vs-rest AUC, confusion matrix, bacterial-vs-viral AUC."""
    y_true, probs = np.asarray(y_true), np.asarray(probs)
    y_pred = probs.argmax(1)
    report = skm.classification_report(
        y_true, y_pred, labels=list(range(len(classes))), target_names=list(classes), output_dict=True, zero_division=0
    )
    pneu = y_true > 0  # bacterial (1) vs viral (2) among pneumonia cases
    p_virus = probs[pneu, 2] / np.clip(probs[pneu, 1] + probs[pneu, 2], 1e-9, None)
    bv_true = (y_true[pneu] == 2).astype(int)
    bv_pred = (p_virus >= 0.5).astype(int)
    return {
        "n": int(len(y_true)),
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "macro_ovr_auc": skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro"),
        "per_class": {c: {k: report[c][k] for k in ("precision", "recall", "f1-score", "support")} for c in classes},
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=list(range(len(classes)))).tolist(),
        "bacterial_vs_viral": {
            "n": int(pneu.sum()),
            "roc_auc": skm.roc_auc_score(bv_true, p_virus) if len(np.unique(bv_true)) == 2 else float("nan"),
            "accuracy": skm.accuracy_score(bv_true, bv_pred),
        },
    }


def calibration_table(y_true, p, n_bins: int = 10) -> pd.DataFrame:
    from sklearn.calibration import calibration_curve

    frac_pos, mean_pred = calibration_curve(
        np.asarray(y_true), np.asarray(p).reshape(-1), n_bins=n_bins, strategy="quantile"
    )
    return pd.DataFrame({"mean_predicted": mean_pred, "fraction_positive": frac_pos})


def shift_summary(table: pd.DataFrame) -> dict:
    """One robustness table in a few numbers: Youden's J (sensitivity + specificity - 1) averaged over the
    shifts, and the worst sensitivity and specificity under any of them."""
    return {
        "mean_youden": float((table["sensitivity"] + table["specificity"] - 1).mean()),
        "min_sensitivity": float(table["sensitivity"].min()),
        "min_specificity": float(table["specificity"].min()),
        "mean_roc_auc": float(table["roc_auc"].mean()),
    }


def shift_predictions(predict, images, y_true, given: dict | None = None) -> pd.DataFrame:
    """The model's probabilities for every image (rows) under every acquisition shift (columns); `given`: columns
    already predicted (the unshifted images', say), taken as they are instead of predicted again."""
    given = given or {}
    return pd.DataFrame(
        {
            name: np.asarray(given[name] if name in given else predict(apply_shift(images, name, y_true))).reshape(-1)
            for name in SHIFTS
        }
    )


def robustness_table(predict, images, y_true, threshold: float, prevalence: float = 0.625) -> pd.DataFrame:
    """Hold-out metrics at the fixed threshold under each acquisition shift and at another prevalence."""
    return shift_metrics(shift_predictions(predict, images, y_true), y_true, threshold, prevalence)


def shift_metrics(predictions: pd.DataFrame, y_true, threshold: float, prevalence: float = 0.625) -> pd.DataFrame:
    """The robustness table from a `shift_predictions` table already computed."""
    rows = []
    for name in SHIFTS:
        m = binary_metrics(y_true, predictions[name].to_numpy(), threshold)
        prev = at_prevalence(m, prevalence)
        rows.append(
            {
                "shift": name,
                "roc_auc": m["roc_auc"],
                "sensitivity": m["sensitivity"],
                "specificity": m["specificity"],
                "accuracy": m["accuracy"],
                f"accuracy@{prevalence:.1%}": prev["accuracy"],
                f"ppv@{prevalence:.1%}": prev["ppv"],
                f"npv@{prevalence:.1%}": prev["npv"],
            }
        )
    return pd.DataFrame(rows)
