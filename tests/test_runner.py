"""The pipeline as a graph (`stages.toml`): which stages are out of date (their own code changed, or results they read
were made again since), and `--stale`/`--make`, which run just those, in order, and record what each one read."""

import argparse
import ast
import copy
import platform
import re
import shutil
from functools import cache, partial
from pathlib import Path

import pytest

from pneumonia_cxr import provenance, runner, stages
from pneumonia_cxr.io import read_json, write_json
from pneumonia_cxr.provenance import ROOT

NAMES = [s.name for s in stages.STAGES]
NOTEBOOK_NAMES = [s.name for s in stages.STAGES if s.notebook]


def up_to_date_run() -> dict:
    """run.json's `notebooks` as a full run of the committed code leaves it (a fresh copy)."""
    return copy.deepcopy(_up_to_date_run())


@cache
def _up_to_date_run() -> dict:
    ran = {}
    for stage in stages.STAGES:
        ran[stage.name] = {
            "code": stage.fingerprint(),
            **({"inputs": stages.inputs_now(stage, ran)} if stage.upstream else {}),
        }
    return ran


@pytest.fixture
def executed(monkeypatch) -> list[str]:
    """Papermill replaced by a copy and commands by nothing: the stages the runner runs, in order."""
    ran = []

    def fake_execute(src, dst, **kwargs):
        ran.append(Path(src).stem)
        shutil.copy(src, dst)

    def fake_command(stage, args):
        runner.command_args(stage, args)  # its arguments are filled in
        ran.append(stage.name)

    monkeypatch.setattr(runner.pm, "execute_notebook", fake_execute)
    monkeypatch.setattr(runner, "run_command", fake_command)
    return ran


def test_the_declared_graph_is_the_pipeline():
    """stages.toml: every notebook once, in order, each reading only stages before it, each model made once."""
    notebooks = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("[0-9]*.ipynb"))
    assert [s.notebook for s in stages.STAGES if s.notebook] == [*notebooks, "final_notebook.ipynb"]
    assert NAMES[-1] == "final_notebook" and "ood" in NAMES
    for stage in stages.STAGES:
        assert stage.reads and all(r == "data" or NAMES.index(r) < NAMES.index(stage.name) for r in stage.reads)
    models = [m for s in stages.STAGES for m in s.models]
    assert len(models) == len(set(models)) and "ensemble.keras" in models and "ood.npz" in models
    assert set(stages.select(["07_ensemble"])[0].upstream) == {
        "03_scratch_cnn",
        "04_transfer_learning",
        "05_ternary_classifier",
        "06_keras_tuner_search",
    }


def test_every_committed_output_is_declared_by_the_stage_that_makes_it():
    """A declaration that drifts from the notebooks fails here: every committed metrics file matches exactly one
    stage's `makes`, and every committed-output pattern of a stage that has run matches a committed file."""
    import fnmatch

    run = read_json(ROOT / "reports" / "metrics" / "run.json")["notebooks"]
    committed = [p.relative_to(ROOT).as_posix() for p in (ROOT / "reports" / "metrics").glob("*.*")]
    declared = {s.name: [o for o in s.outputs if not o.startswith("models/")] for s in stages.STAGES}
    for path in committed:
        makers = [name for name, outs in declared.items() if any(fnmatch.fnmatch(path, o) for o in outs)]
        assert len(makers) == 1 or path.endswith("run.json") or "ablation" in path, (path, makers)
    everything = [p.relative_to(ROOT).as_posix() for p in (ROOT / "reports").rglob("*") if p.is_file()]
    everything += [p.relative_to(ROOT).as_posix() for p in (ROOT / "img").glob("*")]
    for name, outs in declared.items():
        if name in run:  # a stage not yet run (a new one) has made nothing yet
            missing = [o for o in outs if "seed" not in Path(o).name and not fnmatch.filter(everything, o)]
            assert missing == [], f"stages.toml: {name} declares {missing}, which no committed file matches"


def test_a_declaration_that_cannot_run_is_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "stages.toml"
    cases = {
        '[[stage]]\nname = "a"\nreads = ["b"]\nnotebook = "a.ipynb"\n': "not stages declared before it",
        '[[stage]]\nname = "a"\nnotebook = "a.ipynb"\nmodule = "m"\n': "exactly one of notebook, module",
        '[[stage]]\nname = "a"\nnotebook = "a.ipynb"\nwrites = []\n': "unknown keys ['writes']",
        '[[stage]]\nname = "a"\nnotebook = "a.ipynb"\n[[stage]]\nname = "a"\nmodule = "m"\n': "declared twice",
    }
    for text, why in cases.items():
        bad.write_text(text)
        with pytest.raises(stages.StageError, match=re.escape(why)) as caught:
            stages.load(bad)
        assert str(bad) in str(caught.value)


