"""The review app in a real browser (Playwright driving Debian's headless Chromium), one server and one browser:

- a page opens on the inbox's first X-ray, selected and loaded; a reviewer whose name carries markup answers by
  keyboard and sees the name as text; the next X-ray is loaded; a fast reviewer picks another X-ray and saves at once,
  and the answer is stored for the image on screen or refused, never for the one being left;
- a second page lists only the X-rays still without an answer;
- on it, a real X-ray is uploaded (its ternary type agrees with the call), answered "normal" with a note, and the row
  is in SQLite; a text file renamed .jpeg gets a message and stores nothing;
- the Summary tab shows the answers and the local evaluation of the reviewed cases, too few to read a CI from."""

import hashlib
import os
import re
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


def _rows(db: Path, columns: str = "answer, note, reviewer") -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(f"SELECT {columns} FROM answers ORDER BY id").fetchall()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listed(page) -> list[str]:
    """The names the inbox list offers (opens the list, reads it, closes it)."""
    page.locator("#worklist input").click()
    options = page.get_by_role("option")
    options.first.wait_for(timeout=30_000)
    names = [t.strip().split("\n")[-1].strip() for t in options.all_inner_texts()]  # after the ✓ of the selected
    page.keyboard.press("Escape")
    page.locator("h1").first.click()
    return names


def _call_agrees_with_type(page) -> None:
    """The binary call and the ternary panel on screen tell one story."""
    call, kind = page.locator("#call").inner_text(), page.locator("#ternary").inner_text()
    assert ("-> NORMAL" in call) == ("Type: normal" in kind), f"{call!r} beside {kind!r}"
    assert "PNEUMONIA" in call or "NORMAL" in call


