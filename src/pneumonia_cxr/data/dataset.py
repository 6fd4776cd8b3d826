"""One call from a dataset folder to cached, patient-split arrays: manifest -> cache -> splits -> thorax scale."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .cache import build_image_cache
from .discover import DatasetError, build_manifest
from .split import split_by_patient
from .thorax import normalise_thorax_scale

log = logging.getLogger(__name__)

SYNTHETIC_MARKER = "SYNTHETIC_DATASET.txt"
TERNARY_CLASSES = ("normal", "bacteria", "virus")


@dataclass
class XrayData:
    """Images as the models see them (row i of `table` is images[i]) with their assigned split.

    `raw_images` are the decoded images, before the thorax scale is normalised (`thorax_width`, None: not at all):
    an acquisition shift of the robustness tables happens to an image before any preprocessing, so it is applied to
    these and then `preprocess`ed, as a new file would be.
    """

    images: np.ndarray
    table: pd.DataFrame
    root: Path
    synthetic: bool
    skipped: Counter = field(default_factory=Counter)
    cache_folder: Path | None = None
    cache_seconds: float = 0.0
    raw_images: np.ndarray | None = None
    thorax_width: float | None = None

    def __post_init__(self):
        if self.raw_images is None:
            self.raw_images = self.images

    @property
    def test_split(self) -> str:
        """ "official" when the dataset's own test/ folder is the test set, "carved" for a patient-level hold-out."""
        return "official" if (self.table["split"] == "test").any() else "carved"

    def split(self, name: str, ternary: bool = False, raw: bool = False) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """(images, labels, rows) of one assigned split; labels 0/1 or 0/1/2 (normal/bacteria/virus). `raw=True`:
        the images before preprocessing (for `preprocess` after a shift)."""
        mask = (self.table["split_assigned"] == name).to_numpy()
        if ternary:
            mask = mask & self.table["subtype"].isin(TERNARY_CLASSES).to_numpy()
        rows = self.table[mask]
        return (self.raw_images if raw else self.images)[mask], labels_of(rows, ternary), rows

    def preprocess(self, raw: np.ndarray) -> np.ndarray:
        """What the models see of decoded (N, H, W) images: the preprocessing that made `images` from `raw_images`."""
        if self.thorax_width is None:
            return raw
        return normalise_thorax_scale(raw, self.thorax_width, what="shifted images")


def labels_of(rows: pd.DataFrame, ternary: bool = False) -> np.ndarray:
    if ternary:
        return rows["subtype"].map({c: i for i, c in enumerate(TERNARY_CLASSES)}).to_numpy(np.int64)
    return (rows["label"] == "PNEUMONIA").to_numpy(np.int64)


def subsample_patients(table: pd.DataFrame, per_subtype: int, seed: int) -> pd.DataFrame:
    """Whole patients, about `per_subtype` images per (official test or not, subtype): a smoke subset."""
    rng = np.random.default_rng(seed)
    keep = []
    is_test = table["split"] == "test"
    for (_, _), part in table.groupby([is_test, table["subtype"]]):
        patients = np.array(part["patient"].unique(), dtype=object)
        rng.shuffle(patients)
        counts = part["patient"].value_counts()
        chosen = patients[np.cumsum(counts[patients].to_numpy()) <= per_subtype]
        keep.append(part[part["patient"].isin(chosen if len(chosen) else patients[:1])])
    return pd.concat(keep).sort_index()


def load_dataset(
    data_dir: str | Path,
    image_size: int,
    cache_dir: str | Path,
    seed: int = 42,
    resize: str = "squash",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    per_subtype: int | None = None,
    thorax_width: float | None = None,
) -> XrayData:
    """Manifest, decode cache and patient-level splits for `data_dir` at `image_size`; with `thorax_width`, every
    image whose thorax spans less of its width is magnified to it (`thorax.normalise_thorax_scale`)."""
    manifest = build_manifest(data_dir)
    table = manifest.table
    if per_subtype:
        table = subsample_patients(table, per_subtype, seed)
    if table.empty:
        raise DatasetError(f"{data_dir}: no usable images")
    cache = build_image_cache(table, image_size, cache_dir, resize=resize)
    split_table, dropped = split_by_patient(cache.table, seed, val_fraction, test_fraction)
    keep = (split_table["split_assigned"] != "").to_numpy()
    skipped = manifest.skipped + cache.skipped + dropped
    raw = cache.images[keep]
    return XrayData(
        images=raw if thorax_width is None else normalise_thorax_scale(raw, thorax_width),
        table=split_table[keep].reset_index(drop=True),
        root=manifest.root,
        synthetic=is_synthetic(data_dir),
        skipped=skipped,
        cache_folder=cache.folder,
        cache_seconds=cache.seconds,
        raw_images=raw,
        thorax_width=thorax_width,
    )


def is_synthetic(data_dir: str | Path) -> bool:
    """True when the folder was made by the synthetic demo generator."""
    return any(Path(data_dir).rglob(SYNTHETIC_MARKER))


def summarize(data: XrayData) -> dict:
    """Counts per assigned split, class and subtype, patients, skips and cross-split patients."""
    from .split import cross_split_patients

    t = data.table
    return {
        "root": str(data.root),
        "synthetic": data.synthetic,
        "images": int(len(t)),
        "patients": int(t["patient"].nunique()),
        "official_split_counts": t.groupby(["split", "subtype"]).size().unstack(fill_value=0).to_dict("index"),
        "assigned_split_counts": t.groupby(["split_assigned", "subtype"]).size().unstack(fill_value=0).to_dict("index"),
        "patients_per_split": t.groupby("split_assigned")["patient"].nunique().to_dict(),
        "duplicate_images": int(t["pixel_hash"].duplicated(keep=False).sum()),
        "cross_split_patients": cross_split_patients(t),
        "skipped": dict(data.skipped),
    }
