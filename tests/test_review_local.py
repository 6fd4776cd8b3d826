"""A site's local evaluation and local calibration from its reviewers' answers (`review evaluate`, `review
calibrate`, `--local`):

- on stores with known answers: the numbers equal scikit-learn's on the same arrays, the CIs contain them, too few
  cases says how many more are needed, and a bad local calibration file is refused naming it;
- end to end, with a small model trained here and a careful reviewer answering from the file names on validation
  patients' X-rays under an acquisition shift (never the official test split): the local numbers equal the project's
  own evaluation of the same images and labels, the local calibration lowers ECE on reviewed cases it was not fitted
  on and on later X-rays, and the shipped model's files are byte for byte what they were."""

import hashlib
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from pneumonia_cxr.review.app import main as review_main
from pneumonia_cxr.review.store import ReviewStore

ROOT = Path(__file__).resolve().parents[1]
META = {
    "format": "pneumonia_cxr/1",
    "task": "binary",
    "classes": ["NORMAL", "PNEUMONIA"],
    "image_size": 64,
    "resize": "squash",
    "threshold": 0.5,
    "calibration": {"method": "platt", "a": 1.0, "b": 0.0, "prevalence": 0.5},
    "threshold_calibrated": 0.5,
}


def _ece(y, p, bins=10):
    """ECE written out here, apart from the project's: equal-width bins, |mean p - share positive| by bin share."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        if inside.any():
            total += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    return total


def _model(folder: Path, meta: dict = META) -> Path:
    """Metadata beside a placeholder model file: evaluate and calibrate read only the metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.keras").write_bytes(b"a model file: evaluate and calibrate never open it")
    (folder / "m.json").write_text(json.dumps(meta))
    return folder / "m.keras"


def _known_store(
    db: Path, model: Path, n_normal: int, n_pneumonia: int, seed: int = 0, skew: float = 1.0, shift: float = 0.8
):
    """A store whose answers are known: true labels; P(pneumonia) = sigmoid(skew * score + shift) with score ~ N(+-1,
    1), whose true log-odds are 2 * score + log(n_pneumonia / n_normal) (miscalibrated in a known way); the decision at
    0.5. Reviewer "dr a" answers every image correctly (agree where the model is right, else the true subtype) but
    marks the first pneumonia not readable; "dr b" reads 30 images again, right on normal vs pneumonia but calling
    every pneumonia viral. Returns the arrays of the cases (latest readable answer)."""
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n_normal, int), np.ones(n_pneumonia, int)]
    rng.shuffle(y)
    score = rng.normal(0, 1, len(y)) + np.where(y == 1, 1.0, -1.0)
    p = np.round(1 / (1 + np.exp(-(skew * score + shift))), 4)
    subtype = np.where(y == 0, "normal", np.where(rng.random(len(y)) < 0.6, "bacterial", "viral"))
    store = ReviewStore(db)
    unreadable = int(np.flatnonzero(y == 1)[0])

    def add(i: int, reviewer: str, answer: str) -> None:
        """One answer to image i, as the page showed it: the model's call at 0.5, bacterial as its subtype."""
        store.add_answer(
            sha256=f"{i:064x}",
            path=f"inbox/person{1000 + i}_x_{i}.jpeg",
            model_file=str(model),
            model_commit=None,
            p_pneumonia=float(p[i]),
            threshold=0.5,
            decision="PNEUMONIA" if p[i] >= 0.5 else "NORMAL",
            ternary={"normal": 1 - p[i], "bacteria": p[i] * 0.7, "virus": p[i] * 0.3},
            reviewer=reviewer,
            answer=answer,
        )

    for i in range(len(y)):
        right = (p[i] >= 0.5) == bool(y[i]) and subtype[i] in ("normal", "bacterial")
        add(i, "dr a", "not readable" if i == unreadable else "agree" if right else str(subtype[i]))
    second = [i for i in range(len(y)) if i != unreadable][:30]
    for i in second:
        add(i, "dr b", "viral" if y[i] else "normal")
    keep = np.arange(len(y)) != unreadable
    return {
        "y": y[keep],
        "p": p[keep],
        "called": (p[keep] >= 0.5).astype(int),
        "second": second,
        "all_y": y,
        "p_all": p,
    }


