"""The README's results tables, generated from reports/metrics (never typed by hand).

    python -m pneumonia_cxr.report            # rewrite the block between the markers in README.md
    python -m pneumonia_cxr.report --check    # exit 1 if README.md differs from what reports/ gives
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from .results import binary_table, load_metrics, ternary_table
from .train import read_json

BEGIN, END = "<!-- results:begin (python -m pneumonia_cxr.report) -->", "<!-- results:end -->"


def markdown_table(df: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


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
    lines.append(f"Profile `{profile}` on `{Path(eda['root']).name}`; test = patient-level hold-out "
                 f"({'official test/ split' if 'test' in eda['official_split_counts'] else 'carved from train'}); "
                 "threshold chosen on validation for sensitivity >= 0.95; 95% CIs from a patient bootstrap.\n")
    lines.append("Normal vs pneumonia:\n")
    lines.append(markdown_table(binary_table(metrics)))
    lines.append("\nNormal / bacterial / viral:\n")
    lines.append(markdown_table(ternary_table(metrics)))
    if run.get("wall_seconds"):
        lines.append(f"\nRun: {run['wall_seconds'] / 60:.1f} min on {run.get('cpu_count')} CPU cores, "
                     f"peak memory {run.get('peak_memory_mb', 0):.0f} MB (`reports/metrics/run.json`).")
    return "\n".join(lines)


def render_readme(readme: str, reports_dir="reports") -> str:
    start, stop = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    return readme[:start] + "\n" + results_markdown(reports_dir) + "\n" + readme[stop:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--reports", default="reports")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    path = Path(args.readme)
    old = path.read_text()
    new = render_readme(old, args.reports)
    if args.check:
        if new != old:
            print(f"{path}: results table differs from what {args.reports}/ gives; run python -m pneumonia_cxr.report")
            return 1
        print(f"{path}: results table matches {args.reports}/")
        return 0
    path.write_text(new)
    print(f"{path}: results table regenerated from {args.reports}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
