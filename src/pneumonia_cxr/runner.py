"""Run the pipeline's stages (`stages.toml`) in order, the notebooks with papermill, with one profile:

    python -m pneumonia_cxr.runner --profile full --data-dir data/chest_xray

Executed notebooks replace the sources by default (so the repository shows the latest run), each only once it
finished (it runs in a scratch copy beside it); --executed-dir writes them elsewhere. While a stage runs, run.json
marks it "running", so an interrupted run is never reported up to date. --prepare-only injects the parameters without
executing (for nbval; command stages are skipped). On failure it exits 1, naming the stage (and the notebook's cell).

On SYNTHETIC data (a folder holding SYNTHETIC_DATASET.txt: the demo `make all` runs without data/chest_xray) every
folder not given goes under build/demo/ (notebooks, reports, img, models, cache, and with --report the summary, model
card and PDF), and a committed folder is refused: the committed analysis is never replaced by numbers on drawings.
A run on real data into the committed folders says first, in one line, what it replaces and how to get it back.

The terminal shows each stage, each training's validation AUC by epoch and keras-tuner's trials as they end, errors,
and with --report the summary; the rest of what a notebook prints stays in the executed notebook, and a command
stage's output (its stderr too) goes to logs/ beside the executed notebooks (build/logs/ for a run in place). Kernels
and the report steps write their stderr through the runner, which drops TensorFlow's C++ start-up lines and nothing
else; kernels talk to the runner over encrypted sockets (CurveZMQ, where pyzmq has it), so ipykernel has no plain-TCP
warning to give.

Invariant: a folder the runner writes into a notebook or run.json is relative (to the notebook's folder, or to the
repository for run.json and command stages), so committed outputs name no one's machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import papermill as pm
from nbstripout import strip_output

from .config import PROFILES
from .data.dataset import SYNTHETIC_MARKER, is_synthetic
from .data.demo import REAL_DATA_COMMAND
from .io import git_commit, read_json, write_json
from .provenance import ROOT
from .stages import STAGES, Stage, StageError, inputs_now, out_of_date

# What a run on real data into the committed folders replaces, and the one command that brings the committed copy back
COMMITTED = ("notebooks", "reports", "img", "README.md", "docs/model_card.md", "final_notebook.ipynb")
RESTORE = "git checkout -- " + " ".join(COMMITTED)

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


_NOISE = ("WARNING: All log messages before absl", "I0000 ", "E0000 ", "W0000 ", "To enable the following instructions")
_OBJECT_REPR = re.compile(r"<[\w.]+ (object )?at 0x[0-9a-f]+>")  # e.g. "<pandas.io.formats.style.Styler at 0x7f...>"


# TensorFlow's C++ start-up lines: written before absl::InitializeLog, so TF_CPP_MIN_LOG_LEVEL does not reach them
# (INFO lines on oneDNN and CUDA at every import, after absl's preamble). Lines of any other kind pass, errors too.
_STARTUP = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "
    r"|To enable the following instructions: "
)


class Terminal:
    """The run as the terminal shows it: whole lines (`line`), and lines that grow as a training goes (`add`: one
    value per epoch or per trial, on the line of its label until another line comes)."""

    def __init__(self):
        self.label: str | None = None  # the growing line's label, while one is open
        self.lock = threading.Lock()  # the trial watch adds from its own thread

    def line(self, text: str = "", err: bool = False) -> None:
        with self.lock:
            self._end()
            print(text, file=sys.stderr if err else sys.stdout, flush=True)

    def add(self, label: str, value: str) -> None:
        with self.lock:
            if self.label != label:
                self._end()
                print(f"    {label}:", end="", flush=True)
                self.label = label
            print(f" {value}", end="", flush=True)

    def end(self) -> None:
        with self.lock:
            self._end()

    def _end(self) -> None:
        if self.label is not None:
            print(flush=True)
            self.label = None


class CellOutput:
    """What a notebook prints (papermill's `stdout_file`, `stderr_file`), line by line: Keras' end of an epoch adds its
    validation AUC to the terminal (`Terminal.add`), and an error line on stderr shows whole; the rest stays in the
    executed notebook. `on_training` is called as a training starts (`TrialWatch.look`: the trials of a search that
    just ended come before the model it chose is trained)."""

    EPOCH = re.compile(r"Epoch (\d+)/\d+$")  # Keras, verbose=2, as an epoch starts
    END_OF_EPOCH = re.compile(r"\d+/\d+ - .* - loss: ")  # ... and as it ends, with its metrics
    VAL_AUC = re.compile(r" - val_auc: ([\d.]+)")
    ERROR = re.compile(r"Traceback \(|\b[A-Z]\w*Error\b|^[EF]\d{4} |\b(ERROR|CRITICAL|FATAL)\b")

    def __init__(self, terminal: Terminal, stream: str, on_training=None):
        self.terminal, self.stream, self.on_training, self.rest = terminal, stream, on_training, ""

    def write(self, text: str) -> None:
        *lines, self.rest = (self.rest + text).split("\n")
        for line in lines:
            self.feed(line)

    def flush(self) -> None:
        pass

    def feed(self, line: str) -> None:
        if self.stream == "stderr":
            if self.ERROR.search(line) and not _STARTUP.match(line):
                self.terminal.line(f"    {line}", err=True)
            return
        start = self.EPOCH.match(line)
        if start and start[1] == "1":  # a new training: a line of its own
            if self.on_training:
                self.on_training()
            self.terminal.end()
        if self.END_OF_EPOCH.match(line):
            auc = self.VAL_AUC.search(line)
            self.terminal.add("epochs, val AUC", f"{float(auc[1]):.3f}" if auc else "-")


class TrialWatch:
    """keras-tuner's trials as each ends (its search prints nothing): every `trial.json` under `folder` written since
    the watch began adds its score once its status is COMPLETED. A thread looks every `every` seconds, and the watch
    looks once more when it stops, so no trial goes unshown. `folder` is made absolute first: papermill runs a
    notebook from the notebook's folder (`cwd`), and the whole process with it."""

    def __init__(self, folder: str | Path, terminal: Terminal, every: float = 2.0):
        self.folder, self.terminal, self.every = Path(os.path.abspath(folder)), terminal, every
        self.since, self.seen, self.stopped = time.time(), set(), threading.Event()
        self.lock = threading.Lock()  # one look at a time: the thread's, or the last one
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> TrialWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.thread.join()
        self.look()

    def _watch(self) -> None:
        while not self.stopped.wait(self.every):
            self.look()

    def look(self) -> None:
        with self.lock:
            for path, mtime in sorted(self._trials(), key=lambda found: found[1]):
                if path in self.seen or mtime < self.since:
                    continue
                try:
                    trial = json.loads(path.read_text())
                except (OSError, ValueError):  # being written, or the search starting over: the next look reads it
                    continue
                if trial.get("status") == "COMPLETED" and trial.get("score") is not None:
                    self.seen.add(path)
                    self.terminal.add("trials, val AUC", f"{trial['score']:.3f}")

    def _trials(self) -> list[tuple[Path, float]]:
        found = []
        for path in self.folder.rglob("trial.json"):
            try:
                found.append((path, path.stat().st_mtime))
            except OSError:  # removed since it was listed (keras-tuner's overwrite)
                pass
        return found


class ChildStderr:
    """The stderr of the notebook kernels and the report steps the runner starts: a pipe (`fd`, given to each as its
    stderr) whose lines go on to the runner's stderr as they come, less TensorFlow's C++ start-up lines
    (`_STARTUP`)."""

    def __init__(self):
        self._read, self.fd = os.pipe()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        with os.fdopen(self._read, errors="replace") as lines:
            for line in lines:
                if not _STARTUP.match(line):
                    sys.stderr.write(line)
                    sys.stderr.flush()

    def close(self) -> None:
        os.close(self.fd)
        self.thread.join(timeout=10)  # its last lines out before the runner's own


def kernel_manager(stderr: int) -> type:
    """The kernel manager papermill starts each notebook's kernel with: its stderr into `stderr` (`ChildStderr`), its
    sockets encrypted with CurveZMQ where pyzmq has it (the kernelspec `make venv` installs declares it), and once
    its notebook has run, shut down by request without the SIGINT jupyter_client sends first (landing while the
    kernel answers its last message, it logs "KeyboardInterrupt caught in kernel")."""
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class KernelManager(AsyncKernelManager):
        @default("transport_encryption")
        def _encrypted(self) -> str:
            return "auto" if zmq.has("curve") else "disabled"

        async def start_kernel(self, **kw):
            kw.setdefault("stderr", stderr)
            return await super().start_kernel(**kw)

        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return KernelManager


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
    on_demo = "; on SYNTHETIC data under build/demo/"
    parser.add_argument("--cache-dir", default=None, help=f"decoded images (default: data/cache{on_demo})")
    parser.add_argument(
        "--output-dir", default=None, help=f"metrics, figures and predictions (default: reports{on_demo})"
    )
    parser.add_argument("--models-dir", default=None, help=f"default: models{on_demo}")
    parser.add_argument(
        "--executed-dir", default=None, help=f"where executed notebooks go (default: in place{on_demo})"
    )
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
    parser.add_argument(
        "--report",
        action="store_true",
        help="then the summary (the README results block), the model card and the PDF (`make all`); on SYNTHETIC "
        "data a summary of its own beside the run's reports, never README.md or docs/model_card.md",
    )
    return parser.parse_args(argv)


class CommittedFolderError(ValueError):
    """A run on SYNTHETIC data pointed at a folder of the committed analysis."""


def demo_dir() -> Path:
    """Where a run on SYNTHETIC data goes by default: build/demo/ (`make all` without data/chest_xray)."""
    return ROOT / "build" / "demo"


def committed_destinations(args) -> list[str]:
    """The committed folders this run would write into: reports/ (or a folder in it), img/ beside it, the notebooks
    in place (--executed-dir not given)."""
    output = Path(os.path.realpath(args.output_dir))
    found = ["reports/"] if output.is_relative_to(ROOT / "reports") else []
    found += ["img/"] if output.parent / "img" == ROOT / "img" else []
    found += [] if args.executed_dir else ["notebooks/ and final_notebook.ipynb"]
    return found


def resolve_folders(args) -> None:
    """Fill in the folders not given (`args.synthetic` too): on real data the committed ones (reports/, models/,
    data/cache, the notebooks in place), on SYNTHETIC data (`data.dataset.is_synthetic`) folders under build/demo/.

    Raises:
        CommittedFolderError: SYNTHETIC data and a committed folder to write into (`committed_destinations`), naming
            the data's marker file and the folders.
    """
    args.synthetic = is_synthetic(args.data_dir)
    demo = Path(relative(demo_dir(), os.getcwd()))  # build/demo from the repository, as the other defaults
    defaults = (
        {"output_dir": demo / "reports", "models_dir": demo / "models", "cache_dir": demo / "cache"}
        if args.synthetic
        else {"output_dir": "reports", "models_dir": "models", "cache_dir": "data/cache"}
    )
    for key, folder in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, str(folder))
    if args.synthetic and args.executed_dir is None:
        args.executed_dir = str(demo / "notebooks")
    if args.synthetic and committed_destinations(args):
        marker = next(Path(args.data_dir).rglob(SYNTHETIC_MARKER))
        raise CommittedFolderError(
            f"{marker}: {args.data_dir} is SYNTHETIC demo data; its run writes under build/demo/ (or folders you "
            f"give), never into {' or '.join(committed_destinations(args))}, the committed analysis"
        )


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
    if not previous.get("notebooks") and not differs:
        print(f"no run in {run_log} yet: every stage runs", flush=True)
    for label, why in stale.items() if previous.get("notebooks") else ():
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
    terminal = TERMINAL
    watch = TrialWatch(Path(args.models_dir) / "tuner", terminal)
    quiet = {}  # what the terminal shows of the cells' output (`CellOutput`), the kernel's stderr filtered
    if getattr(args, "child_stderr", None) is not None and not args.prepare_only:
        quiet = {
            "stdout_file": CellOutput(terminal, "stdout", on_training=watch.look),
            "stderr_file": CellOutput(terminal, "stderr"),
            "kernel_manager_class": kernel_manager(args.child_stderr),
        }
    with watch:
        pm.execute_notebook(
            str(src),
            str(scratch),
            parameters=parameters(args, run_in),
            cwd=str(src.parent),
            kernel_name="python3",
            prepare_only=args.prepare_only,
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=True,
            **quiet,
        )
    terminal.end()
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


