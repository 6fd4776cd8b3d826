"""The review app's store and logic without a browser: answers are appended, never changed, stored from two writers
at once, exported with their labels; a refused file stores nothing; the app refuses to start without its models."""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from pneumonia_cxr.review.app import Review, inbox_files
from pneumonia_cxr.review.app import main as review_main
from pneumonia_cxr.review.store import ReviewStore, ReviewStoreError, agreement, export_csv, labelled

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
    assert review.save(shown["case"], "", "normal").startswith("**Not saved:** enter your name")
    assert review.save(shown["case"], "dr one", "normal", "clear lungs").startswith("Saved answer 1")
    assert review.worklist() == [second]  # reviewed images leave the worklist
    junk = tmp_path / "notes.jpeg"
    junk.write_text("not an X-ray")
    refused = review.load(str(junk), "notes.jpeg")
    assert refused["case"] is None and "notes.jpeg" in refused["message"] and "Nothing was stored" in refused["message"]
    assert review.save(refused["case"], "dr one", "normal").startswith("**Not saved:**")
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
    (tmp_path / "ensemble.json").write_text(json.dumps({"format": "pneumonia_cxr/1"}))
    assert review_main(["--models", str(tmp_path), "--db", str(tmp_path / "r.sqlite"), "--ternary", ""]) == 2
    assert "ensemble.keras: not a complete .keras archive" in capsys.readouterr().err
