"""How a film was taken, measured from its pixels: field of view, borders and collimation, burned-in markers, exposure.

Invariant: every descriptor is a function of one decoded (H, W) uint8 image alone (no label, no file name), computed
the same way for every image of a batch, so a classifier that predicts the label from descriptors predicts it from how
the film was taken (and from whatever of the disease leaks into a descriptor: whole-image exposure and the lungs'
height see the lungs, see `DESCRIPTOR_GROUPS`). Images are taken as they were decoded, before any thorax scaling.

On the 224 px release the original size and aspect are gone (every file was squashed to a square); `original_size`
reads them from the header of a full-resolution file where one exists.

`stressed_specificity` turns a model's probabilities on NORMAL images into specificity where the styles are rare
among training normals: a style-stressed estimate beside the plain one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from scipy.signal import find_peaks

from .texture import texture_energy
from .thorax import PROMINENCE, ROWS, WORK_SIZE, thorax_width_or_closer

SIDES = ("top", "bottom", "left", "right")
CORNERS = ("tl", "tr", "bl", "br")
EDGE_ZONE = 0.2  # a marker counts when its centre is within this share of the width or height of an edge
UNIFORM_STD = 5.0  # grey levels: a row or column whose spread is below this is featureless (padding, a collimator)
BAND = 0.05  # share of the side used for the band means
TOPHAT_SIZE = 9  # px at 224: structures narrower than this (letters, wires) stand out of the white top-hat
MARKER_CONTRAST = 110  # grey levels above the opened background: letters on air, not rib cortex
MARKER_AREA = (4, 400)  # px at 224 (scaled by area for other sizes)
MARKER_BACKGROUND = 120  # grey levels: a marker lies on air or thin tissue; bright bone cortex lies on the body
MARKER_MAX_SIDE = 0.15  # share of the side: longer components are bones (ribs, clavicles), not letters

DESCRIPTOR_GROUPS = {
    "field_of_view": ["thorax_width", "thorax_found", "thorax_found_closer", "thorax_offset", "lung_top",
                      "lung_bottom", "lung_height"],
    "borders": [f"margin_{s}" for s in SIDES] + [f"band_mean_{s}" for s in SIDES] + [f"edge_{s}" for s in SIDES],
    "markers": ["marker_count", "marker_area", "marker_max_contrast"] + [f"marker_{c}" for c in CORNERS],
    "exposure": ["mean", "std", "p01", "p05", "p50", "p95", "p99", "entropy", "dark_share", "bright_share",
                 "texture"],
    "frame": ["frame_mean", "frame_std", "frame_p05", "frame_p95", "frame_entropy", "frame_texture"],
}  # fmt: skip
CENTRE_ROWS, CENTRE_COLS = (0.1, 0.88), (0.12, 0.88)  # the lung fields of a typical film: `mask_centre`, `frame_stats`
DESCRIPTORS = [name for names in DESCRIPTOR_GROUPS.values() for name in names]


def _batch(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"style descriptors take (N, H, W) or (H, W) uint8 images, not {images.dtype} {images.shape}")
    return images


def _grey_stats(flat: np.ndarray) -> dict:
    """(N, P) uint8 pixel rows -> mean, std, p01..p99, 64-bin entropy (bits), near-black and near-white shares."""
    pct = np.percentile(flat, [1, 5, 50, 95, 99], axis=1).T
    bins = (flat >> 2).astype(np.int64) + 64 * np.arange(len(flat))[:, None]  # 64 bins, one histogram per row
    hist = np.bincount(bins.ravel(), minlength=64 * len(flat)).reshape(len(flat), 64) / flat.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(hist > 0, hist * np.log2(hist), 0.0).sum(axis=1)
    out = {"mean": flat.mean(axis=1), "std": flat.std(axis=1)}
    out.update({name: pct[:, i] for i, name in enumerate(["p01", "p05", "p50", "p95", "p99"])})
    out.update(entropy=entropy, dark_share=(flat <= 5).mean(axis=1), bright_share=(flat >= 250).mean(axis=1))
    return out


def exposure_stats(images) -> pd.DataFrame:
    """Grey-level statistics of each image.

    Args:
        images: (N, H, W) or (H, W) uint8.

    Returns:
        One row per image: mean, std, percentiles p01..p99, entropy of the 64-bin histogram (bits), the share of
        near-black (<= 5) and near-white (>= 250) pixels, and `texture_energy` (fine grain / sharpness).
    """
    x = _batch(images)
    out = _grey_stats(x.reshape(len(x), -1))
    out["texture"] = texture_energy(x)
    return pd.DataFrame(out)


def frame_stats(images) -> pd.DataFrame:
    """Grey levels and fine texture of the frame alone (outside the central box of `mask_centre`): exposure as the
    film was taken, without the lungs that disease changes.

    Args:
        images: (N, H, W) or (H, W) uint8.

    Returns:
        One row per image: frame_mean, frame_std, frame_p05, frame_p95, frame_entropy (64 bins, bits), frame_texture
        (mean absolute 4-neighbour Laplacian over the frame, as `texture_energy`).
    """
    x = _batch(images)
    h, w = x.shape[1:]
    frame = np.ones((h, w), bool)
    frame[
        round(CENTRE_ROWS[0] * h) : round(CENTRE_ROWS[1] * h), round(CENTRE_COLS[0] * w) : round(CENTRE_COLS[1] * w)
    ] = 0
    stats = _grey_stats(x[:, frame])
    xf = x.astype(np.float32)
    lap = np.abs(4 * xf[:, 1:-1, 1:-1] - xf[:, :-2, 1:-1] - xf[:, 2:, 1:-1] - xf[:, 1:-1, :-2] - xf[:, 1:-1, 2:])
    texture = lap[:, frame[1:-1, 1:-1]].mean(axis=1)
    names = ("mean", "std", "p05", "p95", "entropy")
    return pd.DataFrame({**{f"frame_{k}": stats[k] for k in names}, "frame_texture": texture})


def _uniform_run(line_std: np.ndarray) -> np.ndarray:
    """(N, L) spreads of lines ordered from the edge inwards -> the share of L that is featureless from the edge."""
    featured = line_std >= UNIFORM_STD
    first = np.where(featured.any(axis=1), featured.argmax(axis=1), line_std.shape[1])
    return first / line_std.shape[1]


def border_stats(images) -> pd.DataFrame:
    """Margins and collimation edges on each side of each image.

    Args:
        images: (N, H, W) or (H, W) uint8.

    Returns:
        One row per image with, for each side: `margin_<side>`, the share of the side's length that is featureless
        rows/columns from that edge inwards (padding, a collimator's shadow); `band_mean_<side>`, the mean grey of its
        outer `BAND`; `edge_<side>`, the largest jump (grey levels) between neighbouring row/column means in its outer
        quarter (a collimator's straight edge, the film's border).
    """
    x = _batch(images).astype(np.float32)
    n, h, w = x.shape
    lines = {  # per side: (N, L) means and spreads of the lines parallel to it, ordered from that edge inwards
        "top": (x.mean(axis=2), x.std(axis=2)),
        "bottom": (x.mean(axis=2)[:, ::-1], x.std(axis=2)[:, ::-1]),
        "left": (x.mean(axis=1), x.std(axis=1)),
        "right": (x.mean(axis=1)[:, ::-1], x.std(axis=1)[:, ::-1]),
    }
    out = {}
    for side, (means, spreads) in lines.items():
        length = means.shape[1]
        out[f"margin_{side}"] = _uniform_run(spreads)
        out[f"band_mean_{side}"] = means[:, : max(1, round(BAND * length))].mean(axis=1)
        quarter = means[:, : max(2, length // 4)]
        out[f"edge_{side}"] = np.abs(np.diff(quarter, axis=1)).max(axis=1)
    return pd.DataFrame(out)[[f"{k}_{s}" for k in ("margin", "band_mean", "edge") for s in SIDES]]


def marker_components(image: np.ndarray) -> pd.DataFrame:
    """Small bright high-contrast blobs and strokes (burned-in letters, markers, wires) of one image.

    Args:
        image: (H, W) uint8.

    Returns:
        One row per kept component: area (px), contrast (peak top-hat, grey levels), centre row/column (fractions).
        Kept: white top-hat above `MARKER_CONTRAST`, area within `MARKER_AREA` (scaled to the image's size), and a
        bounding box no longer than `MARKER_MAX_SIDE` of the side (ribs and clavicles are longer), on a background (the
        grey opening) darker than `MARKER_BACKGROUND`.
    """
    image = _batch(image)[0]
    h, w = image.shape
    scale = h * w / 224**2
    size = max(3, round(TOPHAT_SIZE * np.sqrt(scale)) | 1)
    opened = ndimage.grey_opening(image.astype(np.int16), size=(size, size))
    tophat = image.astype(np.int16) - opened
    labels, n = ndimage.label(tophat >= MARKER_CONTRAST)
    columns = ["area", "contrast", "row", "col"]
    if n == 0:
        return pd.DataFrame(columns=columns, dtype=float)
    index = np.arange(1, n + 1)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    boxes = ndimage.find_objects(labels)
    extent = np.array([max((b[0].stop - b[0].start) / h, (b[1].stop - b[1].start) / w) for b in boxes])
    centre = np.array(ndimage.center_of_mass(np.ones_like(labels), labels, index)).reshape(-1, 2)
    table = pd.DataFrame(
        {
            "area": area.astype(float),
            "contrast": ndimage.maximum(tophat, labels, index),
            "row": centre[:, 0] / h,
            "col": centre[:, 1] / w,
        }
    )
    background = ndimage.mean(opened, labels, index)
    keep = (area >= MARKER_AREA[0] * scale) & (area <= MARKER_AREA[1] * scale) & (extent <= MARKER_MAX_SIDE)
    keep &= background < MARKER_BACKGROUND
    return table[keep].reset_index(drop=True)


def marker_stats(images) -> pd.DataFrame:
    """Burned-in text and markers near the edges of each image (`marker_components` within `EDGE_ZONE` of an edge).

    Args:
        images: (N, H, W) or (H, W) uint8.

    Returns:
        One row per image: marker_count, marker_area (share of the image), marker_max_contrast (0 without one), and
        per corner (`marker_tl`, `marker_tr`, `marker_bl`, `marker_br`) the count within `EDGE_ZONE` of both its edges.
    """
    x = _batch(images)
    rows = []
    for image in x:
        c = marker_components(image)
        near = lambda v: v < EDGE_ZONE
        far = lambda v: v > 1 - EDGE_ZONE
        edge = c[near(c["row"]) | far(c["row"]) | near(c["col"]) | far(c["col"])]
        rows.append(
            {
                "marker_count": float(len(edge)),
                "marker_area": float(edge["area"].sum()) / image.size,
                "marker_max_contrast": float(edge["contrast"].max()) if len(edge) else 0.0,
                "marker_tl": float((near(c["row"]) & near(c["col"])).sum()),
                "marker_tr": float((near(c["row"]) & far(c["col"])).sum()),
                "marker_bl": float((far(c["row"]) & near(c["col"])).sum()),
                "marker_br": float((far(c["row"]) & far(c["col"])).sum()),
            }
        )
    return pd.DataFrame(rows, columns=DESCRIPTOR_GROUPS["markers"])


def _work(image: np.ndarray) -> np.ndarray:
    if image.shape == (WORK_SIZE, WORK_SIZE):
        return image
    return np.asarray(Image.fromarray(image).resize((WORK_SIZE, WORK_SIZE), Image.BILINEAR))


def lung_valleys(image: np.ndarray) -> tuple[float, float] | None:
    """(left, right) columns of the two lung valleys as fractions of the width, or None without two clear ones: the
    same measure as data/thorax.py's `thorax_width` (its constants, its steps), which returns only their distance."""
    n = WORK_SIZE
    band = _work(image)[int(ROWS[0] * n) : int(ROWS[1] * n)].astype(np.float64)
    profile = ndimage.gaussian_filter1d(band.mean(axis=0), n / 60)
    lo, hi = int(0.38 * n), int(0.62 * n)
    middle = lo + int(np.argmax(profile[lo:hi]))
    valleys, _ = find_peaks(-profile, prominence=PROMINENCE)
    left, right = valleys[valleys < middle - 0.05 * n], valleys[valleys > middle + 0.05 * n]
    if not len(left) or not len(right):
        return None
    return float(left.max()) / n, float(right.min()) / n


def lung_rows(image: np.ndarray, columns: tuple[float, float] = (0.3, 0.7)) -> tuple[float, float]:
    """(top, bottom) of the lung fields as fractions of the height: the dark run of rows around the darkest row of the
    middle band, in the row profile of the two lung columns; rows brighter than halfway to the profile's 90th
    percentile (shoulders, diaphragm, abdomen) end it."""
    small = _work(image).astype(np.float64)
    n = WORK_SIZE
    half = max(2, n // 32)
    cols = [int(round(c * n)) for c in columns]
    strips = [small[:, max(0, c - half) : c + half + 1] for c in cols]
    profile = ndimage.gaussian_filter1d(np.concatenate(strips, axis=1).mean(axis=1), n / 64)
    lo, hi = int(0.3 * n), int(0.6 * n)
    centre = lo + int(np.argmin(profile[lo:hi]))
    level = profile[centre] + 0.5 * (np.percentile(profile, 90) - profile[centre])
    bright = profile > level
    above = np.flatnonzero(bright[:centre])
    below = np.flatnonzero(bright[centre:])
    top = (above.max() + 1) if len(above) else 0
    bottom = (centre + below.min()) if len(below) else n
    return top / n, bottom / n


def field_of_view(images) -> pd.DataFrame:
    """How much of the body is in frame, per image.

    Args:
        images: (N, H, W) or (H, W) uint8.

    Returns:
        One row per image: thorax_width (lung-valley distance / width, `thorax_width_or_closer`; NaN without one),
        thorax_found (two valleys at first look), thorax_found_closer (found only magnified), thorax_offset (valley
        midpoint - 0.5), lung_top / lung_bottom / lung_height (`lung_rows`; neck and shoulders above, abdomen below).
    """
    rows = []
    for image in _batch(images):
        small = _work(image)
        valleys = lung_valleys(small)
        width = thorax_width_or_closer(small)
        top, bottom = lung_rows(small, valleys or (0.3, 0.7))
        rows.append(
            {
                "thorax_width": np.nan if width is None else width,
                "thorax_found": float(valleys is not None),
                "thorax_found_closer": float(valleys is None and width is not None),
                "thorax_offset": np.nan if valleys is None else (valleys[0] + valleys[1]) / 2 - 0.5,
                "lung_top": top,
                "lung_bottom": bottom,
                "lung_height": bottom - top,
            }
        )
    return pd.DataFrame(rows, columns=DESCRIPTOR_GROUPS["field_of_view"])


def describe(images) -> pd.DataFrame:
    """Every descriptor (`DESCRIPTORS`, grouped in `DESCRIPTOR_GROUPS`) of each image: one row per image."""
    x = _batch(images)
    parts = [field_of_view(x), border_stats(x), marker_stats(x), exposure_stats(x), frame_stats(x)]
    return pd.concat(parts, axis=1)[DESCRIPTORS]


def thorax_box(image: np.ndarray, pad: float = 0.04) -> tuple[float, float, float, float]:
    """(top, bottom, left, right) of a box around the thorax, in fractions: the lung valleys' midpoint ± 0.95 of their
    distance across (the valleys sit mid-lung); down, `lung_rows` from 2 `pad` above (the apices sit above the dark
    run) to `pad` below; without valleys the centre ± 0.36 across."""
    small = _work(np.asarray(image))
    valleys = lung_valleys(small)
    if valleys is None:
        centre, half = 0.5, 0.36
    else:
        centre, half = (valleys[0] + valleys[1]) / 2, 0.95 * (valleys[1] - valleys[0])
    top, bottom = lung_rows(small, valleys or (0.3, 0.7))
    box = (top - 2 * pad, bottom + pad, centre - half, centre + half)
    top, bottom, left, right = (float(np.clip(v, 0.0, 1.0)) for v in box)
    if bottom - top < 0.3:  # an implausible lung height: keep the rows, crop only the sides
        top, bottom = 0.0, 1.0
    return top, bottom, left, right


def crop_to_thorax(images) -> np.ndarray:
    """Each image cropped to its `thorax_box` and resized back to its own size (aspect not kept, as the release)."""
    x = _batch(images)
    out = np.empty_like(x)
    h, w = x.shape[1:]
    for i, image in enumerate(x):
        top, bottom, left, right = thorax_box(image)
        box = (round(left * w), round(top * h), max(round(right * w), round(left * w) + 8),
               max(round(bottom * h), round(top * h) + 8))  # fmt: skip
        out[i] = np.asarray(Image.fromarray(image).crop(box).resize((w, h), Image.BILINEAR))
    return out


def mask_centre(images, rows=CENTRE_ROWS, cols=CENTRE_COLS, fill: int = 128) -> np.ndarray:
    """A copy of the images with a fixed central box (the lung fields of a typical film) filled with `fill`: what is
    left is the frame (neck, shoulders, arms, abdomen, margins, corners)."""
    x = _batch(images).copy()
    h, w = x.shape[1:]
    x[:, round(rows[0] * h) : round(rows[1] * h), round(cols[0] * w) : round(cols[1] * w)] = fill
    return x


def original_size(path) -> dict:
    """width, height, aspect (width / height), megapixels and mode of a file, from its header (decode.read_header)."""
    from .decode import read_header

    width, height, mode = read_header(path)
    return {"width": width, "height": height, "aspect": width / height, "megapixels": width * height / 1e6,
            "mode": mode}  # fmt: skip


def robust_scale(reference: pd.DataFrame, *tables: pd.DataFrame) -> list[np.ndarray]:
    """Each table scaled by the reference's median and IQR per column (NaN -> the reference's median)."""
    med = reference.median()
    iqr = (reference.quantile(0.75) - reference.quantile(0.25)).replace(0, 1.0).fillna(1.0)
    return [((t.fillna(med) - med) / iqr).to_numpy(float) for t in tables]


def atypicality(reference: pd.DataFrame, table: pd.DataFrame, k: int = 10) -> np.ndarray:
    """How unlike the reference images (e.g. training NORMALs) each row of `table` is: the mean distance to its `k`
    nearest reference rows in descriptors scaled by `robust_scale` of the reference."""
    from sklearn.neighbors import NearestNeighbors

    ref, x = robust_scale(reference, reference, table)
    distances, _ = NearestNeighbors(n_neighbors=min(k, len(ref))).fit(ref).kneighbors(x)
    return distances.mean(axis=1)


def stressed_specificity(
    p_pneumonia,
    threshold: float,
    atypical,
    groups=None,
    clusters=None,
    tail: float = 0.25,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Specificity of a model on NORMAL images, plain and where their acquisition style is rare.

    Args:
        p_pneumonia: the model's P(pneumonia) for NORMAL images only (a NORMAL is correct when p < threshold).
        threshold: the operating threshold (chosen on validation).
        atypical: per image, how unlike the training normals its style is (`atypicality`; higher: rarer).
        groups: patient of each image, for the patient bootstrap (default: each image its own patient).
        clusters: optional style cluster of each image (k-means on descriptors): adds the mean and the worst of the
            clusters' specificities, each cluster counting once whatever its size.
        tail: the share of most atypical images that the stressed estimate keeps.
        n_boot, seed: patient-bootstrap resamples for the 95% CIs.

    Returns:
        dict with plain, stressed (specificity among the `tail` most atypical), weighted (each image weighted by its
        atypicality rank, rank / mean rank), their `_ci95` [lo, hi], n and n_tail; with clusters also cluster_mean,
        cluster_min and cluster_min_n.
    """
    from ..evaluate import patient_resamples

    p, atypical = np.asarray(p_pneumonia, float).ravel(), np.asarray(atypical, float).ravel()
    if len(p) != len(atypical) or not len(p):
        raise ValueError(f"stressed_specificity: {len(p)} probabilities, {len(atypical)} atypicality values")
    correct = (p < threshold).astype(float)
    groups = np.arange(len(p)) if groups is None else np.asarray(groups)

    def estimates(idx: np.ndarray) -> tuple[float, float, float]:
        a, c = atypical[idx], correct[idx]
        cut = np.quantile(a, 1 - tail)
        rank = pd.Series(a).rank().to_numpy()
        return c.mean(), c[a >= cut].mean(), float(np.average(c, weights=rank))

    names = ("plain", "stressed", "weighted")
    point = estimates(np.arange(len(p)))
    draws = np.array([estimates(idx) for idx in patient_resamples(groups, n_boot, seed)])
    out = {"n": len(p), "n_tail": int((atypical >= np.quantile(atypical, 1 - tail)).sum()), "tail": tail}
    for i, name in enumerate(names):
        out[name] = float(point[i])
        out[f"{name}_ci95"] = [float(v) for v in np.percentile(draws[:, i], [2.5, 97.5])] if n_boot else [np.nan] * 2
    if clusters is not None:
        per = pd.Series(correct).groupby(np.asarray(clusters)).agg(["mean", "size"])
        out.update(
            cluster_mean=float(per["mean"].mean()),
            cluster_min=float(per["mean"].min()),
            cluster_min_n=int(per.loc[per["mean"].idxmin(), "size"]),
        )
    return out
