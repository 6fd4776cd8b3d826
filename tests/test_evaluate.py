"""Thresholds, metrics, bootstrap and prevalence arithmetic."""

import numpy as np
import pytest

from pneumonia_cxr.evaluate import (
    assert_consistent,
    at_prevalence,
    binary_metrics,
    bootstrap_ci,
    choose_threshold,
    robustness_table,
    ternary_metrics,
)


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    return y, np.clip(0.35 * y + rng.normal(0.35, 0.18, 400), 0, 1)


def test_threshold_reaches_target_sensitivity_on_validation(scores):
    y, p = scores
    t = choose_threshold(y, p, 0.95)
    m = binary_metrics(y, p, t)
    assert m["sensitivity"] >= 0.95
    assert binary_metrics(y, p, t + 1e-6)["sensitivity"] < 0.95  # the highest such threshold
    assert_consistent(m)


def test_threshold_is_the_highest_even_along_a_vertical_stretch_of_the_roc_curve():
    # one negative above every positive, the rest below: the ROC curve runs straight up at fpr 1/21
    y = np.r_[np.ones(100), np.zeros(21)]
    p = np.r_[np.linspace(0.5, 0.99, 100), np.linspace(0.1, 0.3, 20), 0.995]
    t = choose_threshold(y, p, 0.95)
    assert binary_metrics(y, p, t)["sensitivity"] == 0.95  # not 1.0 at the lowest positive's score
    assert binary_metrics(y, p, t + 1e-6)["sensitivity"] < 0.95