def _evaluation(db: Path, model: Path, n_boot: int = 200):
    from pneumonia_cxr.review.evaluation import cases_from_db, local_evaluation

    cases, _, _ = cases_from_db(db, model)
    return cases, local_evaluation(cases, None, n_boot=n_boot)


def test_the_local_evaluation_equals_sklearn_on_the_same_arrays_with_cis_around_it(tmp_path):
    model = _model(tmp_path / "models")
    known = _known_store(tmp_path / "r.sqlite", model, 70, 110)
    y, p, called = known["y"], known["p"], known["called"]
    cases, e = _evaluation(tmp_path / "r.sqlite", model)
    assert e["n_cases"] == 179 and (e["n_normal"], e["n_pneumonia"]) == (70, 109)
    assert e["left_out"] == {"images not readable (latest answer)": 1} and cases.grouping == "patient"
    m = e["metrics"]
    expected = {
        "sensitivity": skm.recall_score(y, called),
        "specificity": skm.recall_score(y, called, pos_label=0),
        "ppv": skm.precision_score(y, called),
        "npv": skm.precision_score(y, called, pos_label=0),
        "roc_auc": skm.roc_auc_score(y, p),
    }
    for name, value in expected.items():
        assert m[name]["value"] == pytest.approx(value, abs=1e-12), name
        assert m[name]["low"] < value < m[name]["high"], (name, m[name])
        assert m[name]["high"] - m[name]["low"] < 0.35, (name, m[name])  # an interval, not the whole range
    tn, fp, fn, tp = skm.confusion_matrix(y, called).ravel()
    assert e["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    assert e["ece"]["value"] == pytest.approx(_ece(y, p), abs=1e-12) and e["ece"]["value"] > 0.05
    assert e["ece"]["low"] < e["ece"]["value"] < e["ece"]["high"]
    # each reviewer against the model, and the two reviewers against each other, as scikit-learn's Cohen's kappa
    a = e["reviewers"].set_index("reviewer")
    assert a.loc["dr a", "kappa"] == pytest.approx(skm.cohen_kappa_score(called, y))
    second = known["second"]
    b_called = (known["p_all"][second] >= 0.5).astype(int)
    assert a.loc["dr b", "kappa"] == pytest.approx(skm.cohen_kappa_score(b_called, known["all_y"][second]))
    pair = e["between_reviewers"].iloc[0]
    assert pair["reviewers"] == "dr a / dr b" and pair["images"] == 30 and pair["kappa"] == pytest.approx(1.0)
    assert pair["kappa on subtypes"] < 1  # dr b calls every pneumonia viral
    # the subtype table counts the cases whose latest answer gave a subtype: every readable one here
    assert e["subtypes"].values.sum() == 179 and e["subtypes"].loc["viral"].sum() == 0  # the model never says viral
    assert e["too_few"] is None


def test_the_report_compares_with_the_model_card_and_says_when_too_few_cases(tmp_path, capsys):
    model = _model(tmp_path / "models")
    _known_store(tmp_path / "r.sqlite", model, 31, 121)
    reference = tmp_path / "card.json"
    card = {"sensitivity": 0.98, "specificity": 0.84, "roc_auc": 0.979, "precision": 0.9}
    reference.write_text(json.dumps({"test": card, "test_ci95": {k: [v - 0.02, v + 0.01] for k, v in card.items()}}))
    out = tmp_path / "report" / "local.md"
    argv = ["evaluate", "--db", str(tmp_path / "r.sqlite"), "--model", str(model), "--out", str(out)]
    assert review_main([*argv, "--reference", str(reference), "--n-boot", "200"]) == 0
    text = out.read_text()
    # 31 NORMAL cases: 19 more are needed, about 19 / (31 / 151) = 92.5, so 93 more reviews at this mix
    assert "31 NORMAL and 120 PNEUMONIA readable cases" in text and "19 more NORMAL cases" in text
    assert "about 93 more reviews at this site's mix of 21% NORMAL" in text
    assert "19 more NORMAL cases" in capsys.readouterr().out and "PNEUMONIA case" not in text
    assert "Compared with the model card:" in text and "| sensitivity |" in text and "0.980 [0.960, 0.990]" in text
    assert "with so few cases the CIs are wide" in text
    plot = out.with_name("local_reliability.png")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({plot.name})" in text
    assert not list(out.parent.glob(".*")), "no temporary file left behind"
    # without --out the report goes beside the database; without a card found, the report says so
    assert review_main(["evaluate", "--db", str(tmp_path / "r.sqlite"), "--model", str(model), "--n-boot", "50"]) == 0
    assert "No model card numbers found" in (tmp_path / "r_evaluation.md").read_text()
    before = (tmp_path / "r.sqlite").read_bytes()
    assert review_main([*argv[:5], "--out", str(tmp_path / "r.sqlite")]) == 2  # never over the database
    assert "r.sqlite: the report would replace the database" in capsys.readouterr().err
    assert (tmp_path / "r.sqlite").read_bytes() == before


def test_the_compatibility_sentence_follows_the_local_cis():
    from pneumonia_cxr.review.evaluation import compatibility, too_few

    local = {
        "sensitivity": {"value": 0.95, "low": 0.91, "high": 0.98},
        "specificity": {"value": 0.70, "low": 0.62, "high": 0.78},
        "roc_auc": {"value": 0.95, "low": 0.92, "high": 0.97},
    }
    card = {"test": {"sensitivity": 0.96, "specificity": 0.84, "roc_auc": 0.96}}
    text = compatibility(local, card, None)
    assert text.startswith("Not compatible") and "specificity is lower here, 0.700 [0.620, 0.780] against 0.840" in text
    assert "sensitivity and ROC AUC compatible" in text and "validation" not in text
    card["val"] = {"specificity": 0.70}
    assert "The card's validation specificity 0.700 lies inside." in compatibility(local, card, None)
    card["test"]["specificity"] = 0.75
    assert compatibility(local, card, None).startswith("Compatible with the model card: ")
    assert too_few(50, 50) is None and "1 more PNEUMONIA case " in too_few(60, 49)
    assert "none reviewed yet" in too_few(0, 12)


def test_calibrate_writes_a_checked_file_apart_and_its_held_out_ece_is_lower(tmp_path, capsys):
    from pneumonia_cxr.calibration import calibrate
    from pneumonia_cxr.local_calibration import read_local

    model = _model(tmp_path / "models")
    before = {f.name: f.read_bytes() for f in model.parent.iterdir()}
    known = _known_store(tmp_path / "r.sqlite", model, 90, 150, skew=3.0, shift=2.5)  # overconfident, shifted
    out = tmp_path / "site" / "local.json"
    argv = ["calibrate", "--db", str(tmp_path / "r.sqlite"), "--out", str(out), "--n-boot", "200"]
    assert review_main([*argv, "--target-sensitivity", "0.9"]) == 0
    local = read_local(out)
    q = local["quality"]
    assert q["ece_after"][0] < q["ece_before"][0] - 0.02, q  # on held-out folds
    assert q["ece_change"][1] <= q["ece_change"][0] <= q["ece_change"][2] < 0
    for key in ("ece_before", "ece_after"):
        assert q[key][1] <= q[key][0] <= q[key][2], (key, q[key])
    y, p = known["y"], known["p"]
    ship = q["shipped_threshold"]
    assert ship["sensitivity"][0] == pytest.approx(skm.recall_score(y, p >= 0.5))
    assert ship["sensitivity"][1] <= ship["sensitivity"][0] <= ship["sensitivity"][2]
    # the local threshold reaches the stated sensitivity on the reviewed cases, on both scales
    assert local["target_sensitivity"] == 0.9 and (p[y == 1] >= local["threshold_shipped"]).mean() >= 0.9
    assert local["threshold"] == pytest.approx(calibrate([local["threshold_shipped"]], local)[0])
    assert local["model"]["file"] == "m.keras" and local["model"]["threshold"] == 0.5
    text = out.with_suffix(".md").read_text()
    assert "before (shipped)" in text and "after (local, held-out)" in text
    assert {f.name: f.read_bytes() for f in model.parent.iterdir()} == before, "the shipped model was changed"
    # a prior shift moves the intercept only
    assert review_main([*argv[:4], str(tmp_path / "prior.json"), "--method", "prior-shift", "--n-boot", "50"]) == 0
    assert read_local(tmp_path / "prior.json")["a"] == 1.0
    # the model's metadata, or another kind of file, is never written over
    assert review_main([*argv[:4], str(model.with_suffix(".json")), "--n-boot", "50"]) == 2
    assert "is the shipped model's own file" in capsys.readouterr().err
    (tmp_path / "notes.json").write_text('{"mine": 1}')
    assert review_main([*argv[:4], str(tmp_path / "notes.json"), "--n-boot", "50"]) == 2
    assert "notes.json: exists and is not a local calibration" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in model.parent.iterdir()} == before


