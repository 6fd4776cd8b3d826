"""The predict command on original-resolution X-rays with a small model trained here."""

import json

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
    assert row["ternary"]["normal"] == pytest.approx((own[0] + 1 - row["p_pneumonia"]) / 2, abs=1e-3)
    # a binary model where the ternary one belongs is refused, naming the file
    assert predict.main([image, "--model", str(model_path), "--ternary-model", str(model_path)]) == 2
    assert f"{model_path}: not a ternary" in capsys.readouterr().err
