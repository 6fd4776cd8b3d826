"""The thorax scale: measured from the lung valleys, small thoraxes magnified, shifts applied before it."""

import json

import numpy as np
import pytest

from pneumonia_cxr.data.thorax import (
    MAX_ZOOM,
    magnify,
    normalise_thorax_scale,
    thorax_width,
    thorax_width_or_closer,
    zoom_to_thorax,
)
from pneumonia_cxr.ternary import with_calibrated_normal


def chest(half_gap: float, size: int = 128) -> np.ndarray:
    """A drawn frontal chest: body grey, a bright mediastinum in the middle, a dark lung `half_gap` px either side."""
    x = np.arange(size) * 128 / size
    bump = lambda c, sd, h: h * np.exp(-0.5 * ((x - c) / sd) ** 2)
    row = 150 + bump(64, 6, 60) - bump(64 - half_gap, 8, 90) - bump(64 + half_gap, 8, 90)
    return np.clip(np.tile(row, (size, 1)), 0, 255).astype(np.uint8)


def test_thorax_width_is_the_distance_between_the_lung_valleys():
    for half_gap in (20, 26, 32):
        assert thorax_width(chest(half_gap)) == pytest.approx(2 * half_gap / 128, abs=2 / 128)
    # measured at one working size whatever the image's, so a model at 224 px gets the zoom one at 128 px gets
    assert thorax_width(chest(26, 224)) == pytest.approx(thorax_width(chest(26)), abs=2 / 128)


def test_no_clear_valleys_means_no_estimate_and_no_zoom():
    flat = np.full((128, 128), 120, np.uint8)
    assert thorax_width(flat) is None
    assert zoom_to_thorax(None) == 1.0
    assert (normalise_thorax_scale(flat[None]) == flat).all()
    with pytest.raises(ValueError, match="grayscale"):
        thorax_width(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="batch"):
        normalise_thorax_scale(flat)


def test_zoom_to_thorax_only_magnifies_and_within_limits():
    assert zoom_to_thorax(0.42, 0.42) == 1.0
    assert zoom_to_thorax(0.60, 0.42) == 1.0  # a wide thorax is never shrunk
    assert zoom_to_thorax(0.35, 0.42) == pytest.approx(1.2)
    assert zoom_to_thorax(0.10, 0.42) == MAX_ZOOM  # a failed estimate must not crop the chest away
    with pytest.raises(ValueError):
        magnify(chest(20), 0.8)


def test_normalise_brings_a_small_thorax_to_the_target_and_leaves_a_wide_one():
    small, wide = chest(20), chest(32)
    batch = np.stack([small, wide])
    out = normalise_thorax_scale(batch, target=0.42)
    assert out.shape == batch.shape and out.dtype == np.uint8
    assert (batch[0] == small).all(), "the input batch must not be modified"
    assert thorax_width(out[0]) == pytest.approx(0.42, abs=0.03)
    assert (out[1] == wide).all()


@pytest.mark.real_data
def test_on_real_xrays_the_width_follows_the_scale(real_224):
    """Magnified x1.3 about the centre, a real NORMAL's measured thorax widens by about that much."""
    from PIL import Image

    files = sorted((real_224 / "train" / "NORMAL").glob("*.jpeg"))[:60]
    ratios = []
    for f in files:
        im = np.asarray(Image.open(f).convert("L").resize((128, 128), Image.BILINEAR))
        before, after = thorax_width(im), thorax_width(magnify(im, 1.3))
        if before and after:
            ratios.append(after / before)
    assert len(ratios) >= 45, f"lung valleys found in only {len(ratios)} of {len(files)} NORMAL images"
    assert np.median(ratios) == pytest.approx(1.3, abs=0.08)


@pytest.mark.real_data
def test_a_thorax_shrunk_in_the_frame_is_found_from_closer(real_224):
    """Shrunk x0.7 and padded with its edges (the `zoom out x0.7` shift), a real NORMAL often shows no lung valleys at
    first look; the second look at the magnified centre finds most of them, at 0.7 of the width measured unshrunk."""
    from PIL import Image

    from pneumonia_cxr.evaluate import SHIFTS

    files = sorted((real_224 / "train" / "NORMAL").glob("*.jpeg"))[:60]
    images = [np.asarray(Image.open(f).convert("L").resize((128, 128), Image.BILINEAR)) for f in files]
    shrunk = [SHIFTS["zoom out x0.7"](im) for im in images]
    first = [thorax_width(im) for im in shrunk]
    closer = [thorax_width_or_closer(im) for im in shrunk]
    assert all(c == f for f, c in zip(first, closer) if f is not None), "a first-look width must be kept as it is"
    found_closer = [(c, thorax_width(im)) for f, c, im in zip(first, closer, images) if f is None and c is not None]
    assert sum(c is not None for c in closer) >= sum(f is not None for f in first) + 10 >= 40
    ratios = [c / w for c, w in found_closer if w]
    assert len(ratios) >= 10 and np.median(ratios) == pytest.approx(0.7, abs=0.05)


