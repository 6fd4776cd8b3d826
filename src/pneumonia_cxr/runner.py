"""Run every notebook in order with papermill, with one profile:

    python -m pneumonia_cxr.runner --profile full --data-dir data/chest_xray

Executed notebooks replace the sources by default (so the repository shows the latest run), each only once it
finished (it runs in a scratch copy beside it); --executed-dir writes them elsewhere. While a notebook runs, run.json
marks it "running", so an interrupted run is never reported up to date. Each cell's output (epochs, trials) is
logged to the terminal as it comes. --prepare-only injects the parameters without executing
(for nbval). On failure it exits 1, naming the notebook and the cell.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm

from .config import PROFILES
from .io import git_commit, read_json, write_json
from .provenance import ROOT, code_fingerprint

NOTEBOOKS = [
    "notebooks/01_eda.ipynb",
    "notebooks/02_baseline_dense.ipynb",
    "notebooks/03_scratch_cnn.ipynb",
    "notebooks/04_transfer_learning.ipynb",
    "notebooks/05_ternary_classifier.ipynb",
    "notebooks/06_keras_tuner_search.ipynb",
    "notebooks/07_ensemble.ipynb",
    "final_notebook.ipynb",
]

# The other notebooks' results (models, predictions, metrics) each notebook reads. A notebook is out of date when one
# of them was made again with other code after it ran, even if its own code never changed.
READS_FROM = {
    "07_ensemble": ["03_scratch_cnn", "04_transfer_learning", "05_ternary_classifier", "06_keras_tuner_search"],
    "final_notebook": [Path(nb).stem for nb in NOTEBOOKS[:-1]],
}


# The models each notebook leaves under --models-dir (its metrics and figures are committed under reports/, its models
# are not): a notebook whose model is missing is out of date, so a fresh clone re-makes them and nothing else.
MODELS_MADE = {
    "02_baseline_dense": ["baseline_dense.keras"],
    "03_scratch_cnn": ["scratch_cnn.keras"],
    "04_transfer_learning": ["transfer.keras"],
    "05_ternary_classifier": ["ternary.keras"],
    "06_keras_tuner_search": ["tuned_cnn.keras"],
    "07_ensemble": ["ensemble.keras"],
}


def inputs_now(stem: str, ran: dict) -> dict[str, str | None]:
    """What `stem` reads, as the code each of those notebooks last ran with (run.json's `notebooks`, `ran`); the runner
    stores it with the notebook's own entry, so a later re-run of one of them shows."""
    return {up: ran.get(up, {}).get("code") for up in READS_FROM.get(stem, [])}


def out_of_date(ran: dict, notebooks: list[str] = NOTEBOOKS, models_dir: str | Path | None = None) -> dict[str, str]:
    """notebook -> why its results are not what the committed code makes, from run.json's `notebooks` (`ran`): never
    run; its code, or a package module it loads, changed since (`code_fingerprint`); it reads a notebook listed here,
    which must run again first; or it read results that another notebook has since made again with other code. In
    `notebooks` order: running them in that order brings the run up to date. With `models_dir`, a notebook whose
    model file (`MODELS_MADE`) is not there is out of date too."""
    stale: dict[str, str] = {}
    for nb in notebooks:
        stem, entry = Path(nb).stem, ran.get(Path(nb).stem)
        waiting = [up for up in READS_FROM.get(stem, []) if any(Path(s).stem == up for s in stale)]
        changed = [up for up, code in inputs_now(stem, ran).items() if (entry or {}).get("inputs", {}).get(up) != code]
        if entry is None:
            stale[nb] = "never run"
        elif entry.get("status") == "running":
            stale[nb] = "interrupted: it started at {} and never finished (its outputs may be half-written)".format(
                entry.get("started", "?")
            )
        elif entry.get("code") != code_fingerprint(nb):
            stale[nb] = "its code (or a module it loads) changed since it ran"
        elif missing := [m for m in MODELS_MADE.get(stem, []) if models_dir and not (Path(models_dir) / m).is_file()]:
            stale[nb] = f"its model {', '.join(missing)} is not in {models_dir}"
        elif waiting:
            stale[nb] = f"it reads {', '.join(waiting)}, to run again first"
        elif changed and "inputs" not in entry:
            stale[nb] = "run.json has no record of the results it read (it ran before the runner kept one)"
        elif changed:
            stale[nb] = f"it read the results of {', '.join(changed)} before they were made again with other code"
    return stale


def parameters(args, cwd: Path | None = None) -> dict:
    """The parameters papermill injects. With `cwd` (the notebook's folder), a folder inside the repository is given
    relative to it (`../reports`), so an executed notebook in git names no one's machine; others stay absolute."""

    def where(folder) -> str:
        path = Path(folder).resolve()
        return os.path.relpath(path, cwd) if cwd is not None and path.is_relative_to(ROOT) else str(path)

    p = {
        "profile": args.profile,
        "data_dir": where(args.data_dir),
        "cache_dir": where(args.cache_dir),
        "output_dir": where(args.output_dir),
        "models_dir": where(args.models_dir),
        "seed": args.seed,
    }
    if args.weights_dir:
        p["weights_dir"] = where(args.weights_dir)
    return p


_PAPERMILL_CHATTER = (
    "Executing Cell",
    "Ending Cell",
    "Executing notebook with kernel",
    "Input Notebook",
    "Output Notebook",
    "Executing notebook",
)
_NOISE = ("WARNING: All log messages before absl", "I0000 ", "E0000 ", "W0000 ", "To enable the following instructions")
_OBJECT_REPR = re.compile(r"<[\w.]+ (object )?at 0x[0-9a-f]+>")  # e.g. "<pandas.io.formats.style.Styler at 0x7f...>"


def _smaller_png(b64: str) -> str:
    """The same figure as a 256-colour PNG (a third of the size for plots), if that is smaller."""
    import base64
    import io

    from PIL import Image

    raw = base64.b64decode(b64)
    buf = io.BytesIO()
    Image.open(io.BytesIO(raw)).convert("RGB").quantize(256).save(buf, "PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode() if buf.tell() < len(raw) else b64


def cell_seconds(path: str | Path) -> list[list]:
    """Where an executed notebook's time went: [first line of its source, seconds] for each code cell papermill
    timed, read before `clean_notebook` drops the timings (run.json keeps them, `benchmarks/notebook_speed.py` too)."""
    book = nbformat.read(str(path), as_version=4)
    return [
        [cell.source.split("\n", 1)[0][:80], round(float(cell.metadata.get("papermill", {}).get("duration") or 0), 1)]
        for cell in book.cells
        if cell.cell_type == "code"
    ]


def clean_notebook(path: str | Path) -> None:
    """nbdev-style tidy: drop TF's C++ start-up chatter, timing metadata (run.json keeps each notebook's seconds) and
    papermill's record of the absolute paths the notebook was read from and written to;
    shrink figures; drop a plain-text "<object at 0x...>" beside a richer output; give the cell papermill injects a
    fixed id instead of a random one (a re-run then changes only what the run changed). Execution counts stay: nbval
    takes a cell with outputs and no count for an unrun one."""
    book = nbformat.read(str(path), as_version=4)
    for cell in book.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.get("papermill", {}).clear()
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                out.text = "".join(line for line in out.text.splitlines(True) if not line.startswith(_NOISE))
                if not out.text.strip():
                    continue
            if "image/png" in out.get("data", {}):
                out.data["image/png"] = _smaller_png(out.data["image/png"])
            if len(out.get("data", {})) > 1 and _OBJECT_REPR.fullmatch(str(out.data.get("text/plain", "")).strip()):
                del out.data["text/plain"]  # a memory address, new on every run; the HTML beside it is the output
            kept.append(out)
        cell.outputs = kept
    for key in ("start_time", "end_time", "duration", "input_path", "output_path"):  # a moment and a machine's paths
        book.metadata.get("papermill", {}).pop(key, None)
    nbformat.write(book, str(path))


def cpu_model() -> str:
    """The processor's name (a notebook's seconds mean little without it: one session's host ran twice as slow)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# The packages whose versions decide a notebook's numbers (with the code and the processor): a run is bit-identical only
# on the same kind of processor with the same versions, so run.json names them per notebook (`packages`).
NUMERIC_PACKAGES = ("tensorflow", "keras", "keras-tuner", "numpy", "scikit-learn", "scipy", "pillow")


def package_versions(names: tuple[str, ...] = NUMERIC_PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (None when absent), read from its metadata without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {"python": platform.python_version(), **{name: installed(name) for name in names}}


def peak_child_memory_mb() -> float:
    """Peak resident memory of any finished child process (each notebook's kernel), in MB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--data-dir", default="data/chest_xray")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--output-dir", default="reports", help="metrics, figures and predictions")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--executed-dir", default=None, help="where executed notebooks go (default: in place)")
    parser.add_argument("--weights-dir", default=None, help="folder with Keras ImageNet weight files (offline)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", nargs="*", help="run only notebooks whose name contains one of these")
    parser.add_argument("--prepare-only", action="store_true", help="inject parameters, do not execute")
    parser.add_argument(
        "--stale",
        action="store_true",
        help="run only the notebooks that --output-dir's run.json shows out of date (with --only: of those)",
    )
    parser.add_argument(
        "--make",
        action="store_true",
        help="like make (`make all`): --stale, models missing from --models-dir count as out of date, and a run.json "
        "of another profile, seed or dataset is replaced by a whole new run",
    )
    args = parser.parse_args(argv)

    for var in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "ABSL_MIN_LOG_LEVEL"):
        os.environ.setdefault(var, "3")  # kernels inherit: keep TF's C++ chatter out of notebooks
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # about 1.8x faster convolutions on CPU
    params = parameters(args)
    notebooks = [n for n in NOTEBOOKS if not args.only or any(o in n for o in args.only)]
    run_log = Path(args.output_dir) / "metrics" / "run.json"
    previous = read_json(run_log) if run_log.exists() else {}
    if args.stale or args.make:
        same = {"profile": str, "seed": str, "data_dir": lambda d: Path(d).name}  # a dataset by its folder's name
        if differs := [
            f"{key} {previous[key]}"
            for key, name in same.items()
            if key in previous and name(previous[key]) != name(params[key])
        ]:
            if not args.make:
                print(
                    f"--stale: {run_log} is a run of {', '.join(differs)}; bring it up to date with the same",
                    file=sys.stderr,
                )
                return 2
            print(f"{run_log} is a run of {', '.join(differs)}: every notebook runs", flush=True)
            previous = {}
        stale = out_of_date(previous.get("notebooks", {}), notebooks, args.models_dir if args.make else None)
        for nb, why in stale.items():
            print(f"{nb}: {why}", flush=True)
        notebooks = list(stale)
        if not notebooks:
            print(f"nothing to run: every notebook in {run_log} is up to date")
            return 0
    log = {
        "profile": args.profile,
        "data_dir": params["data_dir"],
        "seed": args.seed,
        "git_commit": git_commit(),
        "notebooks": {},
    }
    if previous and (args.only or args.stale or args.make) and not args.prepare_only:
        log["notebooks"] = {
            nb: {**entry, "git_commit": entry.get("git_commit", previous.get("git_commit"))}
            for nb, entry in previous.get("notebooks", {}).items()
        }
        log["peak_memory_mb"] = previous.get("peak_memory_mb", 0)
        log["wall_seconds"] = previous.get("wall_seconds", 0)
        log["cpu_count"] = previous.get("cpu_count", os.cpu_count())
        log["packages"] = previous.get("packages", {})
    if not args.prepare_only:  # papermill's log: every cell's output (epochs, trials) in the terminal as it comes
        logging.basicConfig(level=logging.WARNING, format="    %(message)s")
        papermill_log = logging.getLogger("papermill")
        papermill_log.setLevel(logging.INFO)
        papermill_log.addFilter(lambda record: not str(record.msg).startswith(_PAPERMILL_CHATTER))
    start = time.perf_counter()
    for i, nb in enumerate(notebooks, 1):
        src = ROOT / nb
        dst = Path(args.executed_dir) / Path(nb).name if args.executed_dir else src
        dst.parent.mkdir(parents=True, exist_ok=True)
        print(f"[{i}/{len(notebooks)}] {nb} -> {dst}", flush=True)
        code = code_fingerprint(nb)  # before papermill rewrites the notebook
        run_in = dst.parent if args.prepare_only else src.parent  # nbval runs a prepared copy where it lies
        # executed into a scratch copy beside the destination, renamed over it only when the notebook finished: an
        # interrupted run never leaves a half-executed notebook in place of the repository's own
        scratch = dst.with_name(f".{dst.stem}.running.ipynb")
        if not args.prepare_only:
            log["notebooks"][Path(nb).stem] = {"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
            write_json(run_log, log)  # until it ends, run.json says so: `--stale` and `report --check` see it
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(
                str(src),
                str(scratch),
                parameters=parameters(args, run_in),
                cwd=str(src.parent),
                kernel_name="python3",
                prepare_only=args.prepare_only,
                progress_bar=False,
                log_output=not args.prepare_only,
                request_save_on_cell_execute=True,
            )
        except pm.PapermillExecutionError as exc:
            print(
                f"FAILED: {nb}, cell {exc.exec_count} ({exc.ename}: {exc.evalue})\n"
                f"  the executed notebook with the traceback: {scratch}",
                file=sys.stderr,
            )
            return 1
        os.replace(scratch, dst)
        seconds = time.perf_counter() - t0
        if not args.prepare_only:
            cells = cell_seconds(dst)
            clean_notebook(dst)
            # per notebook: with --only, the others keep the commit they last ran at
            entry = {"seconds": round(seconds, 1), "git_commit": log["git_commit"], "code": code, "cpu": cpu_model()}
            entry["cells"] = cells  # where its time went, cell by cell
            if Path(nb).stem in READS_FROM:  # the results it read, as the code they were made with
                entry["inputs"] = inputs_now(Path(nb).stem, log["notebooks"])
            log["notebooks"][Path(nb).stem] = entry
            log["packages"] = {
                **log.get("packages", {}),
                Path(nb).stem: package_versions(),
            }  # beside, not in, the entry
            log["wall_seconds"] = round(sum(v.get("seconds", 0) for v in log["notebooks"].values()), 1)
            log["peak_memory_mb"] = round(max(peak_child_memory_mb(), log.get("peak_memory_mb", 0)), 1)
            log["cpu_count"] = os.cpu_count()
            write_json(run_log, log)
            print(f"    done in {seconds:.0f} s", flush=True)
    print(
        f"all {len(notebooks)} notebooks {'prepared' if args.prepare_only else 'ran'} in "
        f"{time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
