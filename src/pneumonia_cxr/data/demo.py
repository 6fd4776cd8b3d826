"""A SYNTHETIC demo dataset: procedural chest-X-ray-like images in the Kaggle layout.

It exists only so the whole pipeline runs on a fresh machine without the real download. Nothing
learned or measured on it says anything about real X-rays; every notebook shows a SYNTHETIC banner,
and a run on it writes under build/demo/, never over the committed analysis (`runner.resolve_folders`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .dataset import SYNTHETIC_MARKER

# images per (split, subtype); patients get 1-3 images each
DEFAULT_COUNTS = {"train": 120, "val": 4, "test": 30}
# the one command that gets the real data in place of this (README: Get the data), where a demo run ends
REAL_DATA_COMMAND = "kaggle datasets download -d paultimothymooney/chest-xray-pneumonia -p data/ --unzip"


def synthetic_xray(rng: np.random.Generator, subtype: str, width: int, height: int) -> Image.Image:
    """Bright body, two dark lung fields, a spine; pneumonia adds opacities (lobar or diffuse)."""
    img = Image.new("L", (width, height), int(rng.integers(10, 40)))
    draw = ImageDraw.Draw(img)
    w, h = width, height
    draw.ellipse([0.08 * w, 0.05 * h, 0.92 * w, 1.1 * h], fill=int(rng.integers(150, 190)))
    lung = int(rng.integers(45, 80))
    for x0 in (0.16, 0.54):
        jitter = rng.uniform(-0.02, 0.02, 4)
        draw.ellipse(
            [(x0 + jitter[0]) * w, (0.15 + jitter[1]) * h, (x0 + 0.30 + jitter[2]) * w, (0.85 + jitter[3]) * h],
            fill=lung,
        )
    draw.rectangle([0.47 * w, 0.0, 0.53 * w, h], fill=200)  # spine
    draw.ellipse([0.42 * w, 0.45 * h, 0.66 * w, 0.8 * h], fill=170)  # heart
    if subtype == "bacteria":  # lobar consolidation: one dense patch
        cx, cy = rng.uniform(0.22, 0.78) * w, rng.uniform(0.4, 0.75) * h
        r = rng.uniform(0.07, 0.13) * w
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=int(rng.integers(140, 180)))
    elif subtype == "virus":  # diffuse interstitial pattern: many faint blobs
        for _ in range(40):
            cx, cy = rng.uniform(0.18, 0.82) * w, rng.uniform(0.2, 0.8) * h
            r = rng.uniform(0.01, 0.03) * w
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=int(rng.integers(100, 140)))
    img = img.filter(ImageFilter.GaussianBlur(radius=max(w, h) / 150))
    noise = rng.normal(0, 8, (h, w))
    return Image.fromarray(np.clip(np.asarray(img, np.float32) + noise, 0, 255).astype(np.uint8))


def make_demo_dataset(root: str | Path, seed: int = 0, counts: dict[str, int] | None = None) -> Path:
    """Write a SYNTHETIC dataset at root/chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}; return root."""
    root = Path(root)
    counts = counts or DEFAULT_COUNTS
    rng = np.random.default_rng(seed)
    person, normal_patient, image_no = 1, 1, 1
    for split, n in counts.items():
        for subtype in ("normal", "bacteria", "virus"):
            folder = root / "chest_xray" / split / ("NORMAL" if subtype == "normal" else "PNEUMONIA")
            folder.mkdir(parents=True, exist_ok=True)
            made = 0
            while made < n:
                per_patient = int(rng.integers(1, 4))
                for k in range(min(per_patient, n - made)):
                    w = int(rng.integers(300, 520))
                    h = int(w * rng.uniform(0.7, 1.0))
                    img = synthetic_xray(rng, subtype, w, h)
                    if subtype == "normal":
                        name = f"IM-{normal_patient:04d}-{k + 1:04d}.jpeg"
                    else:
                        name = f"person{person}_{subtype}_{image_no}.jpeg"
                    img.save(folder / name, quality=90)
                    made, image_no = made + 1, image_no + 1
                person, normal_patient = person + 1, normal_patient + 1
    (root / SYNTHETIC_MARKER).write_text(
        "SYNTHETIC demo data made by pneumonia_cxr.data.demo: procedural images, not X-rays.\n"
    )
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the SYNTHETIC demo dataset (Kaggle layout).")
    parser.add_argument("root", help="output folder, e.g. data/demo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = make_demo_dataset(args.root, args.seed)
    print(f"SYNTHETIC demo dataset written to {root}/chest_xray")


if __name__ == "__main__":
    main()
