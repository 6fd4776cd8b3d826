"""Same X-ray, two decodings: does a trained model decide the same?

The 376 full-resolution originals of ../shared/data/chest_xray_fullres_sample, decoded and resized by this project,
against the same images in the third party's 224 px release (JPEG quality 75). A model that reads compression or
resampling texture changes its decision between the two. The originals are a subset of the 224 px training folder, so
this measures consistency only, never accuracy.

    python benchmarks/decode_consistency.py   # reads models/*.keras, writes reports/metrics/decode_consistency.csv
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pneumonia_cxr.data.cache import load_image  # noqa: E402
from pneumonia_cxr.predictions import predict_binary  # noqa: E402
from pneumonia_cxr.train import load_model, write_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models-dir", default=ROOT / "models", type=Path)
    ap.add_argument("--originals", default=SHARED / "chest_xray_fullres_sample", type=Path)
    ap.add_argument("--release", default=SHARED / "chest_xray_224", type=Path)
    ap.add_argument("--out", default=ROOT / "reports" / "metrics" / "decode_consistency.csv", type=Path)
    ap.add_argument("--models", nargs="+", default=["scratch_cnn", "tuned_cnn", "transfer", "ensemble"])
    args = ap.parse_args(argv)
    pairs = [(p, args.release / p.relative_to(args.originals)) for p in sorted(args.originals.glob("*/*/*.jpeg"))]
    pairs = [(a, b) for a, b in pairs if b.exists()]
    if not pairs:
        raise SystemExit(f"no image of {args.originals} has a counterpart under {args.release}")
    decoded = {}  # image size -> (originals, 224 px release), decoded once for every model of that size
    rows = []
    for name in args.models:
        model, meta = load_model(args.models_dir / f"{name}.keras")
        size, threshold = meta["image_size"], meta["threshold"]
        if size not in decoded:
            decoded[size] = tuple(np.stack([load_image(p[i], size) for p in pairs])[..., None] for i in (0, 1))
        p_orig, p_224 = (predict_binary(model, x) for x in decoded[size])
        rows.append(
            {
                "model": name,
                "image_size": size,
                "images": len(pairs),
                "mean_abs_probability_change": np.abs(p_orig - p_224).mean(),
                "decisions_changed": np.mean((p_orig >= threshold) != (p_224 >= threshold)),
                "pneumonia_calls_originals": np.mean(p_orig >= threshold),
                "pneumonia_calls_224px": np.mean(p_224 >= threshold),
            }
        )
    table = pd.DataFrame(rows)
    write_csv(args.out, table)
    print(table.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
