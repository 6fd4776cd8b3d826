"""The out-of-distribution check: fitted on a small real training subset, it passes real X-rays it never saw and
rejects generated non-X-rays; it reloads to the same scores, and a damaged or missing file is an error naming it."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import WEIGHTS

from pneumonia_cxr import ood
from pneumonia_cxr.config import KERAS_WEIGHT_FILES
from pneumonia_cxr.data import load_image


def _images(folder, every: int, offset: int, limit: int) -> np.ndarray:
    """Every `every`-th file of each class folder from `offset`, at most `limit` per class, decoded at 224 px."""
    paths = []
    for cls in ("NORMAL", "PNEUMONIA"):
        paths += sorted((folder / cls).glob("*.jpeg"))[offset::every][:limit]
    return np.stack([load_image(p, ood.SIZE) for p in paths])


@pytest.fixture(scope="module")
def weights_dir():
    if not (WEIGHTS / KERAS_WEIGHT_FILES[(ood.BACKBONE, ood.ALPHA)]).is_file():
        pytest.skip(f"offline MobileNetV2 weights not in {WEIGHTS}: the out-of-distribution tests did NOT run")
    return WEIGHTS


@pytest.fixture(scope="module")
def fitted(real_224, weights_dir):
    """Fitted on 200 training images, the threshold set on 60 other training images (never on the val folder)."""
    train = _images(real_224 / "train", every=9, offset=0, limit=100)
    held = _images(real_224 / "train", every=9, offset=4, limit=30)
    return ood.OodCheck.fit(train, held, weights_dir)


@pytest.mark.real_data
def test_unseen_real_xrays_pass_and_generated_non_xrays_are_rejected(fitted, real_224):
    val = _images(real_224 / "val", every=1, offset=0, limit=100)  # the official val folder: not fitted on
    assert len(val) == 16
    assert fitted.rejects(val).sum() <= 1, fitted.scores(val)
    examples = ood.non_xray_examples(seed=3, xrays=val, per_kind=6)
    assert list(examples) == list(ood.NON_XRAY_KINDS)
    rejected = {kind: fitted.rejects(images).mean() for kind, images in examples.items()}
    assert np.mean(list(rejected.values())) >= 0.95, rejected
    assert min(rejected.values()) >= 0.95, rejected  # every kind, not only on average
    # a list of differently shaped images is scored like the same images squashed to 224 px first
    strip = examples["grey strip 64x5000"][:2]
    assert np.allclose(fitted.scores(strip), fitted.scores(ood.to_input(strip)))


@pytest.mark.real_data
def test_saved_check_reloads_to_the_same_scores(fitted, real_224, weights_dir, tmp_path):
    npz, meta = fitted.save(tmp_path)
    files = {"ood.npz", "ood.json", ood.EXTRACTOR_FILE}
    assert {p.name for p in tmp_path.iterdir()} == files, "no temporary file left behind"
    saved = ood.OodCheck.load(tmp_path)  # the extractor saved beside it: no weight file needed
    (tmp_path / ood.EXTRACTOR_FILE).unlink()
    rebuilt = ood.OodCheck.load(tmp_path, weights_dir)  # the extractor rebuilt from the weight file
    images = _images(real_224 / "test", every=50, offset=0, limit=3)
    for again in (saved, rebuilt):
        assert again.threshold == fitted.threshold
        assert np.allclose(again.scores(images), fitted.scores(images), rtol=1e-5)
    assert json.loads(meta.read_text())["threshold_rule"].startswith("quantile 0.995 of the validation")


@pytest.mark.real_data
def test_damaged_or_missing_files_name_the_file(fitted, tmp_path):
    npz, meta = fitted.save(tmp_path)
    load = lambda: ood.OodCheck.load(tmp_path, extractor=fitted.extractor)  # noqa: E731
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ood.OodFileError, match=r"ood\.npz: not a complete"):
        load()
    npz.write_bytes(b"not an npz")
    with pytest.raises(ood.OodFileError, match=r"ood\.npz"):
        load()
    npz.unlink()
    with pytest.raises(ood.OodFileError, match=r"ood\.npz: no such file"):
        load()
    fitted.save(tmp_path)
    meta.write_text("{")
    with pytest.raises(ood.OodFileError, match=r"ood\.json: unreadable"):
        load()
    fitted.save(tmp_path)
    other = json.loads(meta.read_text())
    other["probe_features"] = [v + 1 for v in other["probe_features"]]  # as if fitted with other weights
    meta.write_text(json.dumps(other))
    with pytest.raises(ood.OodFileError, match=r"ood\.npz: fitted with other MobileNetV2 weights"):
        load()


def test_non_xray_examples_are_seeded_and_as_described():
    xrays = np.tile(np.linspace(0, 255, 224, dtype=np.uint8), (3, 224, 1))
    a, b = ood.non_xray_examples(5, xrays, per_kind=4), ood.non_xray_examples(5, xrays, per_kind=4)
    assert all(np.array_equal(x, y) for kind in a for x, y in zip(a[kind], b[kind]))
    assert {im.shape for im in a["grey strip 64x5000"]} == {(64, 5000), (5000, 64)}
    assert all(im.dtype == np.uint8 and im.ndim == 2 for images in a.values() for im in images)
    assert np.array_equal(a["inverted x-ray"][0], 255 - xrays[0])
    assert a["lateral-like crop"][0].shape == (224, 56) and a["lateral-like crop"][1].shape == (112, 224)
    with pytest.raises(ValueError, match="xrays"):
        ood.non_xray_examples(5, xrays[0])


def test_fit_command_writes_the_check_and_the_table(demo_root, weights_dir, tmp_path):
    """The command's plumbing on the synthetic demo (its numbers mean nothing): files, rows, one threshold."""
    rc = ood.main(
        ["fit", "--data-dir", str(demo_root), "--models-dir", str(tmp_path / "models"), "--reports-dir",
         str(tmp_path / "reports"), "--weights-dir", str(weights_dir), "--cache-dir", str(tmp_path / "cache"),
         "--per-kind", "2"]
    )  # fmt: skip
    assert rc == 0
    table = pd.read_csv(tmp_path / "reports" / "metrics" / "ood.csv")
    meta = json.loads((tmp_path / "models" / "ood.json").read_text())
    assert table["set"].tolist()[:4] == [
        "validation",
        "validation, one acquisition shift each",
        "test (SYNTHETIC)",  # the demo's test/ folder is never called official
        "test (SYNTHETIC), one acquisition shift each",
    ]
    assert (tmp_path / "models" / ood.EXTRACTOR_FILE).is_file()
    assert set(ood.NON_XRAY_KINDS) < set(table["set"]) and (table["threshold"] == meta["threshold"]).all()
    assert (table["rejected"] == np.rint(table["rejection_rate"] * table["n"])).all()
    assert str(tmp_path) not in json.dumps(meta), "the saved check names no machine's path"


