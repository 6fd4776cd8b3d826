"""Patient-level splits, duplicates, and the decode cache."""

import numpy as np
import pytest

from pneumonia_cxr.data import LeakageError, assert_no_leakage, build_manifest, load_dataset, load_image
from pneumonia_cxr.data.cache import build_image_cache


@pytest.fixture(scope="module")
def real_data(real_224, tmp_path_factory):
    return load_dataset(real_224, 32, tmp_path_factory.mktemp("cache"), seed=42)


@pytest.mark.real_data
def test_real_splits_by_patient(real_data):
    t = real_data.table
    dropped = real_data.skipped["patient also in official test (dropped from train pool)"]
    assert len(t) == 5856 - dropped and set(t["split_assigned"]) == {"train", "val", "test"}
    # pool images whose id (personN is shared by a bacterial and a viral series) is also in test: dropped, counted
    assert 0 < dropped < 0.1 * 5232
    test = t[t["split_assigned"] == "test"]
    assert len(test) == 624 and (test["split"] == "test").all(), "the official test split, whole and untouched"
    assert (t.groupby("patient")["split_assigned"].nunique() == 1).all()
    dups = t[t["pixel_hash"].duplicated(keep=False)]
    assert len(dups) >= 30, "the data README names 30 duplicated images"
    assert (dups.groupby("pixel_hash")["split_assigned"].nunique() == 1).all()
    pool = t[t["split_assigned"] != "test"]
    assert 0.12 < (pool["split_assigned"] == "val").mean() < 0.18  # 15% of the pool, by patient
    for split in ("train", "val"):  # stratified: the pool's subtype mix in both
        mix = t[t["split_assigned"] == split]["subtype"].value_counts(normalize=True)
        assert abs(mix["normal"] - 0.257) < 0.04


@pytest.mark.real_data
def test_split_is_seeded(real_data, real_224, tmp_path):
    again = load_dataset(real_224, 32, tmp_path, seed=42)
    assert (again.table["split_assigned"] == real_data.table["split_assigned"]).all()
    other = load_dataset(real_224, 32, tmp_path, seed=7)
    assert (other.table["split_assigned"] != real_data.table["split_assigned"]).any()


def test_official_test_split_is_used_when_present(demo_root, tmp_path):
    d = load_dataset(demo_root, 32, tmp_path, seed=0)
    t = d.table
    assert (t.loc[t["split"] == "test", "split_assigned"] == "test").all()
    assert (t.loc[t["split"] != "test", "split_assigned"] != "test").all()
    assert d.synthetic


def test_leakage_is_detected():
    import pandas as pd

    t = pd.DataFrame({"patient": ["a", "a"], "group": ["a", "a"], "split_assigned": ["train", "test"]})
    with pytest.raises(LeakageError):
        assert_no_leakage(t)


@pytest.mark.real_data
def test_cache_round_trip_on_original_resolution(real_fullres, tmp_path):
    m = build_manifest(real_fullres)
    table = m.table.iloc[::40]
    first = build_image_cache(table, 96, tmp_path)
    second = build_image_cache(table, 96, tmp_path)
    assert first.built and not second.built
    assert first.images.shape == (len(table), 96, 96) and first.images.dtype == np.uint8
    np.testing.assert_array_equal(first.images, second.images)
    for i in (0, len(table) - 1):
        np.testing.assert_array_equal(second.images[i], load_image(table["path"].iloc[i], 96))
    assert build_image_cache(table, 64, tmp_path).folder != first.folder  # size is part of the key


def test_changed_files_get_a_new_cache_that_replaces_the_old_one(tmp_path, demo_root):
    import os
    import shutil

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    table = build_manifest(root).table
    first = build_image_cache(table, 32, tmp_path / "cache")
    subset = build_image_cache(table.iloc[::2], 32, tmp_path / "cache")  # other files: a cache of its own
    other_size = build_image_cache(table, 24, tmp_path / "cache")
    touched = table["path"].iloc[0]
    os.utime(touched, ns=(0, 0))  # as a copy or a re-mount changes modification times
    second = build_image_cache(table, 32, tmp_path / "cache")
    assert second.built and second.folder != first.folder
    assert not first.folder.exists()  # superseded: same files, size and resize mode
    assert subset.folder.exists() and other_size.folder.exists()
    np.testing.assert_array_equal(first.images, second.images)


def test_truncated_image_is_a_counted_skip(tmp_path, demo_root):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(demo_root, root)
    victim = next((root / "chest_xray" / "train" / "PNEUMONIA").glob("*.jpeg"))
    victim.write_bytes(victim.read_bytes()[:600])  # header intact, pixels cut off
    d = load_dataset(root, 32, tmp_path / "cache", seed=0)
    assert d.skipped["cannot decode image"] == 1
    assert victim.name not in set(d.table["relpath"].str.split("/").str[-1])


def test_interrupted_cache_build_leaves_nothing(tmp_path, demo_root, monkeypatch):
    table = build_manifest(demo_root).table

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("pneumonia_cxr.data.cache.np.save", boom)
    with pytest.raises(KeyboardInterrupt):
        build_image_cache(table, 32, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_letterbox_keeps_aspect(tmp_path):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.new("L", (200, 100), 255).save(path)
    box = load_image(path, 64, "letterbox")
    assert box[0].max() == 0 and box[32].min() == 255  # padded top, image in the middle
    assert load_image(path, 64, "squash").min() == 255
