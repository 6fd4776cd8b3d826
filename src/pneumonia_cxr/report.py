"""The README's results tables, generated from reports/metrics (never typed by hand), and the PDF report.

    python -m pneumonia_cxr.report            # rewrite the block between the markers in README.md
    python -m pneumonia_cxr.report --check    # exit 1 if README.md differs from what reports/ gives, or reports/ from
                                              # what the code would make (`stale_results`)
    python -m pneumonia_cxr.report --pdf      # final_notebook.ipynb -> reports/final_report.pdf (code hidden)

The PDF is nbconvert's HTML printed by a headless Chromium (Debian/Ubuntu: apt-get install chromium;
macOS: brew install --cask chromium), which works offline, unlike nbconvert's webpdf browser download.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .config import settings
from .published import anchors_sentence
from .results import binary_table, choose_model, load_metrics, seed_runs, seed_table, ternary_table
from .runner import NOTEBOOKS, out_of_date
from .targets import minutes_01_07, shown, targets_table
from .ternary import summary_by_model
from .train import read_json

BEGIN, END = "<!-- results:begin (python -m pneumonia_cxr.report) -->", "<!-- results:end -->"


def markdown_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def subgroup_sentence(groups: pd.DataFrame, model: str) -> str:
    """The chosen model's test sensitivity per pneumonia subtype and specificity per NORMAL series, in one line."""
    rows = groups[groups["model"] == model].sort_values(["metric", "subgroup"])
    parts = [f"{r.metric} on {r.subgroup} {r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] ({r.images} images)"
             for r in rows.itertuples()]
    return f"By subgroup on test (`reports/metrics/subgroups.csv`): {'; '.join(parts)}." if parts else ""


def threshold_sentence(table: pd.DataFrame, model: str) -> str:
    """What the chosen model's threshold rule delivers on validation patients it was not chosen on, in one line: at
    the rule's own target with a 95% range, then at the stricter targets."""
    rows = table[table["model"] == model].sort_values("validation target")
    if rows.empty:
        return ""
    below = next(c for c in rows.columns if c.startswith("share below "))
    floor = below.removeprefix("share below ")
    first, stricter = rows.iloc[0], rows.iloc[1:]
    line = (f"The threshold rule on validation patients it was not chosen on (out of bag, "
            f"`reports/metrics/threshold_out_of_bag.csv`): at the target {first['validation target']:g}, sensitivity "
            f"{first['sensitivity']:.3f} [{first['sensitivity 2.5%']:.3f}, {first['sensitivity 97.5%']:.3f}], "
            f"below {floor} in {first[below]:.0%} of resamples, specificity {first['specificity']:.3f}")
    if len(stricter):
        join = lambda values, fmt: " / ".join(format(v, fmt) for v in values)
        line += (f"; at a target of {join(stricter['validation target'], 'g')}: below {floor} in "
                 f"{join(stricter[below], '.0%')}, specificity {join(stricter['specificity'], '.3f')}")
    return line + "."


def ternary_shift_sentence(metrics_dir: str | Path) -> str:
    """The two ternary decisions under the acquisition shifts, on validation (where the decision was chosen) and on
    test (reported only), in one line: accuracy at the official test's class mix on average and at the worst shift,
    and the worst normal recall."""
    parts, shifts = [], set()
    for split, suffix in (("validation", "_val"), ("test", "")):
        path = Path(metrics_dir) / f"ternary{suffix}_robustness.csv"
        if path.exists():
            table = pd.read_csv(path)
            shifts |= set(table["shift"])
            summary = summary_by_model(table)
            parts.append(f"on {split} " + ", ".join(
                f"{m} {s['mean accuracy at test mix']:.3f} / {s['worst accuracy at test mix']:.3f} / "
                f"{s['worst normal recall']:.3f}" for m, s in summary.items()))
    if not parts:
        return ""
    return (f"\nUnder the {len(shifts)} acquisition shifts (`reports/metrics/ternary_val_robustness.csv`, "
            "`ternary_robustness.csv`), accuracy at the official test's class mix on average / "
            f"at the worst shift, and the worst normal recall: {'; '.join(parts)}.")


