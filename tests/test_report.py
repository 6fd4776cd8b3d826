"""README results table and the PDF report, checked against the committed reports/ of the latest run; the
comparison of runs with other seeds."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pneumonia_cxr import report
from pneumonia_cxr.results import choose_model, load_metrics

ROOT = Path(__file__).resolve().parents[1]


def test_readme_results_table_equals_what_reports_give():
    readme = (ROOT / "README.md").read_text()
    assert report.render_readme(readme, ROOT / "reports") == readme, "run: python -m pneumonia_cxr.report"


def _need(tool):
    if shutil.which(tool) is None:
        msg = f"{tool} not installed: the PDF test did NOT run"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def test_committed_reports_are_what_the_committed_code_makes():
    assert report.stale_results(ROOT / "reports") == []  # each line says what to run again


def test_stale_results_names_each_thing_the_code_would_no_longer_make(tmp_path):
    from pneumonia_cxr.train import read_json, write_json

    for src in [ROOT / "reports" / "metrics", *sorted((ROOT / "reports" / "seeds").glob("*/metrics"))]:
        dst = tmp_path / src.relative_to(ROOT / "reports")
        dst.mkdir(parents=True)
        for f in [*src.glob("*.json"), *src.glob("seed_table.csv")]:  # all that the check reads
            shutil.copy(f, dst / f.name)
    seeds = sorted((tmp_path / "seeds").glob("*/metrics"))
    assert len(seeds) >= 1, "the committed reports have no seed runs to check against"
    assert report.stale_results(tmp_path) == []

    main = tmp_path / "metrics" / "run.json"
    run = read_json(main)
    run["notebooks"]["final_notebook"]["code"] = "edited"  # a notebook changed after it ran
    write_json(main, run)
    problems = report.stale_results(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("final_notebook.ipynb: its code")
    shutil.copy(ROOT / "reports" / "metrics" / "run.json", main)

    seed_run = read_json(seeds[0] / "run.json")  # a seed made before a code change: skipped, so the table is off
    seed_run["notebooks"]["03_scratch_cnn"]["code"] = "older"
    write_json(seeds[0] / "run.json", seed_run)
    problems = report.stale_results(tmp_path)  # what to run again for that seed, and the consequences
    assert [p.split(":")[0] for p in problems[:2]] == ["notebooks/03_scratch_cnn.ipynb", "notebooks/07_ensemble.ipynb"]
    assert all(str(seeds[0]) in p for p in problems[:2]), "names the seed's run"
    assert len(problems) == 4 and "skipped, differs" in problems[2] and "seed_table.csv: differs" in problems[3]

    for folder in seeds:  # no seed runs left, but the table of them is
        shutil.rmtree(folder.parent)
    assert len(problems := report.stale_results(tmp_path)) == 1 and "seed_table.csv: left from" in problems[0]
    (tmp_path / "metrics" / "seed_table.csv").unlink()
    assert report.stale_results(tmp_path) == []
    del run["notebooks"]["01_eda"]
    write_json(main, run)
    assert [p.split(":")[0] for p in report.stale_results(tmp_path)] == [
        "notebooks/01_eda.ipynb",
        "final_notebook.ipynb",
    ]


def test_pdf_report_has_title_table_figures_and_metrics(tmp_path):
    from PIL import Image

    if report.find_browser() is None:
        _need("chromium")
    _need("pdftoppm")
    pdf = report.export_pdf(ROOT / "final_notebook.ipynb", tmp_path / "final_report.pdf")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    metrics = load_metrics(ROOT / "reports" / "metrics")
    best = metrics[choose_model(metrics)]
    assert "git commit" in text and "Kermany" in text  # title block and the comparison table
    for key in ("sensitivity", "specificity", "roc_auc"):
        assert f"{best['test'][key]:.3f}" in text, key
    assert "npv@62.5%" in text, "the robustness table's last column was cut off at the page edge"
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 4
    spread = [np.asarray(Image.open(p).convert("L"), dtype=float).std() for p in pages]
    assert sum(s > 20 for s in spread) >= 3, f"too few pages with figures: {spread}"


def test_seed_table_compares_complete_runs_of_other_seeds_and_skips_the_rest(tmp_path):
    from pneumonia_cxr.results import seed_runs, seed_table
    from pneumonia_cxr.train import write_json

    def run(folder, seed, auc, j, profile="full", models=("cnn", "transfer", "ternary"), code="abc"):
        notebooks = {"03_cnn": {"code": code}, "final_notebook": {"code": "any"}}
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
    with pytest.warns(UserWarning):
        line, second = report.seed_sentences(
            tmp_path, "cnn"
        )  # the README's line for seed 7: the main choice, then its own
    assert line.startswith("With seed 7") and line.index("cnn: test AUC 0.970") < line.index("transfer (its choice)")
    assert "make seed-check" in line and second.startswith("With seed 10: ")  # what a seed run is: said once
    run(tmp_path / "seeds" / "again" / "metrics", 7, 0.97, {"cnn": 0.7, "transfer": 0.8})
    with pytest.raises(ValueError, match="seed 7"), pytest.warns(UserWarning):
        seed_runs(tmp_path)


def test_threshold_sentence_reads_the_chosen_models_rows(tmp_path):
    import pandas as pd

    from pneumonia_cxr.operating_point import threshold_out_of_bag

    rng = np.random.default_rng(0)
    y = np.repeat(rng.random(300) < 0.7, 2)
    p = 1 / (1 + np.exp(-(rng.normal(size=600) + 2 * (y - 0.5))))
    groups = np.repeat(np.arange(300), 2)
    table = pd.concat(
        [
            threshold_out_of_bag(y, p, groups, (0.95, 0.97), n_boot=50).assign(model="cnn"),
            threshold_out_of_bag(y, 1 - p, groups, (0.95,), n_boot=50).assign(model="other"),
        ]
    )
    table.to_csv(tmp_path / "t.csv", index=False)  # the sentence reads the file the final notebook writes
    line = report.threshold_sentence(pd.read_csv(tmp_path / "t.csv"), "cnn")
    first = table[table["model"] == "cnn"].iloc[0]
    assert f"at the target 0.95, sensitivity {first['sensitivity']:.3f}" in line
    assert f"below 0.95 in {first['share below 0.95']:.0%} of resamples" in line
    assert "at a target of 0.97: below 0.95 in" in line and line.count("[") == 1
    assert report.threshold_sentence(table, "absent") == ""


def test_ternary_shift_sentence_reads_both_splits_robustness_files(tmp_path):
    import pandas as pd

    from pneumonia_cxr.ternary import shift_table, ternary_shift_summary

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 90)

    def table(noise):  # a model that knows the class, blurred by `noise`, under two "shifts"
        probs = {s: np.eye(3)[y] + noise * k * rng.random((90, 3)) for k, s in enumerate(("none", "worse"), 1)}
        return shift_table({s: p / p.sum(1, keepdims=True) for s, p in probs.items()}, y)

    assert report.ternary_shift_sentence(tmp_path) == ""
    tables = {
        "ternary_val_robustness.csv": {"ternary": table(0.5), "combined": table(1.0)},
        "ternary_robustness.csv": {"ternary": table(2.0), "combined": table(4.0)},
    }
    for name, t in tables.items():
        pd.concat(t, names=["model"]).reset_index(level=0).to_csv(tmp_path / name, index=False)
    line = report.ternary_shift_sentence(tmp_path)
    assert "Under the 2 acquisition shifts" in line
    for split, name in (("validation", "ternary_val_robustness.csv"), ("test", "ternary_robustness.csv")):
        s = ternary_shift_summary(tables[name]["combined"])
        assert (
            f"combined {s['mean accuracy at test mix']:.3f} / {s['worst accuracy at test mix']:.3f} / "
            f"{s['worst normal recall']:.3f}"
        ) in line.split(f"on {split} ")[1].split(";")[0]


def test_official_layout_sentence_puts_its_time_beside_the_training_size_here():
    timing = {
        "wall_seconds": 2640.0,
        "peak_memory_mb": 3432.1,
        "images": {"train": 4434, "val": 798, "test": 624},
        "git_commit": "abc1234",
        "cpu_count": 2,
        "cpu": "Some CPU",
    }
    eda = {"assigned_split_counts": {"train": {"normal": 970, "bacteria": 1837, "virus": 968}}}
    line = report.official_layout_sentence(timing, eda)
    assert "44.0 min, peak memory 3432 MB, training on 4,434 images instead of 3,775" in line
    assert "(commit abc1234; 2 CPU cores, Some CPU)" in line
    assert "earlier" not in line
    timing["notebook_seconds"] = {"03_scratch_cnn": 2400.0, "07_ensemble": 210.0, "final_notebook": 30.0}
    timing["earlier"] = [
        {"git_commit": "def5678", "date": "2026-11-20", "minutes_01_07": 42.34},
        {"git_commit": "0123abc", "minutes_01_07": 53.1},
    ]
    line = report.official_layout_sentence(timing, eda)
    assert line.endswith(
        "Notebooks 01-07 took 43.5 min there; earlier measurements, newest first: "
        "42.3 min (def5678, 2026-11-20), 53.1 min (0123abc)."
    )


def test_an_ablation_made_beside_another_scratch_cnn_is_stale(tmp_path):
    import pandas as pd

    assert report.stale_ablation(tmp_path) == []  # never made: nothing to be stale
    shifts = ["none", "aspect swapped"]
    scratch = pd.DataFrame(
        {
            "shift": shifts + ["blur r=1.5"],
            "roc_auc": [0.99, 0.98, 0.97],
            "sensitivity": 0.95,
            "specificity": [0.9, 0.8, 0.7],
        }
    )
    scratch.to_csv(tmp_path / "scratch_cnn_val_robustness.csv", index=False)
    ablation = pd.concat(
        [
            scratch.iloc[:2].assign(model=report.ABLATION_BASELINE),
            scratch.iloc[:2].assign(model="with the offset (ablation)", specificity=[0.5, 0.4]),
        ]
    )
    ablation.to_csv(tmp_path / "aspect_offset_ablation.csv", index=False)
    assert report.stale_ablation(tmp_path) == []
    scratch.assign(specificity=[0.9, 0.81, 0.7]).to_csv(tmp_path / "scratch_cnn_val_robustness.csv", index=False)
    problems = report.stale_ablation(tmp_path)  # notebook 03 made again with another model since
    assert len(problems) == 1 and "run `make aspect-ablation` again" in problems[0]
    (tmp_path / "scratch_cnn_val_robustness.csv").unlink()
    assert "run notebook 03" in report.stale_ablation(tmp_path)[0]
