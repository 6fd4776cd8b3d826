"""Reliability: what a hostile but fair user can throw at the project, built from real X-rays of ../shared/data, and
what they see. docs/reliability.md lists every case beside the test that proves it."""

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumonia_cxr import predict
from pneumonia_cxr.data import DatasetError, build_manifest, find_dataset_root, load_dataset
from pneumonia_cxr.data.cache import build_image_cache
from pneumonia_cxr.data.decode import MAX_PIXELS, MIN_SIDE, ImageDecodeError, load_image
from pneumonia_cxr.io import write_json
from pneumonia_cxr.models import build_scratch_cnn
from pneumonia_cxr.train import ModelFileError, compile_model, load_model, save_model

ROOT = Path(__file__).resolve().parents[1]


def _one_xray(real_224, label="NORMAL") -> Path:
    return sorted((real_224 / "test" / label).glob("*.jpeg"))[0]


def _formats(source: Path, folder: Path) -> dict[str, Path]:
    """The same X-ray as an 8-bit JPEG (the original), a 16-bit PNG (as DICOM exports give), RGB, RGBA and palette PNGs,
    and rotated by its EXIF orientation."""
    folder.mkdir(parents=True, exist_ok=True)
    gray = np.asarray(Image.open(source).convert("L"))
    out = {"jpeg": source}
    Image.fromarray(gray.astype(np.uint16) * 257).save(out.setdefault("png16", folder / "x16.png"))
    Image.fromarray(gray).convert("RGB").save(out.setdefault("rgb", folder / "rgb.png"))
    rgba = Image.fromarray(gray).convert("RGBA")
    rgba.save(out.setdefault("rgba", folder / "rgba.png"))
    Image.fromarray(gray).convert("P").save(out.setdefault("palette", folder / "palette.png"))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": stored on its side, as some exports do
    Image.fromarray(gray).transpose(Image.Transpose.ROTATE_90).save(
        out.setdefault("exif_rotated", folder / "rotated.png"), exif=exif
    )
    return out


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims `width` x `height` (its pixels are not there): what a decompression bomb looks like to a
    decoder that trusts the header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda kind, data: (  # noqa: E731
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    )
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)))
    return path


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A small, seeded CNN with its metadata (threshold and calibration), as the notebooks save one."""
    import keras

    keras.utils.set_random_seed(0)
    model = compile_model(build_scratch_cnn(64, (8, 16)), 1e-3)
    path = tmp_path_factory.mktemp("model") / "cnn.keras"
    save_model(
        model,
        path,
        image_size=64,
        resize="squash",
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=0.5,
        thorax_width=0.42,
        calibration={"method": "platt", "a": 1.3, "b": -0.4, "prevalence": 0.5},
        threshold_calibrated=0.4,
    )
    return path


# 1. one decoder for every format
@pytest.mark.real_data
def test_every_format_of_one_xray_decodes_to_the_same_pixels(real_224, tmp_path):
    files = _formats(_one_xray(real_224), tmp_path)
    reference = load_image(files["jpeg"], 128)
    for kind, path in files.items():
        np.testing.assert_array_equal(load_image(path, 128), reference, err_msg=kind)


def test_twelve_bit_data_in_sixteen_bit_words_fill_the_range(tmp_path):
    values = np.linspace(0, 4095, 96 * 96).reshape(96, 96).astype(np.uint16)  # a 12-bit detector
    Image.fromarray(values).save(tmp_path / "twelve.png")
    decoded = load_image(tmp_path / "twelve.png", 96)
    assert decoded.max() == 255 and decoded.min() == 0


@pytest.mark.real_data
def test_every_format_gives_the_same_probability_and_decision(real_224, small_model, tmp_path, capsys):
    files = _formats(_one_xray(real_224), tmp_path)
    assert predict.main([*map(str, files.values()), "--model", str(small_model), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    p = np.array([r["p_pneumonia"] for r in rows])
    assert np.ptp(p) <= 0.01 and len({r["decision"] for r in rows}) == 1


@pytest.mark.real_data
def test_predict_prints_the_same_decision_for_jpeg_and_16_bit_png(real_224, small_model, tmp_path):
    files = _formats(_one_xray(real_224, "PNEUMONIA"), tmp_path)
    lines = []
    for kind in ("jpeg", "png16"):
        run = subprocess.run(
            [sys.executable, "-m", "pneumonia_cxr.predict", str(files[kind]), "--model", str(small_model)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        assert run.returncode == 0, run.stderr
        lines.append(run.stdout.split(": ", 1)[1])
        # 12. no TensorFlow start-up chatter on the way
        assert "oneDNN" not in run.stderr and "I0000" not in run.stderr and "absl" not in run.stderr, run.stderr
    assert lines[0] == lines[1]


@pytest.mark.real_data
def test_a_16_bit_png_in_a_class_folder_trains_as_its_jpeg_would(real_224, tmp_path):
    root = tmp_path / "data"
    for split in ("train", "test"):
        for label in ("NORMAL", "PNEUMONIA"):
            src = sorted((real_224 / split / label).glob("*.jpeg"))[:3]
            (root / split / label).mkdir(parents=True)
            for f in src:
                (root / split / label / f.name).write_bytes(f.read_bytes())
    jpeg = sorted((root / "train" / "NORMAL").glob("*.jpeg"))[0]
    gray = np.asarray(Image.open(jpeg).convert("L"))
    jpeg.unlink()
    Image.fromarray(gray.astype(np.uint16) * 257).save(jpeg.with_suffix(".png"))
    data = load_dataset(root, 64, tmp_path / "cache", seed=0, val_fraction=0.3)
    row = np.flatnonzero(data.table["relpath"].str.endswith(jpeg.with_suffix(".png").name))[0]
    np.testing.assert_array_equal(
        data.raw_images[row], np.asarray(Image.fromarray(gray).resize((64, 64), Image.BILINEAR))
    )


# 3, 7: too large and too small, by a stated rule
def test_size_rule_refuses_tiny_and_huge_images_naming_them(tmp_path):
    Image.new("L", (1, 1)).save(tmp_path / "dot.png")
    Image.new("L", (10, 10)).save(tmp_path / "icon.png")
    _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # over Pillow's own bomb limit
    _png_header_only(tmp_path / "big.png", 12000, 9000)  # over this project's limit, under Pillow's
    for name, words in (
        ("dot.png", "too small"),
        ("icon.png", "too small"),
        ("bomb.png", "too large"),
        ("big.png", "too large"),
    ):
        with pytest.raises(ImageDecodeError, match=words) as err:
            load_image(tmp_path / name, 64)
        assert name in str(err.value)
    assert MIN_SIDE == 64 and MAX_PIXELS == 100_000_000  # the rule docs/reliability.md states


def test_tiny_and_huge_images_in_a_class_folder_are_counted_skips(demo_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    folder = root / "chest_xray" / "train" / "NORMAL"
    Image.new("L", (1, 1)).save(folder / "IM-9001-0001.png")
    Image.new("L", (10, 10)).save(folder / "IM-9002-0001.png")
    _png_header_only(folder / "IM-9003-0001.png", 15000, 15000)
    manifest = build_manifest(root)
    assert manifest.skipped["image too small"] == 2 and manifest.skipped["image too large"] == 1
    assert {Path(p).name for p, _ in manifest.skipped_files} >= {"IM-9001-0001.png", "IM-9003-0001.png"}
    assert not manifest.table["relpath"].str.contains("IM-900").any()


@pytest.mark.real_data
def test_predict_reports_a_huge_image_and_scores_the_rest(real_224, small_model, tmp_path, capsys):
    bomb = _png_header_only(tmp_path / "bomb.png", 15000, 15000)
    good = _one_xray(real_224)
    assert predict.main([str(bomb), str(good), "--model", str(small_model), "--json"]) == 3
    out = capsys.readouterr()
    assert "bomb.png" in out.err and "too large" in out.err
    assert [r["image"] for r in json.loads(out.out)] == [str(good)]


# 2, 11: a killed re-run is never reported as up to date, and never replaces a notebook half-executed
KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
import papermill as pm
import pneumonia_cxr.provenance as provenance, pneumonia_cxr.runner as runner
root = Path(sys.argv[1])
runner.ROOT = provenance.ROOT = root
def killed(src, dst, **kwargs):
    Path(dst).write_text("half a notebook")  # papermill saves after every cell
    os.kill(os.getpid(), signal.SIGKILL)
pm.execute_notebook = killed
runner.main(["--profile", "smoke", "--only", "03_", "--output-dir", str(root / "reports")])
"""