def seed_sentences(reports_dir: str | Path, chosen: str) -> list[str]:
    """One line per complete run of another seed: the main run's chosen model and its own choice, on its test
    split, and what the run cost."""
    lines = []
    for i, (seed, (run, metrics)) in enumerate(list(seed_runs(reports_dir).items())[1:]):
        own = choose_model(metrics)
        parts = [f"{name}{' (its choice)' if name == own else ''}: test AUC {metrics[name]['test']['roc_auc']:.3f}, "
                 f"sensitivity {metrics[name]['test']['sensitivity']:.3f}, "
                 f"specificity {metrics[name]['test']['specificity']:.3f}" for name in dict.fromkeys([chosen, own])]
        cost = (f"; its notebooks 01-07 took {run['wall_seconds'] / 60:.1f} min, peak memory "
                f"{run.get('peak_memory_mb', 0):.0f} MB") if run.get("wall_seconds") else ""
        why = (" (another split of the patients and another training; `reports/seeds/`, `make seed-check`)"
               if i == 0 else "")  # said once
        lines.append(f"With seed {seed}{why}: {'; '.join(parts)}{cost}.")
    return lines


def results_markdown(reports_dir: str | Path = "reports") -> str:
    metrics_dir = Path(reports_dir) / "metrics"
    metrics = load_metrics(metrics_dir)
    if not metrics:
        return "_No results yet: run `make all`._"
    eda = read_json(metrics_dir / "eda.json")
    run = read_json(metrics_dir / "run.json") if (metrics_dir / "run.json").exists() else {}
    profile = next(iter(metrics.values()))["profile"]
    lines = []
    if eda.get("synthetic"):
        lines.append("**SYNTHETIC DEMO DATA: these numbers only show that the pipeline runs.**\n")
    test = "the official test/ split" if "test" in eda["official_split_counts"] else "a patient-level hold-out carved from train"
    lines.append(f"Profile `{profile}` on `{Path(eda['root']).name}`; test = {test}; "
                 "threshold chosen on validation for sensitivity >= 0.95; 95% CIs from a patient bootstrap.\n")
    lines.append("Normal vs pneumonia (val J (shifts): Youden's J on validation averaged over acquisition shifts, the "
                 "model-choice rule):\n")
    lines.append(markdown_table(binary_table(metrics)))
    lines.append("\n" + anchors_sentence())
    chosen = choose_model(metrics)
    lines.append(f"\nChosen on validation, before test is read: **{chosen}**.")
    if (metrics_dir / "subgroups.csv").exists():
        lines.append(subgroup_sentence(pd.read_csv(metrics_dir / "subgroups.csv"), chosen))
    if (metrics_dir / "threshold_out_of_bag.csv").exists():
        lines.append(threshold_sentence(pd.read_csv(metrics_dir / "threshold_out_of_bag.csv"), chosen))
    lines.extend(seed_sentences(reports_dir, chosen))
    lines.append("\nNormal / bacterial / viral:\n")
    lines.append(markdown_table(ternary_table(metrics)))
    lines.append(ternary_shift_sentence(metrics_dir))
    if (metrics_dir / "targets.csv").exists():
        lines.append(f"\nAgainst the targets of issue 7, which are set on the official test split (here on {test}; "
                     "verdict from the 95% CI; runs: this one and the seed runs, at their point values; "
                     "`reports/metrics/targets.csv`, the final notebook):\n")
        lines.append(markdown_table(shown(pd.read_csv(metrics_dir / "targets.csv"))))
    if run.get("wall_seconds"):
        lines.append(f"\nRun: {run['wall_seconds'] / 60:.1f} min on {run.get('cpu_count')} CPU cores, "
                     f"peak memory {run.get('peak_memory_mb', 0):.0f} MB (`reports/metrics/run.json`).")
    if (Path(reports_dir) / "official_layout_timing.json").exists():
        lines.append(official_layout_sentence(read_json(Path(reports_dir) / "official_layout_timing.json"),
                                              read_json(metrics_dir / "eda.json")))
    return "\n".join(lines)


