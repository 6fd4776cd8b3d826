"""README results table and the PDF report, checked against the committed reports/ of the latest run."""

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
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page*.png"))
    assert len(pages) >= 4
    spread = [np.asarray(Image.open(p).convert("L"), dtype=float).std() for p in pages]
    assert sum(s > 20 for s in spread) >= 3, f"too few pages with figures: {spread}"