@pytest.mark.slow
def test_bootstrap_ci_brackets_the_estimate(scores):
    y, p = scores
    ci = bootstrap_ci(y, p, 0.5, groups=np.arange(len(y)) // 2, n_boot=300)
    m = binary_metrics(y, p, 0.5)
    for k in ("accuracy", "sensitivity", "specificity", "roc_auc"):
        assert ci[k][0] <= m[k] <= ci[k][1] and ci[k][1] - ci[k][0] < 0.2


def test_prevalence_arithmetic():
    r = at_prevalence({"sensitivity": 0.9, "specificity": 0.8}, 0.625)
    assert r["accuracy"] == pytest.approx(0.625 * 0.9 + 0.375 * 0.8)
    assert r["ppv"] == pytest.approx(0.5625 / (0.5625 + 0.075))


def test_ternary_metrics_are_consistent():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 2 * np.eye(3)[y]
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = ternary_metrics(y, P)
    assert np.sum(m["confusion_matrix"]) == 300
    assert np.trace(m["confusion_matrix"]) / 300 == pytest.approx(m["accuracy"])
    assert 0.5 < m["macro_ovr_auc"] <= 1 and 0.5 < m["bacterial_vs_viral"]["roc_auc"] <= 1


def test_robustness_table_scores_the_model_under_every_shift():
    """One row per shift, in SHIFTS' order, each the metrics of the model's predictions on the images so shifted."""
    from pneumonia_cxr.evaluate import SHIFTS, apply_shift

    rng = np.random.default_rng(2)
    x = rng.integers(0, 255, (20, 32, 32)).astype(np.uint8)
    y = np.r_[np.zeros(10), np.ones(10)].astype(int)
    x[y == 1, 8:24, 8:24] = 230  # a bright patch: a model of the image's grey levels separates the classes
    predict = lambda im: np.asarray(im, float).reshape(len(im), -1).mean(1) / 255  # noqa: E731
    table = robustness_table(predict, x, y, 0.5)
    assert table["shift"].tolist() == list(SHIFTS)
    for row in table.to_dict("records"):
        m = binary_metrics(y, predict(apply_shift(x, row["shift"], y)), 0.5)
        expected = {k: m[k] for k in ("roc_auc", "sensitivity", "specificity", "accuracy")}
        expected["accuracy@62.5%"] = at_prevalence(m, 0.625)["accuracy"]
        assert {k: row[k] for k in expected} == pytest.approx(expected), row["shift"]
    moved = table.drop(columns="shift").ne(table.drop(columns="shift").iloc[0]).any(axis=1)
    assert moved.iloc[1:].sum() >= 10, "the shifts change what the model sees: the rows are not one row copied"


def test_aspect_swap_narrows_normal_and_widens_pneumonia_images():
    from pneumonia_cxr.data.pipeline import ORIGINAL_ASPECT
    from pneumonia_cxr.evaluate import apply_shift

    im = np.full((2, 40, 40), 50, np.uint8)
    im[:, 10:30, 10:30] = 200  # a bright square 20 x 20 px, centred, on grey
    normal, pneumonia = apply_shift(im, "aspect swapped", labels=[0, 1])
    width = lambda x: int((x[20] > 125).sum())  # noqa: E731
    height = lambda x: int((x[:, 20] > 125).sum())  # noqa: E731
    ratio = ORIGINAL_ASPECT["pneumonia"] / ORIGINAL_ASPECT["normal"]
    assert abs(width(normal) / height(normal) - 1 / ratio) < 0.1, "NORMAL narrowed (by stretching its height)"
    assert abs(width(pneumonia) / height(pneumonia) - ratio) < 0.1, "pneumonia widened"
    assert abs(width(pneumonia) - 20 * ratio) <= 1.5 and abs(height(normal) - 20 * ratio) <= 1.5  # edges interpolate
    assert normal.shape == pneumonia.shape == (40, 40)
    assert normal.min() >= 45 and pneumonia.min() >= 45, "cropped, never padded: no bands added"
    with pytest.raises(ValueError, match="labels"):
        apply_shift(im, "aspect swapped")


def test_zoom_shifts_scale_the_field_of_view_on_both_axes_and_pad_with_edge_pixels():
    from pneumonia_cxr.evaluate import apply_shift

    im = np.full((1, 60, 60), 50, np.uint8)
    im[0, 20:40, 20:40] = 200  # a bright square 20 x 20 px, centred, on grey
    im[0, :, 0] = 10  # a dark left edge column, to see what a zoom-out pads with
    zin, zout = apply_shift(im, "zoom in x1.3")[0], apply_shift(im, "zoom out x0.7")[0]
    side = lambda x: (int((x[30] > 125).sum()), int((x[:, 30] > 125).sum()))  # noqa: E731
    assert zin.shape == zout.shape == (60, 60)
    assert all(abs(n - 20 * 1.3) <= 1.5 for n in side(zin)) and all(abs(n - 20 * 0.7) <= 1.5 for n in side(zout))
    pad = zout[:, :9]  # (60 - 42) / 2 columns on the left
    assert (pad == zout[:, 9:10]).all() and 0 < pad.min() and pad.max() < 50, (
        "the edge repeated, not reflected or black"
    )
    assert zin.min() >= 45, "a zoom-in crops: the dark edge column is gone"


def test_shift_summary_averages_youden_and_keeps_the_worst_case():
    import pandas as pd

    from pneumonia_cxr.evaluate import shift_summary

    table = pd.DataFrame({"roc_auc": [0.99, 0.97], "sensitivity": [0.96, 0.90], "specificity": [0.94, 0.70]})
    s = shift_summary(table)
    assert s["mean_youden"] == pytest.approx(((0.96 + 0.94 - 1) + (0.90 + 0.70 - 1)) / 2)
    assert s["min_sensitivity"] == 0.90 and s["min_specificity"] == 0.70 and s["mean_roc_auc"] == pytest.approx(0.98)


def test_black_border_shifts_blank_two_opposite_edges():
    from pneumonia_cxr.evaluate import apply_shift

    im = np.full((1, 50, 50), 180, np.uint8)
    sides, rows = apply_shift(im, "black border, sides")[0], apply_shift(im, "black border, top and bottom")[0]
    assert (sides[:, :4] == 0).all() and (sides[:, -4:] == 0).all() and (sides[:, 4:-4] == 180).all()
    assert (rows[:4] == 0).all() and (rows[-4:] == 0).all() and (rows[4:-4] == 180).all()


def test_grain_and_jpeg_shifts_are_deterministic_small_and_differ_between_images():
    """The grain is seeded by the image itself: the same image gets the same grain, another image another."""
    from pneumonia_cxr.evaluate import apply_shift

    rng = np.random.default_rng(0)
    a = rng.integers(60, 200, (1, 64, 64)).astype(np.uint8)
    b = np.roll(a, 1, axis=2)
    for sd in (2, 5):
        once, again = apply_shift(np.concatenate([a, b]), f"noise sd={sd}"), apply_shift(a, f"noise sd={sd}")
        np.testing.assert_array_equal(once[0], again[0])
        grain_a, grain_b = once[0].astype(float) - a[0], once[1].astype(float) - b[0]
        assert abs(grain_a.std() - sd) < 0.3 and abs(grain_a.mean()) < 0.3
        assert not np.array_equal(grain_a, grain_b), "another image, another grain"
    smooth = np.tile(np.linspace(40, 220, 64), (64, 1)).astype(np.uint8)[None]
    resaved = apply_shift(smooth, "jpeg quality 50")
    assert resaved.shape == smooth.shape and resaved.dtype == np.uint8
    assert 0 < np.abs(resaved.astype(float) - smooth).mean() < 3


def test_subgroup_table_splits_sensitivity_by_subtype_and_specificity_by_normal_series(tmp_path):
    import pandas as pd

    from pneumonia_cxr.evaluate import binary_metrics
    from pneumonia_cxr.tables import subgroup_table

    rows = (
        [("bacteria", f"person{i}", 1, 0.9) for i in range(40)]  # all found
        + [("virus", f"person{100 + i}", 1, 0.9 if i % 4 else 0.1) for i in range(40)]  # a quarter missed
        + [("normal", f"IM-{i:04d}", 0, 0.1) for i in range(30)]  # all cleared
        + [("normal", f"NORMAL2-IM-{i:04d}", 0, 0.9 if i < 6 else 0.1) for i in range(30)]
    )  # 6 false alarms
    pred = pd.DataFrame(rows, columns=["subtype", "patient", "y_true", "p_pneumonia"])
    pred.insert(0, "relpath", [f"im{i}.jpeg" for i in range(len(pred))])
    pred.to_csv(tmp_path / "m_test.csv", index=False)
    table = subgroup_table(tmp_path, {"m": 0.5}, n_boot=300).set_index("subgroup")
    assert table.loc["bacterial pneumonia", "value"] == 1.0 and table.loc["viral pneumonia", "value"] == 0.75
    assert table.loc["normal, IM- series", "value"] == 1.0 and table.loc["normal, NORMAL2- series", "value"] == 0.8
    assert set(table["metric"]) == {"sensitivity", "specificity"}
    assert (table["ci_low"] <= table["value"]).all() and (table["value"] <= table["ci_high"]).all()
    assert table.loc["viral pneumonia", "ci_low"] < 0.75 < table.loc["viral pneumonia", "ci_high"]
    # the subgroups add back up to the model's overall rates
    whole = binary_metrics(pred["y_true"], pred["p_pneumonia"], 0.5)
    for metric in ("sensitivity", "specificity"):
        part = table[table["metric"] == metric]
        assert (part["value"] * part["images"]).sum() / part["images"].sum() == pytest.approx(whole[metric])


def test_rate_ci_resamples_patients_not_images():
    from pneumonia_cxr.evaluate import rate_ci

    hits = np.r_[np.ones(50), np.zeros(50)]
    one_patient_each = rate_ci(hits, np.arange(100), n_boot=500)
    ten_images_each = rate_ci(hits, np.arange(100) // 10, n_boot=500)  # ten patients, each all hit or all missed
    assert one_patient_each[0] == ten_images_each[0] == 0.5
    assert ten_images_each[2] - ten_images_each[1] > 1.5 * (one_patient_each[2] - one_patient_each[1])
    assert rate_ci(np.ones(5), np.arange(5)) == (1.0, 1.0, 1.0)


def test_predictions_read_back_give_the_same_calls_at_the_saved_threshold(tmp_path):
    """float32 probabilities printed short read back as other float64s: the image that sets the threshold would
    fall below it, and validation sensitivity from the file below the target."""
    import pandas as pd

    from pneumonia_cxr.evaluate import binary_metrics
    from pneumonia_cxr.records import probabilities
    from pneumonia_cxr.train import save_predictions

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1).astype(np.float32)
    threshold = choose_threshold(y, p)
    rows = pd.DataFrame(
        {
            "relpath": [f"im{i}.jpeg" for i in range(500)],
            "patient": [f"p{i}" for i in range(500)],
            "split_assigned": "val",
            "subtype": np.where(y == 1, "bacteria", "normal"),
        }
    )
    y_back, p_back = probabilities(save_predictions(tmp_path / "m_val.csv", rows, p, y))
    assert ((p_back >= threshold) == (p >= threshold)).all()
    for t in map(float, p[:100]):  # any threshold taken from the probabilities themselves
        assert ((p_back >= t) == (p >= t)).all(), t
    assert (
        binary_metrics(y_back, p_back, threshold)["sensitivity"]
        == binary_metrics(y, p, threshold)["sensitivity"]
        >= 0.95
    )


def test_shift_predictions_takes_given_columns_as_they_are_and_predicts_the_rest():
    from pneumonia_cxr.evaluate import SHIFTS, shift_predictions

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (6, 32, 32)).astype(np.uint8), np.array([0, 1, 0, 1, 0, 1])
    calls = []
    predict = lambda im: calls.append(1) or im.mean((1, 2)) / 255  # noqa: E731
    full = shift_predictions(predict, x, y)
    assert len(calls) == len(SHIFTS) and list(full.columns) == list(SHIFTS)
    calls.clear()
    given = shift_predictions(predict, x, y, given={"none": np.full(6, 0.5)})
    assert len(calls) == len(SHIFTS) - 1, "the unshifted images are not predicted again"
    assert (given["none"] == 0.5).all() and given.drop(columns="none").equals(full.drop(columns="none"))