def log_dir(args) -> Path:
    """Where a command stage's output goes (the terminal shows its progress only): logs/ beside --executed-dir,
    else build/logs."""
    return (Path(args.executed_dir).parent if args.executed_dir else ROOT / "build") / "logs"


def run_command(stage: Stage, args) -> Path:
    """`python -m module args...` from the repository root (`command_args`), its output (stdout and stderr) into
    `log_dir`/NAME.log, which it returns; CalledProcessError when it fails, after the log's last lines."""
    log = log_dir(args) / f"{stage.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        argv = [sys.executable, "-m", stage.module, *command_args(stage, args)]
        done = subprocess.run(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = [line for line in log.read_text().splitlines() if not _STARTUP.match(line)][-20:]
        TERMINAL.line("\n".join([f"    {line}" for line in tail] + [f"    (all of it: {log})"]), err=True)
        raise subprocess.CalledProcessError(done.returncode, argv)
    return log


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
    t0, output = time.perf_counter(), ""
    if stage.notebook is None:
        output_log = run_command(stage, args)
        output = f" (its output: {relative(output_log, ROOT)})" if output_log else ""
        cells = []
    else:
        dst = run_notebook(stage, args)
        if args.prepare_only:
            return
        cells = cell_seconds(dst)
        clean_notebook(dst)
    record(log, stage, code, time.perf_counter() - t0, cells)
    write_json(run_log, log)
    TERMINAL.line(f"    done in {time.perf_counter() - t0:.0f} s{output}")


def quiet_logs() -> None:
    """Keep TF's C++ chatter out of notebooks (kernels inherit the environment; what it does not reach, `_STARTUP`,
    `ChildStderr` drops); papermill's own log only from its warnings on (the terminal shows the run: `Terminal`)."""
    for var in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "ABSL_MIN_LOG_LEVEL"):
        os.environ.setdefault(var, "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # about 1.8x faster convolutions on CPU
    logging.basicConfig(level=logging.WARNING, format="    %(message)s")


TERMINAL = Terminal()


def final_stage() -> Stage:
    return next(stage for stage in STAGES if stage.name == "final_notebook")


def report_steps(args) -> list[list[str]]:
    """The commands --report runs after the stages: the summary and the model card (`pneumonia_cxr.report`), then the
    PDF of the executed final notebook (`pneumonia_cxr.pdf`). On SYNTHETIC data the summary and the model card go
    beside the run's reports folder (build/demo/README.md, build/demo/model_card.md), never into README.md or docs/."""
    reports = Path(args.output_dir)
    beside = ["--summary", str(reports.parent / "README.md"), "--model-card", str(reports.parent / "model_card.md")]
    pdf = ["--notebook", str(destination(final_stage(), args)), "--out", str(reports / "final_report.pdf")]
    return [
        [sys.executable, "-m", "pneumonia_cxr.report", "--reports", str(reports), *(beside if args.synthetic else [])],
        [sys.executable, "-m", "pneumonia_cxr.pdf", *pdf],
    ]


def report(args) -> int:
    """Run `report_steps` (their stderr through `ChildStderr`); the PDF only once the final notebook has run. Exit 1
    naming the step that failed."""
    for step in report_steps(args):
        notebook = step[step.index("--notebook") + 1] if "--notebook" in step else None
        if notebook and not Path(notebook).exists():
            TERMINAL.line(f"no PDF: {notebook} has not run yet")
            continue
        done = subprocess.run(step, stderr=getattr(args, "child_stderr", None))
        if done.returncode:
            TERMINAL.line(f"FAILED: python -m {step[2]} (exit {done.returncode})", err=True)
            return 1
    return 0


def announce(args, stages: list[Stage] | None = None) -> None:
    """What a run says before it starts: on SYNTHETIC data (`stages` None: first of all) that it is, and where it goes;
    on real data into the committed folders, with stages to run, in one line what it replaces and how to get the
    committed results back."""
    if args.prepare_only:
        return
    if args.synthetic and stages is None:
        TERMINAL.line(
            f"*** SYNTHETIC DEMO DATA ({args.data_dir}): procedural drawings, not X-rays; the numbers only show that "
            "the pipeline runs ***"
        )
        TERMINAL.line(
            f"*** everything this run makes goes to {relative(Path(args.output_dir).parent, os.getcwd())}/; the "
            "committed analysis stays as it is ***"
        )
    replaced = committed_destinations(args) + (["the README results", "docs/model_card.md"] if args.report else [])
    if not args.synthetic and stages and committed_destinations(args):
        TERMINAL.line(f"This run replaces the committed {', '.join(replaced)}; to get them back: {RESTORE}")


def demo_ending(args) -> None:
    """The last lines of a run on SYNTHETIC data: where everything is, and the one command that gets the real data."""
    here = lambda path: relative(path, os.getcwd())  # noqa: E731
    reports = Path(args.output_dir)
    made = [reports.parent / "README.md", reports.parent / "model_card.md", reports / "final_report.pdf"]
    TERMINAL.line(
        f"\nSYNTHETIC demo done; all it made is in {here(reports.parent)}/ (the committed analysis is untouched):"
    )
    TERMINAL.line("  " + ", ".join([here(path) for path in made if path.exists()] + [f"{here(args.executed_dir)}/"]))
    TERMINAL.line("The real analysis: get the data (5,856 X-rays, README: Get the data), then `make all` again:")
    TERMINAL.line(f"  {REAL_DATA_COMMAND}")


def run_stages(stages: list[Stage], args, log: dict, run_log: Path) -> int:
    """Run `stages` in order into `log` (run.json); 1 naming the stage (and the cell) that failed, else 0."""
    start = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        TERMINAL.line(f"[{i}/{len(stages)}] {stage.label}")
        try:
            run_stage(stage, args, log, run_log)
        except pm.PapermillExecutionError as exc:
            dst = destination(stage, args)
            scratch = dst.with_name(f".{dst.stem}.running.ipynb")
            TERMINAL.line(f"FAILED: {stage.label}, cell {exc.exec_count} ({exc.ename}: {exc.evalue})", err=True)
            TERMINAL.line(f"  the executed notebook with the traceback: {scratch}", err=True)
            return 1
        except subprocess.CalledProcessError as exc:
            TERMINAL.line(f"FAILED: {stage.label} (exit {exc.returncode})", err=True)
            return 1
    if stages:
        done = "prepared" if args.prepare_only else "ran"
        TERMINAL.line(f"all {len(stages)} stages {done} in {time.perf_counter() - start:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_logs()
    try:
        resolve_folders(args)
    except CommittedFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    announce(args)
    run_log = Path(args.output_dir) / "metrics" / "run.json"
    params = parameters(args)
    planned = plan(args, params, read_json(run_log) if run_log.exists() else {}, run_log)
    if isinstance(planned, int) and (planned or not args.report):
        return planned
    stages, previous = ([], {}) if isinstance(planned, int) else planned
    announce(args, stages)
    child = ChildStderr()
    args.child_stderr = child.fd
    try:
        code = run_stages(stages, args, new_log(args, params, previous), run_log)
        if code == 0 and args.report:
            code = report(args)
    finally:
        child.close()
    if code == 0 and args.report and args.synthetic:
        demo_ending(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
