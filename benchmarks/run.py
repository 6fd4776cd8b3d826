"""Input pipeline and training speed of this project against Keras' stock loader, in one run.

    python benchmarks/run.py              # full: writes reports/benchmarks/benchmarks.{md,json}
    python benchmarks/run.py --tiny OUT   # a few images, just to keep it working (CI)

Ratios matter more than absolute numbers on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pneumonia_cxr.data import build_manifest, make_dataset  # noqa: E402
from pneumonia_cxr.data.cache import build_image_cache  # noqa: E402
from pneumonia_cxr.io import write_json  # noqa: E402
from pneumonia_cxr.runner import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT_DIR = ROOT / "reports" / "benchmarks"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def pil_decode(path, size):
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size), Image.Resampling.BILINEAR))


def pil_loop(paths, size, threads: int = 1):
    """The plain decode loop: PIL open, gray, resize; on `threads` threads (Pillow releases the GIL)."""
    if threads == 1:
        for p in paths:
            pil_decode(p, size)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda p: pil_decode(p, size), paths))


def warm_file_cache(paths):
    """Read every file once, so no contestant pays (or is spared) the disk: all decode from RAM."""
    for p in paths:
        Path(p).read_bytes()


def stock_dataset(folder, size, batch=32):
    import keras

    return keras.utils.image_dataset_from_directory(
        folder,
        labels="inferred",
        label_mode="binary",
        color_mode="grayscale",
        image_size=(size, size),
        batch_size=batch,
        shuffle=True,
        seed=0,
        verbose=False,
    )


def epoch_time(ds):
    t = time.perf_counter()
    for _ in ds:
        pass
    return time.perf_counter() - t


def median_epoch_time(ds, repeats: int = 5):
    """Median of several full passes after one warm-up pass: a shared machine's noise averages out."""
    epoch_time(ds)
    return statistics.median(epoch_time(ds) for _ in range(repeats))


