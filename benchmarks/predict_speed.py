"""`predict` on many images, this checkout against an older commit, side by side on one host:

    python benchmarks/predict_speed.py [--baseline 15325c2] [--images ../shared/data/chest_xray_224/test]

Both run as a user runs them (a fresh process each, TensorFlow start-up included) on the same images with the same
models, in alternating rounds; the older code is taken from git (`git archive`), never checked out over this one.
Writes reports/benchmarks/predict_speed.csv: seconds per round and commit, the ratio, and whether both made the same
decisions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run_predict(src: Path, images: list[str], model: str, ternary: str) -> tuple[float, list[str]]:
    """Seconds of one `predict` call over every image, and its decisions."""
    env = {**os.environ, "PYTHONPATH": str(src), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pneumonia_cxr.predict",
            *images,
            "--model",
            model,
            "--ternary-model",
            ternary,
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"predict from {src} failed:\n{out.stderr[-2000:]}")
    return seconds, [row["decision"] for row in json.loads(out.stdout)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="15325c2", help="the older commit")
    parser.add_argument("--images", default=str(ROOT.parent / "shared/data/chest_xray_224/test"))
    parser.add_argument("--model", default="models/ensemble.keras")
    parser.add_argument("--ternary", default="models/ternary.keras")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "reports" / "benchmarks" / "predict_speed.csv"))
    args = parser.parse_args(argv)
    images = sorted(str(p) for p in Path(args.images).rglob("*.jpeg"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "old.tar"
        subprocess.run(["git", "archive", "-o", str(archive), args.baseline, "src"], check=True, cwd=ROOT)
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        sources = {args.baseline: Path(tmp) / "src", commit.stdout.strip(): ROOT / "src"}
        rows, decisions = [], {}
        for r in range(args.rounds):
            for name, src in sources.items():
                seconds, decisions[name] = run_predict(src, images, args.model, args.ternary)
                rows.append({"round": r + 1, "commit": name, "images": len(images), "seconds": round(seconds, 1)})
                print(f"round {r + 1}, {name}: {seconds:.1f} s", flush=True)
    table = pd.DataFrame(rows)
    medians = table.groupby("commit")["seconds"].median()
    old, new = medians[args.baseline], medians[commit.stdout.strip()]
    from pneumonia_cxr.runner import cpu_model

    summary = pd.DataFrame(
        [
            {
                "round": "median",
                "commit": f"{args.baseline} / {commit.stdout.strip()}",
                "images": len(images),
                "seconds": f"{old:.1f} / {new:.1f}",
                "speed-up": round(old / new, 1),
                "same decisions": len(set(map(tuple, decisions.values()))) == 1,
                "cpu": f"{os.cpu_count()} cores, {cpu_model()}",
            }
        ]
    )
    out = pd.concat([table.astype(str), summary.astype(str)], ignore_index=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.out, index=False)
    print(out.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
