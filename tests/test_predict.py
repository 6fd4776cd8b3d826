"""The predict command on original-resolution X-rays with a small model trained here."""

import json
import math
import sys

import numpy as np
import pytest

from pneumonia_cxr import predict
from pneumonia_cxr.models import build_ensemble, build_scratch_cnn
from pneumonia_cxr.train import compile_model, load_model, save_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, real_fullres):
    from pneumonia_cxr.data import load_dataset

    data = load_dataset(real_fullres, 48, tmp_path_factory.mktemp("cache"), seed=0)
    x, y, _ = data.split("train")
    model = compile_model(build_scratch_cnn(48, (8, 16, 32)), 3e-3)
    model.fit(x[..., None].astype("float32"), y, epochs=2, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    save_model(
        model, path, image_size=48, resize="squash", task="binary", classes=["NORMAL", "PNEUMONIA"], threshold=0.5
    )
    return path


@pytest.mark.real_data
def test_predict_original_resolution_rgb_and_gray(model_path, real_fullres, tmp_path, capsys):
    from PIL import Image

    files = sorted((real_fullres / "train").rglob("*.jpeg"))
    modes = {Image.open(f).mode: f for f in files}
    images = [str(modes["L"]), str(modes["RGB"]), str(files[-1])]
    assert predict.main([*images, "--model", str(model_path), "--json", "--gradcam", str(tmp_path / "cam.png")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in rows] == images
    for r in rows:
        assert 0 <= r["p_pneumonia"] <= 1 and r["decision"] == ("PNEUMONIA" if r["p_pneumonia"] >= 0.5 else "NORMAL")
        assert Image.open(r["gradcam"]).size[0] > 100


@pytest.mark.real_data
def test_predict_explains_an_ensemble_at_its_threshold(model_path, real_fullres, tmp_path, capsys):
    from PIL import Image

    cnn, _ = load_model(model_path)
    other = compile_model(build_scratch_cnn(32, (8,), name="small_cnn"), 3e-3)  # another size, as notebook 07's
    path = save_model(
        build_ensemble([cnn, other], 48),
        tmp_path / "ensemble.keras",
        image_size=48,
        resize="squash",
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=0.3,
        members=[cnn.name, "small_cnn"],
    )
    image = str(sorted((real_fullres / "train").rglob("*.jpeg"))[0])
    assert predict.main([image, "--model", str(path), "--json", "--gradcam", str(tmp_path / "cam.png")]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["decision"] == ("PNEUMONIA" if row["p_pneumonia"] >= 0.3 else "NORMAL")
    assert Image.open(row["gradcam"]).size[0] > 100


@pytest.mark.real_data
def test_predict_bad_inputs(model_path, tmp_path, capsys):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    assert predict.main([str(junk), "--model", str(model_path)]) == 3
    assert "notes.txt" in capsys.readouterr().err
    assert predict.main([str(junk), "--model", str(tmp_path / "missing.keras")]) == 2
    other = tmp_path / "other.keras"
    other.write_bytes(b"PK\x03\x04 not really")
    assert predict.main([str(junk), "--model", str(other)]) == 2
    assert "no metadata" in capsys.readouterr().err


@pytest.mark.real_data
def test_predict_with_a_ternary_model(model_path, real_fullres, tmp_path, capsys):
    from pneumonia_cxr.data import TERNARY_CLASSES

    ternary = compile_model(build_scratch_cnn(40, (8,), n_classes=3, name="ternary_cnn"), 3e-3, n_classes=3)
    t_path = save_model(
        ternary,
        tmp_path / "ternary.keras",
        image_size=40,
        resize="squash",
        task="ternary",
        classes=list(TERNARY_CLASSES),
    )  # another size: each model is fed as it was trained
    image = str(sorted((real_fullres / "train").rglob("*.jpeg"))[0])
    assert predict.main([image, "--model", str(model_path), "--ternary-model", str(t_path), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert list(row["ternary"]) == list(TERNARY_CLASSES)
    assert sum(row["ternary"].values()) == pytest.approx(1, abs=1e-3)
    # P(normal): the mean of the ternary model's own and 1 - the binary model's P(pneumonia)
    from pneumonia_cxr.data.cache import load_image

    own = ternary.predict(load_image(image, 40, "squash")[None, ..., None].astype("float32"), verbose=0)[0]
    # one probability story: P(normal) is 1 - the P(pneumonia) shown, split as the ternary model splits pneumonia
    t = row["ternary"]
    assert t["normal"] == pytest.approx(1 - row["p_pneumonia"], abs=2e-4)
    assert t["bacteria"] / (t["bacteria"] + t["virus"]) == pytest.approx(own[1] / (own[1] + own[2]), abs=2e-3)
    assert row["ternary_label"] == ("normal" if row["decision"] == "NORMAL" else max(("bacteria", "virus"), key=t.get))
    # a binary model where the ternary one belongs is refused, naming the file
    assert predict.main([image, "--model", str(model_path), "--ternary-model", str(model_path)]) == 2
    assert f"{model_path}: not a ternary" in capsys.readouterr().err


@pytest.fixture(scope="module")
def display_models(tmp_path_factory, real_224):
    """A small untrained binary CNN and ternary CNN at 32 px with metadata as the notebooks write it: the threshold is
    the median of the binary model's outputs on 64 training images (never test), and the calibration (a slope and an
    intercept, as a fit on a balanced set would record) puts that threshold at 0.3 on the calibrated scale, as the
    project's sensitivity target does: PNEUMONIA calls with P(pneumonia) under 0.5 happen."""
    import keras

    from pneumonia_cxr.data import TERNARY_CLASSES
    from pneumonia_cxr.data.decode import load_image
    from pneumonia_cxr.inference import predict_batches

    keras.utils.set_random_seed(0)
    folder = tmp_path_factory.mktemp("display_models")
    binary = compile_model(build_scratch_cnn(32, (8, 16)), 1e-3)
    train = [f for c in ("NORMAL", "PNEUMONIA") for f in sorted((real_224 / "train" / c).glob("*.jpeg"))[:32]]
    raw = predict_batches(binary, np.stack([load_image(f, 32) for f in train]), 64).ravel()
    threshold = float(np.median(raw))
    a = 40.0  # steep, so the untrained model's narrow outputs spread over the calibrated scale
    b = math.log(0.3 / 0.7) - a * math.log(threshold / (1 - threshold))
    common = {"image_size": 32, "resize": "squash"}
    save_model(
        binary,
        folder / "binary.keras",
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=threshold,
        calibration={"method": "platt", "a": a, "b": b, "prevalence": 0.5},
        **common,
    )
    ternary = compile_model(build_scratch_cnn(32, (8,), n_classes=3, name="ternary_cnn"), 1e-3, n_classes=3)
    save_model(ternary, folder / "ternary.keras", task="ternary", classes=list(TERNARY_CLASSES), **common)
    return folder / "binary.keras", folder / "ternary.keras"


@pytest.mark.real_data
def test_the_ternary_panel_agrees_with_the_call_on_every_test_image(display_models, real_224, capsys):
    """Over the whole official test split (images only; no label is read): the ternary panel tells the binary
    model's story and its label never contradicts the call, at the model's own prevalence and at 0.9."""
    binary, ternary = display_models
    images = sorted(str(p) for p in (real_224 / "test").rglob("*.jpeg"))
    cases = {}
    for prevalence in (None, 0.9):
        extra = ["--prevalence", str(prevalence)] if prevalence else []
        assert predict.main([*images, "--model", str(binary), "--ternary-model", str(ternary), "--json", *extra]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["image"] for r in rows] == images
        for r in rows:
            t, call = r["ternary"], r["decision"] == "PNEUMONIA"
            assert sum(t.values()) == pytest.approx(1, abs=1e-3)
            assert t["normal"] == pytest.approx(1 - r["p_pneumonia"], abs=2e-4)
            assert call == (r["p_pneumonia"] >= r["threshold"]) or abs(r["p_pneumonia"] - r["threshold"]) < 2e-4
            label = "normal" if not call else max(("bacteria", "virus"), key=t.get)
            assert r["ternary_label"] == label, r
            top = max(t, key=t.get)
            cases[(call, top == "normal")] = cases.get((call, top == "normal"), 0) + 1
    # the cases where the probabilities alone would have contradicted the call did occur, and were labelled right
    assert cases.get((True, True), 0) > 0 and cases.get((False, False), 0) > 0, cases


@pytest.mark.real_data
def test_prevalence_moves_the_probability_not_the_decision(display_models, real_224, capsys, monkeypatch):
    from pneumonia_cxr import cli
    from pneumonia_cxr.calibration import at_prevalence

    binary, _ = display_models
    image = str(sorted((real_224 / "test" / "PNEUMONIA").glob("*.jpeg"))[0])
    lines = []
    for extra in ([], ["--prevalence", "0.3"]):  # as typed: pneumonia-cxr predict [--prevalence 0.3] IMAGE
        monkeypatch.setattr(sys, "argv", ["pneumonia-cxr", "predict", *extra, image, "--model", str(binary)])
        assert cli.main() == 0
        lines.append(capsys.readouterr().out.strip())
    (p0, t0, d0), (p1, t1, d1) = (
        (
            float(line.split("p(pneumonia)=")[1].split()[0]),
            float(line.split("threshold=")[1].split()[0]),
            line.split("-> ")[1],
        )
        for line in lines
    )
    assert p1 != p0 and t1 != t0 and d1 == d0, lines
    assert p1 == pytest.approx(at_prevalence([p0], 0.3, 0.5)[0], abs=2e-3)  # closed form, from the model's 0.5
    assert t1 == pytest.approx(at_prevalence([t0], 0.3, 0.5)[0], abs=2e-3)  # the threshold moves with it
    # in JSON: the calibrated probability before the move is kept beside it
    assert predict.main([image, "--model", str(binary), "--prevalence", "0.3", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["prevalence"] == 0.3 and row["p_calibrated"] == pytest.approx(p0, abs=1e-3)


@pytest.mark.real_data
def test_prevalence_needs_a_calibration_that_records_its_own(model_path, real_fullres, capsys):
    image = str(sorted((real_fullres / "train").rglob("*.jpeg"))[0])
    assert predict.main([image, "--model", str(model_path), "--prevalence", "0.3"]) == 2  # saved without calibration
    assert "calibration.prevalence missing" in capsys.readouterr().err


@pytest.mark.real_data
def test_an_image_the_ood_check_rejects_gets_no_call(display_models, real_224):
    from pneumonia_cxr.data.decode import load_image
    from pneumonia_cxr.scoring import Scorer

    images = [str(p) for p in sorted((real_224 / "train" / "NORMAL").glob("*.jpeg"))[:4]]
    means = [load_image(p, 224).mean() for p in images]

    class MeanBrightness:  # stands in for ood.OodCheck: .scores(images) and .threshold
        threshold = float(np.median(means))  # two images each side
        seen = None

        def scores(self, images):
            self.seen = images
            return images.reshape(len(images), -1).mean(axis=1)

    check = MeanBrightness()
    rows, errors = Scorer(display_models[0], ood=check).score_files(images)
    assert check.seen.shape == (4, 224, 224) and check.seen.dtype == np.uint8
    kept = [p for p, m in zip(images, means) if m <= check.threshold]
    assert [r["image"] for r in rows] == kept and len(kept) == 2
    for row in rows:
        assert row["ood_score"] <= check.threshold and row["decision"] in ("NORMAL", "PNEUMONIA")
    assert [p for p, _ in errors] == [p for p in images if p not in kept]
    assert all("not a frontal chest X-ray (score" in why for _, why in errors)
