"""What predicting and loading cost with the project's loops against Keras' own, on the committed run's models:

    python benchmarks/prediction_loop_speed.py [--rounds 5] [--out reports/benchmarks/prediction_loop_speed.csv]

- predict: the validation images through each model with `model.predict` on a tf.data pipeline with autotuned
  parallelism and prefetching (how the notebooks predicted before), against `inference.predict_batches` (one traced
  graph per model, batches handed to it directly). Both see the same batches, and the outputs must be identical.
- load: `keras.models.load_model` as Keras does it, against `train.load_model` (each Sequential built once).

The two take turns in every round; each round's seconds are kept, since on two cores the spread is the finding
(tf.data's autotuned threads compete with the model for the cores, and some calls take 1.5 times as long). Run it
with nothing else running. It informs a choice; no published number depends on it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402

from pneumonia_cxr.data import load_dataset  # noqa: E402
from pneumonia_cxr.inference import predict_batches  # noqa: E402
from pneumonia_cxr.runner import cpu_model  # noqa: E402
from pneumonia_cxr.train import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def autotuned_predict(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """`model.predict` on the evaluation pipeline the notebooks used before: autotuned map and prefetch."""
    x = tf.constant(images[..., None])
    ds = tf.data.Dataset.range(len(images)).batch(batch_size)
    ds = ds.map(lambda i: tf.gather(x, i), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return model.predict(ds.prefetch(tf.data.AUTOTUNE), verbose=0)


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


WAYS = {"model.predict, autotuned tf.data": autotuned_predict, "predict_batches": predict_batches}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "chest_xray_224"))
    parser.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    parser.add_argument("--models", default=str(ROOT / "models"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "prediction_loop_speed.csv"))
    args = parser.parse_args(argv)
    models = {name: load_model(Path(args.models) / f"{name}.keras") for name in ("scratch_cnn", "transfer", "ensemble")}
    images = {}
    for _, meta in models.values():
        size = meta["image_size"]
        if size not in images:
            data = load_dataset(args.data_dir, size, args.cache_dir, seed=42, thorax_width=meta.get("thorax_width"))
            images[size] = data.split("val")[0]
    rows = []
    for name, (model, meta) in models.items():  # trace both once before timing
        x = images[meta["image_size"]]
        same = np.array_equal(autotuned_predict(model, x), predict_batches(model, x))
        for r in range(args.rounds):
            for way, fn in WAYS.items():
                seconds = timed(fn, model, x)
                rows.append(
                    {
                        "what": "predict",
                        "model": name,
                        "images": len(x),
                        "round": r + 1,
                        "way": way,
                        "seconds": round(seconds, 3),
                        "identical outputs": same,
                    }
                )
                print(rows[-1], flush=True)
    path = Path(args.models) / "ensemble.keras"
    for r in range(args.rounds):
        for way, fn in (
            ("keras.models.load_model", lambda: keras.models.load_model(path, safe_mode=True, compile=False)),
            ("train.load_model", lambda: load_model(path)),
        ):
            seconds = timed(fn)
            rows.append({"what": "load", "model": "ensemble", "round": r + 1, "way": way, "seconds": round(seconds, 3)})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows).assign(cpu=f"{os.cpu_count()} cores, {cpu_model()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    summary = table.groupby(["what", "model", "way"], sort=False)["seconds"].agg(["median", "min", "max"])
    print(summary.round(2).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
