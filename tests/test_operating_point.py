"""The threshold rule out of bag: what the validation threshold delivers on validation patients it was not chosen on."""

import numpy as np
import pytest

from pneumonia_cxr.evaluate import choose_threshold
from pneumonia_cxr.operating_point import threshold_out_of_bag


def _scores(n_patients, seed=0, gap=2.0):
    """Two images per patient, one class per patient, overlapping normal scores (AUC about 0.92 at gap 2)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.random(n_patients) < 0.7, 2)
    p = 1 / (1 + np.exp(-(rng.normal(size=2 * n_patients) + gap * (y - 0.5))))
    return y, p, np.repeat(np.arange(n_patients), 2)


def test_separable_scores_are_perfect_out_of_bag():
    y, _, groups = _scores(100)
    p = np.where(y, 0.9, 0.1)
    table = threshold_out_of_bag(y, p, groups, (0.95,), n_boot=50)
    row = table.iloc[0]
    assert row["threshold"] == choose_threshold(y, p, 0.95) == 0.9
    assert row["sensitivity"] == row["specificity"] == 1.0 and row["share below 0.95"] == 0.0
    assert row["resamples"] == 50


def test_the_rule_is_on_the_edge_of_its_target_and_a_stricter_target_costs_specificity():
    y, p, groups = _scores(1500)
    table = threshold_out_of_bag(y, p, groups, (0.95, 0.97), n_boot=200, seed=1).set_index("validation target")
    # on patients it did not see, the rule lands near its target, often below it
    assert abs(table.loc[0.95, "sensitivity"] - 0.95) < 0.01
    assert 0.2 < table.loc[0.95, "share below 0.95"] < 0.8
    assert table.loc[0.95, "sensitivity 2.5%"] < 0.95 < table.loc[0.95, "sensitivity 97.5%"]
    # a stricter target: more sensitivity, rarely below 0.95, paid for in specificity
    assert table.loc[0.97, "sensitivity"] > table.loc[0.95, "sensitivity"]
    assert table.loc[0.97, "share below 0.95"] < table.loc[0.95, "share below 0.95"]
    assert table.loc[0.97, "specificity"] < table.loc[0.95, "specificity"]
    assert table.loc[0.97, "threshold"] < table.loc[0.95, "threshold"]


def test_same_seed_same_table_another_seed_another():
    y, p, groups = _scores(200)
    a = threshold_out_of_bag(y, p, groups, (0.95,), n_boot=100, seed=3)
    assert a.equals(threshold_out_of_bag(y, p, groups, (0.95,), n_boot=100, seed=3))
    assert not a.equals(threshold_out_of_bag(y, p, groups, (0.95,), n_boot=100, seed=4))


def test_bad_input_is_an_error():
    y, p, groups = _scores(50)
    with pytest.raises(ValueError, match="not one per image"):
        threshold_out_of_bag(y, p[:-1], groups)
    with pytest.raises(ValueError, match="too few validation patients"):
        threshold_out_of_bag([0, 1], [0.2, 0.8], ["a", "b"], n_boot=20)
