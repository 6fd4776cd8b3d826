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

from .evaluate import patient_resamples, rate_ci
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
    ("normal vs pneumonia", "specificity on NORMAL2- normals", ("binary", "normal2_specificity"), 0.88, ">="),
    ("normal vs pneumonia", "ECE of calibrated probabilities, test", ("calibration", "test_ece"), 0.05, "<="),
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


def normal2_hits(predictions_csv: str | Path, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Which NORMAL2- normals of a binary model's test predictions are called normal at `threshold`, and their
    patients (the series as `tables.subgroup_of` names it); empty where the split has none."""
    from .tables import subgroup_of  # here: tables reads this module's ternary CIs

    pred = pd.read_csv(predictions_csv)
    normal2 = pred[(subgroup_of(pred) == "normal, NORMAL2- series").to_numpy()]
    return (normal2["p_pneumonia"] < threshold).to_numpy(), normal2["patient"].to_numpy()


def run_values(run: dict, metrics: dict[str, dict]) -> dict[tuple[str, str], float]:
    """Every targeted value of one run, on its own test split: its own chosen binary model (specificity on the
    NORMAL2- normals from its test predictions, beside its metrics under `run["reports_dir"]`, where `seeds.seed_runs`
    records it), its reported ternary decision, and its time and peak memory (`run.json`)."""
    values = {}
    binary, ternary = choose_model(metrics), ternary_name(metrics)
    for key in ("roc_auc", "accuracy", "sensitivity", "specificity"):
        values[("binary", key)] = metrics[binary]["test"][key]
    predictions = Path(run.get("reports_dir", "-")) / "predictions" / f"{binary}_test.csv"
    if predictions.is_file():
        hits, _ = normal2_hits(predictions, metrics[binary]["threshold"])
        if len(hits):
            values[("binary", "normal2_specificity")] = float(hits.mean())
    if "calibration" in metrics[binary]:
        values[("calibration", "val_ece")] = metrics[binary]["calibration"]["val"]["ece_cross_fitted"]
        values[("calibration", "test_ece")] = metrics[binary]["calibration"]["test"]["ece"]
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
    """One row per target: the main run's value with its 95% CI; the mean and range of its value over the runs
    (`seed_runs`: the main run first, then every comparable seed run), each with its own chosen model; the verdict;
    and how many runs meet it at their point value. With more than one run the verdict reads the seed mean ("met", or
    "not met" with the shortfall); with the main run alone, its CI ("met" when all of it clears the goal, "not met" when
    none does, "uncertain" otherwise). Time and memory are the main run's alone: other seeds run at other times and
    loads, so their minutes are not comparable."""
    _, main_metrics = next(iter(runs.values()))
    values = {s: run_values(r, m) for s, (r, m) in runs.items()}
    main = next(iter(values.values()))
    binary, ternary = choose_model(main_metrics), ternary_name(main_metrics)
    cis = {("binary", k): v for k, v in main_metrics[binary]["test_ci95"].items()}
    hits, patients = normal2_hits(Path(predictions_dir) / f"{binary}_test.csv", main_metrics[binary]["threshold"])
    if len(hits):
        value, lo, hi = rate_ci(hits, patients, n_boot, seed)
        main[("binary", "normal2_specificity")], cis[("binary", "normal2_specificity")] = value, [lo, hi]
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
        over = [main[key]] if key[0] == "run" else [v[key] for v in values.values() if key in v]
        meets = [v >= goal if direction == ">=" else v <= goal for v in over]
        mean = float(np.mean(over))
        if len(over) > 1:
            judged = (
                "met"
                if (mean >= goal if direction == ">=" else mean <= goal)
                else f"not met, by {abs(mean - goal):.3f}"
            )
        else:
            judged = verdict(value, goal, direction, ci)
        rows.append(
            {
                "task": task,
                "target": f"{what} {direction} {goal:g}",
                "model": model,
                "value": value,
                "ci_low": ci[0] if ci else np.nan,
                "ci_high": ci[1] if ci else np.nan,
                "runs": len(over),
                "mean": mean,
                "min": float(np.min(over)),
                "max": float(np.max(over)),
                "verdict": judged,
                "runs meeting it": f"{sum(meets)} of {len(meets)}",
            }
        )
    return pd.DataFrame(rows)


def trained_at(run: dict) -> str | None:
    """The commit (or commits, space-separated) whose code ran a run's notebooks 01-07, from its run.json; the
    final notebook, run again later, and the out-of-distribution fit left out."""
    commits = {
        entry.get("git_commit")
        for nb, entry in run.get("notebooks", {}).items()
        if nb not in ("final_notebook", "ood") and entry.get("git_commit")
    }
    return " ".join(sorted(commits)) if commits else run.get("git_commit")


def per_run_table(runs: dict[int, tuple[dict, dict[str, dict]]]) -> pd.DataFrame:
    """Every run's headline numbers, one row per seed (the main run first): its commit, its chosen binary model, and
    each targeted value of `run_values` (the NORMAL2- specificity where its test predictions are beside its metrics).

    Args:
        runs: `seeds.seed_runs`' dict.

    Returns:
        Columns seed, commit (`trained_at`), chosen model, then one per target (`TARGETS`' "what", task-prefixed
        for the ternary).
    """
    names = {key: (f"ternary {what}" if key[0] == "ternary" else what) for _, what, key, _, _ in TARGETS}
    rows = []
    for seed, (run, metrics) in runs.items():
        values = run_values(run, metrics)
        rows.append(
            {"seed": seed, "commit": trained_at(run), "chosen model": choose_model(metrics)}
            | {name: values.get(key, np.nan) for key, name in names.items()}
        )
    return pd.DataFrame(rows)


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The table for reading: the main run's value and CI in one column, the mean and range over runs in another."""

    def number(v: float) -> str:
        return f"{v:.1f}" if v >= 10 else f"{v:.3f}"  # minutes and megabytes to one decimal

    text = [
        number(v) if lo != lo and v >= 10 else value_ci(v, lo, hi)  # no CI: minutes, say
        for v, lo, hi in zip(table["value"], table["ci_low"], table["ci_high"])
    ]
    spread = [
        f"{number(m)} [{number(lo)}, {number(hi)}]" if n > 1 else "-"
        for m, lo, hi, n in zip(table["mean"], table["min"], table["max"], table["runs"])
    ]
    runs = int(table["runs"].max())
    over = [f"mean of {runs} runs [range]"] if runs > 1 else []
    return table.assign(**{"main run [95% CI]": text, f"mean of {runs} runs [range]": spread})[
        ["task", "target", "model", "main run [95% CI]", *over, "verdict", "runs meeting it"]
    ]
