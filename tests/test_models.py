"""Models save in the Keras format, reload in safe mode with metadata, and explain with Grad-CAM."""

import json

import numpy as np
import pytest

from pneumonia_cxr.models import (
    ContrastLimitedEqualization,
    HistogramEqualization,
    build_ensemble,
    build_scratch_cnn,
    build_transfer_model,
)
from pneumonia_cxr.train import ModelFileError, compile_model, load_model, save_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = compile_model(build_scratch_cnn(32, (4, 8)), 1e-3)
    path = tmp_path_factory.mktemp("m") / "cnn.keras"
    save_model(
        model, path, image_size=32, resize="squash", task="binary", classes=["NORMAL", "PNEUMONIA"], threshold=0.4
    )
    return model, path


def test_reload_in_safe_mode_predicts_the_same(saved):
    model, path = saved
    x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 1)).astype("float32")
    again, meta = load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert meta["threshold"] == 0.4 and meta["image_size"] == 32


def test_reload_builds_each_sequential_once_and_keeps_keras_own_loader(saved, tmp_path, monkeypatch):
    import keras

    model, path = saved
    own = keras.Sequential.from_config
    builds = []
    build = keras.Sequential.build
    monkeypatch.setattr(keras.Sequential, "build", lambda self, shape=None: builds.append(1) or build(self, shape))
    again, _ = load_model(path)
    assert len(builds) == 1  # Keras' own loader builds after every layer it adds
    assert type(again) is keras.Sequential and len(again.layers) == len(model.layers)
    assert [w.shape for w in again.weights] == [w.shape for w in model.weights]
    assert keras.Sequential.from_config == own
    cut = tmp_path / "cut.keras"
    cut.write_bytes(path.read_bytes()[:2000])
    cut.with_suffix(".json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(ModelFileError):
        load_model(cut)
    assert keras.Sequential.from_config == own  # back in place after a failed load too


def test_predict_batches_is_model_predict_without_its_pipeline(saved):
    from pneumonia_cxr.inference import predict_batches

    model = saved[0]
    x = np.random.default_rng(3).integers(0, 255, (11, 32, 32)).astype("uint8")  # 4 + 4 + a last batch of 3
    expected = model.predict(x[..., None].astype("float32"), batch_size=4, verbose=0)
    got = predict_batches(model, x, batch_size=4)
    assert got.shape == (11, 1) and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(predict_batches(model, x[..., None], batch_size=64), got, atol=1e-6)
    assert predict_batches(model, x[:0]).shape == (0, 1)


def test_grad_cam_heat_map(saved):
    from pneumonia_cxr.explain import grad_cam

    cam, out = grad_cam(saved[0], np.random.default_rng(1).integers(0, 255, (32, 32)).astype("uint8"))
    assert cam.shape == (32, 32) and 0 <= cam.min() and cam.max() <= 1 and out.shape == (1,)


def test_load_errors_are_clear(tmp_path, saved):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(tmp_path / "none.keras")
    foreign = tmp_path / "other.keras"
    foreign.write_bytes(saved[1].read_bytes())
    with pytest.raises(ModelFileError, match="no metadata"):
        load_model(foreign)
    foreign.with_suffix(".json").write_text(json.dumps({"format": "someone-else"}))
    with pytest.raises(ModelFileError, match="not pneumonia_cxr metadata"):
        load_model(foreign)


@pytest.mark.real_data
def test_transfer_model_loads_local_imagenet_weights(real_224):
    from conftest import WEIGHTS

    w = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    if not w.exists():
        pytest.skip(f"{w} missing")
    model = build_transfer_model(96, "MobileNetV2", w, 0.35)
    base = next(layer for layer in model.layers if hasattr(layer, "layers"))
    assert not base.trainable and np.abs(base.get_weights()[0]).sum() > 0


def test_histogram_equalization_ignores_monotone_exposure_changes():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 32, 32, 1)).astype("float32")
    darker_lower_contrast = np.round(40 + 150 * (x / 255) ** 1.6)  # gamma, contrast and brightness at once
    he = HistogramEqualization()
    a, b = he(x).numpy(), he(darker_lower_contrast).numpy()
    assert a.min() == 0 and a.max() == 255
    assert np.abs(a - b).mean() < 4.0, "equalised images should nearly coincide"  # merged grey levels differ a little
    assert np.abs(x - darker_lower_contrast).mean() > 20


def test_clahe_with_one_unclipped_tile_is_the_global_mapping():
    x = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 1)).astype("float32")
    out = ContrastLimitedEqualization(tiles=1, clip_limit=1e9)(x).numpy()
    for image, result in zip(x[..., 0].astype(int), out[..., 0]):
        cdf = np.cumsum(np.bincount(image.ravel(), minlength=256))
        np.testing.assert_allclose(result, 255 * cdf[image] / image.size, atol=1e-3)


