"""The review app's store and logic without a browser: answers are appended, never changed, stored from two writers
at once, exported with their labels; a refused file stores nothing; the app refuses to start without its models."""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from pneumonia_cxr.review.app import Review, inbox_files
from pneumonia_cxr.review.app import main as review_main
from pneumonia_cxr.review.store import (
    NotARegularFileError,
    ReviewStore,
    ReviewStoreError,
    agreement,
    export_csv,
    labelled,
    sha256_of,
)

ROOT = Path(__file__).resolve().parents[1]


def _answer(store, sha="a" * 64, answer="agree", decision="PNEUMONIA", reviewer="dr one", **extra):
    values = dict(
        sha256=sha,
        path=f"inbox/{sha[:4]}.jpeg",
        model_file="models/ensemble.keras",
        model_commit="abc",
        p_pneumonia=0.9,
        threshold=0.6,
        decision=decision,
        ternary={"normal": 0.1, "bacteria": 0.6, "virus": 0.3},
        reviewer=reviewer,
        answer=answer,
    )
    return store.add_answer(**{**values, **extra})


def test_a_second_answer_is_a_new_row_and_the_latest_counts(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    _answer(store, answer="agree")
    _answer(store, answer="viral", note="diffuse, both sides", reviewer="dr two")
    table = labelled(store.answers())
    assert table["answer"].tolist() == ["agree", "viral"] and table["latest"].tolist() == [False, True]
    assert table["label"].tolist() == ["bacterial", "viral"]  # "agree" takes the model's own call
    assert table.iloc[1]["note"] == "diffuse, both sides" and table.iloc[1]["answered_at"].endswith("+00:00")
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.DatabaseError, match="never changed"):
            db.execute("UPDATE answers SET answer = 'normal'")
        with pytest.raises(sqlite3.DatabaseError, match="never deleted"):
            db.execute("DELETE FROM answers")


def test_a_bad_answer_or_no_reviewer_is_refused_before_anything_is_stored(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="answer must be one of"):
        _answer(store, answer="maybe")
    with pytest.raises(ValueError, match="reviewer"):
        _answer(store, reviewer="  ")
    assert store.answers().empty


WRITER = """
import sys
from pneumonia_cxr.review.store import ReviewStore
store = ReviewStore(sys.argv[1])
for i in range(40):
    store.add_answer(sha256=f"{sys.argv[2]}{i:062d}", path="x.jpeg", model_file="m.keras", model_commit=None,
                     p_pneumonia=0.5, threshold=0.5, decision="NORMAL", ternary=None, reviewer=sys.argv[2],
                     answer="normal")
"""


def test_two_reviewers_writing_at_once_lose_no_answer(tmp_path):
    db = tmp_path / "r.sqlite"
    ReviewStore(db)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), who]) for who in ("r1", "r2")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    table = ReviewStore(db).answers()
    assert len(table) == 80 and table["reviewer"].value_counts().to_dict() == {"r1": 40, "r2": 40}


def test_an_unwritable_database_is_an_error_at_start(tmp_path):
    (tmp_path / "reviews").write_text("a file where a folder should be")
    with pytest.raises(ReviewStoreError, match="cannot open the review database for writing"):
        ReviewStore(tmp_path / "reviews" / "r.sqlite")  # unwritable for root too
    not_a_db = tmp_path / "notes.sqlite"
    not_a_db.write_text("these are notes, not a database\n" * 100)
    with pytest.raises(ReviewStoreError, match="notes.sqlite"):
        ReviewStore(not_a_db)


