"""The PDF report: the final notebook without its code, printed by a headless Chromium.

    python -m pneumonia_cxr.pdf    # final_notebook.ipynb -> reports/final_report.pdf

Landscape pages for a projector; cells tagged `no-pdf` (reference tables) stay in the notebook only. nbconvert's
HTML is printed by Chromium (Debian/Ubuntu: apt-get install chromium; macOS: brew install --cask chromium), which
works offline, unlike nbconvert's webpdf browser download.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = (
    "no headless Chromium found for the PDF export; install it with "
    "`sudo apt-get install chromium` (Debian/Ubuntu) or `brew install --cask chromium` (macOS), "
    "then run `python -m pneumonia_cxr.report --pdf`"
)


# On paper a wide table cannot scroll: its outputs' scroll boxes would cut it at the page edge, so tables print
# smaller and tighter and every output shows in full.
PRINT_CSS = (
    "@page { size: A4 landscape; margin: 12mm; } body { font-size: 11px; }"
    " .jp-RenderedHTMLCommon { font-size: 11px !important; line-height: 1.4 !important; }"
    " .celltag_page-break { break-before: page; }"  # the sections a presenter shows one page each
    " img { max-width: 100% !important; height: auto !important; }"
    " .jp-OutputArea-output { overflow: visible !important; }"
    " .jp-OutputArea-output table { font-size: 8.5px !important; }"
    " .celltag_summary .jp-OutputArea-output table { font-size: 11px !important; }"
    " .jp-OutputArea-output td, .jp-OutputArea-output th { padding: 0.2em 0.4em !important; }"
    " .jp-OutputArea-output pre { font-size: 9px; }"
    " tr { page-break-inside: avoid; }"
)


FIGURE_SCALE = 0.5  # figures printed at 50% of their pixel size: Chromium paginates on an image's own size


def _smaller(b64: str, scale: float = FIGURE_SCALE) -> str:
    """A PNG (base64) resampled to `scale` of its size, so that a figure and its table share a page."""
    import base64
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


def export_pdf(
    notebook: str | Path = "final_notebook.ipynb", pdf: str | Path = "reports/final_report.pdf"
) -> Path | None:
    """Executed notebook -> HTML without code cells -> PDF printed by headless Chromium; None if no browser."""
    from nbconvert import HTMLExporter

    browser = find_browser()
    if browser is None:
        print(f"warning: {INSTALL_HINT}", file=sys.stderr)
        return None
    from nbconvert.preprocessors import TagRemovePreprocessor

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    exporter.register_preprocessor(TagRemovePreprocessor(remove_cell_tags={"no-pdf"}, enabled=True), enabled=True)
    html, _ = exporter.from_filename(str(notebook))
    html = html.replace("</head>", f"<style>{PRINT_CSS}</style></head>", 1)
    html = re.sub(
        r'src="data:image/png;base64,([^"]+)"', lambda m: f'src="data:image/png;base64,{_smaller(m[1])}"', html
    )
    pdf = Path(pdf)
    pdf.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        page, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html)
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp}/profile",
            "--no-pdf-header-footer",
            f"--print-to-pdf={out}",
            page.as_uri(),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        if not out.exists() or out.stat().st_size == 0:
            raise RuntimeError(f"{browser} wrote no PDF for {notebook}")
        os.replace(out, pdf) if out.stat().st_dev == pdf.parent.stat().st_dev else shutil.move(out, pdf)
    print(f"{pdf}: written from {notebook}")
    return pdf


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebook", default="final_notebook.ipynb")
    parser.add_argument("--out", default="reports/final_report.pdf")
    args = parser.parse_args(argv)
    export_pdf(args.notebook, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
