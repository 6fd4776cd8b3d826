"""`make all` without data runs the SYNTHETIC demo, which writes only under build/demo/ and never over the committed
analysis; its summary says SYNTHETIC, never "official", beside no published result; the terminal shows progress, not
the kernels' transport warning or TensorFlow's C++ start-up lines; a run on real data says first what it replaces.

The demo run itself (`test_the_demo_path_leaves_the_committed_analysis_alone`) runs in a clean copy of this checkout,
uncommitted changes included: the runner as `make all` calls it, on a small SYNTHETIC dataset with the smoke profile,
for notebook 01 and then the summary, model card and PDF steps, which `--report` routes beside the run.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pneumonia_cxr import report, runner
from pneumonia_cxr.data.demo import REAL_DATA_COMMAND, make_demo_dataset
from pneumonia_cxr.model_card import model_card
from pneumonia_cxr.records import load_metrics
from pneumonia_cxr.tables import binary_table, describe_test_split, headline_table, ternary_table

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ("published", "Kermany", "MedMNIST", "keras.io")


def clean_copy(dst: Path) -> Path:
    """This checkout's files as they are now (tracked ones, changed or not, and untracked ones git does not ignore),
    committed in a new repository at `dst`: `git status` there shows what a run changed."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # a file deleted in the working tree is still listed
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "copy"]):
        subprocess.run([*git, *cmd], cwd=dst, check=True)
    return dst


def changed_outside(repo: Path, allowed=("build/", "data/")) -> list[str]:
    """What `git status` lists in `repo` outside `allowed`, ignored files too (models/ and data/cache are ignored, so
    plain `git status` would not see a run that wrote there); bytecode caches aside."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    paths = [line[3:] for line in status]
    return [p for p in paths if not p.startswith(allowed) and "__pycache__/" not in p]


@pytest.mark.slow
def test_the_demo_path_leaves_the_committed_analysis_alone(tmp_path):
    repo = clean_copy(tmp_path / "repo")
    make_demo_dataset(repo / "data" / "demo", counts={"train": 10, "val": 2, "test": 5})

    # `make all` without data/chest_xray: one runner call, folders left to the runner, which routes them
    dry = subprocess.run(["make", "-n", "all"], cwd=repo, capture_output=True, text=True, check=True).stdout
    calls = [line for line in dry.splitlines() if "pneumonia_cxr." in line]
    assert len(calls) == 1 and "-m pneumonia_cxr.runner --make --report" in calls[0], dry
    assert "--data-dir data/demo" in calls[0] and "-dir" not in calls[0].replace("--data-dir", ""), calls[0]

    env = {**os.environ, "PYTHONPATH": str(repo / "src")}  # the copy's code, not this checkout's
    for var in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "ABSL_MIN_LOG_LEVEL"):
        env.pop(var, None)  # as a user's shell has them: the runner sets what it needs
    run = subprocess.run(
        [sys.executable, "-m", "pneumonia_cxr.runner", "--make", "--report", "--profile", "smoke"]
        + ["--data-dir", "data/demo", "--only", "01_eda"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert changed_outside(repo) == [], out
    demo = repo / "build" / "demo"
    for made in ("notebooks/01_eda.ipynb", "reports/metrics/eda.json", "img/sample_grid.png"):
        assert (demo / made).is_file(), made
    assert json.loads((demo / "reports" / "metrics" / "eda.json").read_text())["synthetic"]
    assert "SYNTHETIC" in (demo / "README.md").read_text() and (demo / "model_card.md").is_file()
    assert "no PDF: build/demo/notebooks/final_notebook.ipynb has not run yet" in run.stdout  # its PDF step's input

    assert out.count("SYNTHETIC") >= 2 and run.stdout.rstrip().endswith(REAL_DATA_COMMAND)
    assert "build/demo/README.md" in run.stdout.splitlines()[-3]  # where to look, then the command
    for noise in ("without encryption", "absl::InitializeLog", "I0000", "oneDNN", "cuda", "Working directory"):
        assert noise not in out, noise
    assert len(out.splitlines()) <= 20, out


def test_synthetic_data_goes_under_build_demo_and_never_into_the_committed_folders(demo_root, tmp_path, capsys):
    args = runner.parse_args(["--data-dir", str(demo_root), "--report"])
    runner.resolve_folders(args)
    demo = runner.demo_dir()
    under = lambda path: Path(os.path.abspath(path)).is_relative_to(demo)  # noqa: E731
    assert args.synthetic
    assert all(under(getattr(args, k)) for k in ("output_dir", "models_dir", "cache_dir", "executed_dir"))
    assert runner.committed_destinations(args) == []
    steps = runner.report_steps(args)
    assert [step[2] for step in steps] == ["pneumonia_cxr.report", "pneumonia_cxr.pdf"]
    for step in steps:  # every file a step reads or writes, the summary and model card included
        folders = [a for a in step[3:] if not a.startswith("--")]
        assert folders and all(under(f) for f in folders), step
    assert "--summary" in steps[0] and "--model-card" in steps[0]

    for committed in (["--output-dir", str(ROOT / "reports")], ["--output-dir", str(ROOT / "reports" / "seeds" / "7")]):
        assert runner.main(["--data-dir", str(demo_root), *committed]) == 2
        err = capsys.readouterr().err
        assert "SYNTHETIC_DATASET.txt" in err and "reports/" in err and "committed analysis" in err

    real = tmp_path / "chest_xray"
    real.mkdir()
    args = runner.parse_args(["--data-dir", str(real), "--report"])
    runner.resolve_folders(args)
    assert not args.synthetic and (args.output_dir, args.models_dir, args.executed_dir) == ("reports", "models", None)


def test_a_run_on_real_data_into_the_committed_folders_says_what_it_replaces(tmp_path, capsys):
    (tmp_path / "chest_xray").mkdir()
    args = runner.parse_args(["--data-dir", str(tmp_path / "chest_xray"), "--report"])
    runner.resolve_folders(args)
    runner.announce(args, runner.STAGES)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "replaces the committed" in lines[0]
    assert lines[0].endswith("git checkout -- notebooks reports img README.md docs/model_card.md final_notebook.ipynb")
    runner.announce(args, [])  # nothing to run: nothing replaced
    elsewhere = ["--output-dir", str(tmp_path / "r"), "--executed-dir", str(tmp_path / "x")]
    args = runner.parse_args(["--data-dir", str(tmp_path / "chest_xray"), *elsewhere])
    runner.resolve_folders(args)
    runner.announce(args, runner.STAGES)
    assert capsys.readouterr().out == ""


def _synthetic_copy(tmp_path, test_split: str = "official") -> Path:
    """The committed run's metrics and predictions as if its data had been SYNTHETIC."""
    shutil.copytree(ROOT / "reports" / "metrics", tmp_path / "metrics")
    shutil.copytree(ROOT / "reports" / "predictions", tmp_path / "predictions")
    for path in (tmp_path / "metrics").glob("*.json"):
        m = json.loads(path.read_text())
        if "task" in m or path.name == "eda.json":
            path.write_text(json.dumps({**m, "synthetic": True, "test_split": test_split}))
    return tmp_path


