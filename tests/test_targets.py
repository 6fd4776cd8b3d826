"""Where a run stands against the project's targets: the verdict reads the CI, the values are the run's own, and the
final notebook's targets.csv must be what the runs under reports/ give."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pneumonia_cxr import report
from pneumonia_cxr.seeds import seed_runs
from pneumonia_cxr.selection import choose_model
from pneumonia_cxr.targets import TARGETS, _auc, per_run_table, shown, targets_table, ternary_ci, verdict

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"


def test_verdict_reads_the_whole_interval():
    assert verdict(0.96, 0.95, ">=", [0.951, 0.97]) == "met"
    assert verdict(0.93, 0.95, ">=", [0.90, 0.949]) == "not met"
    assert verdict(0.96, 0.95, ">=", [0.94, 0.97]) == "uncertain (point value meets it)"
    assert verdict(0.94, 0.95, ">=", [0.92, 0.96]) == "uncertain (point value misses it)"
    assert verdict(44.0, 45, "<=") == "met" and verdict(53.6, 45, "<=") == "not met"


def test_bootstrap_auc_is_sklearns_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for n in (5, 50, 600):
        y = rng.random(n) < 0.4
        y[:2] = [True, False]
        score = rng.integers(0, 7, n) / 7  # many ties
        assert _auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)
        assert _auc(y, -score) == pytest.approx(1 - roc_auc_score(y, score), abs=1e-12)


def test_ternary_ci_resamples_patients_and_skips_draws_without_every_class(tmp_path):
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[y] * 0.8 + 0.2 / 3  # every image right
    pred = pd.DataFrame(
        {
            "patient": ["a", "a", "b", "c", "d", "e"],
            "y_true": y,
            "p_normal": probs[:, 0],
            "p_bacteria": probs[:, 1],
            "p_virus": probs[:, 2],
        }
    )
    pred.to_csv(tmp_path / "t.csv", index=False)
    assert ternary_ci(tmp_path / "t.csv", 200) == {
        "accuracy": [1.0, 1.0],
        "macro_ovr_auc": [1.0, 1.0],
        "bacterial_vs_viral_auc": [1.0, 1.0],
    }
    pred.loc[4, ["p_normal", "p_bacteria", "p_virus"]] = [
        0.9,
        0.05,
        0.05,
    ]  # one viral image called normal: accuracy 5/6 unless not drawn
    pred.to_csv(tmp_path / "t.csv", index=False)
    ci = ternary_ci(tmp_path / "t.csv", 500)
    assert ci["accuracy"][0] < 5 / 6 + 1e-9 <= ci["accuracy"][1] <= 1.0
    pred[pred["y_true"] < 2].to_csv(tmp_path / "t.csv", index=False)  # no viral image: no resample has every class
    assert np.isnan(ternary_ci(tmp_path / "t.csv", 50)["accuracy"]).all()


@pytest.fixture(scope="module")
def committed():
    runs = seed_runs(REPORTS)
    run = next(iter(runs.values()))[0]
    return runs, targets_table(runs, REPORTS / "predictions", 1000, run["seed"])


def test_targets_table_holds_the_main_runs_own_values_and_counts_every_run(committed):
    runs, table = committed
    run, metrics = next(iter(runs.values()))
    chosen = choose_model(metrics)
    assert len(table) >= len(TARGETS)
    for r in table.to_dict("records"):
        row = pd.Series(r)
        if row.task == "normal vs pneumonia":
            assert row.model == chosen
            if row.target.startswith("ECE") and "validation" in row.target:
                assert row.value == metrics[chosen]["calibration"]["val"]["ece_cross_fitted"]
            elif row.target.startswith("ECE"):
                assert row.value == metrics[chosen]["calibration"]["test"]["ece"]
            elif "NORMAL2-" in row.target:  # the subgroup table's own number for that series
                groups = pd.read_csv(REPORTS / "metrics" / "subgroups.csv")
                mine = groups[(groups["model"] == chosen) & (groups["subgroup"] == "normal, NORMAL2- series")]
                assert row.value == pytest.approx(mine["value"].item(), abs=1e-12)
            else:
                key = {"ROC": "roc_auc"}.get(row.target.split()[0], row.target.split()[0])
                assert row.value == metrics[chosen]["test"][key]
        elif row.task == "normal / bacterial / viral":
            test = metrics[row.model]["test"]
            expected = {
                "accuracy": test["accuracy"],
                "macro": test["macro_ovr_auc"],
                "bacterial-vs-viral": test["bacterial_vs_viral"]["roc_auc"],
            }[row.target.split()[0]]
            assert row.value == expected
        if not np.isnan(row.ci_low):
            assert row.ci_low <= row.value <= row.ci_high, row.target
        if row.model == "this run" and "wall time" in row.target:  # all but the final notebook, which reads it
            others = sum(v["seconds"] for nb, v in run["notebooks"].items() if nb != "final_notebook")
            assert row.value == others / 60 < run["wall_seconds"] / 60
        # out of every run read; time and memory are the main run's alone (other seeds ran at other loads)
        assert row["runs meeting it"].endswith(f" of {1 if row.task == 'run' else len(runs)}")
        assert row.runs == (1 if row.task == "run" else len(runs))
    assert shown(table)["main run [95% CI]"].str.match(r"^\d").all()


def test_a_targets_table_the_runs_no_longer_give_is_stale(tmp_path, committed):
    if not (REPORTS / "metrics" / "targets.csv").exists():
        pytest.fail("reports/metrics/targets.csv missing: run the final notebook")
    shutil.copytree(REPORTS / "metrics", tmp_path / "metrics")
    shutil.copytree(REPORTS / "predictions", tmp_path / "predictions")
    for seed in (REPORTS / "seeds").glob("*/metrics"):  # with its predictions (the NORMAL2- specificity)
        for part in ("metrics", "predictions"):
            shutil.copytree(seed.parent / part, tmp_path / "seeds" / seed.parent.name / part)
    assert not [p for p in report.stale_results(tmp_path) if "targets.csv" in p]
    table = pd.read_csv(tmp_path / "metrics" / "targets.csv")
    table.loc[0, "value"] += 0.01  # a run re-made after the final notebook read it
    table.to_csv(tmp_path / "metrics" / "targets.csv", index=False)
    assert [p for p in report.stale_results(tmp_path) if "targets.csv: differs" in p]
    assert "| normal vs pneumonia | ROC AUC >= 0.985 |" in report.results_markdown(tmp_path)


def test_with_other_seeds_the_verdict_reads_their_mean_and_counts_each_run(committed):
    runs, _ = committed
    seed, (run, metrics) = next(iter(runs.items()))
    chosen = choose_model(metrics)
    worse = {name: dict(m) for name, m in metrics.items()}
    worse[chosen]["test"] = dict(metrics[chosen]["test"], specificity=0.70, roc_auc=0.999)
    other = {**run, "notebooks": {nb: {**e, "git_commit": "abc1234"} for nb, e in run["notebooks"].items()}}
    two = {seed: (run, metrics), seed + 1: (other, worse)}
    table = targets_table(two, REPORTS / "predictions", 200, 0).set_index("target")
    spec = table.loc["specificity at the validation-chosen threshold >= 0.9"]
    mean = (metrics[chosen]["test"]["specificity"] + 0.70) / 2
    assert spec["runs"] == 2 and spec["mean"] == pytest.approx(mean) and spec["min"] == 0.70
    assert spec["verdict"] == f"not met, by {0.9 - mean:.3f}" and spec["runs meeting it"] == "0 of 2"
    auc = table.loc["ROC AUC >= 0.985"]
    assert (
        auc["max"] == 0.999 and auc["runs meeting it"] == f"{int(metrics[chosen]['test']['roc_auc'] >= 0.985) + 1} of 2"
    )
    minutes = table.loc["wall time of the stages before the final notebook, min <= 45"]
    assert minutes["runs"] == 1  # other seeds' minutes are from other loads: the main run's alone
    assert "mean of 2 runs [range]" in shown(table.reset_index()).columns
    per_run = per_run_table(two)
    assert list(per_run["seed"]) == [seed, seed + 1] and per_run.loc[1, "commit"] == "abc1234"
    assert per_run.loc[1, "specificity at the validation-chosen threshold"] == 0.70


def test_without_a_ci_the_value_decides():
    assert verdict(0.9, 0.86, ">=", [np.nan, np.nan]) == "met" and verdict(0.8, 0.86, ">=", None) == "not met"
