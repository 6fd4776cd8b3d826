"""How much the numbers move with the seed: the runs of other seeds (`make seed-check SEED=<seed>`, under
`reports/seeds/<seed>/metrics`) beside the main run, and their table.

Invariant: a run of another seed counts only if it is complete and made by the same code as the main run.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from .io import read_json
from .records import load_metrics
from .selection import choose_model
from .stages import STAGES


def _notebook_code(run: dict) -> dict[str, str | None]:
    """The code fingerprint in a run.json of each stage that a run of another seed runs too (stages.toml's
    `seed_runs`: not the final notebook, not the out-of-distribution fit); None where the run predates fingerprints."""
    again = {stage.name for stage in STAGES if stage.seed_runs}
    return {nb: entry.get("code") for nb, entry in run.get("notebooks", {}).items() if nb in again}


def seed_runs(reports_dir: str | Path) -> dict[int, tuple[dict, dict[str, dict]]]:
    """(run.json, every model's metrics) by run seed: the main run's (`reports/metrics`) first, then each other
    seed's in seed order (`reports/seeds/<seed>/metrics`, written by `make seed-check SEED=<seed>`). The seed is
    read from each run.json, never from the folder name. Another seed's run counts only if it is complete and
    comparable: the same profile, dataset and models as the main run, and the same code for every notebook before
    the final one (the runner's `code` fingerprints in run.json; not checked when the main run predates them). An
    interrupted, different or outdated run is skipped with a warning: rerun `make seed-check` after a code change.

    Args:
        reports_dir: the main run's reports folder (`reports`).

    Returns:
        seed -> (run.json, model name -> metrics); empty when the main run has no run.json. Each run.json dict
        gains "reports_dir", the folder it was read from (its predictions/ beside its metrics/).

    Raises:
        ValueError: two folders hold runs of the same seed.
    """
    main_dir = Path(reports_dir) / "metrics"
    if not (main_dir / "run.json").exists():
        return {}
    main_run, main_metrics = read_json(main_dir / "run.json"), load_metrics(main_dir)
    main_run["reports_dir"] = str(main_dir.parent)
    main_code = _notebook_code(main_run)
    out = {main_run["seed"]: (main_run, main_metrics)}
    for metrics_dir in sorted((Path(reports_dir) / "seeds").glob("*/metrics")):
        run = read_json(metrics_dir / "run.json") if (metrics_dir / "run.json").exists() else {}
        metrics = load_metrics(metrics_dir)
        differs = [
            what
            for what, same in [
                ("no run.json", bool(run)),
                ("profile", run.get("profile") == main_run["profile"]),
                ("dataset", Path(run.get("data_dir", "")).name == Path(main_run["data_dir"]).name),
                ("models (an interrupted run?)", set(metrics) == set(main_metrics)),
                ("code (made before a code change?)", not all(main_code.values()) or _notebook_code(run) == main_code),
            ]
            if not same
        ]
        if differs:
            warnings.warn(f"{metrics_dir}: skipped, differs from {main_dir} in {', '.join(differs)}", stacklevel=2)
        elif run["seed"] in out:
            raise ValueError(f"{metrics_dir}: seed {run['seed']} was already read from another folder")
        else:
            out[run["seed"]] = (run | {"reports_dir": str(metrics_dir.parent)}, metrics)
    main, *others = out.items()
    return dict([main, *sorted(others)])


SEED_METRICS = {
    "binary": {
        "test AUC": "roc_auc",
        "sensitivity": "sensitivity",
        "specificity": "specificity",
        "accuracy": "accuracy",
    },
    "ternary": {"accuracy": "accuracy", "macro OvR AUC": "macro_ovr_auc"},
}


def seed_table(runs: dict[int, tuple[dict, dict[str, dict]]]) -> pd.DataFrame:
    """How much each model's test numbers move with the seed (which draws the split, the initial weights and the
    augmentation), from `seed_runs`: one row per (model, metric), one column per seed, and the spread (largest
    minus smallest); the last row is each run's chosen model.

    Args:
        runs: `seed_runs`' dict.

    Returns:
        Rows (model, metric), columns "seed <s>" in `runs`' order and "spread"; empty when no run has a model.
    """
    rows = []
    for seed, (_, metrics) in runs.items():
        for name, m in sorted(metrics.items()):
            for label, key in SEED_METRICS[m["task"]].items():
                rows.append({"model": name, "metric": label, "seed": seed, "value": m["test"][key]})
            if m["task"] == "ternary":
                rows.append(
                    {
                        "model": name,
                        "metric": "bacterial-vs-viral AUC",
                        "seed": seed,
                        "value": m["test"]["bacterial_vs_viral"]["roc_auc"],
                    }
                )
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).pivot(index=["model", "metric"], columns="seed", values="value")
    table = table[list(runs)]  # the main run first
    table.columns = [f"seed {s}" for s in table.columns]
    table["spread"] = table.max(axis=1) - table.min(axis=1)
    chosen = pd.DataFrame(
        [{f"seed {s}": choose_model(m) for s, (_, m) in runs.items()}],
        index=pd.MultiIndex.from_tuples([("chosen", "model")], names=["model", "metric"]),
    )
    return pd.concat([table, chosen])