def test_clahe_equalises_each_region_and_keeps_grey_level_order():
    rng = np.random.default_rng(4)
    x = rng.integers(60, 256, (2, 64, 64, 1)).astype("float32")
    x[:, :, :32] -= 60  # the same texture 60 grey levels darker on the left: an unevenly exposed film
    out = ContrastLimitedEqualization(tiles=4, clip_limit=2.0)(x).numpy()
    assert 0 <= out.min() and out.max() <= 255
    left, right = out[:, 8:-8, 4:24], out[:, 8:-8, 40:60]  # away from the blend across the middle
    assert abs(left.mean() - right.mean()) < 20, "each region is equalised on its own"
    equalised = HistogramEqualization()(x).numpy()
    assert equalised[:, 8:-8, 40:60].mean() - equalised[:, 8:-8, 4:24].mean() > 50, "one histogram keeps the gap"
    brighter = ContrastLimitedEqualization(tiles=4, clip_limit=2.0)(np.minimum(x + 1, 255)).numpy()
    assert (brighter >= out - 1e-3).all(), "one grey level up never maps lower at the same place"


def test_clahe_model_reloads_and_bad_settings_are_named(tmp_path):
    model = compile_model(build_scratch_cnn(32, (4,), equalize="clahe"), 1e-3)
    x = np.random.default_rng(5).integers(0, 255, (3, 32, 32, 1)).astype("float32")
    path = save_model(
        model,
        tmp_path / "clahe.keras",
        image_size=32,
        resize="squash",
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=0.5,
    )
    again, _ = load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="30 x 30 is not a multiple of 4"):
        build_scratch_cnn(30, (4,), equalize="clahe")
    with pytest.raises(ValueError, match="unknown equalize 'local'"):
        build_scratch_cnn(32, (4,), equalize="local")


def test_global_then_local_equalisation_keeps_most_of_the_exposure_invariance():
    from pneumonia_cxr.models import _equalizer

    x = np.random.default_rng(6).integers(0, 256, (2, 32, 32, 1)).astype("float32")
    darker_lower_contrast = np.round(40 + 150 * (x / 255) ** 1.6)

    def apply(names, images):
        for layer in _equalizer(names):
            images = layer(images)
        return np.asarray(images)

    both = np.abs(apply("global+clahe", x) - apply("global+clahe", darker_lower_contrast)).mean()
    local_only = np.abs(apply("clahe", x) - apply("clahe", darker_lower_contrast)).mean()
    assert local_only > 2 * both, "the clip limit alone does not undo a change of exposure; global first does most"


def test_ensemble_of_two_sizes_averages_and_reloads(tmp_path, saved):
    small = saved[0]  # 32 px
    other = compile_model(build_scratch_cnn(48, (4,), name="other_cnn"), 1e-3)
    ensemble = build_ensemble([small, other], 48)
    x = np.random.default_rng(2).integers(0, 255, (3, 48, 48, 1)).astype("float32")
    import keras

    p_small = small.predict(keras.layers.Resizing(32, 32, antialias=True)(x), verbose=0)
    expected = (p_small + other.predict(x, verbose=0)) / 2
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, atol=1e-5)
    path = save_model(
        ensemble,
        tmp_path / "ens.keras",
        image_size=48,
        resize="squash",
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=0.5,
        members=["cnn", "other_cnn"],
    )
    again, meta = load_model(path)
    np.testing.assert_allclose(again.predict(x, verbose=0), expected, atol=1e-5)
    assert meta["members"] == ["cnn", "other_cnn"]


def test_grad_cam_of_an_ensemble_is_the_mean_of_its_members_heat_maps(saved):
    import keras
    import tensorflow as tf

    from pneumonia_cxr.explain import ensemble_members, grad_cam

    small = saved[0]  # 32 px, resized inside the ensemble
    other = compile_model(build_scratch_cnn(48, (4,), name="other_cam"), 1e-3)
    ensemble = build_ensemble([small, other], 48)
    assert ensemble_members(small) == []
    assert [(r is None, m.name) for r, m in ensemble_members(ensemble)] == [(False, small.name), (True, "other_cam")]
    image = np.random.default_rng(3).integers(0, 255, (48, 48)).astype("uint8")
    batch = image[None, ..., None].astype("float32")
    cam, out = grad_cam(ensemble, image, class_index=1)
    assert cam.shape == (48, 48) and 0 <= cam.min() and cam.max() <= 1 + 1e-6
    np.testing.assert_allclose(out, ensemble.predict(batch, verbose=0)[0], atol=1e-5)
    as_small_sees_it = keras.layers.Resizing(32, 32, antialias=True)(batch).numpy()[0, ..., 0]
    own = tf.image.resize(grad_cam(small, as_small_sees_it, 1)[0][..., None], (48, 48))[..., 0].numpy()
    mean = (own + grad_cam(other, image, 1)[0]) / 2
    np.testing.assert_allclose(cam, mean / (mean.max() + 1e-8), atol=1e-5)


def test_predict_batches_lets_a_model_go():
    import gc
    import weakref

    from pneumonia_cxr.inference import predict_batches

    model = build_scratch_cnn(32, (4,))
    predict_batches(model, np.zeros((2, 32, 32), "uint8"))
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None
