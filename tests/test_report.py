"""The README results block, the model card and the PDF report from the committed reports/ of the latest run; what the
staleness check names; the comparison of runs with other seeds."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pneumonia_cxr import report
from pneumonia_cxr.records import load_metrics
from pneumonia_cxr.selection import choose_model

ROOT = Path(__file__).resolve().parents[1]


def _need(tool):
    if shutil.which(tool) is None:
        msg = f"{tool} not installed: the PDF test did NOT run"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def _copy_run(tmp_path) -> Path:
    """The committed run's metrics (all that the check and the README block read) in a folder of its own."""
    src, dst = ROOT / "reports" / "metrics", tmp_path / "metrics"
    dst.mkdir(parents=True)
    for f in [*src.glob("*.json"), *src.glob("*.csv")]:
        shutil.copy(f, dst / f.name)
    shutil.copytree(ROOT / "reports" / "predictions", tmp_path / "predictions")
    return dst


def _up_to_date_copy(tmp_path) -> tuple[Path, dict]:
    """`_copy_run` with run.json's record as a run of the code in this checkout leaves it: (run.json, its content)."""
    from pneumonia_cxr import stages
    from pneumonia_cxr.io import read_json, write_json

    main = _copy_run(tmp_path) / "run.json"
    ran = {}
    for stage in stages.STAGES:
        ran[stage.name] = {**read_json(main)["notebooks"].get(stage.name, {}), "code": stage.fingerprint()}
        ran[stage.name].update({"inputs": stages.inputs_now(stage, ran)} if stage.upstream else {})
    run = {**read_json(main), "notebooks": ran}
    write_json(main, run)
    return main, run


def test_stale_results_names_each_thing_the_code_would_no_longer_make(tmp_path):
    from pneumonia_cxr.io import write_json

    main, run = _up_to_date_copy(tmp_path)
    ran = run["notebooks"]
    assert [p for p in report.stale_results(tmp_path) if "run.json" in p] == []
    edited = {**run, "notebooks": {**ran, "final_notebook": {**ran["final_notebook"], "code": "edited"}}}
    write_json(main, edited)  # a notebook changed after it ran
    assert any(p.startswith("final_notebook.ipynb: its code") for p in report.stale_results(tmp_path))
    interrupted = {**run, "notebooks": {**ran, "03_scratch_cnn": {"status": "running", "started": "t"}}}
    write_json(main, interrupted)  # a re-run killed while notebook 03 ran
    problems = report.stale_results(tmp_path)
    assert any(p.startswith("notebooks/03_scratch_cnn.ipynb: interrupted") for p in problems)
    assert any(p.startswith("notebooks/07_ensemble.ipynb: it reads 03_scratch_cnn") for p in problems)
    del ran["01_eda"]
    write_json(main, run)
    assert any(p.startswith("notebooks/01_eda.ipynb: never run") for p in report.stale_results(tmp_path))


def test_check_reports_says_what_is_out_of_date_and_exits_1(tmp_path, capsys):
    """`make check-reports` (`report --check`) prints each stale stage and exits 1: here an up-to-date run with one
    stage's code edited, and a README and model card written from that run."""
    from pneumonia_cxr.io import write_json

    log, run = _up_to_date_copy(tmp_path)
    write_json(log, {**run, "notebooks": {**run["notebooks"], "05_ternary_classifier": {"code": "edited"}}})
    readme, card = tmp_path / "README.md", tmp_path / "model_card.md"
    readme.write_text(f"{report.BEGIN}\n{report.END}\n")
    args = ["--reports", str(tmp_path), "--readme", str(readme), "--model-card", str(card)]
    assert report.main(args) == 0  # writes both
    assert report.main([*args, "--check"]) == 1
    out = capsys.readouterr().out
    assert "stale: notebooks/05_ternary_classifier.ipynb: its code" in out
    assert "stale: notebooks/07_ensemble.ipynb: it reads 05_ternary_classifier" in out
    assert "make refresh" in out


def test_results_block_says_which_test_split_the_run_used(tmp_path):
    from pneumonia_cxr.io import read_json, write_json

    metrics = _copy_run(tmp_path)
    text = report.results_markdown(tmp_path)
    chosen = choose_model(load_metrics(metrics))
    assert f"**{chosen}**" in text and "the official test split (624 images)" in text and "carved" not in text
    for f in metrics.glob("*.json"):  # the same run as if its dataset had had no test/ folder
        m = read_json(f)
        if "task" in m:
            write_json(f, {**m, "test_split": "carved"})
    text = report.results_markdown(tmp_path)
    assert "carved from train" in text and "official test split" not in text


def test_model_card_carries_the_chosen_models_numbers():
    from pneumonia_cxr.model_card import model_card

    card = model_card(ROOT / "reports")
    metrics = load_metrics(ROOT / "reports" / "metrics")
    best = metrics[choose_model(metrics)]
    for key in ("roc_auc", "sensitivity", "specificity"):
        assert f"| {key} | {best['test'][key]:.3f} [" in card
    for heading in ("## Intended use", "## Out of scope", "## Limitations", "## Ethical considerations"):
        assert heading in card


