"""What one training step and one prediction batch cost on this CPU, for the models the notebooks train, with and
without XLA (`jit_compile=True`) and with bfloat16 compute (`mixed_bfloat16`):

    python benchmarks/training_step_speed.py [--steps 15] [--out reports/benchmarks/training_step_speed.csv]

Random images of the notebooks' sizes (speed does not depend on content); the first steps (tracing, compiling) are
excluded. The variants take turns in each round, and the median over rounds is kept, so a slow minute of a shared
machine hits all of them. It informs the choice of what to change, not a published number.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pneumonia_cxr.config import PROFILES, resolve_weights  # noqa: E402
from pneumonia_cxr.models import build_scratch_cnn, build_transfer_model, unfreeze_top  # noqa: E402
from pneumonia_cxr.runner import cpu_model  # noqa: E402
from pneumonia_cxr.train import compile_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT.parent / "shared" / "weights"
FULL = PROFILES["full"]


def build(kind: str, policy: str):
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    if kind == "scratch_cnn":
        return build_scratch_cnn(FULL["cnn_size"], equalize=FULL["cnn_equalize"]), FULL["cnn_size"]
    size = FULL["transfer_size"]
    weights = resolve_weights("imagenet", "MobileNetV2", 0.5, str(WEIGHTS) if WEIGHTS.is_dir() else None)
    model = build_transfer_model(size, "MobileNetV2", weights if Path(str(weights)).is_file() else None, 0.5)
    if kind == "transfer_fine_tune":
        unfreeze_top(model, FULL["fine_tune_layers"])
    return model, size


def time_variant(kind: str, policy: str, jit: bool, steps: int) -> dict:
    model, size = build(kind, policy)
    compile_model(model, 1e-4)
    model.jit_compile = jit
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (32 * steps, size, size, 1)).astype("float32")
    y = (np.arange(len(x)) % 2).astype("float32")
    model.fit(x[:64], y[:64], batch_size=32, epochs=1, verbose=0)  # trace and compile
    t = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    train = (time.perf_counter() - t) / steps
    model.predict(x[:64], batch_size=64, verbose=0)
    t = time.perf_counter()
    model.predict(x, batch_size=64, verbose=0)
    predict = (time.perf_counter() - t) / len(x)
    keras.mixed_precision.set_global_policy("float32")
    return {"train_step_s": train, "predict_img_per_s": 1 / predict}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--kinds", nargs="*", default=["scratch_cnn", "transfer_fine_tune"])
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "training_step_speed.csv"))
    args = parser.parse_args(argv)
    variants = [("float32", False), ("float32", True), ("mixed_bfloat16", False), ("mixed_bfloat16", True)]
    rows = []
    for r in range(args.rounds):
        for kind in args.kinds:
            for policy, jit in variants:
                try:
                    m = time_variant(kind, policy, jit, args.steps)
                except Exception as exc:  # noqa: BLE001 - a variant XLA cannot compile is a result, not a crash
                    m = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                rows.append({"round": r + 1, "model": kind, "policy": policy, "xla": jit, **m})
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    numeric = [c for c in ("train_step_s", "predict_img_per_s") if c in table]
    summary = table.groupby(["model", "policy", "xla"], sort=False)[numeric].median().reset_index()
    if "error" in table:  # why a variant has no time (XLA cannot compile an op, say): its first message
        errors = table.dropna(subset=["error"]).groupby(["model", "policy", "xla"], sort=False)["error"].first()
        where = errors.str.extract(r"(node \S+)")[0].fillna("")
        message = (errors.str.split("\n").str[0] + " " + where).rename("error")
        summary = summary.join(message, on=["model", "policy", "xla"])
    summary["cpu"] = cpu_model()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    summary.round(4).to_csv(args.out, index=False)
    print(summary.round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
