"""The training augmentation of an older commit against this checkout's: the same pixels, and the time per batch.

    python benchmarks/augmentation_speed.py [--commit 5e895cd] [--rounds 5]

The older `data/pipeline.py` is read from git (`git show`, never checked out) and imported beside this one. Both
augment the same 32 training images with the same per-batch seeds: the pixels must be identical (exit 1 if not), at
224 px (notebooks 04 and 05) and 128 px (notebook 03). Rounds alternate between the two so a slower spell of a shared
host falls on both. Writes reports/benchmarks/augmentation_speed.csv: median ms per batch of 32 for each.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "benchmarks" / "augmentation_speed.csv"
SHARED = ROOT.parent / "shared"


def older_pipeline(commit: str, folder: Path):
    """The `pneumonia_cxr.data.pipeline` module of `commit`, its relative imports pointed at this checkout's package."""
    source = subprocess.run(
        ["git", "show", f"{commit}:src/pneumonia_cxr/data/pipeline.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = folder / "pipeline_older.py"
    path.write_text(source.replace("from .", "from pneumonia_cxr.data."))
    spec = importlib.util.spec_from_file_location("pipeline_older", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", default="5e895cd", help="the commit before the augmentation changed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=20, help="batches timed per round")
    parser.add_argument("--data-dir", default=str(SHARED / "data" / "chest_xray_224"))
    args = parser.parse_args(argv)
    import tensorflow as tf
    from PIL import Image

    from pneumonia_cxr.data import pipeline
    from pneumonia_cxr.io import write_csv
    from pneumonia_cxr.runner import cpu_model

    files = sorted(glob.glob(f"{args.data_dir}/train/*/*.jpeg"))[:32]
    if len(files) < 32:
        raise SystemExit(f"{args.data_dir}/train: fewer than 32 JPEGs")
    originals = [Image.open(f).convert("L") for f in files]
    rows, identical = [], True
    with tempfile.TemporaryDirectory() as tmp:
        older = older_pipeline(args.commit, Path(tmp))
        functions = {
            args.commit: tf.function(older.augment_acquisition),
            "this": tf.function(pipeline.augment_acquisition),
        }
        for size in (224, 128):
            batch = tf.constant(
                np.stack([np.asarray(im.resize((size, size))) for im in originals])[..., None], tf.float32
            )
            outputs = {
                name: [f(batch, tf.constant([r, 1], tf.int64)).numpy() for r in range(8)]
                for name, f in functions.items()
            }
            same = all(np.array_equal(a, b) for a, b in zip(*outputs.values()))
            identical &= same
            times = {name: [] for name in functions}
            for rnd in range(args.rounds):
                for name, f in functions.items():
                    t0 = time.perf_counter()
                    for r in range(args.batches):
                        f(batch, tf.constant([r, rnd], tf.int64))
                    times[name].append((time.perf_counter() - t0) / args.batches * 1000)
            for name, ms in times.items():
                rows.append(
                    {
                        "image_size": size,
                        "code": name,
                        "median_ms_per_batch_of_32": round(float(np.median(ms)), 1),
                        "rounds": args.rounds,
                        "same_pixels": same,
                        "cpu": cpu_model(),
                    }
                )
                print(f"{size} px, {name}: {np.median(ms):.1f} ms a batch (same pixels: {same})", flush=True)
    write_csv(OUT, pd.DataFrame(rows))
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