def test_calibrate_refuses_too_few_cases_and_a_missing_database(tmp_path, capsys):
    model = _model(tmp_path / "models")
    _known_store(tmp_path / "r.sqlite", model, 8, 40)
    argv = ["calibrate", "--db", str(tmp_path / "r.sqlite"), "--out", str(tmp_path / "local.json")]
    assert review_main(argv) == 2
    err = capsys.readouterr().err
    assert "too few reviewed cases" in err and "(8 NORMAL, 39 PNEUMONIA" in err
    assert not (tmp_path / "local.json").exists()
    assert review_main(["evaluate", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "none.sqlite: no review database there" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists(), "evaluating creates no database"


BAD_LOCAL = [
    ("not json {", "unreadable local calibration"),
    ('{"format": "pneumonia_cxr/1"}', "not a local calibration"),
    ("[1, 2]", "the whole file: must be a JSON object"),
    ("a=-1", "a: should be greater than 0"),
    ("threshold=1.5", "threshold: should be less than 1"),
    ("b=NaN", "b: should be a finite number"),
    ("method=isotonic", "method: should be 'platt' or 'prior_shift'"),
    ("-model", "model: missing"),
]


def _good_local() -> dict:
    return {
        "format": "pneumonia_cxr/local-calibration/1",
        "method": "platt",
        "a": 1.2,
        "b": -0.3,
        "threshold": 0.4,
        "threshold_shipped": 0.45,
        "target_sensitivity": 0.95,
        "model": {"file": "m.keras", "threshold": 0.5, "calibration_a": 1.0, "calibration_b": 0.0},
    }


def _bad_local_text(spec: str) -> str:
    data = _good_local()
    if spec.startswith("-"):
        del data[spec[1:]]
    elif "=" in spec and not spec.startswith("{"):
        key, value = spec.split("=")
        data[key] = float(value) if value not in ("isotonic",) else value
    else:
        return spec
    return json.dumps(data)


@pytest.mark.parametrize(("spec", "why"), BAD_LOCAL)
def test_a_bad_local_calibration_file_is_refused_naming_the_file(spec, why, tmp_path, capsys):
    from pneumonia_cxr import predict
    from pneumonia_cxr.local_calibration import LocalCalibrationError, read_local

    bad = tmp_path / "local.json"
    bad.write_text(_bad_local_text(spec))
    with pytest.raises(LocalCalibrationError, match="local.json") as caught:
        read_local(bad)
    assert why in str(caught.value)
    assert predict.main(["x.jpeg", "--model", str(tmp_path / "m.keras"), "--local", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"error: {bad}" in err and why in err
    assert review_main(["--models", str(tmp_path), "--local", str(bad), "--db", str(tmp_path / "r.sqlite")]) == 2
    assert str(bad) in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_good_local()))
    assert read_local(good)["file"] == str(good)


def test_a_local_calibration_and_a_prevalence_are_not_given_together(tmp_path, capsys):
    from pneumonia_cxr import predict

    good = tmp_path / "good.json"
    good.write_text(json.dumps(_good_local()))
    assert predict.main(["x.jpeg", "--model", "m.keras", "--local", str(good), "--prevalence", "0.3"]) == 2
    assert "--local and --prevalence" in capsys.readouterr().err
    assert review_main(["--models", str(tmp_path), "--local", str(good), "--prevalence", "0.3"]) == 2
    assert "--local and --prevalence" in capsys.readouterr().err


def test_answers_shown_at_a_prevalence_are_moved_back_to_the_shipped_scale(tmp_path):
    from pneumonia_cxr.calibration import at_prevalence
    from pneumonia_cxr.review.cases import reviewed_cases

    model = _model(tmp_path / "models", {**META, "threshold_calibrated": 0.3})
    store = ReviewStore(tmp_path / "r.sqlite")
    p = np.array([0.1, 0.25, 0.31, 0.6, 0.9])
    shown, t_shown = at_prevalence(p, 0.1, 0.5), at_prevalence([0.3], 0.1, 0.5)[0]
    for i, (ps, pc) in enumerate(zip(shown, p)):
        store.add_answer(
            sha256=f"{i:064x}",
            path=f"x{i}.png",
            model_file=str(model),
            model_commit=None,
            p_pneumonia=round(float(ps), 4),
            threshold=round(float(t_shown), 4),
            decision="PNEUMONIA" if pc >= 0.3 else "NORMAL",
            ternary=None,
            reviewer="dr a",
            answer="normal" if i % 2 else "viral",
        )
    cases = reviewed_cases(store.answers(), json.loads(model.with_suffix(".json").read_text()), str(model))
    assert cases.p == pytest.approx(p, abs=2e-3) and cases.threshold == 0.3 and cases.grouping == "case"
    assert cases.table["called"].tolist() == [0, 0, 1, 1, 1]


def test_a_database_made_before_the_local_calibration_column_opens_and_keeps_its_rows(tmp_path):
    from pneumonia_cxr.review.store import read_answers

    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as con:
        con.executescript(
            """CREATE TABLE answers (id INTEGER PRIMARY KEY AUTOINCREMENT, sha256 TEXT NOT NULL, path TEXT NOT NULL,
            model_file TEXT NOT NULL, model_commit TEXT, p_pneumonia REAL NOT NULL, threshold REAL NOT NULL,
            decision TEXT NOT NULL, p_normal REAL, p_bacterial REAL, p_viral REAL, reviewer TEXT NOT NULL,
            answer TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', answered_at TEXT NOT NULL);
            INSERT INTO answers (sha256, path, model_file, p_pneumonia, threshold, decision, reviewer, answer,
            answered_at) VALUES ('a', 'x.png', 'm.keras', 0.9, 0.5, 'PNEUMONIA', 'dr a', 'agree', '2026');"""
        )
    read_only = read_answers(db)  # what evaluate and calibrate read: the database is not migrated
    assert read_only["local_calibration"].isna().all() and read_only["latest"].tolist() == [True]
    with sqlite3.connect(db) as con:
        assert "local_calibration" not in [row[1] for row in con.execute("PRAGMA table_info(answers)")]
    store = ReviewStore(db)
    store.add_answer(
        sha256="b",
        path="y.png",
        model_file="m.keras",
        model_commit=None,
        p_pneumonia=0.2,
        threshold=0.5,
        decision="NORMAL",
        ternary=None,
        reviewer="dr a",
        answer="agree",
        local_calibration="local.json",
    )
    table = store.answers()
    assert table["local_calibration"].isna().tolist() == [True, False] and table["path"].tolist() == ["x.png", "y.png"]
    assert table["local_calibration"].iloc[1] == "local.json"
    from pneumonia_cxr.review.store import read_answers

    assert read_answers(db)["local_calibration"].iloc[1] == "local.json"
    from pneumonia_cxr.review.cases import reviewed_cases

    cases = reviewed_cases(table, None, "m.keras")
    assert len(cases.table) == 1 and cases.left_out == {"answers given on a page run with a local calibration": 1}


def test_the_console_command_runs_review_evaluate(tmp_path, monkeypatch):
    from pneumonia_cxr import cli

    model = _model(tmp_path / "models")
    _known_store(tmp_path / "r.sqlite", model, 20, 30)
    out = tmp_path / "e.md"
    argv = ["pneumonia-cxr", "review", "evaluate", "--db", str(tmp_path / "r.sqlite"), "--model", str(model)]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out), "--n-boot", "50"])
    assert cli.main() == 0
    text = out.read_text()
    assert "**49 cases**" in text and "30 more NORMAL cases" in text and "21 more PNEUMONIA cases" in text


