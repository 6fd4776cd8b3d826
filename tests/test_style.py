"""Acquisition-style descriptors on drawn images, and the style-stressed specificity on toy data."""

import numpy as np
import pytest

from pneumonia_cxr.data import style


def chest(size: int = 224, half_gap: int = 46, seed: int = 0) -> np.ndarray:
    """A drawn frontal chest with texture: grey body, bright mediastinum, two dark lungs in rows 0.2-0.75, bright
    abdomen below, dark air at the sides."""
    x = np.arange(size)
    bump = lambda c, sd, h: h * np.exp(-0.5 * ((x - c) / sd) ** 2)
    c = size / 2
    row = 150 + bump(c, 10, 60) - bump(c - half_gap, 14, 90) - bump(c + half_gap, 14, 90)
    image = np.tile(row, (size, 1))
    lungs = (x >= 0.2 * size) & (x < 0.75 * size)
    image[~lungs] = np.tile(170 + bump(c, 10, 40), (int((~lungs).sum()), 1))  # no dark lungs above or below
    image[:, : size // 12] = 20
    image[:, -size // 12 :] = 20
    image += np.random.default_rng(seed).normal(0, 8, image.shape)  # film grain: no line is featureless
    return np.clip(image, 0, 255).astype(np.uint8)


def with_letter(image: np.ndarray, row: int, col: int) -> np.ndarray:
    """A bright 'L' (2 px strokes, 12 px tall) burned in at (row, col) on a dark patch, as a side marker."""
    out = image.copy()
    out[row - 4 : row + 16, col - 4 : col + 12] = 25
    out[row : row + 12, col : col + 2] = 250
    out[row + 10 : row + 12, col : col + 8] = 250
    return out


def test_a_bright_letter_in_a_corner_is_found_and_placed():
    plain = chest()
    marked = with_letter(plain, 8, 200)  # top right
    found = style.marker_components(marked)
    assert len(found) >= 1
    top = found.sort_values("area").iloc[-1]
    assert top["row"] < 0.15 and top["col"] > 0.85
    stats = style.marker_stats(np.stack([plain, marked]))
    assert stats.loc[1, "marker_count"] >= 1 and stats.loc[1, "marker_tr"] >= 1
    assert stats.loc[1, "marker_tl"] == stats.loc[1, "marker_bl"] == stats.loc[1, "marker_br"] == 0
    assert stats.loc[1, "marker_max_contrast"] > style.MARKER_CONTRAST
    assert stats.loc[0, "marker_count"] == 0  # the drawn chest's lungs and mediastinum are no markers
    # the same letter in the middle of the film is not near an edge
    assert style.marker_stats(with_letter(plain, 100, 100)).loc[0, "marker_count"] == 0


def test_a_uniform_margin_is_measured_on_its_side_only():
    image = chest()
    image[:, :34] = 0  # a black margin, 34 of 224 columns, on the left
    border = style.border_stats(np.stack([chest(), image]))
    assert border.loc[1, "margin_left"] == pytest.approx(34 / 224, abs=1 / 224)
    assert border.loc[1, "band_mean_left"] == 0
    assert border.loc[1, ["margin_top", "margin_bottom", "margin_right"]].max() == 0
    assert border.loc[0, "margin_left"] == 0
    assert border.loc[1, "edge_left"] > 50  # the margin's straight edge


def test_exposure_stats_are_the_grey_level_statistics():
    flat = np.full((64, 64), 100, np.uint8)
    half = flat.copy()
    half[:, 32:] = 255
    stats = style.exposure_stats(np.stack([flat, half]))
    assert stats.loc[0, "mean"] == 100 and stats.loc[0, "std"] == 0
    assert stats.loc[0, "entropy"] == pytest.approx(0.0)
    assert stats.loc[1, "mean"] == pytest.approx(177.5)
    assert stats.loc[1, "entropy"] == pytest.approx(1.0)  # two equally full bins: one bit
    assert stats.loc[1, "bright_share"] == pytest.approx(0.5) and stats.loc[1, "dark_share"] == 0
    assert stats.loc[1, "p01"] == 100 and stats.loc[1, "p99"] == 255
    with pytest.raises(ValueError, match="uint8"):
        style.exposure_stats(np.zeros((2, 8, 8), np.float32))


def test_field_of_view_and_the_thorax_box_follow_the_drawn_chest():
    fov = style.field_of_view(chest())
    assert fov.loc[0, "thorax_width"] == pytest.approx(92 / 224, abs=0.03)
    assert fov.loc[0, "thorax_found"] == 1
    assert fov.loc[0, "lung_top"] == pytest.approx(0.2, abs=0.05)
    assert fov.loc[0, "lung_bottom"] == pytest.approx(0.75, abs=0.05)
    top, bottom, left, right = style.thorax_box(chest())
    assert left < 0.5 - 46 / 224 and right > 0.5 + 46 / 224  # both lungs inside
    assert top < 0.2 and bottom > 0.75
    cropped = style.crop_to_thorax(chest()[None])
    assert cropped.shape == (1, 224, 224)
    # the box excludes the dark air at the sides, so the cropped film's side bands are brighter
    assert style.border_stats(cropped).loc[0, "band_mean_left"] > style.border_stats(chest()).loc[0, "band_mean_left"]
    assert len(style.describe(np.stack([chest(), chest(seed=1)])).columns) == len(style.DESCRIPTORS)


def test_mask_centre_keeps_only_the_frame():
    image = chest()
    masked = style.mask_centre(image[None])[0]
    assert (masked[112, 112] == 128) and (masked[:10] == image[:10]).all()


def test_stressed_specificity_on_toy_data():
    rng = np.random.default_rng(0)
    atypical = np.arange(100, dtype=float)  # image i is the i-th rarest
    p = np.where(atypical >= 75, 0.9, 0.1)  # the model errs exactly on the rarest quarter
    p[75:85] = 0.1  # ... on 15 of its 25
    r = style.stressed_specificity(p, 0.5, atypical, clusters=atypical // 25, n_boot=200)
    assert r["plain"] == pytest.approx(85 / 100)
    assert r["stressed"] == pytest.approx(10 / 25) and r["n_tail"] == 25
    assert r["weighted"] < r["plain"]
    assert r["cluster_min"] == pytest.approx(10 / 25) and r["cluster_mean"] == pytest.approx((3 + 0.4) / 4)
    lo, hi = r["stressed_ci95"]
    assert lo <= r["stressed"] <= hi
    # style unrelated to errors: the stressed estimate stays near the plain one
    p_random = np.where(rng.random(4000) < 0.1, 0.9, 0.1)
    r = style.stressed_specificity(p_random, 0.5, rng.random(4000), n_boot=0)
    assert abs(r["stressed"] - r["plain"]) < 0.03
    with pytest.raises(ValueError, match="atypicality"):
        style.stressed_specificity(p, 0.5, atypical[:10])


def test_atypicality_is_larger_far_from_the_reference():
    import pandas as pd

    rng = np.random.default_rng(0)
    ref = pd.DataFrame(rng.normal(0, 1, (200, 3)), columns=list("abc"))
    near = pd.DataFrame(np.zeros((1, 3)), columns=list("abc"))
    far = pd.DataFrame(np.full((1, 3), 6.0), columns=list("abc"))
    assert style.atypicality(ref, far)[0] > 3 * style.atypicality(ref, near)[0]


def test_frame_stats_see_only_the_frame():
    image = np.full((100, 100), 200, np.uint8)
    image[10:88, 12:88] = 0  # the centre (the lung fields' box) black, the frame bright
    frame = style.frame_stats(image)
    assert frame.loc[0, "frame_mean"] == 200 and frame.loc[0, "frame_std"] == 0
    centre_changed = image.copy()
    centre_changed[30:60, 30:60] = 90  # inside the box: the frame's statistics do not move
    assert style.frame_stats(centre_changed).loc[0, "frame_mean"] == 200