def test_out_of_date_follows_code_and_the_results_a_stage_read():
    ran = up_to_date_run()
    assert stages.out_of_date(ran) == {}

    ran["03_scratch_cnn"]["code"] = "older"  # edited since it ran: it and what reads it run again
    assert list(stages.out_of_date(ran)) == [
        "notebooks/03_scratch_cnn.ipynb",
        "notebooks/07_ensemble.ipynb",
        "final_notebook.ipynb",
    ]
    assert "reads 03_scratch_cnn" in stages.out_of_date(ran)["notebooks/07_ensemble.ipynb"]

    ran = up_to_date_run()
    ran["07_ensemble"]["inputs"]["06_keras_tuner_search"] = "older"  # 06 ran again after 07 read it, 07 did not
    stale = stages.out_of_date(ran)
    assert list(stale) == ["notebooks/07_ensemble.ipynb", "final_notebook.ipynb"]
    assert "read the results of 06_keras_tuner_search" in stale["notebooks/07_ensemble.ipynb"]
    seed_run = [s for s in stages.STAGES if s.seed_runs]
    assert stages.out_of_date(ran, seed_run) == {"notebooks/07_ensemble.ipynb": stale["notebooks/07_ensemble.ipynb"]}

    ran = up_to_date_run()
    del ran["final_notebook"]["inputs"]  # a run.json from before the runner recorded what a stage read
    assert "no record" in stages.out_of_date(ran)["final_notebook.ipynb"]
    del ran["01_eda"], ran["ood"]
    assert stages.out_of_date(ran)["notebooks/01_eda.ipynb"] == "never run"
    assert stages.out_of_date(ran)["python -m pneumonia_cxr.ood fit"] == "never run"


@pytest.fixture
def package_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the package whose modules the fingerprints read, so a test may edit one (the real one stays)."""
    package = tmp_path / "pneumonia_cxr"
    shutil.copytree(provenance.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(stages, "code_fingerprint", partial(provenance.code_fingerprint, package_dir=package))
    monkeypatch.setattr(stages, "module_fingerprint", partial(provenance.module_fingerprint, package_dir=package))
    return package


def _edit_function(path: Path, name: str, first: str | None = None, then: str | None = None) -> None:
    """Rewrite function `name` of module `path`: its first statement (the docstring) replaced by `first`, or `then`
    inserted after it; each at the body's indent."""
    lines = path.read_text().splitlines(keepends=True)
    node = next(n for n in ast.walk(ast.parse("".join(lines))) if isinstance(n, ast.FunctionDef) and n.name == name)
    start, end, indent = node.body[0].lineno - 1, node.body[0].end_lineno, " " * node.body[0].col_offset
    new = [f"{indent}{first}\n"] if first else [*lines[start:end], f"{indent}{then}\n"]
    path.write_text("".join(lines[:start] + new + lines[end:]))


def test_a_docstring_edit_makes_nothing_out_of_date_a_body_change_what_loads_it(package_copy):
    """The three behaviours `make check-reports` rests on: a run of the committed code is up to date; after a
    docstring (or comment) edit in evaluate.py it still is; after a change to a function's body every stage that
    loads evaluate.py is out of date, and so is every stage that reads one of them."""
    ran = up_to_date_run()
    assert stages.out_of_date(ran) == {}
    evaluate = package_copy / "evaluate.py"
    _edit_function(evaluate, "binary_metrics", first='"""Reworded."""  # and a comment')
    assert stages.out_of_date(ran) == {}

    _edit_function(evaluate, "binary_metrics", then="threshold = float(threshold)")
    stale = stages.out_of_date(ran)
    loading = [
        s.label
        for s in stages.STAGES
        if evaluate
        in provenance.imported_sources(
            provenance._code_cells(ROOT / s.notebook) if s.notebook else [f"import {s.module}"], package_copy
        )
    ]
    assert loading and all(stale[label] == "its code (or a module it loads) changed since it ran" for label in loading)
    assert set(stale) == set(loading)
    assert "python -m pneumonia_cxr.ood fit" in loading  # its fit shifts images with evaluate.apply_shift


