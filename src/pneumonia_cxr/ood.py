"""Is this a frontal chest X-ray? An out-of-distribution check to run before any pneumonia call.

Invariant: the check is fitted on the training images of the patient split only and its threshold is chosen on the
validation images only; the test images are scored for the report (false rejections), never to choose anything.

Method (after Lee et al. 2018, "A simple unified framework for detecting out-of-distribution samples"): an image,
squashed to 224 px as the decoder squashes, gives five feature groups: the channel means of three layers of ImageNet
MobileNetV2 (alpha 0.35, no top; independent of the pneumonia models, so retraining them never invalidates the
check), from texture to shape, and a dozen cheap image statistics (`image_statistics`: intensity histogram, the polarity
of border against centre and of mediastinum against lungs, symmetry, edges), which catch what ImageNet features
barely tell apart (an inverted X-ray). Each group is projected onto its leading principal components (fitted on the
training images) and scored by its Mahalanobis distance to the training images under a Ledoit-Wolf shrinkage
covariance, divided by the 99th percentile of the training images' distances so that the groups weigh alike. An
image's score is its largest group score; it is rejected when the score exceeds `threshold`, the 0.995 quantile of
the validation images' scores. The fit and the threshold see every image twice: as it is, and under one random
acquisition shift (`acquisition_shifted`), so that a real X-ray taken or stored another way is not refused.

API, for a scorer or an app:
    check = OodCheck.load(models_dir, weights_dir)  # models_dir/ood.npz + ood.json; OodFileError names a bad file
    check.scores(images) -> (N,) float              # images: (N, H, W) or a list of 2-D grey arrays, values 0-255
    check.rejects(images) -> (N,) bool              # scores > check.threshold: not taken for a frontal chest X-ray
    check.threshold                                 # float, on the scale of `scores`
    check.image_size                                # 224: decode images at this size (`load_image(path, 224)`)

Fit: `python -m pneumonia_cxr.ood fit --data-dir DATA --models-dir models --reports-dir reports [--weights-dir W]`
writes models/ood.npz and models/ood.json (atomically) and reports/metrics/ood.csv: the rejection rates of the
validation and test X-rays and of each kind of generated non-X-ray (`non_xray_examples`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from .data.decode import to_square

log = logging.getLogger(__name__)

SIZE = 224  # px: the backbone's ImageNet size, and the size of the official 224 px release
BACKBONE = "MobileNetV2"
ALPHA = 0.35
# The channel means of these layers (28, 14 and 7 px maps) are three of the feature groups; the statistics the fourth.
LAYERS = ("block_6_expand_relu", "block_13_expand_relu", "out_relu")
GROUPS = (*LAYERS, "image statistics")
STATISTICS = (
    "mean",
    "std",
    "skewness",
    "p5",
    "p50",
    "p95",
    "border - centre",
    "mediastinum - lungs",
    "left-right symmetry",
    "vertical edges",
    "horizontal edges",
    "top - bottom",
)
N_COMPONENTS = 64  # principal components kept per group (at most n_train - 1 and the group's width)
SCALE_QUANTILE = 0.99  # of the training distances: a group's unit
QUANTILE = 0.995  # of the validation scores (as they are and shifted): the threshold
MODEL_FILE = "ood.npz"
META_FILE = "ood.json"
EXTRACTOR_FILE = "ood_features.keras"  # the feature extractor, saved beside the check: scoring needs no weight download
FORMAT = "pneumonia_cxr.ood/1"
REQUIREMENTS = {"x-ray": ("<", 0.01), "non-x-ray": (">=", 0.95)}  # false rejections; rejections


class OodFileError(ValueError):
    """A saved check that is missing, unreadable or inconsistent; the message names the file."""


def to_input(images) -> np.ndarray:
    """Images -> (N, 224, 224) uint8, each squashed to the square as `data.decode.to_square` does.

    Args:
        images: (N, H, W) or (N, H, W, 1) grey values 0-255, or a list of 2-D arrays of any shapes.

    Returns:
        (N, SIZE, SIZE) uint8 array.
    """
    if isinstance(images, np.ndarray) and images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    out = np.empty((len(images), SIZE, SIZE), np.uint8)
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"image {i}: expected a 2-D grey image, got shape {image.shape}")
        if image.dtype != np.uint8:
            image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        out[i] = image if image.shape == (SIZE, SIZE) else to_square(Image.fromarray(image), SIZE, "squash")
    return out


def image_statistics(x: np.ndarray, chunk: int = 256) -> np.ndarray:
    """The cheap statistics of `STATISTICS` for (N, 224, 224) uint8 images, as an (N, 12) float64 array, computed
    `chunk` images at a time (in float64 a whole training set would take many GB: memory stays bounded)."""
    if len(x) <= chunk:
        return _image_statistics(x)
    return np.concatenate([_image_statistics(x[i : i + chunk]) for i in range(0, len(x), chunk)])


def _image_statistics(x: np.ndarray) -> np.ndarray:
    """`image_statistics` of one chunk.

    On a frontal chest X-ray the border (air) is darker than the centre, the mediastinum (middle columns of the lung
    rows) brighter than the lungs either side, the top darker than the abdomen below, and the two sides alike; an
    inverted X-ray flips the signs, a crop or a rotated film moves them, a page of text or a flat image has other
    histograms and edges.
    """
    x = x.astype(np.float64) / 255.0
    n, h, w = x.shape
    flat = x.reshape(n, -1)
    mean, std = flat.mean(1), flat.std(1)
    safe = np.maximum(std, 1e-6)
    skewness = (((flat - mean[:, None]) / safe[:, None]) ** 3).mean(1)
    b = h // 10
    ring = np.ones((h, w), bool)
    ring[b:-b, b:-b] = False
    border = x[:, ring].mean(1)
    centre = x[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].mean((1, 2))
    rows = x[:, int(h * 0.25) : int(h * 0.65)]
    mediastinum = rows[:, :, int(w * 0.42) : int(w * 0.58)].mean((1, 2))
    lungs = (
        rows[:, :, int(w * 0.18) : int(w * 0.35)].mean((1, 2)) + rows[:, :, int(w * 0.65) : int(w * 0.82)].mean((1, 2))
    ) / 2
    centred = (flat - mean[:, None]) / safe[:, None]
    mirrored = (x[:, :, ::-1].reshape(n, -1) - mean[:, None]) / safe[:, None]
    symmetry = np.where(std > 1e-6, (centred * mirrored).mean(1), 0.0)
    return np.column_stack(
        [
            mean,
            std,
            skewness,
            *np.percentile(flat, [5, 50, 95], axis=1),
            border - centre,
            mediastinum - lungs,
            symmetry,
            np.abs(np.diff(x, axis=1)).mean((1, 2)),
            np.abs(np.diff(x, axis=2)).mean((1, 2)),
            x[:, : h // 8].mean((1, 2)) - x[:, -(h // 8) :].mean((1, 2)),
        ]
    )


def build_extractor(weights_dir: str | Path | None = None):
    """ImageNet MobileNetV2 (alpha 0.35, no top) as one model: (N, 224, 224, 1) grey 0-255 -> the channel means of
    `LAYERS`, side by side.

    Args:
        weights_dir: a folder holding Keras' offline weight file (config.KERAS_WEIGHT_FILES); None: Keras' own cache
            or a download.
    """
    import keras

    from .config import resolve_weights

    weights = resolve_weights("imagenet", BACKBONE, ALPHA, str(weights_dir) if weights_dir else None)
    base = keras.applications.MobileNetV2(include_top=False, weights=weights, alpha=ALPHA, input_shape=(SIZE, SIZE, 3))
    taps = keras.Model(base.input, [base.get_layer(name).output for name in LAYERS])
    grey = keras.Input((SIZE, SIZE, 1))
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(grey)  # MobileNetV2's preprocess_input
    rgb = keras.layers.Concatenate()([scaled, scaled, scaled])
    pooled = [keras.layers.GlobalAveragePooling2D()(t) for t in taps(rgb)]
    extractor = keras.Model(grey, keras.layers.Concatenate()(pooled), name="ood_features")
    extractor.group_widths = [int(t.shape[-1]) for t in taps.outputs]  # where `feature_groups` splits the output
    return extractor


def feature_groups(extractor, images, batch_size: int = 64) -> list[np.ndarray]:
    """The (N, width) float64 features of `images` (any input `to_input` takes), one array per group of `GROUPS`."""
    from .inference import predict_batches

    x = to_input(images)
    deep = predict_batches(extractor, x, batch_size).astype(np.float64)
    return [*np.split(deep, np.cumsum(extractor.group_widths)[:-1], axis=1), image_statistics(x)]


@dataclass
class GroupModel:
    """One feature group's Mahalanobis distance: standardised, PCA-projected, Ledoit-Wolf precision, in units of the
    training distances' 99th percentile."""

    mean: np.ndarray  # (width,) training mean
    spread: np.ndarray  # (width,) training standard deviation (ones: deep features are used as they are)
    components: np.ndarray  # (k, width) principal axes
    precision: np.ndarray  # (k, k) inverse shrunk covariance of the projections
    scale: float  # SCALE_QUANTILE of the training distances

    @classmethod
    def fit(cls, features: np.ndarray, n_components: int = N_COMPONENTS, standardise: bool = False) -> GroupModel:
        """Fit on (n, width) training features; `standardise` each feature first (features of unlike units)."""
        from sklearn.covariance import LedoitWolf
        from sklearn.decomposition import PCA

        mean = features.mean(0)
        spread = np.maximum(features.std(0), 1e-9) if standardise else np.ones(features.shape[1])
        z = (features - mean) / spread
        k = min(n_components, z.shape[0] - 1, z.shape[1])
        components = PCA(n_components=k, svd_solver="full").fit(z).components_
        precision = LedoitWolf(assume_centered=True).fit(z @ components.T).precision_
        model = cls(mean, spread, components, precision, 1.0)
        model.scale = float(np.quantile(model.distance(features), SCALE_QUANTILE))
        return model

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N,) Mahalanobis distances to the training features, divided by `scale`."""
        z = ((features - self.mean) / self.spread) @ self.components.T
        return np.sqrt(np.einsum("ij,jk,ik->i", z, self.precision, z)) / self.scale


@dataclass
class OodCheck:
    """The fitted check: a `GroupModel` per group of `GROUPS`, the threshold, and how it was fitted (`meta`)."""

    groups: list[GroupModel]
    threshold: float
    meta: dict = field(default_factory=dict)
    extractor: object = None

    @classmethod
    def fit(
        cls,
        train_images,
        val_images,
        weights_dir: str | Path | None = None,
        quantile: float = QUANTILE,
        extractor=None,
    ) -> OodCheck:
        """Fit the group models on `train_images`; the threshold is the `quantile` of the `val_images`' scores.

        Args:
            train_images, val_images: grey images (any input `to_input` takes) of the training and validation splits.
            weights_dir: folder of the offline MobileNetV2 weights (`build_extractor`).
            quantile: of the validation scores, the threshold.
            extractor: a model from `build_extractor`, to reuse one already built.

        Returns:
            The check, its `meta` saying how it was made (the caller may add to it before `save`).
        """
        extractor = extractor or build_extractor(weights_dir)
        train = feature_groups(extractor, train_images)
        groups = [GroupModel.fit(f, standardise=name == "image statistics") for name, f in zip(GROUPS, train)]
        check = cls(groups, np.inf, extractor=extractor)
        val_scores = check.scores(val_images)
        check.threshold = float(np.quantile(val_scores, quantile))
        check.meta = {
            "format": FORMAT,
            "feature_extractor": f"keras.applications.{BACKBONE}(alpha={ALPHA}, weights='imagenet', include_top=False)",
            "input": f"grey image squashed to {SIZE}x{SIZE}, repeated to RGB, scaled to [-1, 1]",
            "groups": {
                **{layer: "channel means of the layer's output" for layer in LAYERS},
                "image statistics": list(STATISTICS),
            },
            "n_components": [int(g.components.shape[0]) for g in groups],
            "distance": "per group: Mahalanobis distance in the group's PCA space (Ledoit-Wolf shrinkage covariance), "
            f"divided by the {SCALE_QUANTILE} quantile of the training images' distances; score: the largest",
            "threshold": check.threshold,
            "threshold_rule": f"quantile {quantile} of the validation images' scores",
            "n_train": len(train[0]),
            "n_val": len(val_scores),
            "probe_features": check._probe_features(),
            "group_widths": [int(w) for w in extractor.group_widths],
        }
        return check

    @property
    def image_size(self) -> int:
        """The side (px) the check squashes images to: give it images decoded at this size, squashed
        (`data.decode.load_image(path, check.image_size)`), not ones decoded smaller and enlarged."""
        return SIZE

    def scores(self, images) -> np.ndarray:
        """(N,) scores of `images` (any input `to_input` takes): larger is further from the training X-rays."""
        features = feature_groups(self.extractor, images)
        if not len(features[0]):
            return np.zeros(0)
        return np.max([g.distance(f) for g, f in zip(self.groups, features)], axis=0)

    def rejects(self, images) -> np.ndarray:
        """(N,) bool: True where an image is not taken for a frontal chest X-ray (its score above `threshold`)."""
        return self.scores(images) > self.threshold

    def _probe_features(self) -> list[float]:
        """A fixed image's deep features, every 50th and each layer's sum: `load` checks that the rebuilt extractor
        gives them back (the same weights)."""
        deep = feature_groups(self.extractor, probe_image()[None])[: len(LAYERS)]
        return [float(v) for v in np.concatenate(deep, axis=1)[0, ::50]] + [float(d.sum()) for d in deep]

    def save(self, models_dir: str | Path) -> tuple[Path, Path]:
        """Write `models_dir`/ood.npz, then ood.json, each atomically (complete or not at all)."""
        from .io import write_json

        models_dir = Path(models_dir)
        models_dir.mkdir(parents=True, exist_ok=True)
        arrays = {"threshold": np.array(self.threshold)}
        for i, g in enumerate(self.groups):
            for name in ("mean", "spread", "components", "precision", "scale"):
                arrays[f"{name}_{i}"] = np.asarray(getattr(g, name))
        fd, tmp = tempfile.mkstemp(prefix=f".{MODEL_FILE}.", dir=models_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, models_dir / MODEL_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        if self.extractor is not None:
            fd, tmp = tempfile.mkstemp(prefix=f".{EXTRACTOR_FILE}.", suffix=".keras", dir=models_dir)
            os.close(fd)
            try:
                self.extractor.save(tmp)
                os.replace(tmp, models_dir / EXTRACTOR_FILE)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        write_json(models_dir / META_FILE, self.meta)
        return models_dir / MODEL_FILE, models_dir / META_FILE

    @classmethod
    def load(cls, models_dir: str | Path, weights_dir: str | Path | None = None, extractor=None) -> OodCheck:
        """The check saved in `models_dir` (ood.npz and ood.json), with the feature extractor saved beside it
        (`EXTRACTOR_FILE`), or rebuilt from the ImageNet weights where that file is missing.

        Args:
            models_dir: the folder `save` wrote to.
            weights_dir: folder of the offline MobileNetV2 weights (`build_extractor`), used only to rebuild.
            extractor: a model from `build_extractor`, to reuse one already built.

        Raises:
            OodFileError: a file missing, unreadable or of another format, the two files disagreeing, or weights
                other than those it was fitted with; the message names the file.
        """
        npz, meta_file = Path(models_dir) / MODEL_FILE, Path(models_dir) / META_FILE
        for path in (npz, meta_file):
            if not path.is_file():
                raise OodFileError(f"{path}: no such file; make it with `python -m pneumonia_cxr.ood fit`")
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError) as exc:
            raise OodFileError(f"{meta_file}: unreadable ({exc})") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise OodFileError(f"{meta_file}: not an out-of-distribution check of format {FORMAT}")
        try:
            with np.load(npz, allow_pickle=False) as data:
                groups = [
                    GroupModel(*(data[f"{name}_{i}"] for name in ("mean", "spread", "components", "precision")), 1.0)
                    for i in range(len(GROUPS))
                ]
                for i, g in enumerate(groups):
                    g.scale = float(data[f"scale_{i}"])
                threshold = float(data["threshold"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise OodFileError(
                f"{npz}: not a complete out-of-distribution check ({type(exc).__name__}: {exc})"
            ) from exc
        if not np.isclose(threshold, meta.get("threshold") or np.nan):
            raise OodFileError(f"{npz}: threshold {threshold} is not the {meta.get('threshold')} of {meta_file.name}")
        check = cls(groups, threshold, meta, extractor or _saved_extractor(Path(models_dir), meta, weights_dir))
        if not np.allclose(check._probe_features(), meta.get("probe_features", []), rtol=1e-3, atol=1e-4):
            raise OodFileError(
                f"{npz}: fitted with other MobileNetV2 weights than the ones found now (weights_dir={weights_dir}): "
                "a fixed probe image's features differ"
            )
        return check


def _saved_extractor(models_dir: Path, meta: dict, weights_dir):
    """The extractor `save` wrote (safe mode), or one rebuilt from the ImageNet weights where it is not there."""
    path = models_dir / EXTRACTOR_FILE
    if not path.is_file() or "group_widths" not in meta:
        try:
            return build_extractor(weights_dir)
        except Exception as exc:  # a download refused offline, a damaged weight file: Keras raises many types
            raise OodFileError(
                f"{path}: missing, and the ImageNet MobileNetV2 weights to rebuild it could not be loaded "
                f"({type(exc).__name__}: {exc}); fit the check again (`python -m pneumonia_cxr.ood fit`)"
            ) from exc
    import keras

    try:
        extractor = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise OodFileError(f"{path}: not a loadable feature extractor ({type(exc).__name__}: {exc})") from exc
    extractor.group_widths = [int(w) for w in meta["group_widths"]]
    return extractor


def probe_image() -> np.ndarray:
    """A fixed (224, 224) uint8 image, a diagonal ramp with a bright disc: the extractor's fingerprint."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    image = (xx + yy) * 255.0 / (2 * SIZE - 2)
    image[(yy - 90) ** 2 + (xx - 130) ** 2 < 40**2] = 230
    return image.astype(np.uint8)


