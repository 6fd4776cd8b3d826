"""The review app in a real browser (Playwright driving Debian's headless Chromium): upload a real X-ray, see the
probability and the Grad-CAM, answer "normal" with a note by keyboard and click, find the row in SQLite; then upload a
text file renamed .jpeg, see the message, and find no row added."""

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_path() -> str:
    path = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)), None)
    if path is None:
        msg = "no Chromium installed (apt-get install chromium): the browser test did NOT run"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _small_models(folder: Path) -> Path:
    """A small binary CNN saved as `ensemble` and a small ternary one, with the metadata the notebooks write."""
    import keras

    from pneumonia_cxr.models import build_scratch_cnn
    from pneumonia_cxr.train import compile_model, save_model

    keras.utils.set_random_seed(0)
    save_model(
        compile_model(build_scratch_cnn(64, (8, 16)), 1e-3),
        folder / "ensemble.keras",
        image_size=64,
        resize="squash",
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=0.5,
        calibration={"method": "platt", "a": 1.0, "b": 0.0},
        threshold_calibrated=0.5,
    )
    save_model(
        compile_model(build_scratch_cnn(64, (8,), n_classes=3, name="t"), 1e-3, n_classes=3),
        folder / "ternary.keras",
        image_size=64,
        resize="squash",
        task="ternary",
        classes=["normal", "bacteria", "virus"],
    )
    return folder


def review_in_browser(url: str, xray: Path, junk: Path, db: Path, screenshot: Path | None = None) -> None:
    """Drive the page as a reviewer would; assert what they see and what the database keeps."""
    from playwright.sync_api import expect, sync_playwright

    rows = lambda: sqlite3.connect(db).execute("SELECT answer, note, reviewer FROM answers").fetchall()  # noqa: E731

    def drop(page, path):  # as a person does: click the drop zone, pick the file
        with page.expect_file_chooser() as chooser:
            page.locator("#upload button").first.click()
        chooser.value.set_files(str(path))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_browser_path(), args=CHROMIUM_FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(url)
        drop(page, xray)
        expect(page.locator("#call")).to_contain_text("P(pneumonia)", timeout=120_000)
        expect(page.locator("#gradcam img")).to_be_visible(timeout=60_000)
        expect(page.locator("#xray img")).to_be_visible()
        page.locator("#reviewer textarea, #reviewer input").first.fill("dr browser")
        page.locator("h1").first.click()  # focus off the text box, so a key is a shortcut
        page.keyboard.press("n")
        expect(page.locator('#answer input[value="normal"]')).to_be_checked()
        page.locator("#note textarea, #note input").first.fill("clear lungs, browser test")
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        page.locator("#save").click()
        expect(page.locator("#message")).to_contain_text("Saved answer", timeout=60_000)
        assert rows() == [("normal", "clear lungs, browser test", "dr browser")]
        page.locator("#upload button[aria-label*='Clear'], #upload button[title*='Clear']").first.click()
        drop(page, junk)
        expect(page.locator("#message")).to_contain_text("Not scored", timeout=60_000)
        expect(page.locator("#message")).to_contain_text(junk.name)
        page.locator("#save").click()
        expect(page.locator("#message")).to_contain_text("Not saved")
        assert len(rows()) == 1, "a refused file stored nothing"
        browser.close()


@pytest.mark.real_data
def test_review_page_in_a_real_browser(real_224, tmp_path):
    _browser_path()
    models = _small_models(tmp_path / "models")
    db, port = tmp_path / "reviews.sqlite", _free_port()
    junk = tmp_path / "notes.jpeg"
    junk.write_text("minutes of the ward meeting, not an X-ray")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TF_CPP_MIN_LOG_LEVEL": "3"}
    server = subprocess.Popen(
        [sys.executable, "-m", "pneumonia_cxr.review", "--models", str(models), "--db", str(db), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            assert server.poll() is None, server.stdout.read()
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        else:
            pytest.fail("the review app did not start within 3 minutes")
        xray = sorted((real_224 / "test" / "NORMAL").glob("*.jpeg"))[0]
        review_in_browser(f"http://127.0.0.1:{port}", xray, junk, db)
    finally:
        server.terminate()
        server.wait(timeout=30)
