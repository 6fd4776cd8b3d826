import numpy as np
import pytest

from pneumonia_cxr.ternary import (
    OFFICIAL_TEST_MIX,
    decision_shift_table,
    shift_table,
    summary_by_model,
    ternary_shift_summary,
    with_binary_normal,
)


def test_with_binary_normal_averages_normal_and_keeps_the_subtype_split():
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.6, 0.3], [0.4, 0.15, 0.45]])
    p = np.array([0.7, 0.2, 0.5])
    out = with_binary_normal(probs, p)
    assert np.allclose(out.sum(1), 1)
    assert np.allclose(out[:, 0], [(0.9 + 0.3) / 2, (0.1 + 0.8) / 2, (0.4 + 0.5) / 2])
    # bacterial : viral as the ternary model has it
    assert np.allclose(out[:, 2] / out[:, 1], probs[:, 2] / probs[:, 1])
    # a binary model that agrees with the ternary one changes nothing
    assert np.allclose(with_binary_normal(probs, 1 - probs[:, 0]), probs)


def test_with_binary_normal_rejects_mismatched_or_impossible_input():
    probs = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        with_binary_normal(probs, [0.5])
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        with_binary_normal(probs[:, :2], [0.5, 0.5])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        with_binary_normal(probs, [0.5, 1.5])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        with_binary_normal(probs * 4, [0.5, 0.5])
    with pytest.raises(ValueError, match="finite"):
        with_binary_normal(probs, [0.5, np.nan])


def test_accuracy_at_mix_weights_per_class_recall():
    y = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    probs = np.eye(3)[[0, 0, 1, 0, 2, 2, 1, 1]]  # recall 1, 0.5, 0.5; plain accuracy 5 / 8
    row = shift_table({"none": probs}, y, mix=(1 / 3, 1 / 3, 1 / 3)).iloc[0]
    assert row["accuracy"] == pytest.approx(5 / 8)
    assert row["accuracy at test mix"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert shift_table({"none": probs}, y, mix=(1, 0, 0)).iloc[0]["accuracy at test mix"] == pytest.approx(1.0)
    assert sum(OFFICIAL_TEST_MIX) == pytest.approx(1.0)


def test_shift_table_and_summary():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 10)
    good = np.eye(3)[y] * 0.8 + 0.2 / 3
    worse = rng.dirichlet(np.ones(3), size=30)
    table = shift_table({"none": good, "blur": worse}, y)
    assert list(table["shift"]) == ["none", "blur"]
    assert table.loc[0, "accuracy"] == 1.0 and table.loc[0, "normal recall"] == 1.0
    summary = ternary_shift_summary(table)
    assert summary["worst accuracy at test mix"] == pytest.approx(table.loc[1, "accuracy at test mix"])
    assert summary["mean accuracy"] == pytest.approx(table["accuracy"].mean())


def test_decision_shift_table_puts_both_decisions_under_the_same_shifts():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1, 2], 20)
    T = {"none": np.eye(3)[y] * 0.6 + 0.4 / 3, "blur": rng.dirichlet(np.ones(3), size=60)}
    binary = {"none": np.where(y > 0, 0.9, 0.1), "blur": np.where(y > 0, 0.8, 0.05)}  # a binary model that knows
    table = decision_shift_table(T, binary, y)
    assert list(table["model"]) == ["ternary"] * 2 + ["ternary_with_ensemble"] * 2
    assert list(table["shift"]) == ["none", "blur"] * 2 and list(table.index) == [0, 1, 2, 3]
    alone, combined = (
        table[table["model"] == m].drop(columns="model").reset_index(drop=True)
        for m in ("ternary", "ternary_with_ensemble")
    )
    assert alone.equals(shift_table(T, y))
    expected = shift_table({s: with_binary_normal(T[s], binary[s]) for s in T}, y)
    assert np.allclose(combined.drop(columns="shift"), expected.drop(columns="shift"))
    assert combined.loc[1, "normal recall"] > alone.loc[1, "normal recall"]  # the binary model's say helps here
    summary = summary_by_model(table)
    assert list(summary.columns) == ["ternary", "ternary_with_ensemble"]
    assert summary["ternary_with_ensemble"].to_dict() == pytest.approx(ternary_shift_summary(expected))
    assert list(decision_shift_table(T, binary, y, binary_name="cnn")["model"].unique()) == [
        "ternary",
        "ternary_with_cnn",
    ]
    with pytest.raises(KeyError):  # a shift the binary model was not run on
        decision_shift_table({**T, "gamma": T["none"]}, binary, y)