def test_a_killed_rerun_is_reported_out_of_date_and_leaves_the_notebook_alone(tmp_path):
    import shutil

    from pneumonia_cxr.runner import out_of_date

    (tmp_path / "notebooks").mkdir()
    notebook = tmp_path / "notebooks" / "03_scratch_cnn.ipynb"
    shutil.copy(ROOT / "notebooks" / "03_scratch_cnn.ipynb", notebook)
    before = notebook.read_bytes()
    from pneumonia_cxr.provenance import code_fingerprint

    run_json = tmp_path / "reports" / "metrics" / "run.json"
    entry = {"seconds": 1.0, "git_commit": "abc", "code": code_fingerprint(notebook)}
    write_json(run_json, {"profile": "smoke", "seed": 42, "data_dir": "x", "notebooks": {"03_scratch_cnn": entry}})
    run = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert run.returncode == -9
    assert notebook.read_bytes() == before  # the half-executed copy is beside it, never in its place
    ran = json.loads(run_json.read_text())["notebooks"]
    why = out_of_date(ran, ["notebooks/03_scratch_cnn.ipynb"])
    assert "interrupted" in why["notebooks/03_scratch_cnn.ipynb"]


# 4: a damaged cache is rebuilt; a dead writer's temporary folder is removed
def test_a_truncated_cache_is_decoded_again(demo_root, tmp_path, caplog):
    table = build_manifest(demo_root).table
    first = build_image_cache(table, 32, tmp_path)
    npy = first.folder / "images.npy"
    npy.write_bytes(npy.read_bytes()[: npy.stat().st_size // 2])  # a full disk, a killed copy
    again = build_image_cache(table, 32, tmp_path)
    assert again.built and "damaged" in caplog.text and str(first.folder) in caplog.text
    np.testing.assert_array_equal(again.images, first.images)
    assert not build_image_cache(table, 32, tmp_path).built  # and sound from then on


def test_a_dead_writers_temporary_cache_folder_is_removed(demo_root, tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = tmp_path / f".32px-squash-0123456789abcdef.tmp-{dead.stdout.strip()}-xyz"
    leftover.mkdir()
    (leftover / "images.npy").write_bytes(b"\0" * 1000)
    alive = tmp_path / f".32px-squash-0123456789abcdef.tmp-{os.getpid()}-abc"  # a build still running
    alive.mkdir()
    build_image_cache(build_manifest(demo_root).table, 32, tmp_path)
    assert not leftover.exists() and alive.exists()


# 5: symlink loops
def test_symlink_loops_without_a_layout_end_with_an_error(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "up").symlink_to("..")
    (tmp_path / "self").symlink_to(".")
    with pytest.raises(DatasetError, match="no recognizable dataset layout"):
        find_dataset_root(tmp_path)


# 6: one Grad-CAM file per image
@pytest.mark.real_data
def test_gradcam_files_of_two_images_with_one_name_do_not_overwrite(real_224, small_model, tmp_path, capsys):
    source = _one_xray(real_224)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.jpeg").write_bytes(source.read_bytes())
    images = [str(tmp_path / "a" / "same.jpeg"), str(tmp_path / "b" / "same.jpeg")]
    assert predict.main([*images, "--model", str(small_model), "--json", "--gradcam", str(tmp_path / "cam.png")]) == 0
    cams = [r["gradcam"] for r in json.loads(capsys.readouterr().out)]
    assert len(set(cams)) == 2 and all(Path(c).is_file() for c in cams)


# 8: strict JSON
def test_metrics_json_is_strict(tmp_path):
    path = write_json(tmp_path / "m.json", {"auc": float("nan"), "ci": [np.float32("inf"), 0.5], "n": np.int64(3)})

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    assert json.loads(path.read_text(), parse_constant=refuse) == {"auc": None, "ci": [None, 0.5], "n": 3}


# 9: the model's metadata checked against the model
def test_metadata_that_disagrees_with_the_model_names_the_file(small_model, tmp_path):
    import shutil

    bad = tmp_path / "bad.keras"
    shutil.copy(small_model, bad)
    meta = json.loads(small_model.with_suffix(".json").read_text())
    write_json(bad.with_suffix(".json"), {**meta, "image_size": 224})
    with pytest.raises(ModelFileError, match="bad.json: image_size 224 but the model takes 64x64"):
        load_model(bad)


def test_a_truncated_model_file_says_so(small_model, tmp_path):
    import shutil

    cut = tmp_path / "cut.keras"
    cut.write_bytes(small_model.read_bytes()[:5000])
    shutil.copy(small_model.with_suffix(".json"), cut.with_suffix(".json"))
    with pytest.raises(ModelFileError, match="cut.keras: not a complete .keras archive"):
        load_model(cut)


# 10: the user's umask
def test_files_and_cache_folders_follow_the_umask(demo_root, tmp_path):
    old = os.umask(0o022)
    try:
        cache = build_image_cache(build_manifest(demo_root).table, 32, tmp_path / "cache")
        json_file = write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert (cache.folder.stat().st_mode & 0o777) == 0o755
    assert (json_file.stat().st_mode & 0o777) == 0o644


def test_a_model_with_arbitrary_code_is_refused_in_safe_mode(tmp_path):
    import keras

    inputs = keras.Input((64, 64, 1))
    outputs = keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 2)(inputs))
    )
    path = save_model(
        keras.Model(inputs, outputs),
        tmp_path / "lambda.keras",
        image_size=64,
        resize="squash",
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=0.5,
    )
    with pytest.raises(ModelFileError, match="lambda.keras: cannot load Keras model"):
        load_model(path)


