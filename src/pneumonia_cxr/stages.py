"""The pipeline's stages as `stages.toml` declares them, and which of them a run's record shows out of date.

Invariant: the order of `STAGES` is the order they run in, and a stage reads only stages before it (checked on load),
so running the out-of-date stages in that order brings a run up to date. A run's record is run.json's `notebooks`:
stage name -> {"code": its fingerprint when it ran, "inputs": {upstream stage: that stage's fingerprint it read}}.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .provenance import ROOT, code_fingerprint, module_fingerprint

DECLARATION = ROOT / "stages.toml"
DATA = "data"  # in `reads`: the dataset (--data-dir), not a stage


class StageError(ValueError):
    """stages.toml declares something the runner cannot run."""


@dataclass(frozen=True)
class Stage:
    """One stage: a notebook papermill runs, or `python -m module args...`; see stages.toml for the fields."""

    name: str
    reads: tuple[str, ...] = ()
    makes: tuple[str, ...] = ()
    notebook: str | None = None
    module: str | None = None
    args: tuple[str, ...] = ()
    seed_runs: bool = True
    upstream: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "upstream", tuple(r for r in self.reads if r != DATA))

    @property
    def label(self) -> str:
        """How messages name it: the notebook's path, or the command."""
        return self.notebook or " ".join(["python -m", self.module, *self.args[:1]])

    @property
    def models(self) -> list[str]:
        """The files it leaves under --models-dir (`makes` under models/)."""
        return [m.removeprefix("models/") for m in self.outputs if m.startswith("models/")]

    @property
    def outputs(self) -> list[str]:
        """`makes` with every brace group expanded (`a_{val,test}.csv` -> both), globs left as they are."""
        return [path for pattern in self.makes for path in expand_braces(pattern)]

    def fingerprint(self) -> str:
        """Its code now (`provenance.code_fingerprint`, `provenance.module_fingerprint`)."""
        return code_fingerprint(self.notebook) if self.notebook else module_fingerprint(self.module, self.args)


def expand_braces(pattern: str) -> list[str]:
    """`img/{roc_pr,confusion}.png` -> both paths, every brace group expanded as a shell would."""
    if not (m := re.search(r"\{([^{}]*)\}", pattern)):
        return [pattern]
    head, tail = pattern[: m.start()], pattern[m.end() :]
    return [path for alt in m.group(1).split(",") for path in expand_braces(head + alt + tail)]


def load(path: str | Path = DECLARATION) -> list[Stage]:
    """The stages `path` declares, in order.

    Args:
        path: a stages.toml.

    Returns:
        One `Stage` per [[stage]] table.

    Raises:
        StageError: naming the file and the stage: an unknown key, neither or both of notebook and module, a name
            declared twice, or a `reads` entry that is neither "data" nor an earlier stage.
    """
    known = {"name", "reads", "makes", "notebook", "module", "args", "seed_runs"}
    stages: list[Stage] = []
    for i, table in enumerate(tomllib.loads(Path(path).read_text()).get("stage", []), 1):
        where = f"{path}: stage {table.get('name', i)}"
        if unknown := set(table) - known:
            raise StageError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        if "name" not in table or ("notebook" in table) == ("module" in table):
            raise StageError(f"{where}: needs a name and exactly one of notebook, module")
        earlier = {s.name for s in stages}
        if table["name"] in earlier:
            raise StageError(f"{where}: declared twice")
        if late := [r for r in table.get("reads", []) if r != DATA and r not in earlier]:
            raise StageError(f"{where}: reads {late}, which are not stages declared before it")
        lists = {key: tuple(table.get(key, ())) for key in ("reads", "makes", "args")}
        stages.append(Stage(**{**table, **lists}))
    return stages


STAGES = load()


def select(stages: list[Stage | str] | None = None) -> list[Stage]:
    """`stages` as Stage objects, in declared order: None is all of them; a string is a stage's name or notebook."""
    if stages is None:
        return list(STAGES)
    wanted = {s.name if isinstance(s, Stage) else s for s in stages}
    return [s for s in STAGES if s.name in wanted or s.notebook in wanted]


def inputs_now(stage: Stage, ran: dict) -> dict[str, str | None]:
    """What `stage` reads, as the code each upstream stage last ran with (`ran`: run.json's `notebooks`); the runner
    stores it with the stage's own entry, so a later re-run of one of them shows."""
    return {up: ran.get(up, {}).get("code") for up in stage.upstream}


def out_of_date(ran: dict, stages: list[Stage | str] | None = None, models_dir: str | Path | None = None) -> dict:
    """Why each stage's results are not what the committed code makes, from run.json's `notebooks` (`ran`).

    Args:
        ran: run.json's `notebooks`.
        stages: the stages to look at (`select`); default all.
        models_dir: if given, a stage whose model file (under models/ in `makes`) is not there is out of date too.

    Returns:
        stage label -> reason, in declared order (empty: all up to date): never run; interrupted; its code changed
        since it ran; its model is missing; it reads a stage listed here; or it read results another stage has since
        made again with other code.
    """
    stale: dict[Stage, str] = {}
    for stage in select(stages):
        entry = ran.get(stage.name)
        waiting = [up for up in stage.upstream if any(s.name == up for s in stale)]
        changed = [up for up, code in inputs_now(stage, ran).items() if (entry or {}).get("inputs", {}).get(up) != code]
        missing = [m for m in stage.models if models_dir and not (Path(models_dir) / m).is_file()]
        if entry is None:
            stale[stage] = "never run"
        elif entry.get("status") == "running":
            started = entry.get("started", "?")
            stale[stage] = f"interrupted: it started at {started} and never finished (its outputs may be half-written)"
        elif entry.get("code") != stage.fingerprint():
            stale[stage] = "its code (or a module it loads) changed since it ran"
        elif missing:
            stale[stage] = f"its model {', '.join(missing)} is not in {models_dir}"
        elif waiting:
            stale[stage] = f"it reads {', '.join(waiting)}, to run again first"
        elif changed and "inputs" not in entry:
            stale[stage] = "run.json has no record of the results it read (it ran before the runner kept one)"
        elif changed:
            stale[stage] = f"it read the results of {', '.join(changed)} before they were made again with other code"
    return {stage.label: why for stage, why in stale.items()}
