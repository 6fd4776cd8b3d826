"""tf.data on top of the image cache: shuffle, augment, batch, prefetch; and class weights."""

from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight


def xray_augmentation(seed: int, strength: float = 1.0):
    """Augment acquisition, not anatomy: small rotations, shifts and zoom; contrast and brightness.

    Never flips: a vertically flipped chest does not occur, and a horizontal flip moves the heart.
    """
    import keras

    s = strength
    return keras.Sequential(
        [
            keras.layers.RandomRotation(0.03 * s, fill_mode="constant", seed=seed),  # about +-10 degrees
            keras.layers.RandomTranslation(0.05 * s, 0.05 * s, fill_mode="constant", seed=seed + 1),
            keras.layers.RandomZoom((-0.1 * s, 0.1 * s), fill_mode="constant", seed=seed + 2),
            keras.layers.RandomContrast(0.3 * s, value_range=(0, 255), seed=seed + 3),
            keras.layers.RandomBrightness(0.15 * s, value_range=(0, 255), seed=seed + 4),
        ],
        name="xray_augmentation",
    )


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    batch_size: int = 32,
    training: bool = False,
    seed: int = 42,
    augment=None,
):
    """Batches of float32 (B, H, W, 1) images in [0, 255] (models rescale), with labels if given."""
    import tensorflow as tf

    x = images[..., None] if images.ndim == 3 else images
    ds = tf.data.Dataset.from_tensor_slices(x if labels is None else (x, labels))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def to_float(*item):
        image = tf.cast(item[0], tf.float32)
        if training and augment is not None:
            image = augment(image, training=True)
        return image if labels is None else (image, item[1])

    return ds.map(to_float, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """'Balanced' weights so each class counts equally in the loss."""
    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights)}
