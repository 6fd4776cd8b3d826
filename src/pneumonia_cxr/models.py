"""One short builder per model family. Every model takes (size, size, 1) grayscale in [0, 255].

Models are plain keras.Sequential chains of built-in or registered layers, so they save in the
Keras 3 format, reload with safe_mode=True, and Grad-CAM can walk them layer by layer.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="pneumonia_cxr")
class PerImageStandardization(layers.Layer):
    """Zero mean, unit variance per image: removes exposure and contrast differences between sites."""

    def call(self, x):
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        std = ops.std(x, axis=(1, 2, 3), keepdims=True)
        return (x - mean) / ops.maximum(std, 1e-3)


@keras.saving.register_keras_serializable(package="pneumonia_cxr")
class HistogramEqualization(layers.Layer):
    """Equalise each image's grey-level histogram: any monotone change of exposure, contrast or gamma
    between machines maps to (nearly) the same image. Input and output in [0, 255]."""

    def call(self, x):
        import tensorflow as tf  # bincount and batched gather have no keras.ops equivalent

        shape = tf.shape(x)
        levels = tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.int32)
        flat = tf.reshape(levels, [shape[0], -1])
        hist = tf.math.bincount(flat, minlength=256, maxlength=256, axis=-1, dtype=tf.float32)
        cdf = tf.cumsum(hist, axis=1)
        cdf_min = tf.reduce_min(tf.where(hist > 0, cdf, tf.reduce_max(cdf, 1, keepdims=True)), 1, keepdims=True)
        lut = 255.0 * (cdf - cdf_min) / tf.maximum(cdf[:, -1:] - cdf_min, 1.0)
        return tf.reshape(tf.gather(lut, flat, batch_dims=1), shape)


@keras.saving.register_keras_serializable(package="pneumonia_cxr")
class ContrastLimitedEqualization(layers.Layer):
    """CLAHE (Zuiderveld 1994): equalise each of `tiles` x `tiles` regions with its histogram clipped at
    `clip_limit` times the mean bin count, blending the four nearest regions' mappings bilinearly. Local
    exposure and contrast differences (a brighter side, a denser film edge) go too. Input and output in [0, 255]."""

    def __init__(self, tiles: int = 4, clip_limit: float = 2.0, **kwargs):
        super().__init__(**kwargs)
        self.tiles, self.clip_limit = int(tiles), float(clip_limit)

    def build(self, input_shape):
        h, w = input_shape[1], input_shape[2]
        if h is None or w is None or h % self.tiles or w % self.tiles:
            raise ValueError(
                f"ContrastLimitedEqualization: image size {h} x {w} is not a multiple of {self.tiles} tiles"
            )
        # per pixel: the two nearest tile centres along each axis and the bilinear weight of the second
        self._grid = [self._neighbours(n, n // self.tiles) for n in (h, w)]

    def _neighbours(self, n: int, tile: int):
        centre = (np.arange(n) + 0.5) / tile - 0.5
        first = np.clip(np.floor(centre), 0, self.tiles - 1).astype("int32")
        second = np.minimum(first + 1, self.tiles - 1)
        return first, second, np.clip(centre - first, 0, 1).astype("float32")

    def call(self, x):
        import tensorflow as tf  # bincount and batched gather have no keras.ops equivalent

        t, (h, w) = self.tiles, x.shape[1:3]
        th, tw = h // t, w // t
        levels = tf.cast(tf.clip_by_value(tf.round(x[..., 0]), 0, 255), tf.int32)  # (B, H, W)
        per_tile = tf.reshape(tf.transpose(tf.reshape(levels, [-1, t, th, t, tw]), [0, 1, 3, 2, 4]), [-1, th * tw])
        hist = tf.math.bincount(per_tile, minlength=256, maxlength=256, axis=-1, dtype=tf.float32)
        limit = max(self.clip_limit * th * tw / 256, 1.0)
        excess = tf.reduce_sum(tf.nn.relu(hist - limit), axis=1, keepdims=True)
        hist = tf.minimum(hist, limit) + excess / 256  # clipped counts spread evenly over all levels
        lut = tf.reshape(255.0 * tf.cumsum(hist, axis=1) / (th * tw), [-1, t * t * 256])  # (B, tiles * levels)
        flat = tf.reshape(levels, [-1, h * w])
        (y0, y1, wy), (x0, x1, wx) = self._grid

        def mapped(ty, tx):  # every pixel through the mapping of tile (ty, tx) of its row and column
            index = ((ty[:, None] * t + tx[None, :]) * 256).reshape(1, -1)
            return tf.reshape(tf.gather(lut, flat + index, batch_dims=1), [-1, h, w])

        wy, wx = wy[:, None], wx[None, :]
        out = (1 - wy) * ((1 - wx) * mapped(y0, x0) + wx * mapped(y0, x1)) + wy * (
            (1 - wx) * mapped(y1, x0) + wx * mapped(y1, x1)
        )
        return out[..., None]

    def get_config(self):
        return {**super().get_config(), "tiles": self.tiles, "clip_limit": self.clip_limit}


# name -> the equalisation layers a model starts with; "global+clahe": exposure-invariant first, then local
EQUALIZERS = {
    "global": (HistogramEqualization,),
    "clahe": (ContrastLimitedEqualization,),
    "global+clahe": (HistogramEqualization, ContrastLimitedEqualization),
}


def _equalizer(equalize) -> list:
    """`equalize`: a name of EQUALIZERS ('global' also as True), or None / False for none."""
    if equalize is True:
        equalize = "global"
    if not equalize:
        return []
    if equalize not in EQUALIZERS:
        raise ValueError(f"unknown equalize {equalize!r}; choose one of {sorted(EQUALIZERS)} or None")
    return [layer(dtype="float32") for layer in EQUALIZERS[equalize]]  # grey levels need float32 under bfloat16


@keras.saving.register_keras_serializable(package="pneumonia_cxr")
class GrayToRGB(layers.Layer):
    """Repeat the gray channel three times for ImageNet backbones."""

    def call(self, x):
        return ops.repeat(x, 3, axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 3)


def _head(n_classes: int):
    # one sigmoid unit for normal vs pneumonia, a softmax for normal / bacterial / viral; float32 even when the
    # layers below compute in bfloat16 (distribute.use_precision): probabilities keep their resolution
    if n_classes <= 2:
        return layers.Dense(1, activation="sigmoid", name="pneumonia_probability", dtype="float32")
    return layers.Dense(n_classes, activation="softmax", name="class_probabilities", dtype="float32")


def build_dense_baseline(image_size: int, units: int = 128, n_classes: int = 2) -> keras.Model:
    """The floor: a flat dense network on raw pixels, no notion of space."""
    return keras.Sequential(
        [
            keras.Input((image_size, image_size, 1)),
            layers.Rescaling(1 / 255),
            layers.Flatten(),
            layers.Dense(units, activation="relu"),
            layers.Dropout(0.3),
            _head(n_classes),
        ],
        name="dense_baseline",
    )


def build_scratch_cnn(
    image_size: int,
    filters: tuple[int, ...] = (16, 32, 64, 96, 128),
    dropout: float = 0.3,
    n_classes: int = 2,
    equalize: str | bool | None = "global",
    name: str = "scratch_cnn",
) -> keras.Model:
    """Conv-BN-ReLU-pool blocks, global pooling, dropout: small enough to train on a CPU.

    `equalize` (a name of EQUALIZERS, or None) puts histogram equalisation before per-image standardisation
    (acquisition invariance).
    """
    blocks = []
    for f in filters:
        blocks += [
            layers.Conv2D(f, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.MaxPooling2D(),
        ]
    return keras.Sequential(
        [
            keras.Input((image_size, image_size, 1)),
            *_equalizer(equalize),
            PerImageStandardization(dtype="float32"),  # a mean over every pixel: float32 under bfloat16 too
            *blocks,
            layers.GlobalAveragePooling2D(),
            layers.Dropout(dropout),
            _head(n_classes),
        ],
        name=name,
    )


# backbone name -> (keras.applications constructor, layers mapping [0, 255] RGB to its input range)
_IMAGENET_MEAN, _IMAGENET_VAR = [0.485, 0.456, 0.406], [0.229**2, 0.224**2, 0.225**2]
BACKBONES = {
    "MobileNetV2": (keras.applications.MobileNetV2, lambda: [layers.Rescaling(1 / 127.5, offset=-1)]),
    "InceptionV3": (keras.applications.InceptionV3, lambda: [layers.Rescaling(1 / 127.5, offset=-1)]),
    "ResNet50V2": (keras.applications.ResNet50V2, lambda: [layers.Rescaling(1 / 127.5, offset=-1)]),
    "DenseNet121": (
        keras.applications.DenseNet121,
        lambda: [layers.Rescaling(1 / 255), layers.Normalization(mean=_IMAGENET_MEAN, variance=_IMAGENET_VAR)],
    ),
    "EfficientNetB0": (keras.applications.EfficientNetB0, lambda: []),  # rescales inside
}


def build_transfer_model(
    image_size: int,
    backbone: str = "MobileNetV2",
    weights: str | Path | None = "imagenet",
    alpha: float | None = 0.35,
    dropout: float = 0.3,
    n_classes: int = 2,
    equalize: str | bool | None = "global",
) -> keras.Model:
    """An ImageNet backbone (frozen at first) under a pooled, dropout-regularised head.

    `weights` is 'imagenet' (downloads on first use), a local weights file (offline), or None;
    `equalize` (a name of EQUALIZERS, or None) equalises the gray image's histogram first.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")
    constructor, preprocess = BACKBONES[backbone]
    kwargs = {"alpha": alpha} if backbone == "MobileNetV2" and alpha else {}
    weights = str(weights) if isinstance(weights, Path) else weights
    base = constructor(include_top=False, weights=weights, input_shape=(image_size, image_size, 3), **kwargs)
    base.trainable = False
    return keras.Sequential(
        [
            keras.Input((image_size, image_size, 1)),
            *_equalizer(equalize),
            GrayToRGB(),
            *preprocess(),
            base,
            layers.GlobalAveragePooling2D(),
            layers.Dropout(dropout),
            _head(n_classes),
        ],
        name=f"transfer_{backbone.lower()}",
    )


def unfreeze_top(model: keras.Model, n_layers: int) -> None:
    """Fine-tuning: make the top `n_layers` of the backbone trainable, BatchNorm kept frozen."""
    base = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    base.trainable = True
    for i, layer in enumerate(base.layers):
        top = i >= len(base.layers) - n_layers
        layer.trainable = top and not isinstance(layer, layers.BatchNormalization)


def build_ensemble(members: list[keras.Model], image_size: int, name: str = "ensemble") -> keras.Model:
    """Average the members' probabilities; each member sees the input resized to its own size.

    Models trained at different sizes and from different starts make different mistakes, and their
    average is usually better calibrated and steadier under a shift than any one of them.
    """
    inputs = keras.Input((image_size, image_size, 1))
    outputs = []
    for member in members:
        size = member.input_shape[1]
        x = (
            inputs
            if size == image_size
            else layers.Resizing(size, size, antialias=True, name=f"to_{member.name}", dtype="float32")(inputs)
        )
        outputs.append(member(x))
    return keras.Model(inputs, layers.Average(name="mean_probability", dtype="float32")(outputs), name=name)