def official_layout_sentence(timing: dict, eda: dict) -> str:
    """The full profile timed as issue 7 measures it, with a test/ split (`benchmarks/official_layout.py`), in one
    line: there all of train/ is split into training and validation, so training sees more images than here."""
    here = sum(eda["assigned_split_counts"]["train"].values())
    return (f"With an official test/ split (a stand-in, `make official-layout`, `reports/official_layout_timing.json`): "
            f"{timing['wall_seconds'] / 60:.1f} min, peak memory {timing['peak_memory_mb']:.0f} MB, training on "
            f"{timing['images']['train']:,} images instead of {here:,} (commit {timing['git_commit']}; "
            f"{timing['cpu_count']} CPU cores, {timing['cpu']})." + series_sentence(timing))


def series_sentence(timing: dict) -> str:
    """Notebooks 01-07 in this measurement and the benchmark's earlier ones, newest first: one host's day moves the
    time by a fifth, so one number alone says little."""
    if not timing.get("earlier"):
        return ""
    each = [f"{m['minutes_01_07']:.1f} min ({m['git_commit']}{', ' + m['date'] if 'date' in m else ''})"
            for m in timing["earlier"]]
    return (f" Notebooks 01-07 took {minutes_01_07(timing['notebook_seconds']):.1f} min there; earlier measurements, "
            f"newest first: {', '.join(each)}.")


def stale_results(reports_dir: str | Path = "reports") -> list[str]:
    """What in `reports_dir` the committed code would no longer make, one line each (empty: all current): a notebook
    of the main run or of another seed's run that is out of date (`runner.out_of_date`: its code, or a module it loads,
    changed since it ran, or it read results another notebook has since made again), a run of another seed that the
    final notebook would skip, and a seed table or a targets table (the final notebook's `seed_table.csv`,
    `targets.csv`) that differs from what those runs give now, i.e. the final notebook last ran before them; and the
    aspect-offset ablation that notebook 03 shows, if made beside another scratch CNN (`stale_ablation`)."""
    metrics_dir = Path(reports_dir) / "metrics"
    if not (metrics_dir / "run.json").exists():
        return [f"{metrics_dir / 'run.json'}: missing (no complete run)"]
    problems = [f"{nb}: {why} ({metrics_dir / 'run.json'}); run it again"
                for nb, why in out_of_date(read_json(metrics_dir / "run.json").get("notebooks", {})).items()]
    for seed_log in sorted((Path(reports_dir) / "seeds").glob("*/metrics/run.json")):
        problems += [f"{nb}: {why} ({seed_log}); run it again (`runner --stale` with that seed's folders)"
                     for nb, why in out_of_date(read_json(seed_log).get("notebooks", {}), NOTEBOOKS[:-1]).items()]
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        runs = seed_runs(reports_dir)
    problems += [str(w.message) for w in skipped]
    table = metrics_dir / "seed_table.csv"
    if len(runs) > 1:
        expected = seed_table(runs).reset_index().to_csv(index=False)
        if not table.exists() or table.read_text() != expected:
            problems.append(f"{table}: differs from the seed runs under {Path(reports_dir) / 'seeds'} (or is missing); "
                            "run the final notebook again")
    elif table.exists():
        problems.append(f"{table}: left from seed runs that are no longer there; run the final notebook again")
    targets = metrics_dir / "targets.csv"
    if targets.exists() and runs:
        main_run = next(iter(runs.values()))[0]
        layout = Path(reports_dir) / "official_layout_timing.json"
        expected = targets_table(runs, Path(reports_dir) / "predictions", settings(main_run["profile"])["n_boot"],
                                 main_run["seed"], read_json(layout) if layout.exists() else None)
        if targets.read_text() != expected.to_csv(index=False):
            problems.append(f"{targets}: differs from what the runs under {reports_dir} give; run the final notebook again")
    return problems + stale_ablation(metrics_dir)


# aspect_offset_ablation.csv's contract, written by benchmarks/aspect_offset_ablation.py and checked here
ABLATION_BASELINE = "no offset (scratch_cnn)"  # the rows copied from notebook 03's scratch_cnn_val_robustness.csv
ABLATION_COLUMNS = ["roc_auc", "sensitivity", "specificity"]