NON_XRAY_KINDS = (
    "black",
    "white",
    "uniform noise",
    "text on plain background",
    "smooth colour gradient",
    "grey strip 64x5000",
    "inverted x-ray",
    "lateral-like crop",
)
WORDS = ("invoice", "total", "patient", "report", "hello", "meeting", "page", "summary", "date", "lorem ipsum", "2024")


def non_xray_examples(seed: int, xrays: np.ndarray, per_kind: int = 25) -> dict[str, list[np.ndarray]]:
    """Images that are not frontal chest X-rays, generated: what the check must reject. Grey uint8 2-D arrays of
    their own shapes (as a decoder would return them before the square resize), `per_kind` of each kind:

    - black: a constant level 0-12; white: a constant level 243-255;
    - uniform noise: independent uniform pixels 0-255, 224 to 512 px a side;
    - text on plain background: random words in Pillow's font at random sizes, dark on light or light on dark;
    - smooth colour gradient: a photo-like RGB mix of linear and radial gradients and soft blobs, turned grey as
      the decoder turns RGB grey (luminance);
    - grey strip 64x5000: a 64 x 5000 px (or 5000 x 64) grey band with slight noise;
    - inverted x-ray: 255 minus a real X-ray of `xrays`;
    - lateral-like crop: a narrow vertical slice (a quarter of the width) of a real X-ray, or its left or right half
      rotated 90 degrees.

    Args:
        seed: the generator's seed (the same seed gives the same images).
        xrays: (N, H, W) uint8 real X-rays to derive the inverted and cropped ones from (validation images, never
            test); drawn at random, with replacement when fewer than `per_kind`.
        per_kind: images per kind.

    Returns:
        {kind: list of 2-D uint8 arrays}, the kinds of `NON_XRAY_KINDS` in order.
    """
    rng = np.random.default_rng(seed)
    xrays = np.asarray(xrays)
    if xrays.ndim != 3 or not len(xrays):
        raise ValueError(f"xrays: expected (N, H, W) real X-rays, got shape {xrays.shape}")
    picks = rng.choice(len(xrays), size=2 * per_kind, replace=len(xrays) < 2 * per_kind)
    makers = {
        "black": lambda i: np.full((SIZE, SIZE), rng.integers(0, 13), np.uint8),
        "white": lambda i: np.full((SIZE, SIZE), rng.integers(243, 256), np.uint8),
        "uniform noise": lambda i: rng.integers(0, 256, size=tuple(rng.integers(224, 513, size=2)), dtype=np.uint8),
        "text on plain background": lambda i: _text_image(rng),
        "smooth colour gradient": lambda i: _gradient_image(rng),
        "grey strip 64x5000": lambda i: _strip(rng, vertical=bool(i % 2)),
        "inverted x-ray": lambda i: 255 - xrays[picks[i]],
        "lateral-like crop": lambda i: _lateral_like(xrays[picks[per_kind + i]], i),
    }
    return {kind: [makers[kind](i) for i in range(per_kind)] for kind in NON_XRAY_KINDS}


