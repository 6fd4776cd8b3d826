"""Decode every image once (grayscale, resized) into a compact on-disk uint8 array cache.

The cache is keyed by the dataset's files (relative path, byte size, modification time), the
target size, the resize mode and the Pillow version that decodes them, so a changed dataset or setting gets a new
cache, never a stale one. A cache folder is written under a temporary name and renamed into place only when complete,
so an interrupted build never leaves a half-written cache that a later step trusts; a temporary folder whose
writer died is removed by the next build, and a cache found damaged on load (a truncated array) is decoded
again. A new cache replaces (deletes) the older ones of the same files at the same size and resize mode, e.g. after the
dataset was copied or re-mounted and its modification times changed; caches of other subsets stay.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .decode import RESIZE_MODES, ImageDecodeError, decode_gray, load_image, to_square

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: one decoder for every format (16-bit, EXIF orientation) and the size rule
__all__ = ["ImageCache", "ImageDecodeError", "build_image_cache", "load_image"]


def _decode_with_hash(path: str, size: int, resize: str):
    """(array, pixel hash, '') or (None, '', why): the cache's per-file step, never raising."""
    try:
        gray = decode_gray(path, size)
    except (ImageDecodeError, OSError) as exc:
        return None, "", str(exc).split(": ", 1)[-1]
    pixel_hash = hashlib.sha1(gray.tobytes() + repr(gray.size).encode()).hexdigest()
    return to_square(gray, size, resize), pixel_hash, ""


def dataset_fingerprint(table: pd.DataFrame) -> str:
    """Hash of every file's relative path, byte size and modification time."""
    digest = hashlib.sha256()
    for path, rel in zip(table["path"], table["relpath"]):
        stat = os.stat(path)
        digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclass
class ImageCache:
    """Decoded images and the manifest rows they belong to (row i of `table` is images[i])."""

    images: np.ndarray  # (N, size, size) uint8
    table: pd.DataFrame  # manifest rows plus pixel_hash
    skipped: Counter
    skipped_files: list[tuple[str, str]]
    folder: Path
    built: bool
    seconds: float


def files_digest(table: pd.DataFrame) -> str:
    """Which files a cache holds, whatever their state: the data root and the sorted relative paths."""
    raw = "\n".join([str(_data_root(table))] + sorted(table["relpath"]))
    return hashlib.sha256(raw.encode()).hexdigest()


def _data_root(table: pd.DataFrame) -> Path:
    if table.empty:
        return Path()
    path, rel = Path(table["path"].iloc[0]).resolve(), Path(table["relpath"].iloc[0])
    return path.parents[len(rel.parts) - 1]


