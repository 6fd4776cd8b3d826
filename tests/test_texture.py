"""texture_energy: zero for flat images, higher for grain than for its blurred copy."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from pneumonia_cxr.data.texture import texture_energy


def test_texture_energy_is_zero_when_flat_and_falls_with_blur():
    rng = np.random.default_rng(0)
    grain = rng.integers(0, 256, (32, 32)).astype(np.uint8)
    blurred = np.asarray(Image.fromarray(grain).filter(ImageFilter.GaussianBlur(1.5)))
    ramp = np.tile(np.arange(32, dtype=np.uint8) * 4, (32, 1))  # a linear ramp: no curvature
    e = texture_energy(np.stack([np.full((32, 32), 90, np.uint8), ramp, grain, blurred]))
    assert e[0] == 0 and e[1] == 0
    assert e[2] > 5 * e[3] > 0
    np.testing.assert_allclose(texture_energy(np.stack([grain, blurred])[..., None], batch=1), e[2:])


def test_texture_energy_rejects_other_shapes():
    with pytest.raises(ValueError, match="shape"):
        texture_energy(np.zeros((4, 4)))


def test_normal_originals_are_larger_than_pneumonia_originals(real_fullres):
    """What notebook 01 says of the full-resolution sample: NORMAL originals are larger (median about 1654 x 1392 px
    against about 1200 x 800 for pneumonia), so squashed to a square they keep finer texture."""
    from pneumonia_cxr.data import build_manifest

    median = build_manifest(real_fullres).table.groupby("label")[["width", "height"]].median()
    assert 1550 < median.loc["NORMAL", "width"] < 1750 and 1300 < median.loc["NORMAL", "height"] < 1500
    assert 1100 < median.loc["PNEUMONIA", "width"] < 1300 and 700 < median.loc["PNEUMONIA", "height"] < 900
