"""The runner as a DAG: which notebooks are out of date (their own code changed, or results they read were made again
since), and `--stale`, which runs just those, in order, and records what each one read."""

import argparse
import platform
import shutil
from pathlib import Path

import pytest

from pneumonia_cxr import runner
from pneumonia_cxr.provenance import code_fingerprint
from pneumonia_cxr.train import read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
STEMS = [Path(nb).stem for nb in runner.NOTEBOOKS]


def up_to_date_run() -> dict:
    """run.json's `notebooks` as a full run of the committed code leaves it."""
    ran = {}
    for nb in runner.NOTEBOOKS:
        stem = Path(nb).stem
        ran[stem] = {
            "code": code_fingerprint(nb),
            **({"inputs": runner.inputs_now(stem, ran)} if stem in runner.READS_FROM else {}),
        }
    return ran


@pytest.fixture
def executed(monkeypatch) -> list[str]:
    """Papermill replaced by a copy: the notebooks the runner executes, in order."""
    ran = []

    def fake_execute(src, dst, **kwargs):
        ran.append(Path(src).stem)
        shutil.copy(src, dst)

    monkeypatch.setattr(runner.pm, "execute_notebook", fake_execute)
    return ran


def test_every_notebook_a_notebook_reads_comes_before_it():
    for stem, ups in runner.READS_FROM.items():
        assert stem in STEMS and ups and all(STEMS.index(up) < STEMS.index(stem) for up in ups)


def test_out_of_date_follows_code_and_the_results_a_notebook_read():
    ran = up_to_date_run()
    assert runner.out_of_date(ran) == {}

    ran["03_scratch_cnn"]["code"] = "older"  # edited since it ran: it and what reads it run again
    assert list(runner.out_of_date(ran)) == [
        "notebooks/03_scratch_cnn.ipynb",
        "notebooks/07_ensemble.ipynb",
        "final_notebook.ipynb",
    ]
    assert "reads 03_scratch_cnn" in runner.out_of_date(ran)["notebooks/07_ensemble.ipynb"]

    ran = up_to_date_run()
    ran["07_ensemble"]["inputs"]["06_keras_tuner_search"] = "older"  # 06 ran again after 07 read it, 07 did not
    stale = runner.out_of_date(ran)
    assert list(stale) == ["notebooks/07_ensemble.ipynb", "final_notebook.ipynb"]
    assert "read the results of 06_keras_tuner_search" in stale["notebooks/07_ensemble.ipynb"]
    assert runner.out_of_date(ran, runner.NOTEBOOKS[:-1]) == {
        "notebooks/07_ensemble.ipynb": stale["notebooks/07_ensemble.ipynb"]
    }

    ran = up_to_date_run()
    del ran["final_notebook"]["inputs"]  # a run.json from before the runner recorded what a notebook read
    assert "no record" in runner.out_of_date(ran)["final_notebook.ipynb"]
    del ran["01_eda"]
    assert runner.out_of_date(ran)["notebooks/01_eda.ipynb"] == "never run"


def _smoke_args(tmp_path) -> list[str]:
    """The runner's smoke-profile arguments with data and reports under `tmp_path`."""
    return ["--profile", "smoke", "--data-dir", str(tmp_path / "data"), "--output-dir", str(tmp_path / "reports")]


def test_stale_runs_only_what_is_out_of_date_and_records_what_it_read(tmp_path, executed, capsys):
    """`--stale` with papermill replaced by a copy: which notebooks run, in which order, and what run.json says."""
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
    assert after["06_keras_tuner_search"]["code"] == code_fingerprint("notebooks/06_keras_tuner_search.ipynb")
    assert after["07_ensemble"]["inputs"]["06_keras_tuner_search"] == after["06_keras_tuner_search"]["code"]
    assert after["03_scratch_cnn"] == ran["03_scratch_cnn"], "a notebook not run keeps its entry"
    import tensorflow as tf  # a notebook that ran names the versions it ran with, read without importing them

    versions = read_json(log)["packages"]
    assert set(versions) == {"06_keras_tuner_search", "07_ensemble", "final_notebook"}
    assert versions["06_keras_tuner_search"]["tensorflow"] == tf.__version__
    assert versions["06_keras_tuner_search"]["python"] == platform.python_version()
    assert runner.package_versions(("no-such-package",))["no-such-package"] is None
    assert runner.out_of_date(after) == {}

    executed.clear()
    assert runner.main(args) == 0 and executed == [] and "nothing to run" in capsys.readouterr().out
    after["03_scratch_cnn"]["code"] = "older"
    write_json(log, {**read_json(log), "notebooks": after})
    assert runner.main([*args, "--only", "01_", "02_", "03_"]) == 0 and executed == ["03_scratch_cnn"]
    assert set(read_json(log)["packages"]) == {"03_scratch_cnn", *versions}, (
        "the others keep the versions they ran with"
    )


