"""Training on several devices: MirroredStrategy when more than one is visible, nothing changed otherwise; and the
`gpu` profile's settings build its backbone."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pneumonia_cxr.config import PROFILES, settings

ROOT = Path(__file__).resolve().parents[1]


def test_one_device_or_none_keeps_the_default_strategy():
    import tensorflow as tf

    from pneumonia_cxr.distribute import choose_strategy

    assert choose_strategy([]) is tf.distribute.get_strategy()
    assert choose_strategy(["/cpu:0"]) is tf.distribute.get_strategy()
    assert not tf.distribute.has_strategy()


@pytest.mark.slow
def test_two_devices_train_one_model_mirrored():
    """Two logical CPU devices stand in for two GPUs (a fresh process: devices are fixed once TF starts)."""
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from pneumonia_cxr.distribute import use_available_devices
        from pneumonia_cxr.models import build_scratch_cnn
        from pneumonia_cxr.train import compile_model
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = use_available_devices(devices)
        assert strategy.num_replicas_in_sync == 2, strategy
        assert use_available_devices(devices) is strategy  # a second call keeps it
        keras.utils.set_random_seed(0)
        model = compile_model(build_scratch_cnn(32, (4, 8)), 1e-3)
        assert all(type(v.value).__name__.startswith("Mirrored") for v in model.trainable_variables), \\
            [type(v.value).__name__ for v in model.trainable_variables[:2]]
        x = np.random.default_rng(0).uniform(0, 255, (64, 32, 32, 1)).astype("float32")
        y = (np.arange(64) % 2).astype("float32")
        history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        p = model.predict(x, verbose=0)
        assert p.shape == (64, 1) and np.isfinite(p).all()
        print("replicas", strategy.num_replicas_in_sync)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "training on 2 devices" in done.stdout and "replicas 2" in done.stdout


def test_every_profile_sets_every_setting_the_notebooks_read():
    """smoke and full are written out one by one and gpu overrides full: a setting one of them lacks would be a
    KeyError only on the machine that uses that profile, a misspelt override a value silently never used."""
    keys = {name: set(profile) for name, profile in PROFILES.items()}
    for name, have in keys.items():
        assert have == keys["smoke"], f"{name}: lacks {keys['smoke'] - have}, has unknown {have - keys['smoke']}"
    sources = [ROOT / "final_notebook.ipynb", *sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))]
    read = {
        key
        for nb in sources
        for cell in json.loads(nb.read_text())["cells"]
        if cell["cell_type"] == "code"
        for key in re.findall(r"(?:\bcfg|settings\(profile\))\[\"(\w+)\"\]", "".join(cell["source"]))
    }
    assert len(read) > 10, "the notebooks read their settings as cfg[...]: the pattern above must still find them"
    assert read - {"image_size"} <= keys["smoke"], "image_size is set per model by `notebook.setup`"


def test_gpu_profile_has_a_larger_backbone_and_the_whole_training_set_every_epoch():
    gpu, full = settings("gpu"), settings("full")
    assert gpu["transfer_size"] > full["transfer_size"] and gpu["max_batches_per_epoch"] is None
    assert gpu["backbone"] != full["backbone"]


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_each_profile_backbone_builds(profile):
    from pneumonia_cxr.models import build_transfer_model

    cfg = settings(profile)
    model = build_transfer_model(64, cfg["backbone"], None, cfg["alpha"])  # weights=None: no download here
    assert model.output_shape == (None, 1)


def test_precision_is_one_keras_knows():
    import keras

    from pneumonia_cxr.distribute import use_precision

    assert use_precision("float32") == "float32" == keras.mixed_precision.global_policy().name
    with pytest.raises(ValueError, match="precision"):
        use_precision("float16")


@pytest.fixture
def bfloat16_policy():
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_a_bfloat16_model_gives_float32_probabilities_and_reloads_the_same(bfloat16_policy, tmp_path):
    """Under bfloat16 compute the equalisation and the head stay float32 (grey levels and probabilities keep their
    resolution), and the saved model reloads in safe mode with the same policies and predictions."""
    import numpy as np

    from pneumonia_cxr.models import build_scratch_cnn
    from pneumonia_cxr.train import load_model, save_model

    model = build_scratch_cnn(32, (4, 8), equalize="clahe")
    policies = {layer.name: layer.dtype_policy.name for layer in model.layers}
    first, standardise, last = model.layers[0], model.layers[1], model.layers[-1]
    assert type(first).__name__ == "ContrastLimitedEqualization" and last.name.startswith("pneumonia_probability")
    assert {first.dtype_policy.name, standardise.dtype_policy.name, last.dtype_policy.name} == {"float32"}
    assert any(p == "mixed_bfloat16" for p in policies.values())
    x = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 1)).astype("float32")
    p = model.predict(x, verbose=0)
    assert p.dtype == np.float32 and len(np.unique(p)) > 1
    path = save_model(
        model, tmp_path / "m.keras", image_size=32, resize="squash", task="binary", classes=["NORMAL", "PNEUMONIA"]
    )
    reloaded, _ = load_model(path)
    assert {layer.name: layer.dtype_policy.name for layer in reloaded.layers} == policies
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), p, atol=1e-6)