def _remove_superseded(folder: Path, meta: dict) -> None:
    """Delete the other caches of the same files, size and resize mode: older states of the same data."""
    for other in folder.parent.glob(f"{meta['size']}px-{meta['resize']}-*"):
        if other == folder or not (other / "meta.json").exists():
            continue
        try:
            old = json.loads((other / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if old.get("files_digest") == meta["files_digest"]:
            log.info("removing superseded cache %s (same files, changed since)", other)
            shutil.rmtree(other, ignore_errors=True)


def cache_key(table: pd.DataFrame, size: int, resize: str) -> str:
    import PIL

    # the decoder's version too: another Pillow (its libjpeg) may decode the same file to other pixels
    raw = f"v{CACHE_VERSION}|Pillow {PIL.__version__}|{size}|{resize}|{dataset_fingerprint(table)}"
    return f"{size}px-{resize}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def build_image_cache(
    table: pd.DataFrame,
    size: int,
    cache_dir: str | Path,
    resize: str = "squash",
    workers: int | None = None,
) -> ImageCache:
    """Load the cache for these manifest rows at this size, building it first if absent."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
    start = time.perf_counter()
    cache_dir = Path(cache_dir)
    folder = cache_dir / cache_key(table, size, resize)
    _remove_abandoned(cache_dir)
    loaded = _read_cache(folder, size) if (folder / "meta.json").exists() else None
    built = loaded is None
    if built:  # the arrays just decoded are used as they are, not read back from disk
        images, index, meta = _write_cache(table, size, resize, folder, workers or os.cpu_count() or 1)
    else:
        images, index, meta = loaded
    by_rel = table.set_index("relpath")
    kept = by_rel.loc[index["relpath"]].reset_index()
    kept["pixel_hash"] = index["pixel_hash"].to_numpy()
    kept = kept[list(table.columns) + ["pixel_hash"]]
    return ImageCache(
        images=images,
        table=kept,
        skipped=Counter(meta["skipped"]),
        skipped_files=[tuple(x) for x in meta["skipped_files"]],
        folder=folder,
        built=built,
        seconds=time.perf_counter() - start,
    )


def _read_cache(folder: Path, size: int):
    """(images, index, meta) of a complete cache folder, or None after removing a damaged one (a truncated
    images.npy from a full disk or a killed copy, an index that does not match it): the caller rebuilds it."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy")
        index = pd.read_csv(folder / "index.csv", dtype=str, keep_default_na=False)
        expected = (meta["n_images"], size, size)
        if images.dtype != np.uint8 or images.shape != expected or len(index) != meta["n_images"]:
            raise ValueError(
                f"images.npy {images.dtype} {images.shape}, index.csv {len(index)} rows; "
                f"meta.json says {expected} uint8"
            )
        return images, index, meta
    except (OSError, ValueError, KeyError, EOFError, pd.errors.ParserError) as exc:
        log.warning("cache %s is damaged (%s): removing it and decoding the images again", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned(cache_dir: Path) -> None:
    """Delete temporary cache folders whose writer is gone (killed while decoding): their names carry its pid."""
    for tmp in cache_dir.glob(".*px-*.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            log.info("removing %s, left by an interrupted cache build", tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _with_umask(path: Path, mode: int) -> None:
    """mkdtemp and mkstemp create private (0700/0600) entries; give them the permissions the user's umask gives."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def _write_cache(table: pd.DataFrame, size: int, resize: str, folder: Path, workers: int):
    """Decode into one preallocated array, write it under a temporary name, rename it into place;
    return (images, index, meta) as written."""
    log.info("decoding %d images at %d px (%s) into %s", len(table), size, resize, folder)
    paths = table["path"].tolist()
    images = np.empty((len(paths), size, size), np.uint8)

    def decode_into(i):
        arr, pixel_hash, why = _decode_with_hash(paths[i], size, resize)
        if arr is not None:
            images[i] = arr
        return pixel_hash, why

    # Pillow releases the GIL while decoding, so threads use every core without pickling arrays.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(decode_into, range(len(paths))))
    ok = [i for i, (_, why) in enumerate(results) if not why]
    skipped_files = [(paths[i], why) for i, (_, why) in enumerate(results) if why]
    for path, why in skipped_files:
        log.warning("skipped %s: %s", path, why)
    if skipped_files:
        images = images[ok]
    index = pd.DataFrame(
        {
            "relpath": table["relpath"].to_numpy()[ok] if ok else [],
            "pixel_hash": [results[i][0] for i in ok],
        },
        dtype=str,
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-{os.getpid()}-", dir=folder.parent))
    _with_umask(tmp, 0o777)
    try:
        np.save(tmp / "images.npy", images)
        index.to_csv(tmp / "index.csv", index=False)
        meta = {
            "size": size,
            "resize": resize,
            "n_images": int(len(ok)),
            "skipped": {"cannot decode image": len(skipped_files)} if skipped_files else {},
            "skipped_files": skipped_files,
            "cache_version": CACHE_VERSION,
            "files_digest": files_digest(table),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.replace(tmp, folder)  # atomic: the cache appears complete or not at all
        except OSError:
            if not (folder / "meta.json").exists():  # another process did not win the race
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_superseded(folder, meta)
    return images, index, meta