@pytest.mark.parametrize("test_split", ["official", "carved"])
def test_the_demos_summary_says_synthetic_never_official_beside_no_published_row(tmp_path, test_split):
    reports = _synthetic_copy(tmp_path, test_split)
    metrics = load_metrics(reports / "metrics")
    texts = {
        "summary": report.summary_markdown(reports),
        "results block": report.results_markdown(reports),
        "headline": report.headline(reports),
        "model card": model_card(reports),
    }
    for name, text in texts.items():
        assert "SYNTHETIC" in text, name
        assert "official" not in text.lower(), (name, text)
        assert not any(p in text for p in PUBLISHED), (name, text)
    assert "procedural images, not X-rays" in texts["results block"] and "Guangzhou" not in texts["model card"]
    assert REAL_DATA_COMMAND in texts["summary"]
    for table in (headline_table(metrics, reports / "predictions"), binary_table(metrics), ternary_table(metrics)):
        assert not table["model"].str.contains("|".join(PUBLISHED)).any()
    assert "official" not in describe_test_split(next(iter(metrics.values())), 90)


def test_the_real_runs_texts_keep_their_published_rows_and_official_split():
    metrics = load_metrics(ROOT / "reports" / "metrics")
    table = headline_table(metrics, ROOT / "reports" / "predictions")
    assert (table["task"] == "published").sum() == 5 and binary_table(metrics)["model"].str.startswith(
        "published"
    ).any()
    assert (
        describe_test_split(metrics["ensemble"], 624)
        == "the official test split (624 images), read once at the end of the run"
    )