def test_pdf_report_opens_with_a_summary_page_and_fits_eight_pages(tmp_path):
    from PIL import Image

    from pneumonia_cxr.pdf import export_pdf, find_browser

    if find_browser() is None:
        _need("chromium")
    _need("pdftoppm")
    pdf = export_pdf(ROOT / "final_notebook.ipynb", tmp_path / "final_report.pdf")
    page = lambda n: (
        subprocess.run(  # noqa: E731
            ["pdftotext", "-layout", "-f", str(n), "-l", str(n), str(pdf), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    metrics = load_metrics(ROOT / "reports" / "metrics")
    best = metrics[choose_model(metrics)]
    first = page(1)
    assert "Kermany" in first and "Summary" in first  # the headline table beside the published results
    for key in ("sensitivity", "specificity", "roc_auc"):
        assert f"{best['test'][key]:.3f}" in first, key
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert 2 <= len(pages) <= 8
    spread = [np.asarray(Image.open(p).convert("L"), dtype=float).std() for p in pages]
    assert spread[0] > 20, "no figure on the summary page"
    assert sum(s > 20 for s in spread) >= 3, f"too few pages with figures: {spread}"


def test_seed_table_compares_complete_runs_of_other_seeds_and_skips_the_rest(tmp_path):
    from pneumonia_cxr.io import write_json
    from pneumonia_cxr.seeds import seed_runs, seed_table

    def run(folder, seed, auc, j, profile="full", models=("cnn", "transfer", "ternary"), code="abc"):
        notebooks = {"03_scratch_cnn": {"code": code}, "final_notebook": {"code": "any"}}
        if seed == 42:  # stages a seed run does not repeat (stages.toml's seed_runs = false) do not count
            notebooks["ood"] = {"code": "only in the main run"}
        write_json(
            folder / "run.json",
            {"seed": seed, "profile": profile, "data_dir": "/x/chest_xray_224", "notebooks": notebooks},
        )
        for name in models:
            test = {"roc_auc": auc, "sensitivity": 0.9, "specificity": 0.8, "accuracy": 0.85}
            m = {
                "model": name,
                "task": "binary",
                "test": test,
                "val": {"roc_auc": 0.99},
                "val_under_shifts": {"mean_youden": j.get(name)},
            }
            if name == "ternary":
                m = {
                    "model": name,
                    "task": "ternary",
                    "test": {"accuracy": 0.8, "macro_ovr_auc": auc, "bacterial_vs_viral": {"roc_auc": 0.7}},
                }
            write_json(folder / f"{name}.json", m)

    run(tmp_path / "metrics", 42, 0.95, {"cnn": 0.9, "transfer": 0.8})
    run(tmp_path / "seeds" / "7" / "metrics", 7, 0.97, {"cnn": 0.7, "transfer": 0.8})
    run(tmp_path / "seeds" / "8" / "metrics", 8, 0.5, {"cnn": 0.7}, models=("cnn",))  # interrupted
    run(tmp_path / "seeds" / "9" / "metrics", 9, 0.5, {"cnn": 0.9, "transfer": 0.8}, profile="smoke")
    run(tmp_path / "seeds" / "10" / "metrics", 10, 0.96, {"cnn": 0.9, "transfer": 0.8})
    run(tmp_path / "seeds" / "11" / "metrics", 11, 0.5, {"cnn": 0.9, "transfer": 0.8}, code="older")
    with pytest.warns(UserWarning) as caught:
        runs = seed_runs(tmp_path)
    assert list(runs) == [42, 7, 10]  # the main run first; 8 (a model missing), 9 (another profile), 11 (older code)
    assert {str(w.message).split(":")[0] for w in caught} == {str(tmp_path / "seeds" / s / "metrics") for s in "89"} | {
        str(tmp_path / "seeds" / "11" / "metrics")
    }
    assert "code (made before a code change?)" in next(str(w.message) for w in caught if "/11/" in str(w.message))
    table = seed_table(runs)
    assert list(table.columns) == ["seed 42", "seed 7", "seed 10", "spread"]
    assert table.loc[("cnn", "test AUC"), "seed 7"] == 0.97
    assert table.loc[("cnn", "test AUC"), "spread"] == pytest.approx(0.02)
    assert table.loc[("ternary", "macro OvR AUC"), "spread"] == pytest.approx(0.02)
    assert table.loc[("chosen", "model"), ["seed 42", "seed 7", "seed 10"]].tolist() == ["cnn", "transfer", "cnn"]
    run(tmp_path / "seeds" / "again" / "metrics", 7, 0.97, {"cnn": 0.7, "transfer": 0.8})
    with pytest.raises(ValueError, match="seed 7"), pytest.warns(UserWarning):
        seed_runs(tmp_path)
