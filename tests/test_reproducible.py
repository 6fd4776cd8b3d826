"""Same seed and data, same model: training with augmentation and shuffling is deterministic."""

import numpy as np

from pneumonia_cxr.data import class_weights, make_dataset
from pneumonia_cxr.models import build_scratch_cnn
from pneumonia_cxr.train import compile_model, fit, kept_epoch, seed_everything


def train_once(seed: int, x, y) -> np.ndarray:
    seed_everything(seed)
    model = compile_model(build_scratch_cnn(32, (4, 8)), 1e-2)
    history = fit(
        model,
        make_dataset(x, y, 8, training=True, seed=seed, augment=1.0),
        make_dataset(x, y, 16),
        3,
        class_weights(y),
        patience=3,
    )
    # the kept epoch is the first with the best validation AUC, and the model ends with its weights
    assert history["kept"].sum() == 1 and kept_epoch(history) == history["val_auc"].to_numpy().argmax() + 1
    final_auc = model.evaluate(make_dataset(x, y, 16), verbose=0, return_dict=True)["auc"]
    assert abs(final_auc - history["val_auc"].max()) < 1e-6
    return model.predict(make_dataset(x, None, 16), verbose=0).ravel()


def test_same_seed_same_predictions_other_seed_differs():
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 16)
    x = (rng.integers(0, 120, (32, 32, 32)) + 100 * y[:, None, None]).astype(np.uint8)  # learnable
    a, b, c = train_once(1, x, y), train_once(1, x, y), train_once(2, x, y)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_kept_epoch_of_two_phases_is_the_second_phases():
    import pandas as pd

    h1 = pd.DataFrame({"epoch": [0, 1, 2], "kept": [False, True, False]})
    h2 = pd.DataFrame({"epoch": [0, 1], "kept": [True, False]})
    history = pd.concat([h1, h2.assign(epoch=h2["epoch"] + len(h1))], ignore_index=True)  # as notebooks 04 and 05
    assert kept_epoch(h1) == 2 and kept_epoch(history) == 4