@pytest.mark.parametrize("where", ["main", "seed"])
def test_stale_results_names_a_notebook_that_read_older_results(tmp_path, where):
    from pneumonia_cxr.report import stale_results

    ran = up_to_date_run()
    ran["07_ensemble"]["inputs"]["03_scratch_cnn"] = "older"
    main = up_to_date_run() if where == "seed" else ran
    write_json(tmp_path / "metrics" / "run.json", {"profile": "full", "data_dir": "d", "seed": 42, "notebooks": main})
    if where == "seed":
        del ran["final_notebook"]
        write_json(
            tmp_path / "seeds" / "7" / "metrics" / "run.json",
            {"profile": "full", "data_dir": "d", "seed": 7, "notebooks": ran},
        )
    problems = [p for p in stale_results(tmp_path) if "07_ensemble.ipynb" in p]
    assert len(problems) == 1 and "read the results of 03_scratch_cnn" in problems[0]
    assert (where == "seed") == ("seeds/7" in problems[0])


def test_stale_refuses_to_mix_runs(tmp_path, capsys):
    """A seed's folder brought up to date with the main run's seed would mix two runs in one run.json."""
    log = tmp_path / "metrics" / "run.json"
    write_json(log, {"profile": "full", "seed": 7, "data_dir": str(tmp_path), "notebooks": up_to_date_run()})
    args = ["--stale", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path)]
    assert runner.main(args) == 2 and "seed 7" in capsys.readouterr().err
    assert runner.main([*args, "--seed", "7"]) == 0 and "nothing to run" in capsys.readouterr().out


def test_injected_folders_inside_the_repository_are_relative_to_the_notebook(tmp_path):
    """An executed notebook in git names `../reports`, not the folder of whoever ran it; data elsewhere stays whole."""
    from pneumonia_cxr.provenance import ROOT

    args = argparse.Namespace(
        profile="full",
        data_dir=str(tmp_path),
        cache_dir=str(ROOT / "data" / "cache"),
        output_dir=str(ROOT / "reports" / "seeds" / "7"),
        models_dir=str(ROOT / "models"),
        weights_dir=None,
        seed=7,
    )
    in_notebooks = runner.parameters(args, ROOT / "notebooks")
    assert in_notebooks["output_dir"] == "../reports/seeds/7" and in_notebooks["cache_dir"] == "../data/cache"
    assert in_notebooks["data_dir"] == str(tmp_path.resolve()) and "weights_dir" not in in_notebooks
    assert runner.parameters(args, ROOT)["models_dir"] == "models"  # the final notebook runs at the top
    assert runner.parameters(args)["output_dir"] == str(ROOT / "reports" / "seeds" / "7"), "run.json keeps it whole"


def test_make_runs_what_a_fresh_clone_lacks_and_a_whole_run_for_another_dataset(tmp_path, executed, capsys):
    """`make all` (`--make`): the committed reports are up to date but a fresh clone has no models, so the notebooks
    that make models run (and the final notebook, which reads them), not notebook 01; a run.json of another dataset
    is replaced by a whole run."""
    log = tmp_path / "reports" / "metrics" / "run.json"
    write_json(log, {"profile": "smoke", "seed": 42, "data_dir": str(tmp_path / "data"), "notebooks": up_to_date_run()})
    args = ["--make", *_smoke_args(tmp_path), "--models-dir", str(tmp_path / "models")]
    args += ["--executed-dir", str(tmp_path / "x")]
    assert runner.main(args) == 0
    assert executed == STEMS[1:]  # every notebook with a model to make, then the final notebook; not 01
    assert "baseline_dense.keras is not in" in capsys.readouterr().out
    (tmp_path / "models").mkdir()
    for stem, files in runner.MODELS_MADE.items():
        for f in files:
            (tmp_path / "models" / f).write_text(stem)
    executed.clear()
    assert runner.main(args) == 0 and executed == []  # models there, code unchanged: nothing to run
    other = [a if a != str(tmp_path / "data") else str(tmp_path / "chest_xray") for a in args]
    assert runner.main(other) == 0 and executed == STEMS  # another dataset: every notebook
    assert "every notebook runs" in capsys.readouterr().out