def _text_image(rng: np.random.Generator) -> np.ndarray:
    """Random words on a plain background, dark on light or light on dark."""
    height, width = (int(v) for v in rng.integers(200, 700, size=2))
    light = bool(rng.random() < 0.7)
    background, ink = (int(rng.integers(215, 256)), int(rng.integers(0, 60)))
    if not light:
        background, ink = ink, background
    image = Image.new("L", (width, height), background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=float(rng.integers(14, 48)))
    y = int(rng.integers(5, 30))
    while y < height - 10:
        line = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 7))))
        draw.text((int(rng.integers(5, 40)), y), line, fill=ink, font=font)
        y += int(font.size * rng.uniform(1.3, 2.2))
    return np.asarray(image, dtype=np.uint8)


def _gradient_image(rng: np.random.Generator) -> np.ndarray:
    """A photo-like image: linear and radial colour gradients with soft blobs, turned grey (ITU-R 601 luminance)."""
    height, width = int(rng.integers(240, 600)), int(rng.integers(320, 800))
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    angle = rng.uniform(0, np.pi)
    linear = np.cos(angle) * xx + np.sin(angle) * yy
    cy, cx = rng.uniform(0, 1, size=2)
    radial = np.hypot(yy - cy, xx - cx)
    rgb = np.zeros((height, width, 3))
    for c in range(3):
        rgb[..., c] = rng.uniform(0, 255) + rng.uniform(-200, 200) * linear + rng.uniform(-150, 150) * radial
    for _ in range(int(rng.integers(2, 6))):
        by, bx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        blob = np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * r**2))
        rgb += blob[..., None] * rng.uniform(-120, 120, size=3)
    rgb = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")
    return np.asarray(rgb.convert("L"), dtype=np.uint8)