def stale_ablation(metrics_dir: str | Path) -> list[str]:
    """`aspect_offset_ablation.csv` (`benchmarks/aspect_offset_ablation.py`, shown by notebook 03) made beside another
    scratch CNN than the one of this run: its copy of notebook 03's rows must match `scratch_cnn_val_robustness.csv`."""
    ablation, scratch = Path(metrics_dir) / "aspect_offset_ablation.csv", Path(metrics_dir) / "scratch_cnn_val_robustness.csv"
    if not ablation.exists():
        return []
    table = pd.read_csv(ablation)
    copied = table[table["model"] == ABLATION_BASELINE].set_index("shift")
    if not scratch.exists() or copied.empty:
        return [f"{ablation}: no scratch CNN to compare it with; run notebook 03, then `make aspect-ablation`"]
    now = pd.read_csv(scratch).set_index("shift").reindex(copied.index)[ABLATION_COLUMNS]
    if not np.allclose(copied[ABLATION_COLUMNS].to_numpy(float), now.to_numpy(float), atol=1e-9, equal_nan=False):
        return [f"{ablation}: made beside another scratch CNN than {scratch.name} shows; run `make aspect-ablation` again"]
    return []


def render_readme(readme: str, reports_dir="reports") -> str:
    start, stop = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + results_markdown(reports_dir) + "\n" + readme[stop:]


BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("no headless Chromium found for the PDF export; install it with "
                "`sudo apt-get install chromium` (Debian/Ubuntu) or `brew install --cask chromium` (macOS), "
                "then run `python -m pneumonia_cxr.report --pdf`")


# On paper a wide table cannot scroll: its outputs' scroll boxes would cut it at the page edge, so tables print
# smaller and tighter and every output shows in full.
PRINT_CSS = ("@page { size: A4; margin: 14mm; } body { font-size: 11px; }"
             " img { max-width: 100% !important; page-break-inside: avoid; }"
             " .jp-OutputArea-output { overflow: visible !important; }"
             " .jp-OutputArea-output table { font-size: 8.5px !important; }"
             " .jp-OutputArea-output td, .jp-OutputArea-output th { padding: 0.2em 0.4em !important; }"
             " .jp-OutputArea-output pre { font-size: 9px; }"
             " tr { page-break-inside: avoid; }")


def find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def export_pdf(notebook: str | Path = "final_notebook.ipynb", pdf: str | Path = "reports/final_report.pdf") -> Path | None:
    """Executed notebook -> HTML without code cells -> PDF printed by headless Chromium; None if no browser."""
    from nbconvert import HTMLExporter

    browser = find_browser()
    if browser is None:
        print(f"warning: {INSTALL_HINT}", file=sys.stderr)
        return None
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    html, _ = exporter.from_filename(str(notebook))
    html = html.replace("</head>", f"<style>{PRINT_CSS}</style></head>", 1)
    pdf = Path(pdf)
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        page, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html)
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp}/profile",
               "--no-pdf-header-footer", f"--print-to-pdf={out}", page.as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        if not out.exists() or out.stat().st_size == 0:
            raise RuntimeError(f"{browser} wrote no PDF for {notebook}")
        os.replace(out, pdf) if out.stat().st_dev == pdf.parent.stat().st_dev else shutil.move(out, pdf)
    print(f"{pdf}: written from {notebook}")
    return pdf


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--reports", default="reports")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--pdf", action="store_true", help="export final_notebook.ipynb to reports/final_report.pdf")
    args = parser.parse_args(argv)
    if args.pdf:
        export_pdf("final_notebook.ipynb", Path(args.reports) / "final_report.pdf")
        return 0
    path = Path(args.readme)
    old = path.read_text()
    new = render_readme(old, args.reports)
    if args.check:
        problems = stale_results(args.reports)
        for problem in problems:
            print(f"stale: {problem}")
        if new != old:
            print(f"{path}: results table differs from what {args.reports}/ gives; run python -m pneumonia_cxr.report")
        if problems or new != old:
            return 1
        print(f"{path}: results table matches {args.reports}/, and {args.reports}/ the code")
        return 0
    path.write_text(new)
    print(f"{path}: results table regenerated from {args.reports}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