def test_a_synthetic_run_never_writes_the_readme_or_the_committed_model_card(tmp_path, capsys):
    reports = _synthetic_copy(tmp_path / "reports")
    readme = tmp_path / "README.md"
    readme.write_text(f"{report.BEGIN}\n{report.END}\n")
    before = readme.read_text()
    assert report.main(["--reports", str(reports), "--readme", str(readme), "--model-card", str(tmp_path / "c")]) == 2
    assert "SYNTHETIC" in capsys.readouterr().err and readme.read_text() == before
    committed_card = ["--model-card", str(ROOT / "docs" / "model_card.md")]
    assert report.main(["--reports", str(reports), "--summary", str(tmp_path / "s.md"), *committed_card]) == 2
    beside = ["--summary", str(tmp_path / "s.md"), "--model-card", str(tmp_path / "card.md")]
    assert report.main(["--reports", str(reports), *beside]) == 0
    assert (tmp_path / "s.md").read_text().startswith("# SYNTHETIC demo run") and (tmp_path / "card.md").exists()
    assert capsys.readouterr().out.splitlines()[-1].startswith("SYNTHETIC DEMO")


def test_the_terminal_shows_epochs_trials_and_errors_not_start_up_chatter(tmp_path, capsys):
    terminal = runner.Terminal()
    out, err = runner.CellOutput(terminal, "stdout"), runner.CellOutput(terminal, "stderr")
    out.write("profile=full image_size=128\nEpoch 1/10\n")
    out.write(
        "121/121 - 23s - 189ms/step - accuracy: 0.76 - auc: 0.84 - loss: 0.50 - val_auc: 0.9588 - val_loss: 0.29\n"
    )
    out.write("Epoch 2/10\n121/121 - 21s - 170ms/step - accuracy: 0.82 - loss: 0.40 - val_auc: 0.97821 - val_loss")
    out.write(": 0.19\nEpoch 1/3\n1/1 - 4s - 4s/step - accuracy: 0.3 - loss: 0.7 - val_accuracy: 0.5\n")
    err.write("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    err.write("I0000 00:00:1796664299.188816   16896 port.cc:153] oneDNN custom operations are on.\n")
    err.write("/x/calibration.py:54: RuntimeWarning: overflow encountered in exp\n")
    err.write("E0000 00:00:1796664299.1 16896 gpu.cc:1] something failed\nValueError: bad input\n")
    with runner.TrialWatch(tmp_path, terminal, every=60) as watch:  # the search's trials, then its chosen model
        for i, (status, score) in enumerate([("COMPLETED", 0.91), ("COMPLETED", 0.95), ("RUNNING", None)]):
            trial = tmp_path / "scratch_cnn" / f"trial_{i}" / "trial.json"
            trial.parent.mkdir(parents=True)
            trial.write_text(json.dumps({"status": status, "score": score}))
        chosen = runner.CellOutput(terminal, "stdout", on_training=watch.look)
        chosen.write("Epoch 1/2\n1/1 - 4s - 4s/step - loss: 0.7 - val_auc: 0.8\n")
    terminal.end()
    shown = capsys.readouterr()
    assert shown.out.splitlines() == [
        "    epochs, val AUC: 0.959 0.978",
        "    epochs, val AUC: -",
        "    trials, val AUC: 0.910 0.950",
        "    epochs, val AUC: 0.800",
    ]
    assert shown.err.splitlines() == [
        "    E0000 00:00:1796664299.1 16896 gpu.cc:1] something failed",
        "    ValueError: bad input",
    ]


def test_child_processes_stderr_loses_tensorflows_start_up_lines_not_errors(capfd):
    child = runner.ChildStderr()
    script = (
        "import sys; w = sys.stderr.write; w('WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR\\n'); w('I0000 00:00:1796664299.195195   16896 cudart_stub.cc:31] Could not find cuda\\n');"
        " w('Traceback (most recent call last):\\n'); w('W0000 00:00:1.2 1 x.cc:2] a warning\\n')"
    )
    subprocess.run([sys.executable, "-c", script], stderr=child.fd, check=True)
    child.close()
    assert capfd.readouterr().err.splitlines() == [
        "Traceback (most recent call last):",
        "W0000 00:00:1.2 1 x.cc:2] a warning",
    ]


def test_kernels_are_started_with_encrypted_sockets_and_their_stderr_through_the_runner():
    import zmq

    manager = runner.kernel_manager(7)(kernel_name="python3")
    assert manager.transport_encryption == ("auto" if zmq.has("curve") else "disabled")