def review_inbox(page, url: str, inbox: list[Path], db: Path) -> None:
    """A reviewer on the inbox: the first X-ray loaded with the page, one answer, then the fast reviewer's race."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#message")).to_contain_text(f"Scored {inbox[0].name}", timeout=120_000)
    expect(page.locator("#worklist input")).to_have_value(inbox[0].name)
    expect(page.locator("#xray img")).to_be_visible(timeout=60_000)
    _call_agrees_with_type(page)
    page.locator("#reviewer textarea, #reviewer input").first.fill("dr <i>browser</i>")
    page.locator("h1").first.click()  # focus off the text box, so a key is a shortcut
    page.keyboard.press("n")
    expect(page.locator('#answer input[value="normal"]')).to_be_checked()
    page.keyboard.press("Control+Enter")
    expect(page.locator("#saved")).to_contain_text(f"Saved answer 1: {inbox[0].name} -> normal", timeout=60_000)
    expect(page.locator("#saved")).to_contain_text("dr <i>browser</i>")  # the name as typed, shown as text
    assert page.locator("#saved i").count() == 0, "the reviewer's markup was rendered"
    # after the save the next X-ray is selected and loaded (A), then the fast reviewer picks B and saves at once
    expect(page.locator("#message")).to_contain_text(f"Scored {inbox[1].name}", timeout=60_000)
    a, b = inbox[1], inbox[2]
    page.locator("#worklist input").click()
    page.get_by_role("option", name=b.name).click()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("v")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#saved")).to_contain_text(re.compile("Saved answer|Not saved"), timeout=60_000)
    expect(page.locator("#message")).to_contain_text(f"Scored {b.name}", timeout=60_000)
    verdict = page.locator("#saved").inner_text()
    stored = [sha for (sha,) in _rows(db, "sha256")]
    assert _sha(a) not in stored, f"an answer was stored for {a.name}, the X-ray being left: {verdict}"
    if verdict.startswith("Saved"):
        assert stored[-1] == _sha(b) and b.name in verdict
    else:
        assert "still changing" in verdict and len(stored) == 1, verdict
    page.wait_for_timeout(1500)  # the message stays after the page has caught up
    assert page.locator("#saved").inner_text() == verdict


def review_upload(page, url: str, xray: Path, junk: Path, db: Path, inbox: list[Path]) -> None:
    """A second page: only unanswered X-rays listed; an upload answered and stored; a non-image refused."""
    from playwright.sync_api import expect

    def drop(path):  # as a person does: click the drop zone, pick the file
        with page.expect_file_chooser() as chooser:
            page.locator("#upload button").first.click()
        chooser.value.set_files(str(path))

    page.goto(url)
    answered = {sha for (sha,) in _rows(db, "sha256")}
    expect(page.locator("#message")).to_contain_text("Scored", timeout=120_000)
    assert _listed(page) == [p.name for p in inbox if _sha(p) not in answered]
    before = len(_rows(db))
    drop(xray)
    expect(page.locator("#message")).to_contain_text(f"Scored {xray.name}", timeout=120_000)
    expect(page.locator("#gradcam img")).to_be_visible(timeout=60_000)
    _call_agrees_with_type(page)
    page.locator("#reviewer textarea, #reviewer input").first.fill("dr browser")
    page.locator("h1").first.click()
    page.keyboard.press("n")
    expect(page.locator('#answer input[value="normal"]')).to_be_checked()
    page.locator("#note textarea, #note input").first.fill("clear lungs, browser test")
    page.locator("#save").click()
    expect(page.locator("#saved")).to_contain_text("Saved answer", timeout=60_000)
    assert _rows(db)[before:] == [("normal", "clear lungs, browser test", "dr browser")]
    assert _rows(db, "sha256")[-1] == (_sha(xray),)
    page.locator("#upload button[aria-label*='Clear'], #upload button[title*='Clear']").first.click()
    drop(junk)
    expect(page.locator("#message")).to_contain_text("Not scored", timeout=60_000)
    expect(page.locator("#message")).to_contain_text(junk.name)
    page.locator("#save").click()
    expect(page.locator("#saved")).to_contain_text("Not saved")
    assert len(_rows(db)) == before + 1, "a refused file stored nothing"


def review_summary(page, url: str, db: Path) -> None:
    """The Summary tab: the agreement counts and the local evaluation (`review evaluate`'s text) of the answers."""
    from playwright.sync_api import expect

    page.goto(url)
    page.get_by_role("tab", name="Summary").click()
    page.locator("#refresh").click()
    readable = [a for (a,) in _rows(db, "answer") if a != "not readable"]
    expect(page.locator("#counts")).to_contain_text(f"{len(readable)} images reviewed", timeout=60_000)
    local = page.locator("#local-evaluation")
    expect(local).to_contain_text("Local evaluation of ensemble.keras on reviewed cases", timeout=120_000)
    expect(local).to_contain_text(f"{len(readable)} cases")
    expect(local).to_contain_text("Too few cases for a meaningful CI")
    expect(local).to_contain_text("dr <i>browser</i>")  # a reviewer's name, shown as text
    assert page.locator("#local-evaluation i").count() == 0, "the reviewer's markup was rendered"


@pytest.mark.real_data
def test_review_page_in_a_real_browser(real_224, tmp_path):
    from playwright.sync_api import sync_playwright

    _browser_path()
    models = _small_models(tmp_path / "models")
    db, port = tmp_path / "reviews.sqlite", _free_port()
    junk = tmp_path / "notes.jpeg"
    junk.write_text("minutes of the ward meeting, not an X-ray")
    (tmp_path / "inbox").mkdir()
    inbox = []
    for f in sorted((real_224 / "test" / "PNEUMONIA").glob("*.jpeg"))[:3]:
        inbox.append(tmp_path / "inbox" / f.name)
        inbox[-1].write_bytes(f.read_bytes())
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "pneumonia_cxr.review", "--models", str(models), "--db", str(db)]
    command += ["--port", str(port), "--inbox", str(tmp_path / "inbox")]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
        url = f"http://127.0.0.1:{port}"
        xray = sorted((real_224 / "test" / "NORMAL").glob("*.jpeg"))[0]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_browser_path(), args=CHROMIUM_FLAGS, headless=True)
            review_inbox(browser.new_page(viewport={"width": 1280, "height": 1100}), url, inbox, db)
            review_upload(browser.new_page(viewport={"width": 1280, "height": 1100}), url, xray, junk, db, inbox)
            review_summary(browser.new_page(viewport={"width": 1280, "height": 1100}), url, db)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
