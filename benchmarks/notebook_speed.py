"""The full profile's notebooks 01-07, an older commit against this one, on one host:

    python benchmarks/notebook_speed.py run --commit 15325c2     # the older commit, in a scratch copy from git
    python benchmarks/notebook_speed.py table [--make-test-seconds S]   # its times beside reports/metrics/run.json
    python benchmarks/notebook_speed.py run --commit HEAD        # this commit too, in a scratch copy, same host
    python benchmarks/notebook_speed.py table --current <HEAD's hash>   # both scratch-copy runs side by side

`run` takes the commit's tree from git (`git archive`, never checked out over this one), runs its own runner on the
official layout with a cold image cache, as a new user would, and keeps the run log and the validation metrics in
reports/benchmarks/notebooks_<commit>.json. This checkout's times are those of the committed main run
(reports/metrics/run.json, also a cold start via `make all`), or, with `table --current`, a scratch-copy run of this
commit made by `run` on the same host, one after the other: the fair comparison. `table` writes
reports/benchmarks/notebook_speed.csv and .md: seconds per notebook for both, the ratio, peak memory, the host each ran
on, validation numbers before and after, and the `make test` time when given. Run both sides on the same host, one
after the other, with nothing else running: absolute times on shared machines move by minutes from day to day, ratios
much less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "reports" / "benchmarks"
SHARED = ROOT.parent / "shared"
NOTEBOOKS = [
    "01_eda",
    "02_baseline_dense",
    "03_scratch_cnn",
    "04_transfer_learning",
    "05_ternary_classifier",
    "06_keras_tuner_search",
    "07_ensemble",
]
# metrics file -> the validation numbers compared before and after (keys looked up in its "val"/"validation" part)
VAL_FILES = ["baseline_dense", "scratch_cnn", "transfer", "ternary", "tuned_cnn", "ensemble", "ternary_with_ensemble"]


# The older commit's own runner, with its clean-up step wrapped to keep each code cell's seconds first (this checkout's
# runner keeps them in run.json itself: `runner.cell_seconds`); argv: the cells file, then the runner's arguments.
TIMED_RUNNER = """
import json, sys
from pathlib import Path
import nbformat
import pneumonia_cxr.runner as runner
cells, clean = {}, runner.clean_notebook
def timed_clean(path):
    book = nbformat.read(str(path), as_version=4)
    cells[Path(path).stem] = [
        [c.source.split("\\n", 1)[0][:80], round(float(c.metadata.get("papermill", {}).get("duration") or 0), 1)]
        for c in book.cells if c.cell_type == "code"
    ]
    Path(sys.argv[1]).write_text(json.dumps(cells))
    clean(path)
