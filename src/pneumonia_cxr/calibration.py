"""Calibrated probabilities: Platt scaling fitted on validation, and how well calibrated a probability is.

Class weights train the binary models as if normals were as common as pneumonias, so their raw P(pneumonia) sits far
from observed frequencies. Platt scaling, p' = sigmoid(a * logit(p) + b) with a > 0, is fitted on the validation
images (never test). It is increasing, so the decision at the validation-chosen threshold t is the same as the
decision at sigmoid(a * logit(t) + b) on the calibrated scale: the threshold moves with the probabilities and no
decision changes. A slope and an intercept suit a shifted base rate, which a temperature alone cannot correct.

A calibrated probability is calibrated for the share of pneumonia of the set it was fitted on (`prevalence` in
`fit_platt`'s parameters, saved with the model); `at_prevalence` moves it to another share in closed form.
"""

from __future__ import annotations

import numpy as np

# SciPy's optimiser and scikit-learn are imported where a fit or a report needs them: `predict` only calibrates.

EPS = 1e-6


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64).reshape(-1), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit_platt(y, p) -> dict:
    """Platt scaling's slope and intercept by maximum likelihood on (y, p).

    Args:
        y: true labels, 0 or 1.
        p: the model's probabilities for label 1.

    Returns:
        {"method": "platt", "a": slope > 0, "b": intercept, "prevalence": the share of label 1 in `y`, the base rate
        the calibrated probabilities are calibrated for (`at_prevalence` needs it)}.
    """
    from scipy.optimize import minimize

    y, z = np.asarray(y, dtype=np.float64).reshape(-1), _logit(p)

    def nll(theta):
        s = np.exp(theta[0]) * z + theta[1]
        return float(np.sum(np.logaddexp(0, s) - y * s))  # -log likelihood of a logistic model, stable

    best = minimize(nll, x0=np.zeros(2), method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    return {"method": "platt", "a": float(np.exp(best.x[0])), "b": float(best.x[1]), "prevalence": float(y.mean())}


def calibrate(p, params: dict | None) -> np.ndarray:
    """`p` on the calibrated scale (`fit_platt`'s params); unchanged when `params` is None."""
    if params is None:
        return np.asarray(p, dtype=np.float64).reshape(-1)
    return 1 / (1 + np.exp(-(params["a"] * _logit(p) + params["b"])))


def at_prevalence(p, prevalence: float, fitted_prevalence: float) -> np.ndarray:
    """Calibrated probabilities moved to another share of pneumonia (a prior shift, in closed form).

    Bayes' rule with the class-conditional image distributions unchanged: the log-odds move by the change in prior
    log-odds, logit(p') = logit(p) + logit(prevalence) - logit(fitted_prevalence). Increasing in `p`, so an
    operating point chosen on the unshifted scale keeps its decisions when its threshold is moved the same way.

    Args:
        p: calibrated probabilities (Platt scaling fitted where the share of pneumonia was `fitted_prevalence`).
        prevalence: the expected share of pneumonia where the model is used, in (0, 1).
        fitted_prevalence: the share on the set calibration was fitted on (`fit_platt`'s "prevalence"), in (0, 1).

    Returns:
        The probabilities at `prevalence`, float64, flat.

    Raises:
        ValueError: a prevalence that is not a finite number strictly between 0 and 1.
    """
    for name, value in (("prevalence", prevalence), ("fitted_prevalence", fitted_prevalence)):
        if not (isinstance(value, int | float) and 0 < value < 1):  # NaN fails both comparisons
            raise ValueError(f"{name} must be a number in (0, 1), not {value!r}")
    shift = float(_logit([prevalence])[0] - _logit([fitted_prevalence])[0])
    return 1 / (1 + np.exp(-(_logit(p) + shift)))


def expected_calibration_error(y, p, n_bins: int = 10) -> float:
    """ECE: the mean gap between predicted probability and observed frequency over equal-width bins, weighted by
    the share of images in each bin."""
    y, p = np.asarray(y, dtype=np.float64).reshape(-1), np.asarray(p, dtype=np.float64).reshape(-1)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    gaps = [
        abs(p[bins == b].mean() - y[bins == b].mean()) * np.mean(bins == b) for b in range(n_bins) if (bins == b).any()
    ]
    return float(np.sum(gaps))


def cross_fitted(y, p, groups, folds: int = 5) -> np.ndarray:
    """Each validation image calibrated by a Platt fit on the other patients' images (patient-grouped folds): an
    estimate of calibration on images the fit never saw, from validation alone."""
    from sklearn.model_selection import GroupKFold

    y, p = np.asarray(y).reshape(-1), np.asarray(p, dtype=np.float64).reshape(-1)
    out = np.empty_like(p)
    for fit_idx, held in GroupKFold(n_splits=min(folds, len(np.unique(groups)))).split(p, y, groups):
        out[held] = calibrate(p[held], fit_platt(y[fit_idx], p[fit_idx]))
    return out


def calibration_report(params: dict, y_val, p_val, val_groups, y_test, p_test) -> dict:
    """ECE and Brier score before and after calibration: on validation (fitted there, and cross-fitted by patient)
    and on test (reported only)."""
    from sklearn.metrics import brier_score_loss

    def scores(y, raw, calibrated):
        return {
            "ece_raw": expected_calibration_error(y, raw),
            "ece": expected_calibration_error(y, calibrated),
            "brier_raw": float(brier_score_loss(y, raw)),
            "brier": float(brier_score_loss(y, calibrated)),
        }

    val = scores(y_val, p_val, calibrate(p_val, params))
    val["ece_cross_fitted"] = expected_calibration_error(y_val, cross_fitted(y_val, p_val, val_groups))
    return {**params, "val": val, "test": scores(y_test, p_test, calibrate(p_test, params))}
