"""The report tables, read from a run's metrics and per-image predictions: every model beside the published results,
the ternary models, the headline table, who is missed (subgroups) and what validation promised against what test gave;
and the words for the test split a run measured.

Invariants: these only read what the notebooks wrote; nothing here is chosen on test. A run on SYNTHETIC data (the
demo) never shares a table with published results, and no text calls its test split, or a hold-out carved from train,
"official".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .evaluate import rate_ci
from .formatting import value_ci
from .published import PUBLISHED, official_test_anchors
from .selection import choose_model
from .targets import ternary_ci, ternary_name

# the binary metrics a table shows with their CIs: column label -> metrics key
BINARY_COLUMNS = {"AUC": "roc_auc", "accuracy": "accuracy", "sensitivity": "sensitivity", "specificity": "specificity"}


def synthetic_run(metrics: dict[str, dict]) -> bool:
    """True when the run's data were SYNTHETIC (the demo's procedural images): no published row stands beside it."""
    return any(m.get("synthetic") for m in metrics.values())


def describe_test_split(m: dict, n: int | None = None) -> str:
    """The test split a model was measured on, in the words every text of a run uses, from what the data were: the
    release's own test/ folder ("official"), a patient-level hold-out carved from train (no test/ folder), or either
    of those in SYNTHETIC data, which is never called official.

    Args:
        m: a model's metrics (`test_split`, `synthetic`).
        n: the number of test images, said when given.

    Returns:
        A phrase: "the official test split (624 images), read once at the end of the run", ...
    """
    images = "" if n is None else f" ({n} images)"
    if m.get("synthetic"):
        split = "test split" if m.get("test_split") == "official" else "patient-level hold-out carved from train"
        return f"the SYNTHETIC demo's {split} ({'' if n is None else f'{n} '}procedural images, not X-rays)"
    if m.get("test_split") == "official":
        return f"the official test split{images}, read once at the end of the run"
    of = "" if n is None else f" of {n} images"
    return f"a patient-level hold-out{of} carved from train (this dataset has no test/ folder)"


def binary_table(metrics: dict[str, dict], with_published: bool = True) -> pd.DataFrame:
    """One row per binary model: validation AUC (the selection criterion), mean Youden's J under the shifts on
    validation, the threshold, and test metrics with CIs; then the published results on the official test split
    (never beside a SYNTHETIC run).

    Args:
        metrics: `records.load_metrics`' dict.
        with_published: append the published rows (`published.official_test_anchors`) to a run on real data.

    Returns:
        The table, numbers as text.
    """
    rows = []
    for name, m in metrics.items():
        if m["task"] != "binary":
            continue
        t, ci = m["test"], m["test_ci95"]
        shifted = m.get("val_under_shifts", {}).get("mean_youden")
        rows.append(
            {
                "model": name,
                "val AUC": f"{m['val']['roc_auc']:.3f}",
                "val J (shifts)": "-" if shifted is None else f"{shifted:.3f}",
                "threshold": f"{m['threshold']:.3f}",
                "test AUC [95% CI]": value_ci(t["roc_auc"], *ci["roc_auc"]),
                **{label: value_ci(t[k], *ci[k]) for label, k in BINARY_COLUMNS.items() if label != "AUC"},
                "n test": t["n"],
            }
        )
    table = pd.DataFrame(rows)
    if with_published and not synthetic_run(metrics):
        pub = [
            {
                "model": f"published: {r['source']}, {r['model']} (chosen on test: {r['chosen on test']})",
                "val AUC": "-",
                "val J (shifts)": "-",
                "threshold": "-",
                "test AUC [95% CI]": value_ci(r["roc_auc"]),  # "-" where the source reports none
                **{label: value_ci(r[k]) for label, k in BINARY_COLUMNS.items() if label != "AUC"},
                "n test": 624,
            }
            for _, r in official_test_anchors().iterrows()
        ]
        table = pd.concat([table, pd.DataFrame(pub)], ignore_index=True)
    return table


def ternary_table(metrics: dict[str, dict]) -> pd.DataFrame:
    """One row per ternary model: validation macro AUC, test accuracy, macro one-vs-rest AUC and bacterial-vs-viral
    AUC; then Kermany et al.'s bacterial-vs-viral AUC (not beside a SYNTHETIC run).

    Args:
        metrics: `records.load_metrics`' dict.

    Returns:
        The table, numbers as text.
    """
    rows = []
    for name, m in metrics.items():
        if m["task"] != "ternary":
            continue
        t = m["test"]
        rows.append(
            {
                "model": name,
                "val macro AUC": f"{m['val']['macro_ovr_auc']:.3f}",
                "test accuracy": f"{t['accuracy']:.3f}",
                "test macro OvR AUC": f"{t['macro_ovr_auc']:.3f}",
                "bacterial-vs-viral AUC": f"{t['bacterial_vs_viral']['roc_auc']:.3f}",
                "n test": t["n"],
            }
        )
    pub = PUBLISHED["Kermany et al. 2018 (bacterial vs viral)"]
    if not synthetic_run(metrics):
        rows.append(
            {
                "model": "published: Kermany et al. 2018 (bacterial vs viral)",
                "val macro AUC": "-",
                "test accuracy": "-",
                "test macro OvR AUC": "-",
                "bacterial-vs-viral AUC": f"{pub['roc_auc']:.3f}",
                "n test": "-",
            }
        )
    return pd.DataFrame(rows)


def subgroup_of(predictions: pd.DataFrame) -> pd.Series:
    """Pneumonias by subtype, NORMALs by the series of their file names (IM-... or NORMAL2-IM-..., two batches of
    the release); the images of one subgroup share a class.

    Args:
        predictions: a binary model's per-image predictions (`records.record_binary`'s CSV).

    Returns:
        The subgroup of each image, on the same index.
    """
    normal_series = np.where(
        predictions["patient"].str.startswith("NORMAL2-"),
        "normal, NORMAL2- series",
        np.where(predictions["patient"].str.startswith("IM-"), "normal, IM- series", "normal, other names"),
    )
    pneumonia = predictions["subtype"].map({"bacteria": "bacterial pneumonia", "virus": "viral pneumonia"})
    return pd.Series(
        np.where(predictions["y_true"] == 1, pneumonia.fillna("pneumonia, subtype unknown"), normal_series),
        index=predictions.index,
    )


def subgroup_table(
    predictions_dir: str | Path, thresholds: dict[str, float], split: str = "test", n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Who is missed and who is falsely alarmed: per model, sensitivity on each pneumonia subtype and specificity
    on each NORMAL series, at the model's validation threshold, with patient-bootstrap 95% CIs.

    Args:
        predictions_dir: the run's per-image predictions.
        thresholds: model name -> its validation threshold.
        split: the split whose predictions to read.
        n_boot, seed: the bootstrap's resamples and seed.

    Returns:
        One row per (model, subgroup): metric, images, patients, value, ci_low, ci_high.
    """
    rows = []
    for model, threshold in thresholds.items():
        pred = pd.read_csv(Path(predictions_dir) / f"{model}_{split}.csv")
        called = pred["p_pneumonia"].to_numpy() >= threshold
        for group, idx in pred.groupby(subgroup_of(pred)).indices.items():
            positive = bool(pred["y_true"].iloc[idx[0]])
            rate, lo, hi = rate_ci(called[idx] == positive, pred["patient"].iloc[idx], n_boot, seed)
            rows.append(
                {
                    "model": model,
                    "split": split,
                    "subgroup": group,
                    "metric": "sensitivity" if positive else "specificity",
                    "images": len(idx),
                    "patients": pred["patient"].iloc[idx].nunique(),
                    "value": rate,
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    return pd.DataFrame(rows)


def _overall_rates(
    predictions_dir: str | Path, model: str, threshold: float, split: str, n_boot: int, seed: int
) -> list[dict]:
    """A model's sensitivity and specificity on one split at `threshold`, with patient-bootstrap CIs: the "all"
    rows of `val_vs_test`."""
    pred = pd.read_csv(Path(predictions_dir) / f"{model}_{split}.csv")
    called = pred["p_pneumonia"].to_numpy() >= threshold
    rows = []
    for positive, metric in ((1, "sensitivity"), (0, "specificity")):
        idx = np.flatnonzero(pred["y_true"].to_numpy() == positive)
        rate, lo, hi = rate_ci(called[idx] == bool(positive), pred["patient"].iloc[idx], n_boot, seed)
        rows.append(
            {
                "model": model,
                "split": split,
                "subgroup": "all",
                "metric": metric,
                "images": len(idx),
                "value": rate,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return rows


def val_vs_test(
    predictions_dir: str | Path, metrics: dict[str, dict], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """What validation promised and what test gave: per binary model, overall and per subgroup, sensitivity or
    specificity at the model's validation threshold on both splits with patient-bootstrap CIs, and the gap. A report of
    how much validation tells, never a selection.

    Args:
        predictions_dir: the run's per-image predictions.
        metrics: `records.load_metrics`' dict.
        n_boot, seed: the bootstrap's resamples and seed.

    Returns:
        One row per (model, subgroup, metric): images, value and CI on each split, and test - val.
    """
    thresholds = {n: m["threshold"] for n, m in metrics.items() if m["task"] == "binary"}
    both = pd.concat([subgroup_table(predictions_dir, thresholds, split, n_boot, seed) for split in ("val", "test")])
    overall = [
        _overall_rates(predictions_dir, model, t, split, n_boot, seed)
        for model, t in thresholds.items()
        for split in ("val", "test")
    ]
    overall = [row for rows in overall for row in rows]
    both = pd.concat([pd.DataFrame(overall), both], ignore_index=True)
    wide = both.pivot_table(
        index=["model", "subgroup", "metric"],
        columns="split",
        values=["value", "ci_low", "ci_high", "images"],
        aggfunc="first",
    )
    wide.columns = [f"{split} {what}" for what, split in wide.columns]
    wide = wide.reset_index()
    wide["test - val"] = wide["test value"] - wide["val value"]
    cols = [
        "model",
        "subgroup",
        "metric",
        "val images",
        "val value",
        "val ci_low",
        "val ci_high",
        "test images",
        "test value",
        "test ci_low",
        "test ci_high",
        "test - val",
    ]
    return wide.reindex(columns=cols)


def _headline_row(name: str, m: dict, chosen: str) -> dict:
    """A binary model's row of `headline_table`."""
    t, ci = m["test"], m["test_ci95"]
    return {
        "model": name + (" (chosen)" if name == chosen else ""),
        "task": "normal vs pneumonia",
        **{label: value_ci(t[k], *ci[k]) for label, k in BINARY_COLUMNS.items()},
    }


def headline_table(
    metrics: dict[str, dict], predictions_dir: str | Path, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """The one table a reader needs, test split only: the chosen binary model, the ensemble, the best pixel baseline
    (by validation AUC), the reported ternary decision, each with patient-bootstrap 95% CIs, then the published
    results on the official test split (no CIs: as their sources report them; none beside a SYNTHETIC run).

    Args:
        metrics: `records.load_metrics`' dict.
        predictions_dir: the run's per-image predictions (the ternary CIs are bootstrapped from them).
        n_boot, seed: the ternary bootstrap's resamples and seed.

    Returns:
        One row per model: task, AUC, accuracy, sensitivity, specificity (ternary: macro one-vs-rest AUC and accuracy).
    """
    chosen = choose_model(metrics)
    baselines = [n for n, m in metrics.items() if m["task"] == "binary" and n.startswith("baseline")]
    names = list(
        dict.fromkeys([chosen, "ensemble", *sorted(baselines, key=lambda n: -metrics[n]["val"]["roc_auc"])[:1]])
    )
    rows = [_headline_row(name, metrics[name], chosen) for name in names if name in metrics]
    ternary = ternary_name(metrics)
    if ternary:
        t, ci = metrics[ternary]["test"], ternary_ci(Path(predictions_dir) / f"{ternary}_test.csv", n_boot, seed)
        rows.append(
            {
                "model": ternary,
                "task": "normal / bacterial / viral",
                "AUC": value_ci(t["macro_ovr_auc"], *ci["macro_ovr_auc"]),
                "accuracy": value_ci(t["accuracy"], *ci["accuracy"]),
                "sensitivity": "-",
                "specificity": "-",
            }
        )
    published = official_test_anchors() if not synthetic_run(metrics) else official_test_anchors().iloc[:0]
    for _, r in published.iterrows():
        rows.append(
            {
                "model": f"{r['source']}: {r['model']}" + (" (chosen on test)" if r["chosen on test"] == "yes" else ""),
                "task": "published",
                **{label: value_ci(r[k]) for label, k in BINARY_COLUMNS.items()},
            }
        )
    return pd.DataFrame(rows)