def decode_bench(folder: Path, size: int, limit: int | None, rounds: int = 5):
    """First pass and cached-epoch input, contestants interleaved in rounds (PIL, project, stock, ...), so a slow
    minute of a shared machine hits every contestant of that round; ratios are taken per round, then the median."""
    table = build_manifest(folder).table
    table = table[table["split"] == "train"]
    if limit:
        table = table.groupby("label").head(limit // 2)
    n, threads = len(table), os.cpu_count() or 1
    warm_file_cache(table["path"])
    pil1, _ = timed(lambda: pil_loop(table["path"], size))
    runs = []
    for _ in range(1 if limit else rounds):
        pil2, _ = timed(lambda: pil_loop(table["path"], size, threads=threads))
        with tempfile.TemporaryDirectory() as tmp:  # a fresh cache folder: a real first pass every round
            ours, cache = timed(lambda: build_image_cache(table, size, tmp))
            cached_load, _ = timed(lambda: build_image_cache(table, size, tmp))
        labels = (cache.table["label"] == "PNEUMONIA").to_numpy()
        ours_epoch = median_epoch_time(make_dataset(cache.images, labels, 32, training=True, seed=0), repeats=3)
        if limit:
            stock_first = stock_epoch = float("nan")
        else:
            ds = stock_dataset(folder / "train", size)
            stock_first, stock_epoch = epoch_time(ds), epoch_time(ds)
        runs.append(
            {
                "pil2": pil2,
                "ours": ours,
                "cached_load": cached_load,
                "ours_epoch": ours_epoch,
                "stock_first": stock_first,
                "stock_epoch": stock_epoch,
            }
        )
    med = lambda f: statistics.median(f(r) for r in runs)  # noqa: E731
    return {
        "dataset": folder.name,
        "images": n,
        "size": size,
        "rounds": len(runs),
        "first_pass_img_s": {
            "project": med(lambda r: n / r["ours"]),
            "pil_loop_1_thread": n / pil1,
            "pil_loop_all_cores": med(lambda r: n / r["pil2"]),
            "keras_stock": med(lambda r: n / r["stock_first"]),
        },
        "cached_reload_s": med(lambda r: r["cached_load"]),
        "epoch_input_s": {
            "project_cached": med(lambda r: r["ours_epoch"]),
            "keras_stock": med(lambda r: r["stock_epoch"]),
        },
        "ratios": {
            "first_pass_project_over_pil_all_cores": med(lambda r: r["pil2"] / r["ours"]),
            "epoch_input_stock_over_project": med(lambda r: r["stock_epoch"] / r["ours_epoch"]),
        },
        "per_round": runs,
    }


def StepClock():  # noqa: N802  (a Keras callback, built lazily so that importing this file stays light)
    import keras

    class _StepClock(keras.callbacks.Callback):
        """Times training steps from the end of the first to the end of the last: fit's start-up is not counted."""

        def on_train_batch_end(self, batch, logs=None):
            self.ends = getattr(self, "ends", []) + [time.perf_counter()]

        def images_per_second(self, batch_size):
            return (len(self.ends) - 1) * batch_size / (self.ends[-1] - self.ends[0])

    return _StepClock()


def train_bench(folder: Path, size: int, n_steps: int):
    import keras

    from pneumonia_cxr.models import build_scratch_cnn
    from pneumonia_cxr.train import compile_model

    table = build_manifest(folder).table
    table = table[table["split"] == "train"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = build_image_cache(table, size, tmp)
    labels = (cache.table["label"] == "PNEUMONIA").to_numpy().astype("float32")
    out = {}
    feeds = {
        "project_pipeline": make_dataset(cache.images, labels, 32, training=True, seed=0, augment=1.0),
        "project_pipeline_no_augmentation": make_dataset(cache.images, labels, 32, training=True, seed=0),
        "keras_stock_loader": stock_dataset(folder / "train", size).map(lambda x, y: (x, y)),
    }
    for name, ds in feeds.items():
        model = compile_model(build_scratch_cnn(size), 1e-3)
        model.fit(ds.take(2), epochs=1, verbose=0)  # build and trace
        clock = StepClock()
        model.fit(ds.repeat().take(n_steps), steps_per_epoch=n_steps, epochs=1, verbose=0, callbacks=[clock])
        input_only = epoch_time(ds.repeat().take(n_steps))
        out[name] = {
            "train_img_s": clock.images_per_second(32),
            "input_only_img_s": n_steps * 32 / input_only,
            "steps": n_steps,
        }
    keras.backend.clear_session()
    return out


def smoke_profile_bench() -> dict:
    """Run every notebook on the smoke profile into a temporary folder; its run.json has time and memory."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        cmd = [
            sys.executable,
            "-m",
            "pneumonia_cxr.runner",
            "--profile",
            "smoke",
            "--data-dir",
            str(SHARED / "chest_xray_224"),
            "--cache-dir",
            str(t / "cache"),
            "--output-dir",
            str(t / "reports"),
            "--models-dir",
            str(t / "models"),
            "--executed-dir",
            str(t / "notebooks"),
        ]
        if (SHARED.parent / "weights").is_dir():
            cmd += ["--weights-dir", str(SHARED.parent / "weights")]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        run = json.loads((t / "reports" / "metrics" / "run.json").read_text())
    return {k: run[k] for k in ("wall_seconds", "peak_memory_mb")} | {"source": "measured by this benchmark run"}


def write_markdown(r: dict, path: Path):
    lines = [
        "# Benchmarks",
        "",
        f"Machine: {r['cpu_count']} CPU cores, {r.get('cpu', 'processor not recorded')}. "
        "Produced by `python benchmarks/run.py`; raw numbers in `benchmarks.json` beside this file.",
        "",
        "## Decode and input",
        "",
        "| data | images | size | project first pass (img/s) | PIL loop, 1 thread (img/s) | "
        f"PIL loop, {r['cpu_count']} threads (img/s) | Keras stock (img/s) | project / PIL {r['cpu_count']} threads | "
        "cached epoch input, project (s) | epoch input, Keras stock (s) | stock / project |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in r["decode"]:
        f, e, q = d["first_pass_img_s"], d["epoch_input_s"], d["ratios"]
        lines.append(
            f"| {d['dataset']} | {d['images']} | {d['size']} | {f['project']:.0f} | {f['pil_loop_1_thread']:.0f} | "
            f"{f['pil_loop_all_cores']:.0f} | {f['keras_stock']:.0f} | "
            f"{q['first_pass_project_over_pil_all_cores']:.2f}x | {e['project_cached']:.3f} | "
            f"{e['keras_stock']:.2f} | {q['epoch_input_stock_over_project']:.0f}x |"
        )
    rounds = r["decode"][0]["rounds"]
    lines += [
        "",
        f"Every file is read once before any timing, so all contestants decode from memory. The contestants "
        f"take turns in {rounds} rounds (PIL on {r['cpu_count']} threads, the project's first pass into a fresh "
        "cache, the project's cached epoch, the stock loader's first and second pass), so a slow minute of a "
        "shared machine hits all of them; every figure is the median over the rounds, and each ratio is the "
        "median of the per-round ratios. The project's first pass includes hashing every image (duplicate "
        "check) and writing the cache to disk. The project's cached epoch is the median of 3 shuffled passes "
        "after a warm-up pass, batches gathered from the in-memory cache in training order.",
        "",
        "Per round (s): "
        + "; ".join(
            f"{d['dataset']}: "
            + ", ".join(
                f"project {x['ours']:.2f} / PIL {x['pil2']:.2f} first pass, "
                f"stock {x['stock_epoch']:.2f} / project {x['ours_epoch']:.3f} epoch"
                for x in d["per_round"]
            )
            for d in r["decode"]
        )
        + ".",
    ]
    lines += [
        "",
        "## Training the scratch CNN (128 px), 32 images a step",
        "",
        "| feed | training (img/s) | input alone (img/s) | input / training | input-bound? |",
        "|---|---|---|---|---|",
    ]
    for name, t in r["train"].items():
        bound = "yes" if t["input_only_img_s"] < 2 * t["train_img_s"] else "no"
        lines.append(
            f"| {name} | {t['train_img_s']:.0f} | {t['input_only_img_s']:.0f} | "
            f"{t['input_only_img_s'] / t['train_img_s']:.1f}x | {bound} |"
        )
    steps = next(iter(r["train"].values()))["steps"]
    lines += [
        "",
        f"{steps} training steps a feed, timed from the end of the first step to the end of the last (fit's "
        "start-up excluded). Input-bound means the feed alone delivers less than twice what training consumes.",
    ]
    if r.get("profiles"):
        lines += [
            "",
            "## Profiles: every notebook, papermill",
            "",
            "| profile | wall time (min) | peak memory (MB) | source |",
            "|---|---|---|---|",
        ]
        for name, p in r["profiles"].items():
            lines.append(f"| {name} | {p['wall_seconds'] / 60:.1f} | {p['peak_memory_mb']:.0f} | {p['source']} |")
    scratch = path.with_name(f".{path.name}.tmp")  # renamed over the old file only once whole
    scratch.write_text("\n".join(lines) + "\n")
    os.replace(scratch, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", metavar="OUT_DIR", help="a few images only; write results to OUT_DIR")
    args = parser.parse_args(argv)
    out_dir = Path(args.tiny) if args.tiny else OUT_DIR
    limit = 20 if args.tiny else None
    r = {
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "tiny": bool(args.tiny),
        "decode": [
            decode_bench(SHARED / "chest_xray_fullres_sample", 224, limit),
            decode_bench(SHARED / "chest_xray_224", 224, limit),
        ],
    }
    r["train"] = train_bench(SHARED / "chest_xray_fullres_sample", 64 if args.tiny else 128, 3 if args.tiny else 60)
    if not args.tiny:
        r["profiles"] = {"smoke": smoke_profile_bench()}
        run_json = (
            ROOT / "reports" / "metrics" / "run.json"
        )  # the committed full run (about 40 minutes: not repeated here)
        if run_json.exists():
            run = json.loads(run_json.read_text())
            cpus = sorted(
                {nb.get("cpu", "?") for nb in run.get("notebooks", {}).values()}
            )  # its host may not be this one
            r["profiles"][run["profile"]] = {k: run[k] for k in ("wall_seconds", "peak_memory_mb")} | {
                "source": f"reports/metrics/run.json (git {run.get('git_commit', '?')}, on {' and '.join(cpus)})"
            }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "benchmarks.json", r)
    write_markdown(r, out_dir / "benchmarks.md")
    print((out_dir / "benchmarks.md").read_text())


if __name__ == "__main__":
    main()
