"""Find the images of a chest X-ray dataset under one root folder and describe each in a manifest.

Layouts understood (class and split folder names in any case):
- Kaggle:   chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg  (also the zip's nested
            chest_xray/chest_xray copy and its __MACOSX junk, both ignored)
- Mendeley: CellData/chest_xray/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg
- the root itself holding {train,val,test}/...

The raw folder is only ever read.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .decode import ImageDecodeError, read_header

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CLASSES = ("NORMAL", "PNEUMONIA")
SUBTYPES = ("normal", "bacteria", "virus")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
IGNORED_DIRS = {"__macosx"}

_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)-\d+", re.IGNORECASE),
    re.compile(r"^(IM-\d+)-\d+", re.IGNORECASE),
    # Mendeley Data v3 (CellData/chest_xray): NORMAL-1003233-0001, BACTERIA-1008087-0001, VIRUS-...; the number is
    # the patient whatever the class, so images of one number stay together
    re.compile(r"^(?:NORMAL|BACTERIA|VIRUS)-(\d+)-\d+", re.IGNORECASE),
)
# above this share of images without a patient id in the name, a patient-level split is impossible: stop
MAX_UNKNOWN_PATIENT_SHARE = 0.05

MANIFEST_COLUMNS = [
    "path",
    "relpath",
    "split",
    "label",
    "subtype",
    "patient",
    "width",
    "height",
    "mode",
]


class DatasetError(ValueError):
    """The dataset folder cannot be used; the message names the path and what is wrong."""


@dataclass
class Manifest:
    """One row per usable image, plus what was skipped and why."""

    root: Path
    table: pd.DataFrame
    skipped: Counter = field(default_factory=Counter)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)

    @property
    def has_test(self) -> bool:
        return bool((self.table["split"] == "test").any())


def parse_patient(filename: str) -> str | None:
    """Patient id from a Kermany file name: personN, IM-XXXX, NORMAL2-IM-XXXX (Kaggle, Mendeley v2) or
    PATIENT-N (Mendeley v3's CLASS-N-XXXX); None if unknown."""
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(filename)
        if match:
            pid = match.group(1)
            if pid.isdigit():
                return f"PATIENT-{pid}"
            return pid.lower() if pid.lower().startswith("person") else pid.upper()
    return None


# the running number of a Kaggle / Mendeley v2 file within its series: IM-0115-0001 -> ("IM", 115),
# NORMAL2-IM-0383-0001 -> ("NORMAL2-IM", 383), person1_bacteria_1 -> ("bacteria", 1), person1_virus_6 -> ("virus", 6)
_NORMAL_ORDER = re.compile(r"^(NORMAL2-IM|IM)-(\d+)-\d+", re.IGNORECASE)
_PNEUMONIA_ORDER = re.compile(r"^person\d+_(bacteria|virus)_(\d+)", re.IGNORECASE)


def parse_series_number(filename: str) -> tuple[str | None, int | None]:
    """(series, running number) of a file name, or (None, None). In the public release the official test split
    is a block of early numbers of each series (NORMALs: IM- below 115, NORMAL2-IM- below 383)."""
    if match := _NORMAL_ORDER.match(filename):
        return match.group(1).upper(), int(match.group(2))
    if match := _PNEUMONIA_ORDER.match(filename):
        return match.group(1).lower(), int(match.group(2))
    return None, None


def series_numbers(paths: pd.Series) -> pd.DataFrame:
    """`parse_series_number` of each path's file name: columns series and number, on the paths' index."""
    return pd.DataFrame(
        [parse_series_number(Path(p).name) for p in paths], columns=["series", "number"], index=paths.index
    )


def parse_subtype(filename: str, label: str) -> str:
    """normal / bacteria / virus; 'unknown' for a PNEUMONIA file whose name says neither."""
    if label == "NORMAL":
        return "normal"
    name = filename.lower()
    if "bacteria" in name:
        return "bacteria"
    if "virus" in name:
        return "virus"
    return "unknown"


def _child_dirs(folder: Path) -> dict[str, Path]:
    return {
        p.name.lower(): p
        for p in sorted(folder.iterdir())
        if p.is_dir() and p.name.lower() not in IGNORED_DIRS and not p.name.startswith(".")
    }


def _is_split_dir(folder: Path) -> bool:
    return any(name.lower() in {c.lower() for c in CLASSES} for name in _child_dirs(folder))


def find_dataset_root(root: str | Path) -> Path:
    """The shallowest folder under `root` whose children are split folders holding class folders."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    queue, seen = [root], set()
    while queue:  # breadth-first, so the zip's nested chest_xray/chest_xray copy is never used
        folder = queue.pop(0)
        real = folder.resolve()
        if real in seen:  # a symlink loop (x/up -> ..) or a second link to one folder: looked at once
            continue
        seen.add(real)
        children = _child_dirs(folder)
        if any(s in children and _is_split_dir(children[s]) for s in SPLITS):
            return folder
        queue.extend(children.values())
    raise DatasetError(
        f"{root}: no recognizable dataset layout; expected "
        "<root>/[chest_xray/]{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg (Kaggle) "
        "or <root>/CellData/chest_xray/{train,test}/... (Mendeley)"
    )


def build_manifest(root: str | Path) -> Manifest:
    """Scan `root` and return the manifest; unreadable or non-image files are counted skips."""
    root = Path(root)
    data_root = find_dataset_root(root)
    rows, skipped, skipped_files = [], Counter(), []
    splits = _child_dirs(data_root)
    for split in SPLITS:
        if split not in splits:
            continue
        classes = _child_dirs(splits[split])
        for label in CLASSES:
            class_dir = classes.get(label.lower())
            if class_dir is None:
                raise DatasetError(f"{splits[split]}: class folder {label}/ is missing")
            files = sorted(p for p in class_dir.iterdir() if p.is_file())
            images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            for other in sorted(set(files) - set(images)):
                skipped["not an image file"] += 1
                skipped_files.append((str(other), "not an image file"))
                log.info("skipped %s: not an image file", other)
            if not images:
                raise DatasetError(f"{class_dir}: class folder holds no .jpeg/.jpg/.png images")
            for path in images:
                try:
                    width, height, mode = read_header(path)
                except (ImageDecodeError, OSError) as exc:
                    why = str(exc).split(": ", 1)[-1]  # the rule broken, without the path
                    kind = why.split(" (", 1)[0] if why.startswith("image too") else "unreadable image"
                    skipped[kind] += 1
                    skipped_files.append((str(path), why))
                    log.warning("skipped %s: %s", path, why)
                    continue
                patient = parse_patient(path.name)
                if patient is None:  # keep the image, alone in its own patient group
                    skipped["patient id not in file name (kept as its own patient)"] += 1
                    patient = f"file:{path.stem}"
                rows.append(
                    {
                        "path": str(path),
                        "relpath": path.relative_to(data_root).as_posix(),
                        "split": split,
                        "label": label,
                        "subtype": parse_subtype(path.name, label),
                        "patient": patient,
                        "width": width,
                        "height": height,
                        "mode": mode,
                    }
                )
    table = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    if "train" not in splits:
        raise DatasetError(f"{data_root}: no train/ split folder")
    unknown = table["patient"].str.startswith("file:")
    if unknown.mean() > MAX_UNKNOWN_PATIENT_SHARE:
        examples = ", ".join(table.loc[unknown, "relpath"].head(3))
        raise DatasetError(
            f"{data_root}: {unknown.sum()} of {len(table)} images have no patient id in their file name (e.g. "
            f"{examples}), so the split cannot keep a patient's images together; expected Kermany names such as "
            "person1164_virus_1952.jpeg, IM-0115-0001.jpeg, NORMAL2-IM-1427-0001.jpeg or BACTERIA-1008087-0001.jpeg"
        )
    return Manifest(root=data_root, table=table, skipped=skipped, skipped_files=skipped_files)
