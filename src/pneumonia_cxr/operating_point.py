"""How the threshold rule behaves on patients it was not chosen on.

`evaluate.choose_threshold` takes the highest threshold whose validation sensitivity reaches the target, so the
threshold sits on the edge of its target: on new patients sensitivity lands either side of it. Re-running the rule on
bootstrap resamples of the validation patients and scoring each threshold on the patients a resample left out (out
of bag) shows how far, and what a stricter validation target buys and costs, without reading the test split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .evaluate import choose_threshold, patient_resamples


def threshold_out_of_bag(
    y_val, p_val, groups, targets=(0.95,), n_boot: int = 1000, seed: int = 0, floor: float = 0.95
) -> pd.DataFrame:
    """One row per validation sensitivity target: the rule's threshold on all validation images, then, over the
    same patient resamples for every target, the mean sensitivity and specificity out of bag with 95% ranges and
    the share of resamples whose out-of-bag sensitivity falls below `floor`. A resample whose drawn or left-out
    patients lack a class is skipped (and not counted in `resamples`)."""
    y, p = np.asarray(y_val).astype(bool), np.asarray(p_val, dtype=float).reshape(-1)
    if len(y) != len(p) or len(y) != len(groups):
        raise ValueError(f"{len(y)} labels, {len(p)} probabilities and {len(groups)} patient ids: not one per image")
    rounds = []
    for drawn in patient_resamples(groups, n_boot, seed):
        left_out = np.ones(len(y), dtype=bool)
        left_out[drawn] = False
        if y[drawn].all() or not y[drawn].any() or y[left_out].all() or not y[left_out].any():
            continue
        rounds.append((drawn, left_out))
    if not rounds:
        raise ValueError("no bootstrap resample left out patients of both classes: too few validation patients")
    rows = []
    for target in targets:
        sens, spec = np.empty(len(rounds)), np.empty(len(rounds))
        for i, (drawn, left_out) in enumerate(rounds):
            called = p >= choose_threshold(y[drawn], p[drawn], target)
            sens[i], spec[i] = called[left_out & y].mean(), (~called[left_out & ~y]).mean()
        rows.append(
            {
                "validation target": target,
                "threshold": choose_threshold(y, p, target),
                "sensitivity": sens.mean(),
                "sensitivity 2.5%": np.quantile(sens, 0.025),
                "sensitivity 97.5%": np.quantile(sens, 0.975),
                f"share below {floor:g}": float(np.mean(sens < floor)),
                "specificity": spec.mean(),
                "specificity 2.5%": np.quantile(spec, 0.025),
                "specificity 97.5%": np.quantile(spec, 0.975),
                "resamples": len(rounds),
            }
        )
    return pd.DataFrame(rows)
