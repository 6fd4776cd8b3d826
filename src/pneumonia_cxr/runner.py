"""Run the pipeline's stages (`stages.toml`) in order, the notebooks with papermill, with one profile:

    python -m pneumonia_cxr.runner --profile full --data-dir data/chest_xray

Executed notebooks replace the sources by default (so the repository shows the latest run), each only once it
finished (it runs in a scratch copy beside it); --executed-dir writes them elsewhere. While a stage runs, run.json
marks it "running", so an interrupted run is never reported up to date. Each cell's output (epochs, trials) is
logged to the terminal as it comes. --prepare-only injects the parameters without executing (for nbval; command stages
are skipped). On failure it exits 1, naming the stage (and the notebook's cell).

Invariant: a folder the runner writes into a notebook or run.json is relative (to the notebook's folder, or to the
repository for run.json and command stages), so committed outputs name no one's machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
from nbstripout import strip_output

from .config import PROFILES
from .io import git_commit, read_json, write_json
from .provenance import ROOT
from .stages import STAGES, Stage, StageError, inputs_now, out_of_date

# papermill's and the runner's own timing and machine paths, dropped from every executed notebook (nbstripout keys)
VOLATILE_METADATA = [
    "cell.metadata.execution",
    "cell.metadata.papermill",
    *(f"metadata.papermill.{key}" for key in ("start_time", "end_time", "duration", "input_path", "output_path")),
]


def relative(folder: str | Path, base: str | Path) -> str:
    """`folder` relative to `base` (`../shared/data/chest_xray_224`), so no machine's absolute path is written down;
    whole only where no relative path exists (another drive on Windows).

    Args:
        folder: a folder, relative to the current directory or absolute.
        base: the folder the result is read from (a notebook's folder, the repository).

    Returns:
        The relative path, with forward slashes.
    """
    path = os.path.abspath(folder)  # not resolved: `../shared` beside the clone may be a link, and stays `../shared`
    try:
        return Path(os.path.relpath(path, os.path.abspath(base))).as_posix()
    except ValueError:
        return str(path)


def parameters(args, cwd: str | Path = ROOT) -> dict:
    """The run's parameters: what papermill injects into a notebook run in `cwd`, with every folder relative to
    `cwd` (`../reports`); with the default, relative to the repository (run.json, command stages)."""
    folders = {key: getattr(args, key, None) for key in ("data_dir", "cache_dir", "output_dir", "models_dir")}
    p = {"profile": args.profile, **{key: relative(f, cwd) for key, f in folders.items()}, "seed": args.seed}
    if getattr(args, "weights_dir", None):
        p["weights_dir"] = relative(args.weights_dir, cwd)
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
    """Tidy an executed notebook so a re-run changes only what the run changed: nbstripout drops the timing metadata
    (run.json keeps each cell's seconds) and papermill's record of where the notebook was read and written; then drop
    TF's C++ start-up chatter, shrink figures, drop a plain-text "<object at 0x...>" beside a richer output, and give
    the cell papermill injects a fixed id instead of a random one. Outputs and execution counts stay: nbval takes a
    cell with outputs and no count for an unrun one."""
    book = strip_output(
        nbformat.read(str(path), as_version=4),
        keep_output=True,
        keep_count=True,
        keep_id=True,
        extra_keys=VOLATILE_METADATA,
    )
    for cell in book.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"
            cell.source = cell.source.rstrip("\n")  # as `ruff format` leaves a cell
        if cell.cell_type == "code":
            cell.outputs = [out for out in cell.outputs if _tidy(out)]
    nbformat.write(book, str(path))


def _tidy(out) -> bool:
    """Tidy one output in place; False when nothing of it is left (stderr that was only chatter)."""
    if out.output_type == "stream" and out.name == "stderr":
        out.text = "".join(line for line in out.text.splitlines(True) if not line.startswith(_NOISE))
        if not out.text.strip():
            return False
    if "image/png" in out.get("data", {}):
        out.data["image/png"] = _smaller_png(out.data["image/png"])
    if len(out.get("data", {})) > 1 and _OBJECT_REPR.fullmatch(str(out.data.get("text/plain", "")).strip()):
        del out.data["text/plain"]  # a memory address, new on every run; the HTML beside it is the output
    return True


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--data-dir", default="data/chest_xray")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--output-dir", default="reports", help="metrics, figures and predictions")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--executed-dir", default=None, help="where executed notebooks go (default: in place)")
    parser.add_argument("--weights-dir", default=None, help="folder with Keras ImageNet weight files (offline)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", nargs="*", help="run only stages whose name or notebook contains one of these")
    parser.add_argument("--prepare-only", action="store_true", help="inject parameters, do not execute")
    parser.add_argument(
        "--stale",
        action="store_true",
        help="run only the stages that --output-dir's run.json shows out of date (with --only: of those)",
    )
    parser.add_argument(
        "--make",
        action="store_true",
        help="like make (`make all`): --stale, models missing from --models-dir count as out of date, and a run.json "
        "of another profile, seed or dataset is replaced by a whole new run",
    )
    return parser.parse_args(argv)


def plan(args, params: dict, previous: dict, run_log: Path) -> tuple[list[Stage], dict] | int:
    """The stages to run, in order, and the run.json they add to; or an exit code when there is nothing to run (0)
    or `--stale` would mix two runs in one run.json (2)."""
    stages = [s for s in STAGES if not args.only or any(o in s.name or o in (s.notebook or "") for o in args.only)]
    if not (args.stale or args.make):
        return stages, previous
    same = {"profile": str, "seed": str, "data_dir": lambda d: Path(d).name}  # a dataset by its folder's name
    differs = [
        f"{k} {previous[k]}" for k, name in same.items() if k in previous and name(previous[k]) != name(params[k])
    ]
    if differs and not args.make:
        print(
            f"--stale: {run_log} is a run of {', '.join(differs)}; bring it up to date with the same", file=sys.stderr
        )
        return 2
    if differs:
        print(f"{run_log} is a run of {', '.join(differs)}: every stage runs", flush=True)
        previous = {}
    stale = out_of_date(previous.get("notebooks", {}), stages, args.models_dir if args.make else None)
    for label, why in stale.items():
        print(f"{label}: {why}", flush=True)
    if not stale:
        print(f"nothing to run: every stage in {run_log} is up to date")
        return 0
    return [s for s in stages if s.label in stale], previous


def new_log(args, params: dict, previous: dict) -> dict:
    """run.json for this run: a run of some stages (--only, --stale, --make) keeps the others' entries."""
    log = {"profile": args.profile, "data_dir": params["data_dir"], "seed": args.seed, "git_commit": git_commit()}
    log["notebooks"] = {}
    if previous and (args.only or args.stale or args.make) and not args.prepare_only:
        log["notebooks"] = {
            name: {**entry, "git_commit": entry.get("git_commit", previous.get("git_commit"))}
            for name, entry in previous.get("notebooks", {}).items()
        }
        for key, default in (("peak_memory_mb", 0), ("wall_seconds", 0), ("cpu_count", os.cpu_count())):
            log[key] = previous.get(key, default)
        log["packages"] = previous.get("packages", {})
    return log


def destination(stage: Stage, args) -> Path:
    """Where a notebook stage's executed notebook goes: --executed-dir, or in place of the source."""
    return Path(args.executed_dir) / Path(stage.notebook).name if args.executed_dir else ROOT / stage.notebook


def run_notebook(stage: Stage, args) -> Path:
    """Execute (or with --prepare-only, prepare) one notebook stage into a scratch copy beside its destination, renamed
    over it only when it finished: an interrupted run never leaves a half-executed notebook in place of the
    repository's own. Returns the destination; raises papermill's error when a cell fails."""
    src, dst = ROOT / stage.notebook, destination(stage, args)
    dst.parent.mkdir(parents=True, exist_ok=True)
    scratch = dst.with_name(f".{dst.stem}.running.ipynb")
    run_in = dst.parent if args.prepare_only else src.parent  # nbval runs a prepared copy where it lies
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
    os.replace(scratch, dst)
    return dst


def command_args(stage: Stage, args) -> list[str]:
    """A command stage's arguments with the run's parameters (folders relative to the repository) filled in; a
    parameter the run has not got (no --weights-dir) leaves out its argument and the flag before it.

    Raises:
        StageError: a placeholder that is not a run parameter, naming stages.toml and the stage.
    """
    params = {"weights_dir": None, **parameters(args)}
    argv: list[str] = []
    for arg in stage.args:
        try:
            value = arg.format(**{k: "\0" if v is None else v for k, v in params.items()})
        except KeyError as exc:
            raise StageError(f"stages.toml: stage {stage.name}: unknown parameter {exc} in its args") from exc
        if "\0" not in value:
            argv.append(value)
        elif argv and argv[-1].startswith("--"):
            argv.pop()
    return argv


def run_command(stage: Stage, args) -> None:
    """`python -m module args...` from the repository root (`command_args`); CalledProcessError when it fails."""
    subprocess.run([sys.executable, "-m", stage.module, *command_args(stage, args)], cwd=ROOT, check=True)


def record(log: dict, stage: Stage, code: str, seconds: float, cells: list) -> None:
    """A finished stage's entry in run.json, and the run's totals."""
    entry = {"seconds": round(seconds, 1), "git_commit": log["git_commit"], "code": code, "cpu": cpu_model()}
    entry["cells"] = cells  # where its time went, cell by cell
    if stage.upstream:  # the results it read, as the code they were made with
        entry["inputs"] = inputs_now(stage, log["notebooks"])
    log["notebooks"][stage.name] = entry
    log["packages"] = {**log.get("packages", {}), stage.name: package_versions()}  # beside, not in, the entry
    log["wall_seconds"] = round(sum(v.get("seconds", 0) for v in log["notebooks"].values()), 1)
    log["peak_memory_mb"] = round(max(peak_child_memory_mb(), log.get("peak_memory_mb", 0)), 1)
    log["cpu_count"] = os.cpu_count()


def run_stage(stage: Stage, args, log: dict, run_log: Path) -> None:
    """Run one stage and record it in run.json, which says "running" until it ends (`--stale` and `report --check`
    see an interrupted one)."""
    code = stage.fingerprint()  # before papermill rewrites the notebook
    if stage.notebook is None and args.prepare_only:
        return
    if not args.prepare_only:
        log["notebooks"][stage.name] = {"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(run_log, log)
    t0 = time.perf_counter()
    if stage.notebook is None:
        run_command(stage, args)
        cells = []
    else:
        dst = run_notebook(stage, args)
        if args.prepare_only:
            return
        cells = cell_seconds(dst)
        clean_notebook(dst)
    record(log, stage, code, time.perf_counter() - t0, cells)
    write_json(run_log, log)
    print(f"    done in {time.perf_counter() - t0:.0f} s", flush=True)


def quiet_logs(prepare_only: bool) -> None:
    """Keep TF's C++ chatter out of notebooks (kernels inherit the environment); show papermill's log, every cell's
    output (epochs, trials), in the terminal as it comes."""
    for var in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "ABSL_MIN_LOG_LEVEL"):
        os.environ.setdefault(var, "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # about 1.8x faster convolutions on CPU
    if not prepare_only:
        logging.basicConfig(level=logging.WARNING, format="    %(message)s")
        papermill_log = logging.getLogger("papermill")
        papermill_log.setLevel(logging.INFO)
        papermill_log.addFilter(lambda record: not str(record.msg).startswith(_PAPERMILL_CHATTER))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_logs(args.prepare_only)
    run_log = Path(args.output_dir) / "metrics" / "run.json"
    params = parameters(args)
    planned = plan(args, params, read_json(run_log) if run_log.exists() else {}, run_log)
    if isinstance(planned, int):
        return planned
    stages, previous = planned
    log, start = new_log(args, params, previous), time.perf_counter()
    for i, stage in enumerate(stages, 1):
        print(f"[{i}/{len(stages)}] {stage.label}", flush=True)
        try:
            run_stage(stage, args, log, run_log)
        except pm.PapermillExecutionError as exc:
            dst = destination(stage, args)
            scratch = dst.with_name(f".{dst.stem}.running.ipynb")
            print(f"FAILED: {stage.label}, cell {exc.exec_count} ({exc.ename}: {exc.evalue})", file=sys.stderr)
            print(f"  the executed notebook with the traceback: {scratch}", file=sys.stderr)
            return 1
        except subprocess.CalledProcessError as exc:
            print(f"FAILED: {stage.label} (exit {exc.returncode})", file=sys.stderr)
            return 1
    done = "prepared" if args.prepare_only else "ran"
    print(f"all {len(stages)} stages {done} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
