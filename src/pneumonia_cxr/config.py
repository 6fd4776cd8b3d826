"""Run profiles as data, in one place: `smoke` (minutes, a small real subset) and `full`."""

from __future__ import annotations

from pathlib import Path

PROFILES = {
    "smoke": {
        "per_subtype": 40,  # images per subtype (whole patients), official test kept separate
        "baseline_size": 48,
        "cnn_size": 64,
        "transfer_size": 96,
        "tuner_size": 48,
        "cnn_equalize": "clahe",  # the scratch and tuned CNNs' first layer (models.EQUALIZERS)
        "thorax_width": 0.42,  # small thoraxes magnified to span this much of the width (data/thorax.py); None: off
        "epochs": 1,
        "ablation_epochs": 1,
        "transfer_epochs": 1,
        "fine_tune_epochs": 1,
        "fine_tune_layers": 20,
        "batch_size": 32,
        "max_batches_per_epoch": None,
        "patience": 1,
        "tuner_max_trials": 2,
        "tuner_base_filters": (8, 16, 32),  # the search's choices of the first block's width
        "tuner_epochs": 1,
        "n_boot": 100,
        "gradcam_cases": 2,
        "target_sensitivity": 0.95,
        "backbone": "MobileNetV2",  # notebooks 04 and 05 (keras.applications by name, models.BACKBONES)
        "alpha": 0.5,  # MobileNetV2's width: 0.35 and 0.5 have offline weights in ../shared/weights
        "precision": "float32",  # "mixed_bfloat16" was twice as slow on a CPU with AVX512-BF16 (distribute.py)
    },
    "full": {
        "per_subtype": None,
        "baseline_size": 64,
        "cnn_size": 128,
        "transfer_size": 224,
        "tuner_size": 96,
        "cnn_equalize": "clahe",  # local (CLAHE) rather than one global histogram: notebook 03 has the check
        "thorax_width": 0.42,  # small thoraxes magnified to span this much of the width: notebook 03 has the check
        "epochs": 10,
        "ablation_epochs": 4,  # notebook 03: the CNN again without the class aspect offset
        "transfer_epochs": 3,
        "fine_tune_epochs": 8,  # at most: early stopping on validation AUC picks the epoch
        "fine_tune_layers": 40,
        "batch_size": 32,
        # Steps per training epoch at most: the carved layouts' training sets (3,775-3,869 images) fit in 121
        # batches, so this changes nothing there; the official layout's ~4,434 draw a fresh 3,872 each epoch
        # instead of 17% longer epochs (the 45-minute budget, measured with make official-layout).
        "max_batches_per_epoch": 121,
        "patience": 3,
        "tuner_max_trials": 5,
        "tuner_base_filters": (
            8,
            16,
        ),  # 32 cost 681 s (seed 7, an earlier full run) for +0.004 val AUC: the 45-min budget
        "tuner_epochs": 3,
        "n_boot": 1000,
        "gradcam_cases": 4,
        "target_sensitivity": 0.95,
        "backbone": "MobileNetV2",
        "alpha": 0.5,
        "precision": "float32",
    },
}

# For a machine with GPUs and the internet (docs/scaling.md): larger inputs, a larger backbone, the whole training
# set every epoch, a longer search. Never run here (no GPU): its settings are tested, its numbers are not published.
PROFILES["gpu"] = {
    **PROFILES["full"],
    "cnn_size": 224,
    "transfer_size": 384,
    "tuner_size": 160,
    "epochs": 20,
    "transfer_epochs": 3,
    "fine_tune_epochs": 20,
    "fine_tune_layers": 120,
    "batch_size": 64,  # the global batch: MirroredStrategy splits it between the GPUs
    "max_batches_per_epoch": None,
    "patience": 4,
    "tuner_max_trials": 20,
    "tuner_base_filters": (16, 32, 64),
    "tuner_epochs": 5,
    "n_boot": 2000,
    "backbone": "DenseNet121",  # CheXNet's backbone; weights="imagenet" downloads it
    "alpha": None,
    "precision": "mixed_bfloat16",  # GPUs from NVIDIA Ampere on; "float32" on older ones
}

# The Keras weight file names keras.applications looks for (offline copies may sit in a folder).
KERAS_WEIGHT_FILES = {
    ("MobileNetV2", 0.35): "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
    ("MobileNetV2", 0.5): "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_224_no_top.h5",
}


def settings(profile: str, **overrides) -> dict:
    """The profile's settings with any non-None override applied."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    out = dict(PROFILES[profile], profile=profile)
    out.update({k: v for k, v in overrides.items() if v is not None})
    return out


def resolve_weights(weights: str | None, backbone: str, alpha: float | None, weights_dir: str | None):
    """'imagenet' becomes a local Keras weight file when `weights_dir` holds one (offline use)."""
    if weights == "imagenet" and weights_dir:
        local = Path(weights_dir) / KERAS_WEIGHT_FILES.get((backbone, alpha), "-")
        if local.is_file():
            return str(local)
    return weights


def output_dirs(output_dir: str | Path) -> dict[str, Path]:
    """reports/{metrics,figures,predictions} under `output_dir`, and img/ beside it, created."""
    root = Path(output_dir)
    dirs = {name: root / name for name in ("metrics", "figures", "predictions")}
    dirs["img"] = root.parent / "img"
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    return dirs