def test_a_module_one_notebook_loads_makes_it_and_its_readers_out_of_date(package_copy):
    ran = up_to_date_run()
    tuning = package_copy / "tuning.py"  # loaded by notebook 06 alone
    _edit_function(tuning, _first_function(tuning), then="pass")
    stale = stages.out_of_date(ran)
    assert list(stale) == [
        "notebooks/06_keras_tuner_search.ipynb",
        "notebooks/07_ensemble.ipynb",
        "final_notebook.ipynb",
    ]
    assert "reads 06_keras_tuner_search" in stale["notebooks/07_ensemble.ipynb"]


def _first_function(path: Path) -> str:
    return next(n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef))


def _smoke_args(tmp_path) -> list[str]:
    """The runner's smoke-profile arguments with data and reports under `tmp_path`."""
    return ["--profile", "smoke", "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "reports")]


def test_stale_runs_only_what_is_out_of_date_and_records_what_it_read(tmp_path, executed, capsys):
    """`--stale` with papermill replaced by a copy: which stages run, in which order, and what run.json says."""
    ran = up_to_date_run()
    ran["06_keras_tuner_search"]["code"] = "older"
    for entry in ran.values():
        entry.update(seconds=1.0, git_commit="abc1234", cpu="a cpu")
    log = tmp_path / "reports" / "metrics" / "run.json"
    write_json(log, {"profile": "smoke", "seed": 42, "notebooks": ran, "peak_memory_mb": 100.0})
    args = ["--stale", *_smoke_args(tmp_path), "--executed-dir", str(tmp_path / "executed")]

    assert runner.main(args) == 0
    assert executed == ["06_keras_tuner_search", "07_ensemble", "final_notebook"]
    after = read_json(log)["notebooks"]
    assert after["06_keras_tuner_search"]["code"] == stages.select(["06_keras_tuner_search"])[0].fingerprint()
    assert after["07_ensemble"]["inputs"]["06_keras_tuner_search"] == after["06_keras_tuner_search"]["code"]
    assert after["03_scratch_cnn"] == ran["03_scratch_cnn"], "a stage not run keeps its entry"
    import tensorflow as tf  # a stage that ran names the versions it ran with, read without importing them

    versions = read_json(log)["packages"]
    assert set(versions) == {"06_keras_tuner_search", "07_ensemble", "final_notebook"}
    assert versions["06_keras_tuner_search"]["tensorflow"] == tf.__version__
    assert versions["06_keras_tuner_search"]["python"] == platform.python_version()
    assert runner.package_versions(("no-such-package",))["no-such-package"] is None
    assert stages.out_of_date(after) == {}

    executed.clear()
    assert runner.main(args) == 0 and executed == [] and "nothing to run" in capsys.readouterr().out
    after["03_scratch_cnn"]["code"] = "older"
    del after["ood"]
    write_json(log, {**read_json(log), "notebooks": after})
    assert runner.main([*args, "--only", "01_", "02_", "03_"]) == 0 and executed == ["03_scratch_cnn"]
    assert set(read_json(log)["packages"]) == {"03_scratch_cnn", *versions}, "the others keep the versions they ran"
    executed.clear()
    assert runner.main([*args, "--only", "ood"]) == 0 and executed == ["ood"]  # a command stage, never run before
    assert read_json(log)["notebooks"]["ood"]["code"] == stages.select(["ood"])[0].fingerprint()


def test_a_command_stage_gets_the_runs_folders_relative_to_the_repository(tmp_path):
    ood = stages.select(["ood"])[0]
    args = argparse.Namespace(
        profile="full",
        data_dir=str(ROOT.parent / "shared" / "data" / "chest_xray_224"),
        cache_dir="data/cache",
        output_dir=str(ROOT / "reports"),
        models_dir="models",
        weights_dir=None,
        seed=7,
    )
    argv = runner.command_args(ood, args)
    assert argv[0] == "fit" and "../shared/data/chest_xray_224" in argv and "reports" in argv
    assert "--weights-dir" not in argv, "a parameter the run has not got leaves its flag out"
    assert "--weights-dir" in runner.command_args(ood, argparse.Namespace(**{**vars(args), "weights_dir": "w"}))
    bad = stages.Stage(name="x", module="m", args=("--n", "{epochs}"))
    with pytest.raises(stages.StageError, match="stage x: unknown parameter 'epochs'"):
        runner.command_args(bad, args)


@pytest.mark.parametrize("where", ["main", "seed"])
def test_stale_results_names_a_stage_that_read_older_results(tmp_path, where):
    from pneumonia_cxr.report import stale_results

    ran = up_to_date_run()
    ran["07_ensemble"]["inputs"]["03_scratch_cnn"] = "older"
    main = up_to_date_run() if where == "seed" else ran
    write_json(tmp_path / "metrics" / "run.json", {"profile": "full", "data_dir": "d", "seed": 42, "notebooks": main})
    if where == "seed":
        del ran["final_notebook"], ran["ood"]  # a seed run has neither
        write_json(
            tmp_path / "seeds" / "7" / "metrics" / "run.json",
            {"profile": "full", "data_dir": "d", "seed": 7, "notebooks": ran},
        )
    problems = [p for p in stale_results(tmp_path) if "07_ensemble.ipynb" in p]
    assert len(problems) == 1 and "read the results of 03_scratch_cnn" in problems[0]
    assert (where == "seed") == ("seeds/7" in problems[0])
    assert not [p for p in stale_results(tmp_path) if "ood" in p], "a seed run has no OOD stage to be missing"


def test_stale_refuses_to_mix_runs(tmp_path, capsys):
    """A seed's folder brought up to date with the main run's seed would mix two runs in one run.json."""
    log = tmp_path / "metrics" / "run.json"
    write_json(log, {"profile": "full", "seed": 7, "data_dir": str(tmp_path), "notebooks": up_to_date_run()})
    args = ["--stale", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path)]
    assert runner.main(args) == 2 and "seed 7" in capsys.readouterr().err
    assert runner.main([*args, "--seed", "7"]) == 0 and "nothing to run" in capsys.readouterr().out


