"""tf.data pipeline: order, label alignment, seeded reshuffling and acquisition augmentation."""

import numpy as np

from pneumonia_cxr.data import augment_acquisition, class_weights, make_dataset


def images_numbered(n=10, size=16):
    """Image i is filled with the value 10 * i, so any batch says which images it holds."""
    return np.stack([np.full((size, size), 10 * i, np.uint8) for i in range(n)])


def batches(ds):
    return [tuple(t.numpy() for t in b) if isinstance(b, tuple) else b.numpy() for b in ds]


def test_evaluation_batches_keep_order_and_values():
    x = images_numbered()
    out = np.concatenate(batches(make_dataset(x, None, batch_size=4)))
    assert out.shape == (10, 16, 16, 1) and out.dtype == np.uint8  # the cache's dtype; models cast
    np.testing.assert_array_equal(out[..., 0], x)


def test_training_shuffles_with_labels_aligned_and_is_seeded():
    x, y = images_numbered(), np.arange(10)
    ds = make_dataset(x, y, batch_size=3, training=True, seed=1)
    epoch1, epoch2 = batches(ds), batches(ds)
    for images, labels in epoch1 + epoch2:
        np.testing.assert_array_equal(images[:, 0, 0, 0] / 10, labels)  # each label travels with its image
    order = lambda e: np.concatenate([labels for _, labels in e])  # noqa: E731
    assert sorted(order(epoch1)) == list(range(10))
    assert not np.array_equal(order(epoch1), order(epoch2)), "a new order every epoch"
    again = batches(make_dataset(x, y, batch_size=3, training=True, seed=1))
    np.testing.assert_array_equal(order(again), order(epoch1))


def test_epoch_cap_draws_a_fresh_subset_each_epoch_and_is_a_no_op_when_the_set_fits():
    x, y = images_numbered(20), np.arange(20)
    capped = make_dataset(x, y, batch_size=4, training=True, seed=5, augment=1.0, max_batches=3)
    seen = [np.concatenate([labels for _, labels in batches(capped)]) for _ in range(4)]
    assert all(len(s) == 12 and len(set(s)) == 12 for s in seen), "3 full batches of distinct images per epoch"
    assert len({tuple(sorted(s)) for s in seen}) > 1, "another subset every epoch"
    assert len(set(np.concatenate(seen))) > 12, "over epochs more of the set than one epoch holds"
    # 5 batches hold the set: a cap of 5 (or more) gives the same batches, augmentation included, epoch after epoch
    full = make_dataset(x, y, batch_size=4, training=True, seed=5, augment=1.0)
    fits = make_dataset(x, y, batch_size=4, training=True, seed=5, augment=1.0, max_batches=5)
    for _ in range(2):
        for (a, la), (b, lb) in zip(batches(full), batches(fits), strict=True):
            np.testing.assert_array_equal(la, lb)
            np.testing.assert_array_equal(a, b)
    evaluation = make_dataset(x, None, batch_size=4, max_batches=1)
    assert sum(len(b) for b in batches(evaluation)) == 20, "evaluation is never capped"


def test_model_predicts_the_same_from_uint8_and_float_batches():
    from pneumonia_cxr.models import build_scratch_cnn

    x = np.random.default_rng(2).integers(0, 256, (6, 32, 32)).astype(np.uint8)
    model = build_scratch_cnn(32, (4,))
    np.testing.assert_array_equal(
        model.predict(make_dataset(x, None, 3), verbose=0),
        model.predict(x[..., None].astype(np.float32), batch_size=3, verbose=0),
    )


