"""How the augmented training pipeline shares two cores with the model: epoch times of notebook 03's scratch CNN
(or notebook 04's MobileNetV2, fine-tuning) under several tf.data settings, the same batches in each.

    python benchmarks/training_input_speed.py [--model scratch|transfer] [--rounds 2] [--epochs 2]

The augmentation is seeded per batch and mapped in order, so every setting feeds the model the same batches and the
trained weights must be the same: the script checks it on the validation predictions. Settings alternate round by
round (A B C, A B C, ...) so a slower spell of a shared host falls on all of them. Writes
reports/benchmarks/training_input_speed.csv: one row per setting and epoch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "benchmarks" / "training_input_speed.csv"
SHARED = ROOT.parent / "shared"

# tf.data settings of the augmented training batches: (parallel calls of the map, prefetch depth, autotune on)
SETTINGS = {
    "autotuned map and prefetch": ("autotune", "autotune", True),
    "one map call, prefetch 1, no autotune": (1, 1, False),
    "two map calls, prefetch 2, no autotune": (2, 2, False),
}


def training_batches(images, labels, batch_size, seed, max_batches, parallel, prefetch, autotune):
    """make_dataset's training branch (shuffle, cap, one stateless seed per batch, augment), with these settings."""
    import tensorflow as tf

    from pneumonia_cxr.data.pipeline import augment_acquisition

    x, y = tf.constant(images[..., None]), tf.constant(labels)
    ds = tf.data.Dataset.range(len(images)).shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).take(max_batches)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    ds = tf.data.Dataset.zip(ds, seeds)

    def gather(index, batch_seed):
        return augment_acquisition(tf.cast(tf.gather(x, index), tf.float32), batch_seed, 1.0), tf.gather(y, index)

    auto = tf.data.AUTOTUNE
    ds = ds.map(gather, num_parallel_calls=auto if parallel == "autotune" else parallel, deterministic=True)
    ds = ds.prefetch(auto if prefetch == "autotune" else prefetch)
    if not autotune:
        options = tf.data.Options()
        options.autotune.enabled = False
        ds = ds.with_options(options)
    return ds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["scratch", "transfer"], default="scratch")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data-dir", default=str(SHARED / "data" / "chest_xray_224"))
    parser.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    parser.add_argument("--weights-dir", default=str(SHARED / "weights"))
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from pneumonia_cxr.config import resolve_weights
    from pneumonia_cxr.data import class_weights, make_dataset
    from pneumonia_cxr.inference import predict_batches
    from pneumonia_cxr.io import write_csv
    from pneumonia_cxr.models import build_scratch_cnn, build_transfer_model, unfreeze_top
    from pneumonia_cxr.notebook import setup
    from pneumonia_cxr.runner import cpu_model
    from pneumonia_cxr.train import compile_model

    size_key = "cnn_size" if args.model == "scratch" else "transfer_size"
    cfg, _, data = setup("full", args.data_dir, args.cache_dir, "/tmp/training_input_speed", args.seed, size_key, None)
    (x_tr, y_tr, _), (x_va, y_va, _) = data.split("train"), data.split("val")

    def fresh_model():
        keras.utils.set_random_seed(args.seed)
        if args.model == "scratch":
            return compile_model(build_scratch_cnn(cfg["image_size"], equalize=cfg["cnn_equalize"]), 1e-3)
        weights = resolve_weights("imagenet", cfg["backbone"], cfg["alpha"], args.weights_dir)
        model = build_transfer_model(cfg["image_size"], cfg["backbone"], weights, cfg["alpha"])
        unfreeze_top(model, cfg["fine_tune_layers"])  # the fine-tuning phase: the longest of notebook 04
        return compile_model(model, 2e-4)

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t0)

    rows, outputs = [], {}
    for rnd in range(args.rounds):
        for name, (parallel, prefetch, autotune) in SETTINGS.items():
            model = fresh_model()
            train = training_batches(
                x_tr, y_tr, cfg["batch_size"], args.seed, cfg["max_batches_per_epoch"], parallel, prefetch, autotune
            )
            clock = EpochClock()
            clock.seconds = []
            model.fit(
                train,
                validation_data=make_dataset(x_va, y_va, 128),
                epochs=args.epochs,
                class_weight=class_weights(y_tr),
                callbacks=[clock],
                verbose=0,
            )
            outputs.setdefault(name, predict_batches(model, x_va))
            for epoch, seconds in enumerate(clock.seconds, 1):
                rows.append(
                    {"model": args.model, "setting": name, "round": rnd + 1, "epoch": epoch, "seconds": seconds}
                )
                print(f"round {rnd + 1}, {name}, epoch {epoch}: {seconds:.1f} s", flush=True)
    reference = next(iter(outputs.values()))
    same = all(np.array_equal(reference, p) for p in outputs.values())
    table = pd.DataFrame(rows).assign(same_weights_as_first_setting=same, cpu=cpu_model())
    if OUT.exists():  # the other model's rows stay
        old = pd.read_csv(OUT)
        table = pd.concat([old[old["model"] != args.model], table], ignore_index=True)
    write_csv(OUT, table)
    print(table[table["model"] == args.model].groupby("setting")["seconds"].describe().round(1))
    print(f"same validation predictions in every setting: {same}; wrote {OUT.relative_to(ROOT)}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