# ---------------------------------------------------------------------------------------------------------------------
# end to end: a small model trained here, a site's X-rays under an acquisition shift, a careful reviewer

SHIFT = "zoom in x1.3"  # a tighter collimation than the training images had (`data/shifts.py`)


def _sha_files(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir()) if f.is_file()}


@pytest.fixture(scope="module")
def site(real_224, tmp_path_factory):
    """A small CNN trained here on training patients of the release's train folder (with balanced class weights, so
    its P(pneumonia) is calibrated as if half the children had pneumonia: the shipped calibration records that) and an
    untrained ternary CNN; a site's X-rays: the validation patients' images (the project's patient split, never the
    official test split) under an acquisition shift, in class folders under their release names; two thirds go to the
    reviewers' inbox, the rest come later."""
    import keras
    from PIL import Image

    from pneumonia_cxr.data.dataset import subsample_patients
    from pneumonia_cxr.data.decode import load_image
    from pneumonia_cxr.data.discover import build_manifest
    from pneumonia_cxr.data.pipeline import class_weights
    from pneumonia_cxr.data.shifts import apply_shift
    from pneumonia_cxr.data.split import split_by_patient
    from pneumonia_cxr.evaluate import binary_metrics, bootstrap_ci, choose_threshold
    from pneumonia_cxr.inference import predict_batches
    from pneumonia_cxr.models import build_scratch_cnn
    from pneumonia_cxr.train import compile_model, save_model

    root = tmp_path_factory.mktemp("site")
    table = build_manifest(real_224).table
    table = table[table["split"] != "test"]  # the official test split is never read here
    table = subsample_patients(table, per_subtype=160, seed=0)
    table = table.assign(pixel_hash=[hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in table["path"]])
    split, _ = split_by_patient(table, seed=0, val_fraction=0.4, test_fraction=0.1)
    train, val = split[split["split_assigned"] == "train"], split[split["split_assigned"] == "val"]
    assert not set(train["patient"]) & set(val["patient"])

    keras.utils.set_random_seed(0)
    x = np.stack([load_image(p, 64) for p in train["path"]])
    y = (train["label"] == "PNEUMONIA").to_numpy(int)
    model = compile_model(build_scratch_cnn(64, (8, 16, 32)), 3e-3)
    model.fit(x[..., None].astype("float32"), y, epochs=5, batch_size=32, verbose=0, class_weight=class_weights(y))
    p_train = predict_batches(model, x, 64).ravel()
    threshold = choose_threshold(y, p_train, 0.95)
    models = root / "models"
    common = {"image_size": 64, "resize": "squash"}
    save_model(
        model,
        models / "ensemble.keras",
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=threshold,
        calibration={"method": "platt", "a": 1.0, "b": 0.0, "prevalence": 0.5},  # balanced by the class weights
        threshold_calibrated=threshold,
        **common,
    )
    ternary = compile_model(build_scratch_cnn(64, (8,), n_classes=3, name="t"), 1e-3, n_classes=3)
    save_model(ternary, models / "ternary.keras", task="ternary", classes=["normal", "bacteria", "virus"], **common)
    # the model card's numbers of this model: its training images (a stand-in for the run's record)
    m, ci = binary_metrics(y, p_train, threshold), bootstrap_ci(y, p_train, threshold, n_boot=100)
    card = root / "reports" / "metrics" / "ensemble.json"
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"test": m, "test_ci95": ci, "val": m, "target_sensitivity": 0.95}))

    val = val.sample(frac=1.0, random_state=0)  # the order X-rays reach the site
    labels = (val["label"] == "PNEUMONIA").to_numpy(int)
    shifted = apply_shift(np.stack([load_image(p, 224) for p in val["path"]]), SHIFT, labels)
    shifted = np.clip(shifted, 0, 255).astype(np.uint8)
    cut = 2 * len(val) // 3
    files = []
    for k, (path, label, image) in enumerate(zip(val["path"], val["label"], shifted)):
        out = root / ("inbox" if k < cut else "later") / label / f"{Path(path).stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out)
        files.append(out)
    return {"root": root, "models": models, "inbox": root / "inbox", "later": files[cut:], "threshold": threshold}