@pytest.mark.real_data
def test_predict_refuses_a_non_xray_and_still_scores_the_x_ray_beside_it(fitted, real_224, tmp_path, capsys):
    """`predict black.png xray.jpeg`: the black image gets "not a frontal chest X-ray" and no call, exit 3; the X-ray
    is scored. The check is the one saved beside the model, as `make all` leaves it."""
    from PIL import Image

    from pneumonia_cxr import predict
    from pneumonia_cxr.models import build_scratch_cnn
    from pneumonia_cxr.train import compile_model, save_model

    model = tmp_path / "binary.keras"
    save_model(
        compile_model(build_scratch_cnn(32, (8,)), 1e-3),
        model,
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=0.5,
        image_size=32,
        resize="squash",
    )
    fitted.save(tmp_path)
    black = tmp_path / "black.png"
    Image.new("L", (900, 1100)).save(black)
    xray = sorted((real_224 / "val" / "NORMAL").glob("*.jpeg"))[0]
    assert predict.main([str(black), str(xray), "--model", str(model), "--json"]) == 3
    out = capsys.readouterr()
    assert f"{black}: not a frontal chest X-ray (score" in out.err
    rows = json.loads(out.out)
    assert [r["image"] for r in rows] == [str(xray)] and rows[0]["ood_score"] <= fitted.threshold
    assert predict.main([str(black), "--model", str(model), "--json", "--no-ood-check"]) == 0  # said, not silent
