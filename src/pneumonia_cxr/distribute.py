"""Where and how models train: this process's one device or every visible GPU (`tf.distribute.MirroredStrategy`),
in float32 or with bfloat16 compute.

Invariant: `use_available_devices` runs once per notebook before any model is built (`notebook.setup` calls it). With
more than one GPU visible it makes a MirroredStrategy the default for the whole process, so every model built after
it is replicated on each GPU and each batch is split between them (the profile's `batch_size` is the global batch);
with one GPU or none it changes nothing, so a CPU run is the same run as without this module.

Precision: the profile's `precision`. "mixed_bfloat16" computes the convolutions in bfloat16 (weights, the equalisation
layers, the standardisation and the probability head stay float32): for GPUs from NVIDIA Ampere on. The CPU profiles
keep float32: on the 2-core AMD EPYC host, even with AVX512-BF16, a bfloat16 fine-tuning step took twice as long
(`benchmarks/training_step_speed.py`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16")


def use_precision(precision: str = "float32") -> str:
    """Set Keras' global dtype policy ("float32" or "mixed_bfloat16") for the models built after this call.

    Returns:
        The policy's name.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    keras.mixed_precision.set_global_policy(precision)
    return precision


def choose_strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """MirroredStrategy over `devices` (default: the visible GPUs) when there are two or more, else the default one.

    Args:
        devices: device names such as "/gpu:0"; tests pass several CPU devices.

    Returns:
        The strategy to train under.
    """
    if devices is None:
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def use_available_devices(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """Make `choose_strategy(devices)` the process's default strategy (Keras builds and fits under it).

    Returns:
        The strategy in use; its `num_replicas_in_sync` says over how many devices each batch is split.
    """
    if tf.distribute.has_strategy():  # already chosen in this process
        return tf.distribute.get_strategy()
    strategy = choose_strategy(devices)
    if strategy.num_replicas_in_sync > 1:
        tf.distribute.experimental_set_strategy(strategy)
        print(f"training on {strategy.num_replicas_in_sync} devices: {', '.join(strategy.extended.worker_devices)}")
    return strategy
