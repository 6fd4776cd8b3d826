"""Print what a dataset folder holds: counts per split, class and subtype, patients, leakage.

python -m pneumonia_cxr.data.summary ../shared/data/chest_xray_224
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .dataset import load_dataset, summarize
from .discover import DatasetError


def format_summary(s: dict) -> str:
    lines = []
    if s["synthetic"]:
        lines.append("*** SYNTHETIC DEMO DATA: procedural images, not real X-rays ***")
    lines.append(f"dataset root: {s['root']}")
    lines.append(f"images: {s['images']}   patients: {s['patients']}")
    lines.append("official split folders (images per subtype):")
    for split, row in s["official_split_counts"].items():
        lines.append(f"  {split:<6} " + "  ".join(f"{k}={v}" for k, v in row.items()))
    lines.append("assigned splits, by patient (images per subtype; patients):")
    for split in ("train", "val", "test"):
        row = s["assigned_split_counts"].get(split, {})
        lines.append(
            f"  {split:<6} "
            + "  ".join(f"{k}={v}" for k, v in row.items())
            + f"  total={sum(row.values())}  patients={s['patients_per_split'].get(split, 0)}"
        )
    lines.append(f"images with an exact duplicate (kept within one split): {s['duplicate_images']}")
    lines.append(f"patients in more than one split: {s['cross_split_patients']}")
    skipped = s["skipped"] or {"nothing": 0}
    lines.append("skipped: " + ", ".join(f"{k}: {v}" for k, v in skipped.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        data = load_dataset(args.data_dir, args.image_size, args.cache_dir, seed=args.seed)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    s = summarize(data)
    print(json.dumps(s, indent=1) if args.json else format_summary(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
