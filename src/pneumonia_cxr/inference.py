"""A trained model's outputs for many images: the one prediction loop of the notebooks, `predict` and the review app.

Invariant: the images go through the model in their order, in batches of `batch_size` (the last one smaller), in
inference mode, so the outputs are exactly what `model.predict` gives for the same batches. Each model is traced
once, for any batch size, and no `tf.data` pipeline sits in between: on two cores tf.data's autotuned prefetching
competes with the model for the cores, and between one `model.predict` call in five and four in five took 1.5 times
as long (`docs/design_evidence.md`, "Speed on two cores").
"""

from __future__ import annotations

import weakref

import numpy as np

_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forward(model):
    """The model's inference call as one graph for any batch size, kept while the model lives."""
    fn = _FORWARD.get(model)
    if fn is None:
        import tensorflow as tf

        shape = [None, *model.input_shape[1:]]
        live = weakref.ref(model)  # the graph must not keep its model (the cache's key) alive
        fn = tf.function(
            lambda x: live()(tf.cast(x, tf.float32), training=False),
            input_signature=[tf.TensorSpec(shape, tf.float32)],
        )
        _FORWARD[model] = fn
    return fn


def predict_batches(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The model's outputs for `images`, one row per image.

    Args:
        model: a Keras model with one image input.
        images: (N, H, W) or (N, H, W, C) pixel values in [0, 255], any numeric dtype (uint8 from the cache).
        batch_size: images per model call.

    Returns:
        (N, outputs) float32 array, in the order of `images`.
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if len(images) == 0:
        return np.zeros((0, *model.output_shape[1:]), dtype="float32")
    fn = _forward(model)
    out = [np.asarray(fn(images[i : i + batch_size].astype("float32"))) for i in range(0, len(images), batch_size)]
    return np.concatenate(out)