def test_a_database_held_locked_gives_a_clear_error_not_a_lost_answer(tmp_path):
    db = tmp_path / "r.sqlite"
    store = ReviewStore(db, timeout=0.2, retries=2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
    try:
        with pytest.raises(ReviewStoreError, match="answer not saved .* save it again"):
            _answer(store)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _answer(store)  # the lock released, the same answer saves
    assert len(store.answers()) == 1


def test_export_and_agreement_read_the_latest_readable_answers(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    _answer(store, sha="a" * 64, answer="agree")  # model PNEUMONIA, reviewer agrees
    _answer(store, sha="b" * 64, answer="normal")  # model PNEUMONIA, reviewer says normal
    _answer(store, sha="c" * 64, answer="normal", decision="NORMAL")
    _answer(store, sha="d" * 64, answer="not readable")
    _answer(store, sha="b" * 64, answer="bacterial", reviewer="dr two")  # a later answer for b counts
    stats = agreement(store.answers())
    assert stats["images reviewed"] == 4 and stats["not readable"] == 1 and stats["agree"] == 3
    assert stats["confusion"].loc["PNEUMONIA", "PNEUMONIA"] == 2 and stats["confusion"].loc["NORMAL", "NORMAL"] == 1
    assert stats["kappa"] == pytest.approx(1.0)
    out = export_csv(store, tmp_path / "reviews.csv")
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 5 and table["latest"].sum() == 4
    assert table.loc[table["latest"], "label_binary"].tolist() == ["PNEUMONIA", "NORMAL", "", "PNEUMONIA"]


class _FakeScorer:
    """The scorer's interface over the real decoder, with a fixed probability (the logic under test is the page's)."""

    model_path, meta = "models/ensemble.keras", {"git_commit": "abc"}

    def score_files(self, paths, batch_size=64):
        from pneumonia_cxr.data.decode import load_image

        rows, errors = [], []
        for p in paths:
            try:
                load_image(p, 64)
                rows.append(
                    {
                        "image": p,
                        "p_pneumonia": 0.8,
                        "p_raw": 0.9,
                        "threshold": 0.5,
                        "decision": "PNEUMONIA",
                        "ternary": {"normal": 0.2, "bacteria": 0.5, "virus": 0.3},
                    }
                )
            except (ValueError, OSError) as exc:
                errors.append((p, str(exc)))
        return rows, errors

    def explain(self, path, pneumonia):
        from pneumonia_cxr.data.decode import load_image

        image = load_image(path, 64)
        return image, image / 255.0


@pytest.mark.real_data
def test_the_page_logic_scores_saves_and_refuses(real_224, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for f in sorted((real_224 / "test" / "NORMAL").glob("*.jpeg"))[:2]:
        (inbox / f.name).write_bytes(f.read_bytes())
    before = {p: p.read_bytes() for p in inbox.iterdir()}
    review = Review(_FakeScorer(), ReviewStore(tmp_path / "r.sqlite"), inbox)
    first, second = review.worklist()
    shown = review.load(first)
    assert shown["case"]["decision"] == "PNEUMONIA" and shown["overlay"].shape[2] == 3 and "0.800" in shown["call"]
    on_screen = {"shown_sha256": shown["sha256"], "chosen": (first, None)}
    assert review.save(shown["case"], "", "normal", **on_screen).startswith("**Not saved:** enter your name")
    assert review.save(shown["case"], "dr one", "normal", "clear lungs", **on_screen).startswith("Saved answer 1")
    assert review.worklist() == [second]  # reviewed images leave the worklist
    junk = tmp_path / "notes.jpeg"
    junk.write_text("not an X-ray")
    refused = review.load(str(junk), "notes.jpeg")
    assert refused["case"] is None and "notes.jpeg" in refused["message"] and "Nothing was stored" in refused["message"]
    assert review.save(refused["case"], "dr one", "normal", "", "", (str(junk),)).startswith("**Not saved:**")
    huge = Image.new("L", (64, 64))
    huge.save(tmp_path / "tiny.png")
    assert "too small" not in review.load(str(tmp_path / "tiny.png"))["message"]
    assert len(review.store.answers()) == 1
    text, confusion, gallery = review.summary()
    assert "1 images reviewed" in text and len(gallery) == 1  # the model said pneumonia, the reviewer normal
    assert {p: p.read_bytes() for p in inbox.iterdir()} == before, "the inbox is never written to"


def test_inbox_listing_does_not_follow_symlink_loops(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("L", (80, 80)).save(tmp_path / "a" / "x.png")
    (tmp_path / "a" / "loop").symlink_to("..")
    assert inbox_files(tmp_path) == [tmp_path / "a" / "x.png"]


def test_the_app_refuses_to_start_without_its_models(tmp_path, capsys):
    assert review_main(["--models", str(tmp_path), "--db", str(tmp_path / "r.sqlite")]) == 2
    assert "ensemble.keras: model file does not exist" in capsys.readouterr().err
    bad = tmp_path / "ensemble.keras"
    bad.write_bytes(b"PK\x03\x04 half a file")
    meta = {"format": "pneumonia_cxr/1", "task": "binary", "classes": ["NORMAL", "PNEUMONIA"], "image_size": 64}
    (tmp_path / "ensemble.json").write_text(json.dumps({**meta, "resize": "squash", "threshold": 0.5}))
    assert review_main(["--models", str(tmp_path), "--db", str(tmp_path / "r.sqlite"), "--ternary", ""]) == 2
    assert "ensemble.keras: not a complete .keras archive" in capsys.readouterr().err


def _xray(path: Path, seed: int) -> str:
    """A small synthetic grey image the decoder accepts (the page logic, not the model, is under test)."""
    import numpy as np

    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (80, 80), dtype="uint8")).save(path)
    return str(path)


def test_a_save_is_stored_only_for_the_image_on_screen(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    a, b = _xray(inbox / "a.png", 0), _xray(inbox / "b.png", 1)
    review = Review(_FakeScorer(), ReviewStore(tmp_path / "r.sqlite"), inbox)
    shown_a, shown_b = review.load(a), review.load(b)
    case_a = shown_a["case"]
    # the fast reviewer: B picked in the list while A is still the case and the image shown
    refused = review.save(case_a, "dr one", "viral", "", shown_a["sha256"], (b, None))
    assert refused.startswith("**Not saved:** the page was still changing to b") and "shown was a" in refused
    # B scored but the page still shows A; or the upload box and the list both hold a file mid-change
    assert review.save(shown_b["case"], "dr one", "viral", "", shown_a["sha256"], (b, None)).startswith("**Not saved")
    assert review.save(case_a, "dr one", "viral", "", shown_a["sha256"], (a, b)).startswith("**Not saved")
    assert review.save(case_a, "dr one", "viral", "", None, (a, None)).startswith("**Not saved")  # no identity
    assert review.save(case_a, "dr one", "viral", "", shown_a["sha256"], (None, None)).startswith("**Not saved")
    _xray(inbox / "a.png", 2)  # A rewritten on disk after it was scored
    assert "changed on disk" in review.save(case_a, "dr one", "viral", "", shown_a["sha256"], (a, None))
    assert review.store.answers().empty, "a refused save stores nothing"
    saved = review.save(shown_b["case"], "dr one", "viral", "", shown_b["sha256"], (b, None))
    assert saved.startswith("Saved answer 1: b.png")
    assert review.store.answers()["sha256"].tolist() == [shown_b["sha256"]]


def test_export_and_summary_work_on_answers_with_and_without_ternary_probabilities(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    review = Review(_FakeScorer(), store)
    assert review.summary()[0].startswith("**0 images reviewed**")  # an empty database
    _answer(store, sha="a" * 64, answer="agree", ternary=None)  # the app run with --ternary ''
    _answer(store, sha="b" * 64, answer="normal", ternary=None)
    table = labelled(store.answers())
    assert table["label"].tolist() == ["pneumonia", "normal"] and table["label_binary"].tolist() == [
        "PNEUMONIA",
        "NORMAL",
    ]
    _answer(store, sha="c" * 64, answer="agree")  # a model with a ternary panel: its call is the label
    out = pd.read_csv(export_csv(store, tmp_path / "reviews.csv"), keep_default_na=False)
    assert out["label"].tolist() == ["pneumonia", "normal", "bacterial"] and out["p_normal"].tolist() == ["", "", "0.1"]
    text, confusion, gallery = review.summary()
    assert text.startswith("**3 images reviewed**") and confusion.set_index("model \\ reviewer").values.sum() == 3
    assert len(gallery) == 0  # no thumbnails stored by `_answer`


def test_export_neutralises_cells_a_spreadsheet_would_run_as_formulas(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    hostile = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]
    for i, text in enumerate(hostile):
        _answer(store, sha=f"{i}" * 64, reviewer=f"{text} dr", note=text, path=f"{text}.jpeg")
    _answer(store, sha="z" * 64, reviewer="dr plain", note='plain, with a comma,\r\na CR and a quote "')
    out = pd.read_csv(export_csv(store, tmp_path / "reviews.csv"), keep_default_na=False)
    assert out["note"].tolist() == ["'" + t for t in hostile] + ['plain, with a comma,\r\na CR and a quote "']
    names = ["'" + t + " dr" for t in hostile[:4]] + ["cmd dr", "cmd dr"]  # a name is stored stripped of a tab or CR
    assert out["reviewer"].tolist() == names + ["dr plain"]
    assert out["path"].tolist()[: len(hostile)] == ["'" + t + ".jpeg" for t in hostile]
    assert out["p_pneumonia"].tolist() == [0.9] * 7  # numbers are left as numbers
    assert not list(tmp_path.glob(".reviews.csv*")), "no temporary file left behind"


def _within(seconds: float, fn, *args):
    """fn(*args) in a thread; fails (instead of hanging the test run) when it has not returned in `seconds`."""
    import threading

    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("value", fn(*args)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{getattr(fn, '__name__', fn)} still blocked after {seconds} s"
    return result["value"]


def test_a_fifo_named_like_an_image_is_neither_listed_nor_opened(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    real = _xray(inbox / "a.png", 0)
    os.mkfifo(inbox / "x.jpeg")  # opening it for reading would wait for a writer forever
    (inbox / "folder.png").mkdir()
    review = Review(_FakeScorer(), ReviewStore(tmp_path / "r.sqlite"), inbox)
    assert inbox_files(inbox) == [inbox / "a.png"]
    assert _within(10, review.worklist) == [real]
    refused = _within(10, review.load, str(inbox / "x.jpeg"))
    assert refused["case"] is None and "x.jpeg: not a regular file" in refused["message"]
    shown = review.load(real)
    saved = _within(10, review.save, shown["case"], "dr one", "normal", "", shown["sha256"], (str(inbox / "x.jpeg"),))
    assert saved.startswith("**Not saved:**") and review.store.answers().empty
    with pytest.raises(NotARegularFileError, match="x.jpeg: not a regular file"):
        sha256_of(inbox / "x.jpeg")  # opened without blocking: the refusal comes at once


def test_uploads_over_the_size_limit_are_refused_by_the_server(tmp_path):
    import socket

    import httpx

    from pneumonia_cxr.review.app import build_app, serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = serve(build_app(Review(_FakeScorer(), ReviewStore(tmp_path / "r.sqlite"))), "127.0.0.1", port, 1, False)
    try:
        url = f"http://127.0.0.1:{port}/gradio_api/upload"
        big = httpx.post(url, files={"files": ("big.png", b"\0" * (2 * 1024 * 1024))}, timeout=60)
        small = httpx.post(url, files={"files": ("small.png", b"\0" * 1024)}, timeout=60)
    finally:
        app.close(verbose=False)
    assert big.status_code == 413 and "maximum allowed size" in big.text
    assert small.status_code == 200


def test_reviewer_name_and_note_are_shown_as_text_not_markup(tmp_path):
    review = Review(_FakeScorer(), ReviewStore(tmp_path / "r.sqlite"))
    path = _xray(tmp_path / "a.png", 0)
    shown = review.load(path)
    name, note = "<img src=x onerror=alert(1)>", "<script>alert(1)</script> **bold** [link](http://x)"
    saved = review.save(shown["case"], name, "normal", note, shown["sha256"], (path,))
    assert saved.startswith("Saved answer 1") and "<" not in saved and ">" not in saved.replace("->", "")
    assert "&lt;img src=x onerror=alert(1)&gt;" in saved and "\\*\\*bold\\*\\*" in saved and "\\[link\\]" in saved
    assert review.store.answers()["reviewer"].tolist() == [name], "stored as typed"
    odd = tmp_path / "<b>odd.png"
    _xray(odd, 1)
    assert "<b>" not in review.load(str(odd))["message"]


def test_the_cli_checks_the_prevalence(tmp_path, capsys):
    for bad in ("0", "1", "1.5", "ten"):
        with pytest.raises(SystemExit):
            review_main(["--models", str(tmp_path), "--prevalence", bad])
    assert "strictly between 0 and 1" in capsys.readouterr().err


@pytest.mark.real_data
def test_the_binary_call_and_the_ternary_panel_tell_one_story(real_224, tmp_path):
    """With the real scorer on small models and real X-rays, at a threshold that splits them, with and without a
    prevalence: the page never shows a PNEUMONIA call beside a "normal" type, nor NORMAL beside a pneumonia subtype,
    and the panel's P(normal) is 1 - the P(pneumonia) of the call."""
    from test_review_browser import _small_models

    from pneumonia_cxr.review.app import scorer_from_args as review_scorer
    from pneumonia_cxr.scoring import Scorer, ScorerError

    models = _small_models(tmp_path / "models")
    files = [str(f) for c in ("NORMAL", "PNEUMONIA") for f in sorted((real_224 / "test" / c).glob("*.jpeg"))[:12]]
    raw = sorted(r["p_raw"] for r in Scorer(models / "ensemble.keras").score_files(files)[0])
    meta_file = models / "ensemble.json"
    meta = json.loads(meta_file.read_text())
    meta["threshold"] = meta["threshold_calibrated"] = float(raw[len(raw) // 2])  # half the images each side
    meta_file.write_text(json.dumps(meta))
    cli = argparse.Namespace(
        models=str(models), binary="ensemble", ternary="ternary", prevalence=0.1, no_ood_check=True
    )
    with pytest.raises(ScorerError, match="calibration.prevalence missing"):
        review_scorer(cli)  # the CLI's --prevalence reaches the scorer, which needs the share calibration saw
    meta["calibration"]["prevalence"] = 0.5
    meta_file.write_text(json.dumps(meta))
    assert review_scorer(cli).prevalence == 0.1
    for prevalence in (None, 0.1):
        scorer = Scorer(models / "ensemble.keras", models / "ternary.keras", prevalence=prevalence)
        review = Review(scorer, ReviewStore(tmp_path / "r.sqlite"))
        decisions = []
        for f in files:
            shown = review.load(f)
            case = shown["case"]
            decisions.append(case["decision"])
            assert f"-> **{case['decision']}**" in shown["call"] and f"{case['p_pneumonia']:.3f}" in shown["call"]
            said_normal = shown["ternary"].startswith("**Type: normal**")
            assert said_normal == (case["decision"] == "NORMAL"), f"{case['decision']} beside {shown['ternary']}"
            assert case["ternary"]["normal"] == pytest.approx(1 - case["p_pneumonia"], abs=2e-4)
            assert ("prevalence of 10.0%" in shown["call"]) == (prevalence is not None)
        assert set(decisions) == {"NORMAL", "PNEUMONIA"}