# A FIFO, a device or a folder named like an image is never opened
@pytest.mark.real_data
def test_a_fifo_named_like_an_image_is_refused_not_waited_on(real_224, small_model, tmp_path, capsys):
    import threading

    fifo = tmp_path / "x.jpeg"
    os.mkfifo(fifo)

    def unblock():  # if predict did open it, give it an end of file after a while instead of hanging the tests
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass

    watchdog = threading.Timer(60, unblock)
    watchdog.start()
    try:
        good = _one_xray(real_224)
        assert predict.main([str(fifo), str(good), "--model", str(small_model), "--json"]) == 3
    finally:
        watchdog.cancel()
    out = capsys.readouterr()
    assert f"{fifo}: not a regular file (a FIFO)" in out.err
    assert [r["image"] for r in json.loads(out.out)] == [str(good)]
    with pytest.raises(ImageDecodeError, match="not a regular file \\(a folder\\)"):
        load_image(tmp_path, 64)


# Model metadata: checked against a schema before it is trusted
BAD_METADATA = {
    "threshold NaN": (lambda m: {**m, "threshold": float("nan")}, "threshold: should be a finite number"),
    "threshold 1.5": (lambda m: {**m, "threshold": 1.5}, "threshold: should be less than 1"),
    "threshold 0": (lambda m: {**m, "threshold": 0.0}, "threshold: should be greater than 0"),
    "threshold a string": (lambda m: {**m, "threshold": "0.5"}, "threshold: should be a valid number"),
    "negative slope": (
        lambda m: {**m, "calibration": {**m["calibration"], "a": -9.2}},
        "calibration.a: should be greater than 0",
    ),
    "calibration without b": (
        lambda m: {**m, "calibration": {"method": "platt", "a": 1.3}},
        "calibration.b: missing",
    ),
    "a list, not an object": (lambda m: [m], "the whole file: must be a JSON object, not list"),
    "image_size null": (lambda m: {**m, "image_size": None}, "image_size: should be a valid integer"),
    "image_size negative": (lambda m: {**m, "image_size": -64}, "image_size: should be greater than 0"),
    "unknown resize": (lambda m: {**m, "resize": "crop"}, "resize: should be 'squash' or 'letterbox'"),
    "infinite intercept": (
        lambda m: {**m, "calibration": {**m["calibration"], "b": float("inf")}},
        "calibration.b: should be a finite number",
    ),
}