def _strip(rng: np.random.Generator, vertical: bool) -> np.ndarray:
    """A 64 x 5000 px grey band (5000 x 64 when `vertical`) at a random level, with slight noise."""
    shape = (5000, 64) if vertical else (64, 5000)
    return np.clip(rng.normal(rng.uniform(60, 200), 4, size=shape), 0, 255).astype(np.uint8)


def _lateral_like(xray: np.ndarray, i: int) -> np.ndarray:
    """Even i: a vertical slice a quarter of the width wide around the middle; odd i: a half rotated 90 degrees."""
    height, width = xray.shape
    if i % 2 == 0:
        left = width * 3 // 8
        return np.ascontiguousarray(xray[:, left : left + width // 4])
    half = xray[:, : width // 2] if i % 4 == 1 else xray[:, width // 2 :]
    return np.ascontiguousarray(np.rot90(half))


def acquisition_shifted(images: np.ndarray, seed: int) -> np.ndarray:
    """`images` (N, H, W) uint8, each under one acquisition shift drawn at random from `evaluate.SHIFTS` (contrast,
    exposure, blur, resolution, noise, JPEG, borders, stretch, zoom, rotation; the class-dependent one left out).

    Why: fitted on the 224 px release alone, the texture layers learnt its resampling, and the check refused 18% of
    the release's own full-resolution originals and most images under a mild blur or noise (real frontal X-rays
    taken or stored another way). Fitted and thresholded with these shifts, it accepts them and still rejects every
    generated non-X-ray (docs/design_evidence.md, "Out-of-distribution check")."""
    from .evaluate import SHIFTS, apply_shift

    shifts = [name for name in SHIFTS if name not in ("none", "aspect swapped")]
    kinds = np.random.default_rng(seed).integers(len(shifts), size=len(images))
    out = np.empty_like(images)
    for k in np.unique(kinds):
        idx = np.flatnonzero(kinds == k)
        out[idx] = np.clip(np.asarray(apply_shift(images[idx], shifts[k])), 0, 255).astype(np.uint8)
    return out


def rejection_table(check: OodCheck, xray_sets: dict[str, np.ndarray], non_xrays: dict[str, list]) -> pd.DataFrame:
    """One row per set: how many images, how many rejected, the rate, the requirement and whether it is met, and the
    smallest, median and largest score (beside the threshold: the margin).

    Args:
        check: the fitted check.
        xray_sets: {name: (N, H, W) real X-rays}: rejections are false rejections (requirement: < 1%).
        non_xrays: {kind: images} from `non_xray_examples` (requirement: >= 95% rejected).
    """
    rows = []
    sets = [("x-ray", name, images) for name, images in xray_sets.items()]
    sets += [("non-x-ray", kind, images) for kind, images in non_xrays.items()]
    sets.append(("non-x-ray", "all generated", [im for images in non_xrays.values() for im in images]))
    for what, name, images in sets:
        scores = check.scores(images)
        rejected = int((scores > check.threshold).sum())
        op, bound = REQUIREMENTS[what]
        rate = rejected / len(images)
        rows.append(
            {
                "set": name,
                "kind": what,
                "n": len(images),
                "rejected": rejected,
                "rejection_rate": rate,
                "requirement": f"{op} {bound:.0%}",
                "meets_requirement": bool(rate < bound if op == "<" else rate >= bound),
                "min_score": float(scores.min()),
                "median_score": float(np.median(scores)),
                "max_score": float(scores.max()),
                "threshold": check.threshold,
                "threshold_rule": check.meta["threshold_rule"],
            }
        )
    return pd.DataFrame(rows)


def fit_command(args: argparse.Namespace) -> pd.DataFrame:
    """Fit on the training split, threshold on validation, save, and report the rejection rates (test as a report)."""
    from .data import load_dataset
    from .io import git_commit, write_csv

    data = load_dataset(args.data_dir, SIZE, args.cache_dir, seed=args.seed)
    (train, _, _), (val, _, _), (test, _, _) = (data.split(s, raw=True) for s in ("train", "val", "test"))
    val_shifted = acquisition_shifted(val, args.seed + 1)
    check = OodCheck.fit(
        np.concatenate([train, acquisition_shifted(train, args.seed)]),
        np.concatenate([val, val_shifted]),
        args.weights_dir,
        args.quantile,
    )
    check.meta.update(
        fitted_on=f"the training split of {Path(args.data_dir).name} (patient split, seed {args.seed}), each image as "
        "it is and under one random acquisition shift; threshold on its validation split, the same way; the test "
        "split only scored for reports/metrics/ood.csv",
        code=git_commit(),
    )
    paths = check.save(args.models_dir)
    split = "SYNTHETIC" if data.synthetic else data.test_split  # a synthetic test/ folder is never "official"
    table = rejection_table(
        check,
        {
            "validation": val,
            "validation, one acquisition shift each": val_shifted,
            f"test ({split})": test,
            f"test ({split}), one acquisition shift each": acquisition_shifted(test, args.seed + 2),
        },
        non_xray_examples(args.examples_seed, val, args.per_kind),
    )
    generated = (table["kind"] == "non-x-ray").to_numpy()
    table.insert(2, "examples_seed", pd.array(np.where(generated, args.examples_seed, 0), dtype="Int64"))
    table.loc[~generated, "examples_seed"] = pd.NA
    csv = write_csv(Path(args.reports_dir) / "metrics" / "ood.csv", table)
    print(table.drop(columns=["threshold_rule"]).to_string(index=False))
    print(f"wrote {paths[0]}, {paths[1]} and {csv}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pneumonia_cxr.ood", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser(
        "fit", help="fit on the training split, threshold on validation, write ood.npz/json and ood.csv"
    )
    fit.add_argument("--data-dir", required=True)
    fit.add_argument("--models-dir", default="models")
    fit.add_argument("--reports-dir", default="reports")
    fit.add_argument("--weights-dir", default=None, help="folder of Keras' offline MobileNetV2 weight files")
    fit.add_argument("--cache-dir", default="data/cache")
    fit.add_argument("--seed", type=int, default=42, help="the patient split's seed (the notebooks' default)")
    fit.add_argument("--quantile", type=float, default=QUANTILE, help="of the validation scores: the threshold")
    fit.add_argument("--examples-seed", type=int, default=1, help="seed of the generated non-X-rays")
    fit.add_argument("--per-kind", type=int, default=25, help="generated non-X-rays of each kind")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    table = fit_command(args)
    missed = table[~table["meets_requirement"]]
    for _, row in missed.iterrows():
        log.warning(
            "%s: %.1f%% rejected, the requirement is %s", row["set"], 100 * row["rejection_rate"], row["requirement"]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
