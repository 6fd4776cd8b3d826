"""Mixup (Zhang et al., ICLR 2018): each training image blended with another of its batch, their labels likewise.

A lever checked on validation and left out of the profile: `benchmarks/mixup_check.py` trains a binary CNN with and
without it (`reports/metrics/mixup_check.csv`, notebook 04's record: a small gain for the MobileNetV2 alone, none
inside the ensemble); notebook 05's record has the ternary check.
"""

from __future__ import annotations

SEED_OFFSET = 1_000_003  # its own random stream, apart from make_dataset's augmentation stream of the same seed


def mixup(ds, alpha: float = 0.2, seed: int = 42, class_weight: dict[int, float] | None = None):
    """Map batches of (images, labels) from `make_dataset(..., training=True)` to mixed batches.

    The weight of the first image is drawn from Beta(alpha, alpha) and folded to at least 0.5, so each image stays
    the larger part of its blend; its partner is another image of the same batch (a random permutation), and the
    label (0/1, or one-hot rows) is blended in the same proportion. Stateless draws from a seeded stream that changes
    every epoch: the same seed gives the same batches. Keras' `class_weight` cannot weight a blended label, so with
    `class_weight` ({0: w0, 1: w1}, binary labels only) the batches become (images, labels, sample weights), the weight
    interpolated the same way: pass no class_weight to `fit` then.
    """
    import tensorflow as tf

    if not alpha > 0:
        raise ValueError(f"mixup needs alpha > 0, got {alpha}")
    if class_weight is not None and ds.element_spec[1].shape.rank != 1:
        raise ValueError("class_weight with mixup needs 0/1 labels, not one-hot rows")
    seeds = tf.data.Dataset.random(seed=seed + SEED_OFFSET, rerandomize_each_iteration=True).batch(2).batch(3)

    def blend(batch, s):
        images, labels = batch
        n = tf.shape(images)[0]
        a = tf.random.stateless_gamma([n], s[0], alpha)
        b = tf.random.stateless_gamma([n], s[1], alpha)
        lam = a / (a + b)
        lam = tf.maximum(lam, 1.0 - lam)
        partner = tf.random.experimental.stateless_shuffle(tf.range(n), seed=s[2])
        images = tf.cast(images, tf.float32)
        labels = tf.cast(labels, tf.float32)
        li = tf.reshape(lam, [-1] + [1] * (len(images.shape) - 1))
        ll = tf.reshape(lam, [-1] + [1] * (len(labels.shape) - 1))
        images = li * images + (1.0 - li) * tf.gather(images, partner)
        labels = ll * labels + (1.0 - ll) * tf.gather(labels, partner)
        if class_weight is None:
            return images, labels
        w0, w1 = float(class_weight[0]), float(class_weight[1])
        return images, labels, w0 + (w1 - w0) * labels

    return (
        tf.data.Dataset.zip(ds, seeds)
        .map(blend, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