@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_metadata_outside_its_schema_is_refused_naming_file_and_field(case, small_model, tmp_path, capsys):
    import shutil

    bad = tmp_path / "cnn.keras"
    shutil.copy(small_model, bad)
    change, words = BAD_METADATA[case]
    meta = change(json.loads(small_model.with_suffix(".json").read_text()))
    bad.with_suffix(".json").write_text(json.dumps(meta))  # NaN and Infinity as Python's json writes them
    image = tmp_path / "any.png"  # never read: the model is refused first
    assert predict.main([str(image), "--model", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad.with_suffix('.json')}: invalid model metadata" in err and words in err, err
    assert "Traceback" not in err


def test_predict_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as done:
        predict.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "0 every image scored; 2 a usage error" in text.replace("\n", " ")
    assert "3 an image could" in text.replace("\n", " ") and "4 a Grad-CAM overlay" in text.replace("\n", " ")


# --batch-size and --prevalence: argparse errors, before anything is loaded
@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--batch-size", "0", "must be a positive integer"),
        ("--batch-size", "-1", "must be a positive integer"),
        ("--batch-size", "two", "not an integer"),
        ("--prevalence", "0", "strictly between 0 and 1"),
        ("--prevalence", "1", "strictly between 0 and 1"),
        ("--prevalence", "1.5", "strictly between 0 and 1"),
        ("--prevalence", "nan", "strictly between 0 and 1"),
        ("--prevalence", "half", "not a number"),
    ],
)
def test_bad_option_values_are_argparse_errors(option, value, words, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        predict.main(["x.png", "--model", str(tmp_path / "m.keras"), option, value])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and words in err


# Grad-CAM overlays: checked before scoring, never overwriting, never losing a score
@pytest.mark.real_data
def test_gradcam_never_overwrites_an_existing_file(real_224, small_model, tmp_path, capsys):
    image = str(_one_xray(real_224))
    cam = tmp_path / "cam.png"
    cam.write_bytes(b"another process's overlay")
    written = []
    for _ in range(2):  # as two processes given the same path
        assert predict.main([image, "--model", str(small_model), "--json", "--gradcam", str(cam)]) == 0
        written.append(json.loads(capsys.readouterr().out)[0]["gradcam"])
    assert written == [str(tmp_path / "cam_2.png"), str(tmp_path / "cam_3.png")]
    assert cam.read_bytes() == b"another process's overlay"
    assert all(Image.open(p).size[0] > 100 for p in written)
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary files are gone


def test_two_writers_of_one_name_both_keep_their_file(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda i: predict.write_new_file(bytes([i]) * 10, tmp_path / "cam.png"), range(8)))
    assert len(set(paths)) == 8
    assert sorted(p.read_bytes()[0] for p in paths) == list(range(8))


