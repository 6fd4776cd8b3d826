"""tf.data on top of the image cache: shuffle indices, gather a batch, augment it, prefetch; class weights.

Batches are gathered from the in-memory uint8 cache by index (one gather per batch, not one element at a
time), and augmentation is a handful of fused, batched TF ops with stateless seeds: fast on two cores
and the same for the same seed.
"""

from __future__ import annotations

import math

import numpy as np

# Acquisition augmentation at strength 1: ranges of the per-image random draws
AUGMENTATION = {
    "rotation_deg": 8.0,  # patient positioning
    # Field of view (a smaller or bigger child, a looser or tighter collimation): scale 1 +- 0.30. At +-0.10 (in an
    # earlier run) every CNN called NORMALs pneumonia when the image was magnified x1.3 (validation specificity 0.98 ->
    # 0.51-0.69) or shrunk x0.7 (-> 0.26-0.80), AUC still 0.97-0.99: the official test's symptom again.
    "zoom": 0.30,
    "aspect": 0.5,  # width / height stretch exp(U(-0.5, 0.5)), any class: wide enough to drown the class gap below
    "shift": 0.05,  # fraction of the image side
    "gamma": 0.4,  # exp(U(-0.4, 0.4)): film / detector response curve
    "contrast": 0.3,  # x(1 +- 0.3) about the image mean
    "brightness": 25.0,  # +- grey levels
    # blend towards a Gaussian blur of sd 1.5 px (0 -> 1), on towards that blur applied twice (1 -> 2, sd 2.1 px), or
    # away from it, i.e. sharpen (< 0). Up to 1.0 (earlier) the blurred NORMALs of the hold-out lost specificity
    # (scratch CNN 0.92 -> 0.84 under blur r=1.5, tuned CNN 0.90 -> 0.75): blur was at the edge of what training saw.
    "blur": (-0.6, 1.6),
    "low_res_fraction": 0.3,  # images of a batch shown at a lower resolution (down- then up-sampled)
    "low_res_scale": (0.4, 0.9),
    "border_fraction": 0.3,  # images given collimator bands: black along random edges, whatever the class
    "border_width": 0.10,  # each band up to this fraction of the image side
    # Grain: without it, Gaussian noise of 5 grey levels made earlier scratch and transfer CNNs call nearly every
    # NORMAL validation image pneumonia (specificity 0.98 -> 0.02 and 0.99 -> 0.16, AUC still 0.99): texture read as
    # opacity, the official test's symptom (sensitivity near 1, specificity low). Detectors and doses differ in noise.
    "noise_fraction": 0.5,  # images of a batch given Gaussian grain
    "noise_sd": 8.0,  # its standard deviation, U(0, 8) grey levels
    # Compression: earlier fine-tuned MobileNetV2 lost hold-out specificity 0.97 -> 0.865 when images were re-saved
    # at JPEG quality 50, and changed its decision on 10% of the 376 full-resolution originals between their 224 px
    # release (quality 75) and this project's own decode: it read compression texture. An archive or export re-saves.
    "jpeg_fraction": 0.5,  # images of a batch re-saved as JPEG, last, as an export would
    "jpeg_quality": (30, 95),
}


# Median width / height of the originals (chest_xray_fullres_sample, 120 images a subtype): NORMAL 1.21,
# bacterial 1.51, viral 1.52. Squashed to a square, a pneumonia original (wider, more of the sides in view) ends up
# with a narrower chest than a normal one, so geometry could separate the classes in this release. Every training
# image gets a random width / height stretch, the same for both classes (AUGMENTATION["aspect"]). A class offset on
# top of it (`class_aspect=True`: pneumonia widened by the whole gap, sides cropped) made things worse: the CNN
# learnt the crop instead. Validation, 8-epoch checks, NORMAL specificity when every image's sides are cropped
# (x1.26): no offset 0.99 -> 0.99, pneumonia widened 0.98 -> 0.89, both classes moved half the gap (earlier)
# 0.97 -> 0.69. Without the offset, a stretch of +-0.3 still left a shape cue (NORMALs narrowed x1.26: specificity
# -0.02 for the CNN, -0.08 for earlier ensemble; pneumonia widened: sensitivity -0.04); +-0.5 took it to 0.00 / -0.015.
ORIGINAL_ASPECT = {"normal": 1.21, "pneumonia": 1.52}
ASPECT_OFFSET = math.log(ORIGINAL_ASPECT["pneumonia"] / ORIGINAL_ASPECT["normal"])  # log width / height


def _gaussian_blur(images, sigma: float = 1.5):
    import tensorflow as tf

    radius = math.ceil(2 * sigma)
    g = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    g = tf.constant(g / g.sum(), tf.float32)
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    out = tf.nn.conv2d(padded, tf.reshape(g, [-1, 1, 1, 1]), 1, "VALID")  # separable: rows, then columns
    return tf.nn.conv2d(out, tf.reshape(g, [1, -1, 1, 1]), 1, "VALID")


