"""Dataset discovery on the real data, on every supported layout, and on bad input."""

import pytest
from PIL import Image

from pneumonia_cxr.data import DatasetError, build_manifest, find_dataset_root, parse_patient
from pneumonia_cxr.data.discover import parse_series_number, series_numbers


@pytest.mark.real_data
def test_real_224_counts_match_the_data_readme(real_224):
    m = build_manifest(real_224)
    t = m.table
    assert (t["split"] == "train").sum() == 5216
    assert (t["split"] == "val").sum() == 16
    train = t[t["split"] == "train"]["subtype"].value_counts().to_dict()
    assert train == {"normal": 1341, "bacteria": 2530, "virus": 1345}
    test = t[t["split"] == "test"]["subtype"].value_counts().to_dict()
    assert test == {"normal": 234, "bacteria": 242, "virus": 148}  # the official test split, as the README counts it
    assert m.has_test and not m.skipped
    assert not t["patient"].str.startswith("file:").any(), "a patient id was not parsed"
    assert set(t["mode"]) == {"RGB"} and set(t["width"]) == {224}


@pytest.mark.real_data
def test_real_fullres_sample(real_fullres):
    t = build_manifest(real_fullres).table
    assert len(t) == 376
    assert t[t["split"] == "train"]["subtype"].value_counts().to_dict() == {
        "normal": 120,
        "bacteria": 120,
        "virus": 120,
    }
    assert t["width"].max() > 1000 and {"L", "RGB"} <= set(t["mode"])


@pytest.mark.parametrize(
    "name,patient",
    [
        ("person1164_virus_1952.jpeg", "person1164"),
        ("person1481_bacteria_3866.jpeg", "person1481"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("BACTERIA-1008087-0001.jpeg", "PATIENT-1008087"),  # Mendeley v3 names
        ("VIRUS-1008087-0002.jpeg", "PATIENT-1008087"),
        ("NORMAL-1003233-0001.jpeg", "PATIENT-1003233"),
        ("scan.png", None),
    ],
)
def test_parse_patient(name, patient):
    assert parse_patient(name) == patient


@pytest.mark.parametrize(
    "name,series,number",
    [
        ("IM-0115-0001.jpeg", "IM", 115),
        ("NORMAL2-IM-0383-0002.jpeg", "NORMAL2-IM", 383),
        ("person1_bacteria_1.jpeg", "bacteria", 1),
        ("person1164_virus_1952.jpeg", "virus", 1952),
        ("NORMAL-1003233-0001.jpeg", None, None),
        ("scan.png", None, None),
    ],
)
def test_parse_series_number(name, series, number):
    assert parse_series_number(name) == (series, number)


@pytest.mark.real_data
def test_official_test_normals_are_an_early_block_of_numbers(real_224):
    """The official test's NORMALs are numbered below every NORMAL of train and val, in both series: the test split is
    a block of early numbers, not a random draw (which is why validation, a random draw, can look unlike it)."""
    t = build_manifest(real_224).table
    normal = t[t["label"] == "NORMAL"]
    numbers = series_numbers(normal["relpath"]).assign(test=(normal["split"] == "test").to_numpy())
    assert numbers["series"].notna().all()
    by = numbers.groupby(["series", "test"])["number"].agg(["min", "max"])
    assert by.loc[("IM", False), "min"] == 115 and by.loc[("NORMAL2-IM", False), "min"] == 383
    for series in ("IM", "NORMAL2-IM"):
        assert by.loc[(series, True), "max"] < by.loc[(series, False), "min"]


def _img(path, mode="L", size=(80, 64), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, 128).save(path, format=fmt)


def _tiny(root, splits=("train", "test"), normal="NORMAL", pneu="PNEUMONIA"):
    for s in splits:
        _img(root / s / normal / "IM-0001-0001.jpeg")
        _img(root / s / pneu / "person1_bacteria_1.jpg")
        _img(root / s / pneu / "person2_virus_2.png", fmt="PNG")
    return root


def test_kaggle_zip_layout_uses_outer_copy_and_ignores_macosx(tmp_path):
    _tiny(tmp_path / "chest_xray")
    _tiny(tmp_path / "chest_xray" / "chest_xray")  # the zip's nested duplicate
    _tiny(tmp_path / "__MACOSX" / "chest_xray")
    assert find_dataset_root(tmp_path) == tmp_path / "chest_xray"
    m = build_manifest(tmp_path)
    assert len(m.table) == 6 and m.has_test
    assert set(m.table["subtype"]) == {"normal", "bacteria", "virus"}


def test_mendeley_layout_and_lowercase_class_folders(tmp_path):
    _tiny(tmp_path / "CellData" / "chest_xray", normal="normal", pneu="pneumonia")
    m = build_manifest(tmp_path)
    assert m.root == tmp_path / "CellData" / "chest_xray"
    assert set(m.table["label"]) == {"NORMAL", "PNEUMONIA"}


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        build_manifest(tmp_path / "nowhere")


def test_no_recognizable_layout(tmp_path):
    _img(tmp_path / "images" / "a.jpeg")
    with pytest.raises(DatasetError, match="no recognizable dataset layout"):
        build_manifest(tmp_path)


def test_empty_class_folder_names_the_folder(tmp_path):
    _tiny(tmp_path)
    for f in (tmp_path / "test" / "NORMAL").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match=r"test/NORMAL: class folder holds no"):
        build_manifest(tmp_path)


def test_junk_and_corrupt_files_are_counted_skips(tmp_path):
    _tiny(tmp_path)
    (tmp_path / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "train" / "NORMAL" / "IM-0009-0001.jpeg").write_bytes(b"not a jpeg at all")
    m = build_manifest(tmp_path)
    assert m.skipped == {"not an image file": 1, "unreadable image": 1}
    assert any("IM-0009-0001.jpeg" in p for p, _ in m.skipped_files)
    assert len(m.table) == 6


def test_raw_folder_is_never_written(tmp_path, demo_root):
    from pneumonia_cxr.data import load_dataset

    before = sorted((p, p.stat().st_mtime_ns) for p in demo_root.rglob("*"))
    load_dataset(demo_root, 32, tmp_path / "cache", seed=1)
    assert sorted((p, p.stat().st_mtime_ns) for p in demo_root.rglob("*")) == before


def test_mendeley_v3_names_give_patients_and_subtypes(tmp_path):
    for split in ("train", "test"):
        _img(tmp_path / "CellData" / "chest_xray" / split / "NORMAL" / "NORMAL-1003233-0001.jpeg")
        _img(tmp_path / "CellData" / "chest_xray" / split / "PNEUMONIA" / "BACTERIA-1008087-0001.jpeg")
        _img(tmp_path / "CellData" / "chest_xray" / split / "PNEUMONIA" / "VIRUS-1012345-0001.jpeg")
    t = build_manifest(tmp_path).table
    assert set(t["patient"]) == {"PATIENT-1003233", "PATIENT-1008087", "PATIENT-1012345"}
    assert sorted(t["subtype"]) == sorted(["normal", "bacteria", "virus"] * 2)


def test_names_without_patient_ids_stop_the_run_instead_of_splitting_by_image(tmp_path):
    _tiny(tmp_path)
    for k in range(3):
        _img(tmp_path / "train" / "PNEUMONIA" / f"scan{k}.jpeg")
    with pytest.raises(DatasetError, match=r"3 of 9 images have no patient id.*train/PNEUMONIA/scan0.jpeg"):
        build_manifest(tmp_path)
