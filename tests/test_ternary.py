import numpy as np
import pytest

from pneumonia_cxr.ternary import OFFICIAL_TEST_MIX, shift_summary, shift_table, with_binary_normal


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
    summary = shift_summary(table)
    assert summary["worst accuracy at test mix"] == pytest.approx(table.loc[1, "accuracy at test mix"])
    assert summary["mean accuracy"] == pytest.approx(table["accuracy"].mean())
