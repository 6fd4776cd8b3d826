"""The first code cell every notebook shares: settings, output folders, seeds, cached data."""

from __future__ import annotations

import logging
import os
import warnings

from IPython.display import Markdown, display

from .config import output_dirs, settings
from .data import load_dataset
from .distribute import use_available_devices, use_precision
from .train import seed_everything

BANNER = (
    "**SYNTHETIC DEMO DATA.** These images are procedural drawings, not X-rays: every number "
    "and figure below only shows that the pipeline runs. Put the real dataset in `data/chest_xray`."
)


def setup(profile: str, data_dir, cache_dir, output_dir, seed: int, size_key: str, image_size=None, **overrides):
    """Return (cfg, dirs, data) for a notebook; shows a loud banner on synthetic data."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # our tf.data pipelines shuffle themselves; Keras warns about its own shuffle flag on every fit
    warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed", category=UserWarning)
    cfg = settings(profile, seed=seed, **{size_key: image_size}, **overrides)
    cfg["image_size"] = cfg[size_key]
    dirs = output_dirs(output_dir)
    seed_everything(seed)
    use_available_devices()  # several GPUs: MirroredStrategy; else nothing changes
    cfg["precision_policy"] = use_precision(cfg["precision"])  # before any model is built
    data = load_dataset(
        data_dir,
        cfg["image_size"],
        cache_dir,
        seed=seed,
        per_subtype=cfg["per_subtype"],
        thorax_width=cfg["thorax_width"],
    )
    if data.synthetic:
        display(Markdown(f"<div style='color:red;font-size:150%'>{BANNER}</div>"))
    counts = data.table.groupby("split_assigned").size().to_dict()
    magnified = int((data.images != data.raw_images).any(axis=(1, 2)).sum())
    print(
        f"profile={profile} image_size={cfg['image_size']} seed={seed} images={counts} "
        f"cache={data.cache_folder.name} (loaded in {data.cache_seconds:.1f} s) "
        f"thorax_width={cfg['thorax_width']} ({magnified} images magnified) compute={cfg['precision_policy']}"
    )
    return cfg, dirs, data