def test_augmentation_is_seeded_bounded_and_changes_images():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 32, 32)).astype(np.uint8)
    run = lambda seed: np.concatenate(
        [
            b[0]
            for b in batches(  # noqa: E731
                make_dataset(x, np.zeros(8), 4, training=True, seed=seed, augment=1.0)
            )
        ]
    )
    a, b, c = run(3), run(3), run(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (8, 32, 32, 1) and a.min() >= 0 and a.max() <= 255
    plain = np.concatenate([b[0] for b in batches(make_dataset(x, np.zeros(8), 4, training=True, seed=3))])
    assert np.abs(np.sort(a.ravel()) - np.sort(plain.ravel())).mean() > 1, "augmentation changed nothing"


def test_zero_strength_augmentation_is_identity():
    x = np.random.default_rng(1).integers(0, 256, (2, 24, 24, 1)).astype(np.float32)
    out = augment_acquisition(x, np.array([1, 2]), strength=0.0).numpy()
    np.testing.assert_allclose(out, x, atol=0.05)


def test_class_weights_balance_the_classes():
    w = class_weights(np.array([0] * 25 + [1] * 75))
    assert np.isclose(w[0] * 25, w[1] * 75)


def _still(pipeline, **ranges):
    """AUGMENTATION with every random range at zero (an identity warp and no intensity change), except `ranges`."""
    still = {k: (0.0, 0.0) if isinstance(v, tuple) else 0.0 for k, v in pipeline.AUGMENTATION.items()}
    return still | {"low_res_scale": (1.0, 1.0)} | ranges


def test_training_widens_pneumonia_images_to_normal_geometry_without_black_bars(monkeypatch):
    """With class_aspect, pneumonia images are widened (their sides cropped) to a NORMAL original's geometry and
    NORMAL images keep theirs. Magnifying, never shrinking: no black border. Without it, no class moves."""
    from pneumonia_cxr.data import pipeline

    monkeypatch.setattr(pipeline, "AUGMENTATION", _still(pipeline))  # nothing moves but the class offset
    x = np.full((4, 64, 64), 50, np.uint8)
    x[:, 22:42, 22:42] = 200  # a bright square, 20 x 20 px
    labels = np.array([0, 1, 0, 1])
    ((images, y),) = batches(make_dataset(x, labels, 4, training=True, seed=0, augment=1.0, class_aspect=True))
    bright = images[..., 0] > 125
    widths, heights = bright[:, 32, :].sum(1), bright[:, :, 32].sum(1)
    factor = np.exp(pipeline.ASPECT_OFFSET)  # the width / height change
    for w, h, label in zip(widths, heights, y):
        expected = (20, 20) if label == 0 else (20 * factor, 20)
        assert abs(w - expected[0]) <= 1.5 and abs(h - expected[1]) <= 1.5, (label, w, h, expected)
    assert images.min() > 25, "no black border added"
    ((plain, _),) = batches(make_dataset(x, labels, 4, training=True, seed=0, augment=1.0))
    assert ((plain[..., 0] > 125).sum((1, 2)) == 400).all(), "no offset by default"


def test_collimator_bands_are_black_edges_of_either_class(monkeypatch):
    """Border augmentation blanks bands of at most border_width along random edges, in NORMAL and pneumonia
    images alike (the natural dark edges of NORMAL images must not stay a shortcut)."""
    from pneumonia_cxr.data import pipeline

    monkeypatch.setattr(pipeline, "AUGMENTATION", _still(pipeline, border_fraction=0.5, border_width=0.1))
    x = np.full((64, 40, 40), 100, np.uint8)
    labels = np.arange(64) % 2
    ((images, y),) = batches(make_dataset(x, labels, 64, training=True, seed=0, augment=1.0))
    images = np.round(images[..., 0])  # gamma 1 leaves a 1e-4 rounding
    assert set(np.unique(images)) <= {0.0, 100.0}
    assert (images[:, 4:-4, 4:-4] == 100).all(), "bands stay within 10% of each side"
    bordered = (images == 0).any((1, 2))
    for label in (0, 1):
        assert 0.1 < bordered[y == label].mean() < 0.6, "both classes get bands, in about border_fraction"
    assert (images == 0).all(2).any() and (images == 0).all(1).any(), "top/bottom and side bands both occur"


def test_grain_is_zero_mean_noise_on_about_noise_fraction_of_the_images(monkeypatch):
    """Grain augmentation adds Gaussian noise (sd up to noise_sd) to some images of either class, nothing else."""
    from pneumonia_cxr.data import pipeline

    monkeypatch.setattr(pipeline, "AUGMENTATION", _still(pipeline, noise_fraction=0.5, noise_sd=8.0))
    x = np.full((64, 32, 32), 100, np.uint8)
    labels = np.arange(64) % 2
    ((images, y),) = batches(make_dataset(x, labels, 64, training=True, seed=0, augment=1.0))
    grain = images[..., 0] - 100.0
    sd = grain.std((1, 2))
    grainy = sd > 0.05
    assert 0.3 < grainy.mean() < 0.7 and grainy[y == 0].any() and grainy[y == 1].any()
    assert sd.max() < 8.5 and abs(grain[grainy].mean()) < 0.2
    assert np.abs(grain[~grainy]).max() < 0.05, "images without grain are left as they were"


def test_jpeg_resave_is_a_real_jpeg_round_trip_on_about_jpeg_fraction_of_the_images(monkeypatch):
    """JPEG augmentation re-saves some images of either class at a quality within jpeg_quality, nothing else."""
    import tensorflow as tf

    from pneumonia_cxr.data import pipeline

    monkeypatch.setattr(pipeline, "AUGMENTATION", _still(pipeline, jpeg_fraction=0.5, jpeg_quality=(30, 95)))
    x = np.random.default_rng(0).integers(60, 200, (32, 16, 16)).astype(np.uint8)  # texture for JPEG to lose
    ((images, index),) = batches(make_dataset(x, np.arange(32), 32, training=True, seed=0, augment=1.0))
    images, x, y = images[..., 0], x[index], index % 2  # shuffled: the "labels" say which image; classes alternate
    changed = np.abs(images - x).max((1, 2)) > 0.5
    assert 0.25 < changed.mean() < 0.75 and changed[y == 0].any() and changed[y == 1].any()
    assert np.abs(images[~changed] - x[~changed]).max() < 0.01, "images not re-saved are left as they were"
    for image, original in zip(images[changed], x[changed]):
        round_trips = [tf.image.adjust_jpeg_quality(original[..., None], q).numpy()[..., 0] for q in range(30, 96)]
        assert any(np.abs(image - r).max() <= 1 for r in round_trips), "a JPEG re-save at a quality in the range"


def test_blur_beyond_one_blends_on_towards_the_twice_blurred_image(monkeypatch):
    """blur k = 1 is one Gaussian blur, k = 2 the same blur twice, k = 1.5 halfway between them."""
    from pneumonia_cxr.data import pipeline

    x = np.random.default_rng(0).integers(0, 256, (2, 24, 24)).astype(np.uint8)
    once = pipeline._gaussian_blur(x[..., None].astype(np.float32))
    twice = pipeline._gaussian_blur(once).numpy()[..., 0]
    once = once.numpy()[..., 0]
    for k, expected in [(1.0, once), (2.0, twice), (1.5, (once + twice) / 2)]:
        monkeypatch.setattr(pipeline, "AUGMENTATION", _still(pipeline, blur=(k, k)))
        (images,) = batches(make_dataset(x, None, 2, training=True, seed=0, augment=1.0))
        np.testing.assert_allclose(images[..., 0], expected, atol=0.01)


def test_class_aspect_ratios_match_the_original_images(real_fullres):
    """ORIGINAL_ASPECT is what the full-resolution originals measure, per class (medians within 0.03)."""
    from pneumonia_cxr.data import build_manifest
    from pneumonia_cxr.data.pipeline import ORIGINAL_ASPECT

    table = build_manifest(real_fullres).table  # it reads each image's header: width and height as stored
    table = table.assign(aspect=table["width"] / table["height"])
    medians = table.groupby(table["label"].str.lower())["aspect"].median()
    for label, expected in ORIGINAL_ASPECT.items():
        assert abs(medians[label] - expected) < 0.03, (label, medians[label], expected)
    assert medians["pneumonia"] - medians["normal"] > 0.2, "the shortcut the offset removes"


def test_blur_amount_is_each_images_own_and_batches_where_no_image_gets_a_step_run(monkeypatch):
    """The twice-blurred copy, the low resolution and the JPEG re-save are computed only for the images that get
    them: every image still lies on its own blur path, and a batch of one (where a step picks no image, or all)
    augments like any other."""
    from pneumonia_cxr.data import pipeline

    x = np.random.default_rng(1).integers(0, 256, (16, 24, 24)).astype(np.uint8)
    once = pipeline._gaussian_blur(x[..., None].astype(np.float32))
    twice = pipeline._gaussian_blur(once).numpy()[..., 0]
    once = once.numpy()[..., 0]
    monkeypatch.setattr(pipeline, "AUGMENTATION", _still(pipeline, blur=(0.0, 2.0)))
    ((images, index),) = batches(make_dataset(x, np.arange(16), 16, training=True, seed=0, augment=1.0))
    beyond_one = 0
    for image, i in zip(images[..., 0], index):
        paths = [(x[i].astype(np.float32), once[i]), (once[i], twice[i])]  # k in [0, 1], then k in [1, 2]
        fits = []
        for start, end in paths:
            step = (end - start).ravel()
            k = np.clip(step @ (image - start).ravel() / (step @ step), 0, 1)
            fits.append(np.abs(start + k * (end - start) - image).max())
        assert min(fits) < 0.01, f"image {i} is off its blur path by {min(fits):.3f}"
        beyond_one += fits[1] < fits[0]
    assert 0 < beyond_one < 16, "some images blurred beyond one blur, some not"
    monkeypatch.undo()
    for seed in range(12):  # full-strength augmentation, one image a batch
        (single,) = batches(make_dataset(x[:1], None, 1, training=True, seed=seed, augment=1.0))
        assert single.shape == (1, 24, 24, 1) and 0 <= single.min() and single.max() <= 255


def test_cpu_training_batches_are_the_autotuned_pipelines(monkeypatch):
    """Without a GPU the augmented training pipeline runs with fixed threads instead of autotuned ones (they compete
    with the model for the cores); the batches are the same either way, epoch after epoch."""
    import tensorflow as tf

    x = np.random.default_rng(2).integers(0, 256, (40, 32, 32)).astype(np.uint8)
    labels = np.arange(40) % 2

    def two_epochs():
        ds = make_dataset(x, labels, 8, training=True, seed=5, augment=1.0)
        return ds, [batches(ds) for _ in range(2)]

    cpu, on_cpu = two_epochs()
    assert not cpu.options().autotune.enabled
    real = tf.config.list_physical_devices
    monkeypatch.setattr(
        tf.config, "list_physical_devices", lambda kind=None: ["GPU:0"] if kind == "GPU" else real(kind)
    )
    gpu, on_gpu = two_epochs()
    assert gpu.options().autotune.enabled is not False
    for epoch_cpu, epoch_gpu in zip(on_cpu, on_gpu):
        for (a, ya), (b, yb) in zip(epoch_cpu, epoch_gpu):
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(on_cpu[0][0][0], on_cpu[1][0][0]), "each epoch reshuffles and re-augments"