runner.clean_notebook = timed_clean
sys.exit(runner.main(sys.argv[2:]))
"""


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def validation_numbers(metrics_dir: Path) -> dict:
    """The validation numbers each model is judged by, by model: the 'before/after' evidence (never test).

    Binary models: AUC, sensitivity and specificity at the validation-chosen threshold, and Youden's J under each
    acquisition shift (the model choice ranks by their mean). Ternary: accuracy, macro AUC, bacterial-vs-viral AUC.
    """
    found = {}
    for name in VAL_FILES:
        path = metrics_dir / f"{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        val = data.get("val", {})
        if data.get("task") == "ternary":
            found[name] = {
                "accuracy": val.get("accuracy"),
                "macro_auc": val.get("macro_ovr_auc"),
                "bacterial_vs_viral_auc": (val.get("bacterial_vs_viral") or {}).get("roc_auc"),
            }
        else:
            found[name] = {k: val.get(k) for k in ("roc_auc", "sensitivity", "specificity")}
            shifts = metrics_dir / f"{name}_val_robustness.csv"
            if shifts.exists():  # Youden's J per shift: the commits may evaluate different sets of shifts
                table = pd.read_csv(shifts)
                j = table["sensitivity"] + table["specificity"] - 1
                found[name]["youden_by_shift"] = dict(zip(table["shift"], j.round(6)))
    return found


def run_commit(commit: str, data_dir: Path, weights_dir: Path) -> Path:
    """Run notebooks 01-07 of `commit` in a scratch copy; returns the JSON written under reports/benchmarks/."""
    short = subprocess.run(
        ["git", "rev-parse", "--short", commit], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix=f"bench_{short}_") as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        archive = Path(tmp) / "tree.tar"
        subprocess.run(["git", "archive", "-o", str(archive), short], check=True, cwd=ROOT)
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        env = {
            **os.environ,
            "PYTHONPATH": str(tree / "src"),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_ENABLE_ONEDNN_OPTS": "1",
        }
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        cells = Path(tmp) / "cells.json"
        cmd = [sys.executable, "-c", TIMED_RUNNER, str(cells), "--profile", "full", "--data-dir", str(data_dir)]
        cmd += ["--weights-dir", str(weights_dir), "--only", *NOTEBOOKS]
        print(f"{short}: {' '.join(cmd)}", flush=True)
        done = subprocess.run(cmd, cwd=tree, env=env)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"the runner of {short} failed (exit {done.returncode})")
        log = json.loads((tree / "reports" / "metrics" / "run.json").read_text())
        for nb, timed in json.loads(cells.read_text()).items():
            log["notebooks"][nb]["cells"] = timed
        if "data_dir" in log:  # the older runner wrote it whole: record it relative to this repository
            log["data_dir"] = Path(os.path.relpath(os.path.abspath(log["data_dir"]), ROOT)).as_posix()
        result = {
            "commit": short,
            "started_utc": started.isoformat(timespec="seconds"),
            "wall_seconds": round(wall, 1),
            "cpu": cpu_name(),
            "cpu_count": os.cpu_count(),
            "run_log": log,
            "validation": validation_numbers(tree / "reports" / "metrics"),
            # the largest process that ran (a notebook's kernel): the runner's own record may carry an older run's
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUT_DIR / f"notebooks_{short}.json"
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=1) + "\n")
    tmp_out.replace(out)
    print(f"wrote {out.relative_to(ROOT)} ({wall / 60:.1f} min)")
    return out


def n_shifts(validation: dict) -> int:
    """How many acquisition shifts (with 'none') a run scored its binary models under."""
    return max((len(v.get("youden_by_shift", {})) for v in validation.values()), default=0)


def cell_lines(old: dict, this_log: dict, this: str, at_least: float = 5.0) -> list[str]:
    """Markdown: per notebook, each commit's code cells that took `at_least` seconds, in order, with their seconds."""
    lines = []
    for nb in NOTEBOOKS:
        for commit, entry in ((old["commit"], old["run_log"]["notebooks"][nb]), (this, this_log["notebooks"][nb])):
            cells = entry.get("cells")
            if cells is None:
                lines.append(f"- {nb}, {commit}: no per-cell times recorded")
                continue
            shown = "; ".join(f"`{src.strip()[:60]}` {sec:.0f} s" for src, sec in cells if sec >= at_least)
            lines.append(f"- {nb}, {commit}: {shown or 'none'}")
    return [*lines, ""]


