"""Mixup: blends within a batch, labels in the same proportion as the images, seeded, weights for blended labels."""

import numpy as np
import pytest

from pneumonia_cxr.data import make_dataset
from pneumonia_cxr.data.mixup import mixup


def batches(ds):
    return [tuple(t.numpy() for t in b) for b in ds]


def two_classes(n=16, size=8):
    """Normal images are 0, pneumonia images 200: a blend's grey level says its pneumonia share."""
    y = np.arange(n) % 2
    return np.stack([np.full((size, size), 200 * c, np.uint8) for c in y]), y


def test_labels_blend_in_the_proportion_of_the_images():
    x, y = two_classes()
    out = batches(mixup(make_dataset(x, y, batch_size=8, training=True, seed=3), alpha=0.4, seed=3))
    images = np.concatenate([b[0] for b in out])
    labels = np.concatenate([b[1] for b in out])
    assert images.dtype == np.float32 and images.shape == (16, 8, 8, 1)
    share = images[:, 0, 0, 0] / 200  # every pixel of an image is blended alike
    np.testing.assert_allclose(images.reshape(16, -1).std(1), 0, atol=1e-4)
    np.testing.assert_allclose(share, labels, atol=1e-5)
    assert ((labels >= 0) & (labels <= 1)).all()
    assert ((labels > 0) & (labels < 1)).any(), "alpha 0.4 over 16 images mixes some pairs of different classes"


def test_each_image_keeps_the_larger_share_of_its_blend():
    n = 8  # image i is grey level 10 * i with label one-hot i: a blend's label row says who is in it, and how much
    x, onehot = np.stack([np.full((4, 4), 10 * i, np.uint8) for i in range(n)]), np.eye(n, dtype=np.float32)
    images, labels = batches(mixup(make_dataset(x, onehot, batch_size=n), alpha=1.0, seed=2))[0]  # in order
    assert np.diag(labels).min() >= 0.5  # image i's own share
    assert (labels.max(1) < 1).any(), "alpha 1 blends most images"
    np.testing.assert_allclose(images[:, 0, 0, 0], labels @ (10 * np.arange(n)), atol=1e-3)


def test_the_same_seed_gives_the_same_batches_and_every_epoch_new_ones():
    x, y = two_classes()
    make = lambda s: mixup(make_dataset(x, y, batch_size=8, training=True, seed=1), seed=s)  # noqa: E731
    ds = make(1)
    first, second = batches(ds), batches(ds)
    again = batches(make(1))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[1], b[1])
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, second)), "another blend every epoch"
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, batches(make(2)))), "the seed matters"


def test_one_hot_rows_blend_and_stay_distributions():
    x, y = two_classes()
    onehot = np.eye(3, dtype=np.float32)[y * 2]  # normal and viral columns
    out = batches(mixup(make_dataset(x, onehot, batch_size=8, training=True, seed=4), seed=4))
    labels = np.concatenate([b[1] for b in out])
    assert labels.shape == (16, 3)
    np.testing.assert_allclose(labels.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(labels[:, 1], 0)
    images = np.concatenate([b[0] for b in out])
    np.testing.assert_allclose(images[:, 0, 0, 0] / 200, labels[:, 2], atol=1e-5)


def test_class_weights_become_sample_weights_of_the_blended_label():
    x, y = two_classes()
    out = batches(mixup(make_dataset(x, y, batch_size=8, training=True, seed=5), seed=5, class_weight={0: 2.0, 1: 0.5}))
    assert all(len(b) == 3 for b in out)
    labels = np.concatenate([b[1] for b in out])
    weights = np.concatenate([b[2] for b in out])
    np.testing.assert_allclose(weights, 2.0 - 1.5 * labels, atol=1e-6)


def test_bad_settings_are_refused():
    x, y = two_classes()
    ds = make_dataset(x, y, batch_size=8, training=True)
    with pytest.raises(ValueError, match="alpha > 0"):
        mixup(ds, alpha=0)
    onehot = np.eye(2, dtype=np.float32)[y]
    with pytest.raises(ValueError, match="0/1 labels"):
        mixup(make_dataset(x, onehot, batch_size=8, training=True), class_weight={0: 1.0, 1: 1.0})
