"""The model choice: the ensemble unless another model clearly beats it on validation, and how sure that is."""

import numpy as np
import pandas as pd
import pytest

from pneumonia_cxr.data.shifts import SHIFTS
from pneumonia_cxr.evaluate import choose_threshold, shift_metrics, shift_summary
from pneumonia_cxr.selection import (
    MIN_MARGIN,
    apply_rule,
    choice_bootstrap,
    choose_model,
    mean_youden_under_shifts,
    record_choice,
)


def _val_shifts(folder, noise: dict[str, float], seed: int = 0, n: int = 300):
    """Per-image validation predictions under every shift for models of the given noise (less noise: better)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n * 3 // 4), np.zeros(n // 4)].astype(int)
    rows = pd.DataFrame(
        {"relpath": [f"im{i}.jpeg" for i in range(n)], "patient": [f"p{i // 2}" for i in range(n)], "y_true": y}
    )
    shifted = {}
    for name, sd in noise.items():
        shifted[name] = np.clip(y[:, None] * 0.5 + 0.25 + rng.normal(0, sd, (n, len(SHIFTS))), 0, 1)
        pd.concat([rows, pd.DataFrame(shifted[name], columns=list(SHIFTS))], axis=1).to_csv(
            folder / f"{name}_val_shifts.csv", index=False
        )
    return y, rows, shifted


def test_a_near_tie_keeps_the_default_where_a_highest_score_rule_flips(tmp_path):
    _val_shifts(tmp_path, {"ensemble": 0.30, "close": 0.298, "muddled": 0.6})
    table = choice_bootstrap(tmp_path, ["ensemble", "close", "muddled"], n_boot=200, seed=1)
    assert 0.2 < table.loc["close", "highest in resamples"] < 0.8  # a coin toss for the old rule
    assert table["highest in resamples"].sum() == pytest.approx(1.0)
    assert apply_rule(table)["chosen_model"] == "ensemble"
    assert (table["J 2.5%"] <= table["mean J under shifts"]).all()
    assert (table["mean J under shifts"] <= table["J 97.5%"]).all()


def test_a_clear_winner_replaces_the_default(tmp_path):
    _val_shifts(tmp_path, {"ensemble": 0.45, "sharp": 0.15})
    table = choice_bootstrap(tmp_path, ["ensemble", "sharp"], n_boot=200, seed=1)
    assert table.loc["sharp", "margin over ensemble"] >= MIN_MARGIN
    assert table.loc["sharp", "above ensemble in resamples"] >= 0.9
    choice = apply_rule(table)
    assert choice["chosen_model"] == "sharp" and choice["challengers"]["sharp"]["share_above_default"] >= 0.9


def test_the_score_is_the_robustness_tables_mean_youden(tmp_path):
    y, _, shifted = _val_shifts(tmp_path, {"clear": 0.15})
    p = shifted["clear"]
    rob = shift_metrics(pd.DataFrame(p, columns=list(SHIFTS)), y, choose_threshold(y, p[:, 0]))
    assert mean_youden_under_shifts(y, p) == pytest.approx(shift_summary(rob)["mean_youden"])


def test_other_images_are_refused(tmp_path):
    _, rows, shifted = _val_shifts(tmp_path, {"clear": 0.15})
    frame = pd.DataFrame(shifted["clear"], columns=list(SHIFTS))
    pd.concat([rows.assign(relpath=rows["relpath"][::-1].to_numpy()), frame], axis=1).to_csv(
        tmp_path / "shuffled_val_shifts.csv", index=False
    )
    with pytest.raises(ValueError, match="shuffled_val_shifts.csv"):
        choice_bootstrap(tmp_path, ["clear", "shuffled"], n_boot=10)


def test_the_recorded_choice_is_what_every_reader_gets(tmp_path):
    from pneumonia_cxr.io import read_json, write_json
    from pneumonia_cxr.records import load_metrics

    _val_shifts(tmp_path, {"ensemble": 0.45, "sharp": 0.15})
    binary = lambda j: {
        "model": "x",
        "task": "binary",
        "val": {"roc_auc": 0.99},  # noqa: E731
        "val_under_shifts": {"mean_youden": j},
    }
    write_json(tmp_path / "ensemble.json", {**binary(0.5), "model": "ensemble"})
    write_json(tmp_path / "sharp.json", {**binary(0.9), "model": "sharp"})
    metrics = load_metrics(tmp_path)
    assert choose_model(metrics) == "ensemble"  # no choice recorded yet: the default
    record_choice(tmp_path, choice_bootstrap(tmp_path, ["ensemble", "sharp"], n_boot=100, seed=0))
    assert read_json(tmp_path / "model_choice.json")["chosen_model"] == "sharp"
    assert choose_model(load_metrics(tmp_path)) == "sharp"


def test_without_the_default_the_best_score_decides_and_ternary_models_never_count():
    binary = lambda auc, youden=None: {
        "task": "binary",
        "val": {"roc_auc": auc},  # noqa: E731
        **({"val_under_shifts": {"mean_youden": youden}} if youden else {}),
    }
    metrics = {
        "sharp": binary(0.999, 0.80),
        "steady": binary(0.998, 0.90),
        "pixels": binary(0.9995),
        "ternary": {"task": "ternary", "val": {"roc_auc": 1.0}},
    }
    assert choose_model(metrics) == "steady"
    with pytest.raises(ValueError):
        choose_model({"ternary": metrics["ternary"]})