def write_table(
    baseline: str,
    make_test_seconds: float | None,
    this_peak_mb: float | None,
    run_log: Path | None = None,
    current: str | None = None,
) -> Path:
    """reports/benchmarks/notebook_speed.{csv,md}: the older commit's run beside this checkout's main run, or beside
    `current`'s scratch-copy run (`run --commit`), which ran on the same host and is the fair comparison."""
    old = json.loads((OUT_DIR / f"notebooks_{baseline}.json").read_text())
    new = json.loads((OUT_DIR / f"notebooks_{current}.json").read_text()) if current else None
    if new:
        this_log, this, this_peak_mb = new["run_log"], new["commit"], this_peak_mb or new.get("peak_memory_mb")
    else:
        this_log = json.loads((run_log or ROOT / "reports" / "metrics" / "run.json").read_text())
        commits = {e.get("git_commit") for nb, e in this_log["notebooks"].items() if nb in NOTEBOOKS}
        this = " ".join(sorted(c for c in commits if c))
    rows = []
    for nb in NOTEBOOKS:
        before, after = old["run_log"]["notebooks"][nb]["seconds"], this_log["notebooks"][nb]["seconds"]
        rows.append({"notebook": nb, f"{old['commit']}_s": before, f"{this}_s": after, "ratio": after / before})
    table = pd.DataFrame(rows)
    total_before, total_after = table[f"{old['commit']}_s"].sum(), table[f"{this}_s"].sum()
    table.loc[len(table)] = {
        "notebook": "01-07",
        f"{old['commit']}_s": total_before,
        f"{this}_s": total_after,
        "ratio": total_after / total_before,
    }
    this_peak = this_peak_mb if this_peak_mb is not None else this_log.get("peak_memory_mb")
    old_peak = old.get("peak_memory_mb")
    table.loc[len(table)] = {
        "notebook": "peak memory, MB",
        f"{old['commit']}_s": old_peak,
        f"{this}_s": this_peak,
        "ratio": this_peak / old_peak if old_peak and this_peak else None,
    }
    if make_test_seconds:
        table.loc[len(table)] = {"notebook": "make test after install", f"{this}_s": make_test_seconds}
    table["ratio"] = table["ratio"].astype(float).round(3)
    table.to_csv(OUT_DIR / "notebook_speed.csv", index=False)
    cpus = {old["cpu"], new["cpu"] if new else this_log["notebooks"]["07_ensemble"].get("cpu", "?")}
    validation = []
    now = new["validation"] if new else validation_numbers(ROOT / "reports" / "metrics")
    for model, numbers in old["validation"].items():
        numbers, after_numbers = dict(numbers), dict(now.get(model, {}))
        by_shift, after_by_shift = numbers.pop("youden_by_shift", {}), after_numbers.pop("youden_by_shift", {})
        common = sorted(set(by_shift) & set(after_by_shift))
        if common:  # the mean J over the shifts both commits evaluate
            key = f"mean_youden_{len(common)}_common_shifts"
            numbers[key] = sum(by_shift[c] for c in common) / len(common)
            after_numbers[key] = sum(after_by_shift[c] for c in common) / len(common)
        for key, before in numbers.items():
            after = after_numbers.get(key)
            if before is not None and after is not None:
                validation.append(
                    {"model": model, "validation": key, old["commit"]: before, this: after, "change": after - before}
                )
    val = pd.DataFrame(validation)
    val.to_csv(OUT_DIR / "notebook_speed_validation.csv", index=False)
    fmt = lambda x: f"{x:.4f}" if isinstance(x, float) else str(x)  # noqa: E731
    md = [
        "# Notebooks 01-07, full profile, official layout: an older commit against this one",
        "",
        f"Produced by `python benchmarks/notebook_speed.py`. Host: {', '.join(sorted(cpus))}, "
        f"{old['cpu_count']} cores; {old['commit']} started {old['started_utc']} (a scratch copy, cold image cache), "
        + (
            f"{this} started {new['started_utc']} (a scratch copy, cold image cache), one after the other with "
            "nothing else running."
            if new
            else "this commit's run is the committed main run (`make all`, cold cache)."
        ),
        "",
        "| notebook | " + " | ".join(table.columns[1:]) + " |",
        "|---" * len(table.columns) + "|",
        *(
            "| "
            + " | ".join(
                [str(r[0]), *("" if pd.isna(v) else f"{v:.1f}" for v in r[1:3]), "" if pd.isna(r[3]) else f"{r[3]:.3f}"]
            )
            + " |"
            for r in table.itertuples(index=False)
        ),
        "",
        f"Acquisition shifts each binary model is scored under: {old['commit']} {n_shifts(old['validation'])}, "
        f"this commit {n_shifts(now)}"
        + (
            " (more predictions in the evaluation of notebooks 03, 04, 06 and 07)."
            if n_shifts(now) > n_shifts(old["validation"])
            else "."
        ),
        "Peak memory: the largest process (a notebook's kernel)."
        + (
            " `make test` (lint, unit tests, every notebook under nbval on the smoke profile): seconds after the "
            "install in a fresh clone, as `.ci/run` prints them."
            if make_test_seconds
            else ""
        ),
        "",
        "## Where the time went: code cells of 5 s or more, first line of each",
        "",
        *cell_lines(old, this_log, this),
        "## Validation, before and after (never test)",
        "",
        "| model | validation | " + f"{old['commit']} | {this} | change |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(fmt(v) for v in r) + " |" for r in val.itertuples(index=False)),
        "",
    ]
    out = OUT_DIR / "notebook_speed.md"
    out.write_text("\n".join(md))
    print(out.read_text())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run notebooks 01-07 of an older commit")
    run.add_argument("--commit", default="15325c2")
    run.add_argument("--data-dir", default=str(SHARED / "data" / "chest_xray_224"))
    run.add_argument("--weights-dir", default=str(SHARED / "weights"))
    table = sub.add_parser("table", help="write the side-by-side table")
    table.add_argument("--baseline", default="15325c2")
    table.add_argument("--make-test-seconds", type=float, default=None, help="`make test` after the install, timed")
    table.add_argument("--run-log", type=Path, default=None, help="this checkout's run.json (default: the main run's)")
    table.add_argument("--this-peak-mb", type=float, default=None, help="this commit's peak, measured as `run` does")
    table.add_argument("--current", default=None, help="this commit's short hash, run by `run` on the same host")
    args = parser.parse_args(argv)
    if args.command == "run":
        run_commit(args.commit, Path(args.data_dir).resolve(), Path(args.weights_dir).resolve())
        return 0
    write_table(args.baseline, args.make_test_seconds, args.this_peak_mb, args.run_log, args.current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