@pytest.mark.real_data
def test_a_folder_given_to_gradcam_gets_one_file_per_image(real_224, small_model, tmp_path, capsys):
    folder = tmp_path / "gcdir"
    folder.mkdir()
    image = _one_xray(real_224)
    assert predict.main([str(image), "--model", str(small_model), "--json", "--gradcam", str(folder)]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["gradcam"] == str(folder / f"{image.stem}_gradcam.png") and Path(row["gradcam"]).is_file()
    assert not (tmp_path / "gcdir.png").exists()


def test_a_gradcam_path_that_cannot_be_written_is_refused_before_scoring(small_model, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file where a folder should be")
    image = tmp_path / "never_read.png"  # the path is refused before any image is read
    for out, words in (
        (tmp_path / "cam.txt", "not an image file name"),
        (blocker / "cam.png", "cannot write in"),
    ):
        assert predict.main([str(image), "--model", str(small_model), "--gradcam", str(out)]) == 2
        captured = capsys.readouterr()
        assert f"--gradcam {out}: {words}" in captured.err and captured.out == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_gradcam_folder_is_refused_before_scoring(small_model, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert predict.main([str(tmp_path / "x.png"), "--model", str(small_model), "--gradcam", str(folder / "c.png")])
    finally:
        folder.chmod(0o755)
    assert "cannot write in" in capsys.readouterr().err


@pytest.mark.real_data
def test_a_failed_overlay_write_loses_no_score(real_224, small_model, tmp_path, capsys, monkeypatch):
    images = [str(_one_xray(real_224)), str(_one_xray(real_224, "PNEUMONIA"))]

    def disk_full(data, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict, "write_new_file", disk_full)
    assert predict.main([*images, "--model", str(small_model), "--gradcam", str(tmp_path / "cam.png")]) == 4
    out = capsys.readouterr()
    assert [line.split(": p(pneumonia)")[0] for line in out.out.splitlines()] == images  # every score printed
    for image in images:
        assert f"{image}: Grad-CAM overlay not written (OSError: [Errno 28] No space left on device)" in out.err


# A small file that claims a huge 16-bit image: refused from its header, before any pixel is decoded
def _blank_png16(path: Path, width: int, height: int) -> Path:
    """A real, complete 16-bit grayscale PNG of zeros, compressed row by row (never whole in memory)."""
    chunk = lambda kind, data: (  # noqa: E731
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    )
    packer, row = zlib.compressobj(9), b"\0" * (1 + 2 * width)  # filter byte 0, then the row's 16-bit zeros
    pixels = b"".join([packer.compress(row) for _ in range(height)] + [packer.flush()])
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


@pytest.mark.real_data
def test_a_huge_16_bit_png_is_refused_before_decoding(real_224, small_model, tmp_path, capsys):
    from pneumonia_cxr.data.decode import MAX_DECODE_BYTES, check_decode_budget

    png = _blank_png16(tmp_path / "huge16.png", 10_000, 10_000)
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's own warning; the pixel rule lets 10^8 pixels pass
        assert png.stat().st_size < 400_000 and Image.open(png).mode == "I;16"
    words = "huge16.png: image too large to decode (10000x10000 I;16 needs 1,431 MiB; at most 1,024 MiB)"
    with pytest.raises(ImageDecodeError, match=re.escape(words)):
        load_image(png, 64)
    good = _one_xray(real_224)
    assert predict.main([str(png), str(good), "--model", str(small_model), "--json"]) == 3
    out = capsys.readouterr()
    assert "huge16.png: image too large to decode" in out.err
    assert [r["image"] for r in json.loads(out.out)] == [str(good)]
    check_decode_budget(3000, 3000, "I;16", "a DICOM export")  # the release's largest, 16-bit: well inside
    check_decode_budget(10_000, 10_000, "L", "an 8-bit giant")  # the largest the pixel rule allows, gray and RGB
    check_decode_budget(10_000, 10_000, "RGB", "an RGB giant")
    assert MAX_DECODE_BYTES == 2**30  # the budget docs/reliability.md states