@pytest.mark.real_data
def test_dataset_keeps_raw_images_and_preprocesses_like_them(real_224, tmp_path):
    from pneumonia_cxr.data import load_dataset

    plain = load_dataset(real_224, 64, tmp_path, seed=42, per_subtype=30)
    data = load_dataset(real_224, 64, tmp_path, seed=42, per_subtype=30, thorax_width=0.42)
    assert (data.raw_images == plain.images).all() and plain.preprocess(plain.images) is plain.images
    changed = (data.images != data.raw_images).any(axis=(1, 2))
    assert 0 < changed.sum() < len(changed)
    x, y, rows = data.split("val")
    raw, y_raw, rows_raw = data.split("val", raw=True)
    assert (y == y_raw).all() and rows.index.equals(rows_raw.index)
    # the robustness tables' unshifted row is exactly what the model was validated on
    assert (data.preprocess(raw) == x).all()


def centre_brightness_model(weights, activation=None):
    """A "model" whose outputs follow how bright its input's centre is (magnifying the centre changes that), built
    from stock layers: one output per entry of `weights`."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((64, 64, 1)),
            keras.layers.Cropping2D(24),
            keras.layers.Rescaling(1 / 255),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(weights), activation),
        ]
    )
    model.layers[-1].set_weights([np.array([weights], dtype="float32"), np.zeros(len(weights))])
    return model


@pytest.mark.real_data
def test_predict_gives_each_model_its_own_thorax_scale(real_fullres, tmp_path, capsys):
    from pneumonia_cxr import predict
    from pneumonia_cxr.data import load_image
    from pneumonia_cxr.train import save_model

    model = centre_brightness_model([1.0])
    files = [str(f) for f in sorted((real_fullres / "train" / "NORMAL").glob("*.jpeg"))[:8]]
    images = np.stack([load_image(f, 64) for f in files])
    normalised = normalise_thorax_scale(images, 0.42)
    magnified = (normalised != images).any(axis=(1, 2))
    assert magnified.any(), "none of these 8 originals has a small thorax: pick others"
    expected = model.predict(normalised[..., None].astype("float32"), verbose=0).ravel()
    path = tmp_path / "centre.keras"
    save_model(
        model,
        path,
        image_size=64,
        resize="squash",
        thorax_width=0.42,
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=0.5,
    )
    assert predict.main([*files, "--model", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    got = np.array([r["p_pneumonia"] for r in rows])
    assert np.allclose(got, expected, atol=1e-4)
    unprocessed = model.predict(images[..., None].astype("float32"), verbose=0).ravel()
    assert not np.allclose(got[magnified], unprocessed[magnified], atol=1e-3)

    # a ternary model saved without a thorax width (notebook 05's) gets the images as decoded, beside a binary one
    # that gets them scaled: each model's own .json decides
    ternary = centre_brightness_model([4.0, 0.0, -4.0], "softmax")
    t_path = tmp_path / "ternary.keras"
    save_model(
        ternary,
        t_path,
        image_size=64,
        resize="squash",
        thorax_width=None,
        task="ternary",
        classes=["normal", "bacteria", "virus"],
    )
    assert predict.main([*files, "--model", str(path), "--ternary-model", str(t_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert np.allclose([r["p_pneumonia"] for r in rows], expected, atol=1e-4)
    t_got = np.array([[r["ternary"][c] for c in ("normal", "bacteria", "virus")] for r in rows])
    # and predict reports the ternary model's subtype split of the binary model's P(pneumonia)
    t_raw = ternary.predict(images[..., None].astype("float32"), verbose=0)
    assert np.allclose(t_got, with_calibrated_normal(t_raw, expected), atol=1e-4)
    t_scaled = with_calibrated_normal(ternary.predict(normalised[..., None].astype("float32"), verbose=0), expected)
    assert not np.allclose(t_got[magnified], t_scaled[magnified], atol=1e-3)
