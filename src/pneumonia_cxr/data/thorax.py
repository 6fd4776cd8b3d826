"""Take part of the child's size out of the frame: magnify an X-ray whose thorax spans little of its width.

A small child on a large film, or a loose collimation, leaves the chest small in the frame, and every CNN of an
earlier full run called NORMALs shrunk past training's ±30% zoom pneumonia (notebook 03). The thorax is measured
where it is easy to find on a frontal film: the two lungs are the darkest columns either side of the bright
mediastinum in the middle
rows, so the distance between those two valleys of the column profile follows the thorax's width (it grows ×1.31 on
average when a NORMAL image is magnified ×1.3). An image whose valleys are closer than `target` of its width is
magnified about its centre until they are not, at most ×`max_zoom`; wider thoraxes are never shrunk (shrinking
cost specificity under magnification in the check). Where the first look finds no two clear valleys, a second looks
at the centre magnified ×`max_zoom`: a thorax small in a padded frame often shows its valleys only from closer, and
left unmeasured it stayed small (on validation, the normals found only this way were called pneumonia under the
`zoom out x0.7` shift 39% of the time, the others 0.7%). An image without valleys either way stays as it is.
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

log = logging.getLogger(__name__)

THORAX_WIDTH = 0.42  # the target: about the median valley distance of the training images (NORMAL 0.41, pneumonia 0.44)
MAX_ZOOM = 1.45  # never magnify more than this (a failed estimate must not crop away the chest)
WORK_SIZE = 128  # the valleys are found at this size, whatever the image's, so every model gets the same zoom
ROWS = (0.25, 0.65)  # the band of rows whose column means make the profile: the lungs, below the clavicles
PROMINENCE = 3.0  # grey levels a valley must dip below its surroundings


def thorax_width(image: np.ndarray) -> float | None:
    """The distance between the two lung valleys as a fraction of the image's width; None without two clear ones."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"thorax_width takes one grayscale (H, W) image, not shape {image.shape}")
    if image.shape != (WORK_SIZE, WORK_SIZE):
        image = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((WORK_SIZE, WORK_SIZE), Image.BILINEAR))
    n = WORK_SIZE
    band = image[int(ROWS[0] * n) : int(ROWS[1] * n)].astype(np.float64)
    profile = gaussian_filter1d(band.mean(axis=0), n / 60)
    lo, hi = int(0.38 * n), int(0.62 * n)
    middle = lo + int(np.argmax(profile[lo:hi]))  # the mediastinum: the brightest column near the centre
    valleys, _ = find_peaks(-profile, prominence=PROMINENCE)
    left = valleys[valleys < middle - 0.05 * n]
    right = valleys[valleys > middle + 0.05 * n]
    if not len(left) or not len(right):
        return None
    return float(right.min() - left.max()) / n  # the valleys nearest the middle: the lungs, not the air outside


def thorax_width_or_closer(image: np.ndarray, max_zoom: float = MAX_ZOOM) -> float | None:
    """`thorax_width`, and where it finds no two valleys, a second look at the centre magnified ×`max_zoom` (its
    width divided back): a small thorax padded by its surroundings often shows its valleys only from closer."""
    width = thorax_width(image)
    if width is None:
        closer = thorax_width(magnify(np.asarray(image), max_zoom))
        width = None if closer is None else closer / max_zoom
    return width


def magnify(image: np.ndarray, factor: float) -> np.ndarray:
    """Crop the centre 1/factor of `image` and resize it back to the image's size (factor >= 1)."""
    if factor < 1:
        raise ValueError(f"magnify takes a factor >= 1, not {factor}")
    h, w = image.shape
    ch, cw = round(h / factor), round(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(np.ascontiguousarray(image[top : top + ch, left : left + cw]))
    return np.asarray(crop.resize((w, h), Image.BILINEAR))


def zoom_to_thorax(width: float | None, target: float = THORAX_WIDTH, max_zoom: float = MAX_ZOOM) -> float:
    """The magnification that brings a thorax of `width` to `target`: 1 for a wider one or an unknown one."""
    if width is None or width <= 0:
        return 1.0
    return float(np.clip(target / width, 1.0, max_zoom))


def normalise_thorax_scale(
    images: np.ndarray, target: float = THORAX_WIDTH, max_zoom: float = MAX_ZOOM, what: str = "images"
) -> np.ndarray:
    """A copy of a (N, H, W) uint8 batch with every small thorax magnified to `target`; logs how many images had no
    clear lung valleys (left as they are) and how many were magnified."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"normalise_thorax_scale takes a (N, H, W) batch, not shape {images.shape}")
    out = images.copy()
    unknown = magnified = 0
    for i, image in enumerate(images):
        width = thorax_width_or_closer(image, max_zoom)
        unknown += width is None
        factor = zoom_to_thorax(width, target, max_zoom)
        if factor > 1.02:  # under 2% is below what bilinear resampling at these sizes resolves
            out[i] = magnify(image, factor)
            magnified += 1
    if len(images):
        log.info(
            "thorax scale of %d %s: %d magnified, %d without two clear lung valleys (left as they are)",
            len(images),
            what,
            magnified,
            unknown,
        )
    return out
