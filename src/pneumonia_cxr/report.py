"""The README's results block and the model card, generated from reports/metrics (never typed by hand), and the
check that the committed reports are what the committed code makes.

    python -m pneumonia_cxr.report            # rewrite README.md's results block and docs/model_card.md
    python -m pneumonia_cxr.report --check    # exit 1 if either differs from what reports/ gives, or reports/ from
                                              # what the code would make (`stale_results`); `make check-reports`
    python -m pneumonia_cxr.report --pdf      # the PDF report (`pdf.py`)
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import pandas as pd

from .config import settings
from .io import read_json
from .records import load_metrics
from .seeds import seed_runs, seed_table
from .selection import choose_model
from .stages import STAGES, out_of_date
from .tables import headline_table
from .targets import shown, targets_table

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
        by_commit.setdefault(entry.get("git_commit", "?"), []).append("final" if nb == "final_notebook" else nb[:2])
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
    official = best.get("test_split") == "official"
    n_boot = settings(best["profile"])["n_boot"]
    lines = []
    if best.get("synthetic"):
        lines.append("**SYNTHETIC DEMO DATA: these numbers only show that the pipeline runs.**\n")
    test = (
        f"the official test split ({best['test']['n']} images), read once at the end of the run"
        if official
        else f"a patient-level hold-out of {best['test']['n']} images carved from train (no test/ folder)"
    )
    lines.append(
        f"Test = {test}. Threshold chosen on validation for sensitivity >= {best['target_sensitivity']:g}; "
        f"95% CIs from a patient bootstrap; {run_commits(run)}.\n"
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
    if (metrics_dir / "targets.csv").exists():
        lines.append("\nAgainst the project's targets (verdict from the 95% CI; `reports/metrics/targets.csv`):\n")
        lines.append(markdown_table(shown(pd.read_csv(metrics_dir / "targets.csv"))))
    if run.get("wall_seconds"):
        cpu = next((e.get("cpu") for e in run.get("notebooks", {}).values() if e.get("cpu")), "?")
        lines.append(
            f"\nRun: {run['wall_seconds'] / 60:.1f} min on {run.get('cpu_count')} CPU cores ({cpu}), "
            f"peak memory {run.get('peak_memory_mb', 0):.0f} MB (`reports/metrics/run.json`)."
        )
    return "\n".join(lines)


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
    table = metrics_dir / "seed_table.csv"
    if len(runs) > 1:
        expected = seed_table(runs).reset_index().to_csv(index=False)
        if not table.exists() or table.read_text() != expected:
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
    args = parser.parse_args(argv)
    if args.pdf:
        from .pdf import export_pdf

        export_pdf("final_notebook.ipynb", Path(args.reports) / "final_report.pdf")
        return 0
    from .model_card import model_card

    path, card_path = Path(args.readme), Path(args.model_card)
    old, new = path.read_text(), render_readme(path.read_text(), args.reports)
    card = model_card(args.reports)
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
    path.write_text(new)
    card_path.parent.mkdir(parents=True, exist_ok=True)
    card_path.write_text(card)
    print(f"{path} results block and {card_path} regenerated from {args.reports}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