def _only(picked, x, fn):
    """`x` with `fn(images, where)` in place of the images `picked` ((B,) bool); `where` holds their indices, (n, 1).

    Computed for those images alone: the same pixels as computing it for the whole batch and keeping theirs, since
    each image is processed on its own, at a fraction of the time (a JPEG re-save for half a batch, not all of it).
    """
    import tensorflow as tf

    where = tf.where(picked)
    return tf.cond(  # none picked: x as it is (a reflected pad cannot take an empty batch)
        tf.size(where) > 0, lambda: tf.tensor_scatter_nd_update(x, where, fn(tf.gather_nd(x, where), where)), lambda: x
    )


def augment_acquisition(images, seed, strength: float = 1.0, normal=None):
    """Augment how an X-ray was acquired, not the anatomy, for a float (B, H, W, 1) batch in [0, 255].

    Per image: small rotation, zoom, width/height stretch and shift (one affine warp); with `normal`, a
    (B,) bool tensor of which images are NORMAL, pneumonia images are also widened by `ASPECT_OFFSET`, to a NORMAL
    original's geometry (the ablation of notebook 03; off by default, see above); gamma, contrast and brightness;
    blur or sharpen; for some images a lower resolution, for some black bands along random edges (collimation), for
    some Gaussian grain (detector noise), and for some a JPEG re-save (an export).
    Never flips: a mirrored chest moves the heart. (Longer than most functions: each augmentation draws from the
    seeded stream in this order, and one body keeps that order, which decides every training batch, in view.)
    `seed` is a stateless seed, shape (2,): the same seed gives the same batch.
    """
    import tensorflow as tf

    a, s = AUGMENTATION, strength
    shape = tf.shape(images)
    b, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 19)

    def uniform(i, lo, hi, n=None, k=None):
        shape = [b if n is None else n] + ([] if k is None else [k])
        return tf.random.stateless_uniform(shape, seeds[i], lo, hi)

    # one affine warp = rotation, zoom, aspect stretch and shift; it maps output pixels to input pixels
    theta = uniform(0, -1.0, 1.0) * a["rotation_deg"] * s * math.pi / 180
    zoom = 1 + uniform(1, -1.0, 1.0) * a["zoom"] * s
    log_aspect = uniform(10, -1.0, 1.0) * a["aspect"] * s  # log of the width / height stretch
    if normal is not None:
        log_aspect += tf.where(normal, 0.0, ASPECT_OFFSET) * min(s, 1.0)
    # The stretch magnifies one axis and never shrinks the other, and the warp fills with reflected content, not
    # black: black bars whose orientation followed the class were a shortcut of their own in an earlier version.
    zx, zy = zoom * tf.exp(tf.maximum(log_aspect, 0.0)), zoom * tf.exp(tf.maximum(-log_aspect, 0.0))
    tx, ty = uniform(2, -1.0, 1.0) * a["shift"] * s * w, uniform(3, -1.0, 1.0) * a["shift"] * s * h
    cos, sin = tf.cos(theta), tf.sin(theta)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    zeros = tf.zeros_like(cos)
    a0, a1, b0, b1 = cos / zx, sin / zx, -sin / zy, cos / zy
    transforms = tf.stack(
        [a0, a1, cx - a0 * cx - a1 * cy - tx, b0, b1, cy - b0 * cx - b1 * cy - ty, zeros, zeros], axis=1
    )
    x = tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=shape[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )

    # a lower resolution for some images (one random scale per batch)
    scale = uniform(4, *a["low_res_scale"], n=1)[0]
    small = tf.cast(tf.round(tf.cast(shape[1:3], tf.float32) * scale), tf.int32)
    pick = uniform(5, 0.0, 1.0) < a["low_res_fraction"] * min(s, 1.0)
    x = _only(pick, x, lambda v, _: tf.image.resize(tf.image.resize(v, small, "bilinear"), shape[1:3], "bilinear"))

    # Collimator bands on random edges (top, bottom, left, right), the same for every class: in this release
    # NORMAL images have darker edges, and a CNN trained without this lost most of its sensitivity to black
    # bands at top and bottom (scratch_cnn_robustness.csv of an earlier run).
    bordered = uniform(11, 0.0, 1.0) < a["border_fraction"] * min(s, 1.0)
    edges = (uniform(12, 0.0, 1.0, k=4) < 0.5) & bordered[:, None]
    width = tf.where(edges, uniform(13, 0.0, a["border_width"] * s, k=4), 0.0)  # fractions of the side
    rows, cols = tf.range(h)[None, :] / h, tf.range(w)[None, :] / w
    keep_rows = (rows >= width[:, :1]) & (rows < 1 - width[:, 1:2])
    keep_cols = (cols >= width[:, 2:3]) & (cols < 1 - width[:, 3:])
    x = x * tf.cast(keep_rows[:, :, None, None] & keep_cols[:, None, :, None], tf.float32)

    # sharpen (k < 0) or blur (0 < k <= 1) by blending with a Gaussian-blurred copy; blur more (1 < k <= 2) by
    # blending that copy with one blurred twice
    k = uniform(6, a["blur"][0] * s, a["blur"][1] * s)[:, None, None, None]
    blurred = _gaussian_blur(x)
    x = tf.where(k <= 1, x + k * (blurred - x), blurred)
    x = _only(k[:, 0, 0, 0] > 1, x, lambda v, i: v + (tf.gather_nd(k, i) - 1) * (_gaussian_blur(v) - v))
    x = tf.clip_by_value(x, 0.0, 255.0)

    # gamma, then contrast about the image mean, then brightness
    gamma = tf.exp(uniform(7, -a["gamma"] * s, a["gamma"] * s))[:, None, None, None]
    x = 255.0 * tf.pow(x / 255.0 + 1e-6, gamma)
    contrast = (1 + uniform(8, -a["contrast"] * s, a["contrast"] * s))[:, None, None, None]
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    brightness = uniform(9, -a["brightness"] * s, a["brightness"] * s)[:, None, None, None]
    x = (x - mean) * contrast + mean + brightness

    # grain last, as the detector adds it to whatever exposure the image had
    grainy = uniform(14, 0.0, 1.0) < a["noise_fraction"] * min(s, 1.0)
    sd = tf.where(grainy, uniform(15, 0.0, a["noise_sd"] * s), 0.0)[:, None, None, None]
    x = x + sd * tf.random.stateless_normal(shape, seeds[16])
    x = tf.clip_by_value(x, 0.0, 255.0)

    # a JPEG re-save for some images, at a random quality (encoded and decoded one image at a time)
    if a["jpeg_fraction"] * s > 0:
        resaved = uniform(17, 0.0, 1.0) < a["jpeg_fraction"] * min(s, 1.0)
        quality = tf.cast(tf.round(uniform(18, *a["jpeg_quality"])), tf.int32)
        x = _only(
            resaved,
            x,
            lambda v, i: tf.map_fn(
                lambda args: tf.image.adjust_jpeg_quality(args[0] / 255.0, args[1]) * 255.0,
                (v, tf.gather_nd(quality, i)),
                fn_output_signature=tf.float32,
            ),
        )
    return x


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray | None = None,
    batch_size: int = 32,
    training: bool = False,
    seed: int = 42,
    augment: float = 0.0,
    class_aspect: bool = False,
    max_batches: int | None = None,
):
    """Batches of (B, H, W, 1) images in [0, 255], with labels if given.

    Without augmentation batches keep the cache's dtype (uint8: a quarter of float32's memory traffic;
    Keras casts to the model's float input); augmented batches are float32. `training` reshuffles every
    epoch; `augment` > 0 applies augment_acquisition at that strength (training only). `class_aspect=True` tells it
    which images are NORMAL (label 0, or one-hot column 0) and widens the others by ASPECT_OFFSET: the ablation of
    notebook 03, not the default (it teaches a crop shortcut, see ORIGINAL_ASPECT above). `max_batches` caps a
    training epoch: a larger training set then gives each epoch a fresh sample of that many batches rather than a
    longer epoch (a fixed time budget); at or above the number of batches it changes nothing.
    Evaluation batches keep the order of `images`.
    """
    import tensorflow as tf

    x = tf.constant(images[..., None] if images.ndim == 3 else images)  # stays uint8 in memory
    y = None if labels is None else tf.constant(np.asarray(labels))
    ds = tf.data.Dataset.range(len(images))
    if training:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if training and max_batches:  # after the reshuffle, so every epoch draws another subset
        ds = ds.take(max_batches)
    augmenting = training and augment > 0
    if augmenting:  # one fresh stateless seed per batch, from a seeded stream that changes every epoch
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds)

    def gather(index, batch_seed=None):
        image = tf.gather(x, index)
        label = None if y is None else tf.gather(y, index)
        if augmenting:
            normal = None
            if class_aspect and label is not None:
                normal = label == 0 if label.shape.rank == 1 else label[:, 0] > 0.5
            image = augment_acquisition(tf.cast(image, tf.float32), batch_seed, augment, normal)
        return image if label is None else (image, label)

    if augmenting and tf.config.list_physical_devices("GPU"):  # the model runs elsewhere: use the cores
        return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)
    # On the CPU the model needs the cores too, and tf.data's autotuned threads compete with it: some epochs took 1.5
    # to 2 times as long as the others (docs/design_evidence.md, "Speed on two cores"). Fixed settings instead; the
    # batches are the same either way (in order, one stateless seed per batch).
    options = tf.data.Options()
    options.autotune.enabled = False
    if not augmenting:  # a gather per batch
        return ds.map(gather).prefetch(1).with_options(options)
    return ds.map(gather, num_parallel_calls=2, deterministic=True).prefetch(2).with_options(options)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """'Balanced' weights so each class counts equally in the loss."""
    from sklearn.utils.class_weight import compute_class_weight  # here: `predict` imports this package

    classes = np.unique(labels)
    weights = compute_class_weight("balanced", classes=classes, y=labels)
    return {int(c): float(w) for c, w in zip(classes, weights)}