def test_injected_folders_are_relative_so_no_machine_is_named(tmp_path):
    """An executed notebook in git names `../reports` and `../../shared/data/...`, never whoever ran it; run.json
    names folders relative to the repository."""
    shared = ROOT.parent / "shared" / "data" / "chest_xray_224"
    args = argparse.Namespace(
        profile="full",
        data_dir=str(shared),
        cache_dir=str(ROOT / "data" / "cache"),
        output_dir=str(ROOT / "reports" / "seeds" / "7"),
        models_dir=str(ROOT / "models"),
        weights_dir=None,
        seed=7,
    )
    in_notebooks = runner.parameters(args, ROOT / "notebooks")
    assert in_notebooks["output_dir"] == "../reports/seeds/7" and in_notebooks["cache_dir"] == "../data/cache"
    assert in_notebooks["data_dir"] == "../../shared/data/chest_xray_224" and "weights_dir" not in in_notebooks
    assert runner.parameters(args, ROOT)["models_dir"] == "models"  # the final notebook runs at the top
    assert runner.parameters(args) == {**runner.parameters(args, ROOT)}, "run.json: relative to the repository"
    assert runner.parameters(args)["data_dir"] == "../shared/data/chest_xray_224"
    assert not any(str(v).startswith("/") for v in runner.parameters(args, tmp_path).values())


def test_make_runs_what_a_fresh_clone_lacks_and_a_whole_run_for_another_dataset(tmp_path, executed, capsys):
    """`make all` (`--make`): the committed reports are up to date but a fresh clone has no models, so the stages
    that make models run (and the final notebook, which reads them), not notebook 01; a run.json of another dataset
    is replaced by a whole run."""
    log = tmp_path / "reports" / "metrics" / "run.json"
    data = runner.relative(tmp_path / "data", ROOT)
    write_json(log, {"profile": "smoke", "seed": 42, "data_dir": data, "notebooks": up_to_date_run()})
    args = ["--make", *_smoke_args(tmp_path), "--models-dir", str(tmp_path / "models")]
    args += ["--executed-dir", str(tmp_path / "x")]
    assert runner.main(args) == 0
    assert executed == NAMES[1:]  # every stage with a model to make, then the final notebook; not 01
    assert "baseline_dense.keras is not in" in capsys.readouterr().out
    assert read_json(log)["data_dir"] == data and not data.startswith("/")
    (tmp_path / "models").mkdir()
    for stage in stages.STAGES:
        for f in stage.models:
            (tmp_path / "models" / f).write_text(stage.name)
    executed.clear()
    assert runner.main(args) == 0 and executed == []  # models there, code unchanged: nothing to run
    other = [a if a != str(tmp_path / "data") else str(tmp_path / "chest_xray") for a in args]
    assert runner.main(other) == 0 and executed == NAMES  # another dataset: every stage
    assert "every stage runs" in capsys.readouterr().out