def _truth(path: Path) -> str:
    """What a careful reviewer sees on this X-ray; here, what its folder and release name say."""
    from pneumonia_cxr.data.discover import parse_subtype

    return {"normal": "normal", "bacteria": "bacterial", "virus": "viral"}[parse_subtype(path.name, path.parent.name)]


def _careful_answer(case: dict, truth: str) -> str:
    """ "agree" where the call shown (and its subtype) is right, else the right answer."""
    from pneumonia_cxr.review.store import TERNARY_OF

    said = "normal" if case["decision"] == "NORMAL" else TERNARY_OF.get(case.get("ternary_label"), "")
    return "agree" if said == truth else truth


@pytest.mark.real_data
@pytest.mark.slow
def test_a_site_reviews_evaluates_and_calibrates_without_touching_the_shipped_model(site, tmp_path, capsys):
    from pneumonia_cxr.calibration import calibrate, expected_calibration_error
    from pneumonia_cxr.evaluate import binary_metrics
    from pneumonia_cxr.inference import predict_batches
    from pneumonia_cxr.local_calibration import read_local
    from pneumonia_cxr.review.app import Review
    from pneumonia_cxr.review.evaluation import cases_from_db, local_evaluation
    from pneumonia_cxr.scoring import Scorer, ScorerError

    models, db = site["models"], tmp_path / "reviews.sqlite"
    shipped = _sha_files(models)
    binary, ternary = models / "ensemble.keras", models / "ternary.keras"
    scorer = Scorer(binary, ternary)
    review = Review(scorer, ReviewStore(db), site["inbox"])
    worklist = review.worklist()
    assert len(worklist) >= 100
    unreadable, second = set(worklist[5:7]), worklist[8::5][:20]  # both classes: the list is by folder
    for path in worklist:  # dr a reads every X-ray in the inbox, on the page
        shown = review.load(path)
        answer = "not readable" if path in unreadable else _careful_answer(shown["case"], _truth(Path(path)))
        assert review.save(shown["case"], "dr a", answer, "", shown["sha256"], (path, None)).startswith("Saved")
    assert review.worklist() == []
    for path in second:  # dr b reads 20 again: right on normal vs pneumonia, but calls every pneumonia bacterial
        shown = review.load(path)
        answer = "normal" if _truth(Path(path)) == "normal" else "bacterial"
        assert review.save(shown["case"], "dr b", answer, "", shown["sha256"], (path, None)).startswith("Saved")

    # the project's own evaluation of the same images and labels: one batch, full precision
    readable = [p for p in worklist if p not in unreadable]
    y = np.array([_truth(Path(p)) != "normal" for p in readable], int)
    images = np.stack([Scorer.preprocess(f, scorer.meta) for f in readable])
    p = calibrate(predict_batches(scorer.model, images, 64).ravel(), scorer.meta["calibration"])
    own = binary_metrics(y, p, site["threshold"])
    npv = own["tn"] / (own["tn"] + own["fn"])

    cases, _, _ = cases_from_db(db, None)
    e = local_evaluation(cases, None, n_boot=100)
    assert e["n_cases"] == len(readable) and e["left_out"] == {"images not readable (latest answer)": 2}
    truth = dict(zip(readable, y))
    assert sorted(cases.table["path"]) == sorted(readable)
    assert [truth[f] for f in cases.table["path"]] == cases.y.tolist(), "the reviewers' answers are the folder labels"
    assert {k: e["confusion"][k] for k in ("tn", "fp", "fn", "tp")} == {k: own[k] for k in ("tn", "fp", "fn", "tp")}
    m = e["metrics"]
    assert m["sensitivity"]["value"] == pytest.approx(own["sensitivity"])
    assert m["specificity"]["value"] == pytest.approx(own["specificity"])
    assert m["ppv"]["value"] == pytest.approx(own["precision"]) and m["npv"]["value"] == pytest.approx(npv)
    assert m["roc_auc"]["value"] == pytest.approx(own["roc_auc"], abs=2e-3)  # stored probabilities have 4 decimals
    assert e["ece"]["value"] == pytest.approx(expected_calibration_error(y, p), abs=2e-3)
    for k in ("sensitivity", "specificity", "roc_auc"):
        assert m[k]["low"] <= m[k]["value"] <= m[k]["high"], (k, m[k])
    assert 0.6 < own["roc_auc"], "the small model learnt something"
    pair = e["between_reviewers"].iloc[0]
    assert pair["images"] == 20 and pair["kappa"] == pytest.approx(1.0)

    # the commands, as a site runs them: the report beside the database, the model card found beside the models
    assert review_main(["evaluate", "--db", str(db), "--n-boot", "100"]) == 0
    report = (tmp_path / "reviews_evaluation.md").read_text()
    assert f"**{len(readable)} cases**" in report and "2 not readable" in report
    assert "Compared with the model card:" in report and "reports/metrics/ensemble.json" in report
    assert (tmp_path / "reviews_evaluation_reliability.png").stat().st_size > 10_000
    local_file = tmp_path / "local.json"
    assert review_main(["calibrate", "--db", str(db), "--out", str(local_file), "--n-boot", "100"]) == 0
    local = read_local(local_file)
    q = local["quality"]
    assert q["ece_after"][0] < q["ece_before"][0], q  # on reviewed cases held out of each fit
    assert local["target_sensitivity"] == 0.95  # the model card's target, found beside the models
    capsys.readouterr()

    # later X-rays, never reviewed: the local calibration lowers their ECE too
    later = [str(f) for f in site["later"]]
    y_later = np.array([_truth(f) != "normal" for f in site["later"]], int)
    with_local = Scorer(binary, ternary, local=local)
    p_shipped = np.array([r["p_pneumonia"] for r in scorer.score_files(later)[0]])
    local_rows = with_local.score_files(later)[0]
    p_local = np.array([r["p_pneumonia"] for r in local_rows])
    assert expected_calibration_error(y_later, p_local) < expected_calibration_error(y_later, p_shipped)
    assert all(r["local_calibration"] == "local.json" for r in local_rows)
    cut = local["threshold_shipped"]
    for r in local_rows:  # the decision at the local threshold, on the shipped scale (4 decimals stored)
        assert abs(r["p_shipped"] - cut) < 1e-4 or (r["decision"] == "PNEUMONIA") == (r["p_shipped"] >= cut), r
    assert all((r["ternary_label"] == "normal") == (r["decision"] == "NORMAL") for r in local_rows)

    # predict --local; a page run with --local stores its answers marked, and the shipped evaluation leaves them out
    from pneumonia_cxr import predict

    assert predict.main([later[0], "--model", str(binary), "--local", str(local_file), "--json", "--no-ood-check"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)[0]["local_calibration"] == "local.json" and "local calibration" in out.err
    page = Review(with_local, ReviewStore(db))
    shown = page.load(later[0])
    assert "calibrated locally by local.json" in shown["call"]
    assert page.save(shown["case"], "dr a", "agree", "", shown["sha256"], (later[0],)).startswith("Saved")
    text, plot = page.local_evaluation(n_boot=100)
    assert f"**{len(readable)} cases**" in text and "page run with a local calibration: 1" in text
    assert "Local calibration (local.json" in text and plot.shape[2] == 3

    # a local calibration for another model is refused, naming the file
    other = json.loads(local_file.read_text())
    other["model"]["threshold"] = 0.123
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(ScorerError, match="other.json: fitted for a model with threshold 0.123"):
        Scorer(binary, local=read_local(tmp_path / "other.json"))
    assert _sha_files(models) == shipped, "the shipped model's files changed"
