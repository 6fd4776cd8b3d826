"""Acquisition shifts: the same X-ray as another machine, setting, export or collimation would have made it.

Each shift is a function of one uint8 image (or a pair, one per class, for a label-aware shift). The robustness
tables apply every shift to the validation images (where the model choice reads them) and to the test images
(reported only). Deterministic: the same image always gets the same shifted pixels.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image, ImageFilter

from .pipeline import ORIGINAL_ASPECT
from .thorax import magnify


def _gamma(g):
    return lambda im: (255 * (im / 255.0) ** g).astype(np.uint8)


def _contrast(f):
    return lambda im: np.clip((im.astype(float) - im.mean()) * f + im.mean(), 0, 255).astype(np.uint8)


def _brightness(d):
    return lambda im: np.clip(im.astype(float) + d, 0, 255).astype(np.uint8)


def _blur(r):
    return lambda im: np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(r)))


def _resolution(f):
    def down_up(im):
        size = im.shape[::-1]
        small = Image.fromarray(im).resize((max(8, int(size[0] * f)), max(8, int(size[1] * f))), Image.BILINEAR)
        return np.asarray(small.resize(size, Image.BILINEAR))

    return down_up


def _noise(sd):
    """Gaussian grain of `sd` grey levels, as a noisier detector or a lower dose gives; seeded by the image itself,
    so the shift is deterministic and differs between images."""

    def grain(im):
        rng = np.random.default_rng(zlib.crc32(im.tobytes()))
        return np.clip(im + rng.normal(0.0, sd, im.shape), 0, 255).round().astype(np.uint8)

    return grain


def _jpeg(quality):
    """Re-saved as a JPEG of lower `quality`, as another export or archive would."""

    def resave(im):
        buffer = io.BytesIO()
        Image.fromarray(im).save(buffer, "JPEG", quality=quality)
        return np.asarray(Image.open(buffer).convert("L"))

    return resave


def _aspect(f):
    """Change width / height by `f` about the centre, as an original of another aspect ratio squashed to a square
    would look: f > 1 stretches the width, f < 1 the height, and the overflow is cropped. Nothing is padded, so the
    shift adds no border (black bands are a shift of their own, `_border`), the way training stretches images."""

    def stretch(im):
        h, w = im.shape
        new_w, new_h = max(w, round(w * f)), max(h, round(h / f))
        big = np.asarray(Image.fromarray(im).resize((new_w, new_h), Image.BILINEAR))
        top, left = (new_h - h) // 2, (new_w - w) // 2
        return big[top : top + h, left : left + w]

    return stretch


def _zoom(f):
    """The field of view scaled by `f` about the centre, as a smaller or bigger child or a looser or tighter
    collimation gives: f > 1 crops and magnifies; f < 1 shrinks the image and pads it with its own edge pixels
    (neither black, a shift of its own, nor reflected content, which training uses)."""

    def scale(im):
        h, w = im.shape
        if f >= 1:
            return magnify(im, f)
        small = np.asarray(Image.fromarray(im).resize((round(w * f), round(h * f)), Image.BILINEAR))
        ph, pw = h - small.shape[0], w - small.shape[1]
        return np.pad(small, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="edge")

    return scale


def _border(edges: str, fraction: float = 0.08):
    """Black bands along two opposite edges, as a collimator or a letterboxed export leaves them."""

    def band(im):
        out, k = im.copy(), max(1, round(fraction * im.shape[0]))
        if edges == "sides":
            out[:, :k], out[:, -k:] = 0, 0
        else:
            out[:k], out[-k:] = 0, 0
        return out

    return band


def _rotate(degrees):
    """Rotated about the centre, as a patient turned on the detector; corners filled with the image's edge grey."""

    def turn(im):
        fill = int(np.median(np.concatenate([im[0], im[-1], im[:, 0], im[:, -1]])))
        return np.asarray(Image.fromarray(im).rotate(degrees, Image.BILINEAR, fillcolor=fill))

    return turn


def _padded(aspect: float):
    """Letterboxed with black to width / height = `aspect` and squashed back to a square, as an export that pads a
    film to a fixed frame would be: the whole chest, narrower in the frame, with black bands beside it."""

    def pad(im):
        h, w = im.shape
        new_w = round(h * aspect)
        canvas = np.zeros((h, new_w), np.uint8)
        left = (new_w - w) // 2
        canvas[:, left : left + w] = im
        return np.asarray(Image.fromarray(canvas).resize((w, h), Image.BILINEAR))

    return pad


SHIFTS = {
    "none": lambda im: im,
    "contrast x0.7": _contrast(0.7),
    "contrast x1.3": _contrast(1.3),
    "brightness -25": _brightness(-25),
    "brightness +25": _brightness(25),
    "gamma 0.7": _gamma(0.7),
    "gamma 1.5": _gamma(1.5),
    "blur r=1.5": _blur(1.5),
    "resolution x0.5": _resolution(0.5),
    "noise sd=2": _noise(2),
    "noise sd=5": _noise(5),
    "jpeg quality 50": _jpeg(50),
    "jpeg quality 20": _jpeg(20),
    "black border, sides": _border("sides"),
    "black border, top and bottom": _border("top and bottom"),
    # the field of view cropped at the sides or at top and bottom (a tighter collimation), for either class
    "width stretched x1.26": _aspect(ORIGINAL_ASPECT["pneumonia"] / ORIGINAL_ASPECT["normal"]),
    "height stretched x1.26": _aspect(ORIGINAL_ASPECT["normal"] / ORIGINAL_ASPECT["pneumonia"]),
    # the field of view scaled on both axes (a smaller or bigger child, a looser or tighter collimation)
    "zoom in x1.3": _zoom(1.3),
    "zoom out x0.7": _zoom(0.7),
    "rotated 7 degrees": _rotate(7),
    "padded black to 4:3": _padded(4 / 3),
    # label-aware, (NORMAL, PNEUMONIA): each class squashed as if from the other's typical original aspect ratio
    "aspect swapped": (
        _aspect(ORIGINAL_ASPECT["normal"] / ORIGINAL_ASPECT["pneumonia"]),
        _aspect(ORIGINAL_ASPECT["pneumonia"] / ORIGINAL_ASPECT["normal"]),
    ),
}


def apply_shift(images: np.ndarray, name: str, labels=None) -> np.ndarray:
    """`images` under the shift `name`; a label-aware shift (a pair of functions) needs the 0/1 `labels`."""
    fn = SHIFTS[name]
    if isinstance(fn, tuple):
        if labels is None:
            raise ValueError(f"shift {name!r} depends on the class: pass labels")
        return np.stack([fn[int(y)](im) for im, y in zip(images, labels)])
    return np.stack([fn(im) for im in images])
