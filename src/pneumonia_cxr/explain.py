"""Grad-CAM: where in the X-ray the model's decision comes from."""

from __future__ import annotations

import numpy as np


def last_conv_index(model) -> int:
    """Index in model.layers of the last layer with a 4-D (spatial) output."""
    for i in range(len(model.layers) - 1, -1, -1):
        if len(model.layers[i].output.shape) == 4:
            return i
    raise ValueError(f"{model.name}: no layer with a spatial output, Grad-CAM needs a CNN")


def ensemble_members(model) -> list:
    """(resizing layer or None, member) for each member of a `models.build_ensemble` model, which averages its
    members' probabilities; [] for any other model."""
    import keras

    if not isinstance(model.layers[-1], keras.layers.Average):
        return []
    names = {layer.name for layer in model.layers}
    return [
        (model.get_layer(f"to_{layer.name}") if f"to_{layer.name}" in names else None, layer)
        for layer in model.layers
        if isinstance(layer, keras.Model)
    ]


def grad_cam(model, image: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Heat map in [0, 1] at the image's size, and the model's output for the image.

    `class_index` None explains the predicted class (for a sigmoid model: pneumonia if p >= 0.5). An ensemble
    (`models.build_ensemble`) gets the mean of its members' heat maps, each member explaining the same class on
    the input as the ensemble resizes it for that member.
    """
    import tensorflow as tf

    x = tf.convert_to_tensor(image.reshape(1, *image.shape[:2], 1), tf.float32)
    if members := ensemble_members(model):
        out = model(x, training=False).numpy()[0]
        if class_index is None:
            class_index = int(out[0] >= 0.5) if out.shape[-1] == 1 else int(np.argmax(out))
        cams = []
        for resize, member in members:
            member_input = x if resize is None else resize(x)
            cam, _ = grad_cam(member, member_input.numpy()[0, ..., 0], class_index)
            cams.append(tf.image.resize(cam[..., None], image.shape[:2], method="bilinear")[..., 0].numpy())
        cam = np.mean(cams, axis=0)
        return cam / (cam.max() + 1e-8), out

    target = last_conv_index(model)
    with tf.GradientTape() as tape:
        h = x
        for i, layer in enumerate(model.layers):  # models are plain chains: walk them layer by layer
            h = layer(h, training=False)
            if i == target:
                conv = h
                tape.watch(conv)
        out = h[0]
        if out.shape[-1] == 1:
            p = out[0]
            score = p if (class_index == 1 or (class_index is None and float(p) >= 0.5)) else 1 - p
        else:
            score = out[int(tf.argmax(out)) if class_index is None else class_index]
    grads = tape.gradient(score, conv)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(conv * weights, axis=-1))[0]
    cam = cam / (tf.reduce_max(cam) + 1e-8)
    cam = tf.image.resize(cam[..., None], image.shape[:2], method="bilinear")[..., 0]
    return cam.numpy(), out.numpy()


CASES = (
    ("pneumonia, found", 1, True),
    ("normal, cleared", 0, False),
    ("MISSED pneumonia", 1, False),
    ("FALSE ALARM", 0, True),
)


def pick_cases(y_true, called, per_kind: int) -> list[tuple[int, str]]:
    """The first `per_kind` test images of each kind of decision (right and wrong, each class), as (index, kind):
    what the Grad-CAM figure shows. A kind the run has no image of is left out."""
    y_true, called = np.asarray(y_true), np.asarray(called, dtype=bool)
    return [
        (int(i), kind)
        for kind, truth, call in CASES
        for i in np.flatnonzero((y_true == truth) & (called == call))[:per_kind]
    ]
