"""The README's results block and the model card, generated from reports/metrics (never typed by hand), and the
check that the committed reports are what the committed code makes.

    python -m pneumonia_cxr.report            # rewrite README.md's results block and docs/model_card.md
    python -m pneumonia_cxr.report --check    # exit 1 if either differs from what reports/ gives, or reports/ from
                                              # what the code would make (`stale_results`); `make check-reports`
    python -m pneumonia_cxr.report --pdf      # the PDF report (`pdf.py`)
    python -m pneumonia_cxr.report --reports build/demo/reports --summary build/demo/README.md \
        --model-card build/demo/model_card.md  # a run's summary in a file of its own (`make all` on the demo)

A run on SYNTHETIC data (the demo) never writes README.md or docs/model_card.md: its summary says SYNTHETIC, never
"official", and shares no table with published results.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

from .config import settings
from .data.demo import REAL_DATA_COMMAND
from .formatting import value_ci
from .io import _atomic_write_text, read_json
from .provenance import ROOT
from .records import load_metrics
from .seeds import seed_runs, seed_table
from .selection import choose_model
from .stages import STAGES, out_of_date
from .tables import describe_test_split, headline_table, synthetic_run
from .targets import per_run_table, shown, targets_table

BEGIN, END = "<!-- results:begin (python -m pneumonia_cxr.report) -->", "<!-- results:end -->"


def markdown_table(df: pd.DataFrame) -> str:
    """`df` as a GitHub Markdown table, index left out (pandas' `to_markdown` needs tabulate, not installed here)."""
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def run_commits(run: dict) -> str:
    """Which commit made which notebooks of a run (a notebook run again alone keeps its own), in one phrase."""
    by_commit: dict[str, list[str]] = {}
    for nb, entry in run.get("notebooks", {}).items():
        by_commit.setdefault(entry.get("git_commit", "?"), []).append(
            nb[:2] if nb[:2].isdigit() else nb.removesuffix("_notebook")
        )
    if len(by_commit) <= 1:
        return f"run at commit `{next(iter(by_commit), run.get('git_commit', '?'))}`"
    return "notebooks run at " + ", ".join(f"`{c}` ({', '.join(nbs)})" for c, nbs in by_commit.items())


def results_markdown(reports_dir: str | Path = "reports") -> str:
    """The README's results block: what was tested, the headline table, the choice, calibration, how far validation
    was from test, the targets and the run's cost; every number read from `reports_dir`. (Longer than most
    functions: the block reads top to bottom as the README shows it.)"""
    metrics_dir = Path(reports_dir) / "metrics"
    metrics = load_metrics(metrics_dir)
    if not metrics:
        return "_No results yet: run `make all`._"
    run = read_json(metrics_dir / "run.json") if (metrics_dir / "run.json").exists() else {}
    chosen = choose_model(metrics)
    best = metrics[chosen]
    synthetic = synthetic_run(metrics)
    n_boot = settings(best["profile"])["n_boot"]
    lines = []
    if synthetic:
        lines.append("**SYNTHETIC DEMO DATA: these numbers only show that the pipeline runs.**\n")
    lines.append(
        f"Test = {describe_test_split(best, best['test']['n'])}. Threshold chosen on validation for sensitivity >= "
        f"{best['target_sensitivity']:g}; 95% CIs from a patient bootstrap; {run_commits(run)}.\n"
    )
    lines.append(markdown_table(headline_table(metrics, Path(reports_dir) / "predictions", n_boot, run.get("seed", 0))))
    choice = best.get("choice") or metrics.get("ensemble", {}).get("choice")
    if choice:
        others = {m: c for m, c in choice["challengers"].items() if m != choice["default"]}
        top = max(others, key=lambda m: others[m]["share_above_default"]) if others else None
        lines.append(
            f"\nChosen on validation before test was read: **{chosen}** (the rule: {choice['rule']}"
            + (
                f"; closest challenger {top}, above it in {others[top]['share_above_default']:.0%} of resamples, "
                f"margin {others[top]['margin']:+.3f})."
                if top
                else ")."
            )
        )
    cal = best.get("calibration")
    if cal:
        lines.append(
            f"Calibrated P(pneumonia) (Platt scaling on validation): ECE {cal['val']['ece_cross_fitted']:.3f} "
            f"on validation (cross-fitted), {cal['test']['ece']:.3f} on test ({cal['test']['ece_raw']:.3f} raw); "
            f"the threshold is {best['threshold_calibrated']:.3f} on that scale."
        )
    gap_file = metrics_dir / "val_vs_test.csv"
    if gap_file.exists():
        gap = pd.read_csv(gap_file).query("model == @chosen and subgroup == 'all'").set_index("metric")
        lines.append(
            "Validation promised "
            + " and ".join(f"{k} {gap.loc[k, 'val value']:.3f}" for k in gap.index)
            + "; test gave "
            + " and ".join(f"{gap.loc[k, 'test value']:.3f}" for k in gap.index)
            + " (`reports/metrics/val_vs_test.csv`, per subgroup too)."
        )
    if synthetic:
        lines.append("\nThe project's targets are not scored on SYNTHETIC data (they are set on the real release).")
    elif (metrics_dir / "targets.csv").exists():
        targets = pd.read_csv(metrics_dir / "targets.csv")
        runs = int(targets["runs"].max()) if "runs" in targets else 1
        judged = (
            f"verdict on the mean of {runs} seeds, each run's own chosen model"
            if runs > 1
            else "verdict from the 95% CI"
        )
        lines.append(
            f"\nAgainst the project's targets ({judged}; `reports/metrics/targets.csv`, per seed `seeds.csv`):\n"
        )
        lines.append(markdown_table(shown(targets)))
    if run.get("wall_seconds"):
        cpu = next((e.get("cpu") for e in run.get("notebooks", {}).values() if e.get("cpu")), "?")
        lines.append(
            f"\nRun: {run['wall_seconds'] / 60:.1f} min on {run.get('cpu_count')} CPU cores ({cpu}), "
            f"peak memory {run.get('peak_memory_mb', 0):.0f} MB (`reports/metrics/run.json`)."
        )
    return "\n".join(lines)


def synthetic_reports(reports_dir: str | Path) -> bool:
    """True when `reports_dir` holds a run on SYNTHETIC data: a model's metrics or notebook 01's `eda.json` say so."""
    eda = Path(reports_dir) / "metrics" / "eda.json"
    return synthetic_run(load_metrics(Path(reports_dir) / "metrics")) or (
        eda.exists() and bool(read_json(eda).get("synthetic"))
    )


def headline(reports_dir: str | Path = "reports") -> str:
    """The run's result in one line, for the terminal at the end of `make all`: the chosen model's test AUC,
    sensitivity and specificity with their CIs, and what the test split was (SYNTHETIC said first)."""
    metrics = load_metrics(Path(reports_dir) / "metrics")
    if not metrics:
        return f"no results in {reports_dir} yet"
    chosen = choose_model(metrics)
    best = metrics[chosen]
    t, ci = best["test"], best["test_ci95"]
    rates = ", ".join(f"{k} {value_ci(t[k], *ci[k])}" for k in ("roc_auc", "sensitivity", "specificity"))
    said = "SYNTHETIC DEMO, numbers that only show the pipeline runs: " if synthetic_run(metrics) else ""
    return f"{said}{chosen}, chosen on validation: test {rates}; test = {describe_test_split(best, t['n'])}"


def summary_markdown(reports_dir: str | Path) -> str:
    """A run's summary as a Markdown file of its own (a run on SYNTHETIC data: build/demo/README.md): what the data
    were, the results block (`results_markdown`), what else the run made and, on SYNTHETIC data, how to get the real
    data."""
    synthetic = synthetic_reports(reports_dir)
    lines = [
        "# SYNTHETIC demo run" if synthetic else "# Run summary",
        "",
        "A run on procedural drawings (`pneumonia_cxr.data.demo`), not X-rays, as `make all` makes it without "
        "data/chest_xray: it shows that the pipeline runs from end to end and nothing else. The committed analysis "
        "(README.md, reports/, the notebooks) was left as it is."
        if synthetic
        else f"Generated from `{reports_dir}` by `python -m pneumonia_cxr.report --summary`; do not edit by hand.",
        "",
        results_markdown(reports_dir),
        "",
        "Beside this file: `model_card.md`, `reports/` (metrics, figures, predictions, `final_report.pdf`), "
        "`notebooks/` (executed), `img/`.",
    ]
    if synthetic:
        lines += ["", "The real analysis: get the data (README: Get the data), then `make all` again:", ""]
        lines += [f"    {REAL_DATA_COMMAND}"]
    return "\n".join(lines) + "\n"


def stale_results(reports_dir: str | Path = "reports") -> list[str]:
    """What in `reports_dir` the committed code would no longer make, one line each (empty: all current): a stage of
    the main run or of another seed's run that is out of date (`stages.out_of_date`: its code, or a module it loads,
    changed since it ran, or it read results another stage has since made again), a run of another seed that the
    final notebook would skip, and a seed table or a targets table (the final notebook's `seed_table.csv`,
    `targets.csv`) that differs from what those runs give now, i.e. the final notebook last ran before them.

    Args:
        reports_dir: a run's reports folder (metrics/run.json, seeds/*/metrics/run.json).

    Returns:
        One line per problem, naming the file it is in and what to run.
    """
    metrics_dir = Path(reports_dir) / "metrics"
    if not (metrics_dir / "run.json").exists():
        return [f"{metrics_dir / 'run.json'}: missing (no complete run)"]
    problems = [
        f"{nb}: {why} ({metrics_dir / 'run.json'}); run it again"
        for nb, why in out_of_date(read_json(metrics_dir / "run.json").get("notebooks", {})).items()
    ]
    seed_stages = [stage for stage in STAGES if stage.seed_runs]
    for seed_log in sorted((Path(reports_dir) / "seeds").glob("*/metrics/run.json")):
        problems += [
            f"{nb}: {why} ({seed_log}); run it again (`runner --stale` with that seed's folders)"
            for nb, why in out_of_date(read_json(seed_log).get("notebooks", {}), seed_stages).items()
        ]
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always")
        runs = seed_runs(reports_dir)
    problems += [str(w.message) for w in skipped]
    for table, make in (
        (metrics_dir / "seed_table.csv", lambda: seed_table(runs).reset_index()),
        (metrics_dir / "seeds.csv", lambda: per_run_table(runs)),
    ):
        if len(runs) > 1:
            if not table.exists() or table.read_text() != make().to_csv(index=False):
                problems.append(
                    f"{table}: differs from the seed runs under {Path(reports_dir) / 'seeds'} (or is missing); "
                    "run the final notebook again"
                )
        elif table.exists():
            problems.append(f"{table}: left from seed runs that are no longer there; run the final notebook again")
    targets = metrics_dir / "targets.csv"
    if targets.exists() and runs:
        main_run = next(iter(runs.values()))[0]
        expected = targets_table(
            runs, Path(reports_dir) / "predictions", settings(main_run["profile"])["n_boot"], main_run["seed"]
        )
        if targets.read_text() != expected.to_csv(index=False):
            problems.append(
                f"{targets}: differs from what the runs under {reports_dir} give; run the final notebook again"
            )
    return problems


def render_readme(readme: str, reports_dir="reports") -> str:
    start, stop = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + results_markdown(reports_dir) + "\n" + readme[stop:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--reports", default="reports")
    parser.add_argument("--model-card", default="docs/model_card.md")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--pdf", action="store_true", help="export final_notebook.ipynb to reports/final_report.pdf")
    parser.add_argument(
        "--summary",
        help="write the run's summary to this file of its own (`summary_markdown`) instead of README.md's results "
        "block; required for a run on SYNTHETIC data",
    )
    args = parser.parse_args(argv)
    if args.pdf:
        from .pdf import export_pdf

        export_pdf("final_notebook.ipynb", Path(args.reports) / "final_report.pdf")
        return 0
    from .model_card import model_card

    path, card_path = Path(args.readme), Path(args.model_card)
    card = model_card(args.reports)
    if synthetic_reports(args.reports) and not args.check:
        committed = ROOT / "docs" / "model_card.md"
        if not args.summary or card_path.resolve() == committed:
            print(
                f"error: {Path(args.reports) / 'metrics'}: a run on SYNTHETIC data; its summary and model card go "
                f"beside it (--summary, --model-card), never into {path} or {committed.relative_to(ROOT)}",
                file=sys.stderr,
            )
            return 2
    if args.summary and not args.check:
        summary = Path(args.summary)
        _atomic_write_text(summary, summary_markdown(args.reports))
        _atomic_write_text(card_path, card)
        print(f"{summary} and {card_path} written from {args.reports}/")
        print(headline(args.reports))
        return 0
    old, new = path.read_text(), render_readme(path.read_text(), args.reports)
    if args.check:
        problems = stale_results(args.reports)
        if new != old:
            problems.append(f"{path}: results block differs from what {args.reports}/ gives")
        if not card_path.exists() or card_path.read_text() != card:
            problems.append(f"{card_path}: differs from what {args.reports}/ gives")
        for problem in problems:
            print(f"stale: {problem}")
        if problems:
            print("run the stages named above again (`make refresh`), then `python -m pneumonia_cxr.report`")
            return 1
        print(f"{path} and {card_path} match {args.reports}/, and {args.reports}/ the code")
        return 0
    _atomic_write_text(path, new)
    _atomic_write_text(card_path, card)
    print(f"{path} results block and {card_path} regenerated from {args.reports}/")
    print(headline(args.reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
