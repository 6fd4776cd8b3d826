"""Files every step writes and reads: atomic writes by rename, strict JSON, exact CSV floats, the git commit.

Invariant: a file written here appears complete or not at all (written under a temporary name, then renamed), with
the permissions the user's umask gives, and a JSON file is strict JSON (NaN and infinity written as null).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd


def git_commit() -> str:
    """HEAD's short hash, with "+dirty" when tracked code (src/, pyproject.toml) differs from it: a result made by
    uncommitted code must not claim a commit. Notebooks are left out, since the runner rewrites them as it goes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        if not head.stdout.strip():
            return "unknown"
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":/src", ":/pyproject.toml"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if changed.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _atomic_write_text(path: Path, text: str) -> None:
    """Write under a temporary name, then rename: readers see the old file or the new one, never half of one. The
    file gets the permissions the user's umask gives (mkstemp alone makes it private)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def strict(obj):
    """`obj` with every NaN or infinity as None, numpy scalars and arrays as Python ones: valid JSON for any parser."""
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return strict(obj.tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj) -> Path:
    """Write strict JSON (NaN as null) atomically (a crash never leaves half a file behind)."""
    path = Path(path)
    _atomic_write_text(path, json.dumps(strict(obj), indent=1, default=_to_builtin, allow_nan=False) + "\n")
    return path


# Probabilities are written with every digit (float32 printed short reads back as a different float64), so that
# `p >= threshold` on a CSV read back is what it was in memory, for the image that sets the threshold too.
EXACT_FLOATS = "%.17g"


def write_csv(path: str | Path, table: pd.DataFrame, float_format: str | None = None) -> Path:
    """Write a table atomically (a crash never leaves half a file that a later step reads)."""
    path = Path(path)
    _atomic_write_text(path, table.to_csv(index=False, float_format=float_format))
    return path


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def _to_builtin(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)}")
