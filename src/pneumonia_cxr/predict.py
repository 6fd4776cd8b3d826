"""Predict and explain new chest X-rays with a saved model:

    python -m pneumonia_cxr.predict IMAGE [IMAGE ...] --model models/ensemble.keras
        [--ternary-model models/ternary.keras] [--json] [--gradcam OUT.png]

The model's metadata (image size, resize mode, thorax scale, validation-chosen threshold) travels beside it, so the
image is preprocessed exactly as in training. The ternary probabilities are the ones the project reports
(`ternary_with_ensemble`, notebook 07): P(normal) is the mean of the ternary model's and 1 − the binary model's
P(pneumonia), and the ternary model splits the rest between bacterial and viral. The Grad-CAM overlay explains the
decision made at the threshold (for an ensemble: the mean of its members' heat maps).
Research code, not a medical device.
Exit codes: 0 ok, 2 bad model, 3 an image could not be read (the others are still reported).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _fail(msg: str, code: int) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--model", required=True, help="binary .keras model saved by the notebooks")
    parser.add_argument("--ternary-model", help="optional normal/bacterial/viral .keras model (combined with --model)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--gradcam", help="write a Grad-CAM overlay PNG (IMAGE name appended when several)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from .data.cache import ImageDecodeError, load_image
    from .data.thorax import normalise_thorax_scale
    from .ternary import with_binary_normal
    from .train import ModelFileError, load_model

    def preprocess(path, meta):
        image = load_image(path, meta["image_size"], meta["resize"])
        if meta.get("thorax_width") is None:  # trained on images as decoded (the ternary model, or one before run 18)
            return image
        return normalise_thorax_scale(image[None], meta["thorax_width"], what=path)[0]

    try:
        model, meta = load_model(args.model)
        ternary = load_model(args.ternary_model) if args.ternary_model else None
    except ModelFileError as exc:
        return _fail(str(exc), 2)
    if meta.get("task") != "binary" or meta.get("threshold") is None:
        return _fail(f"{args.model}: not a binary model with a saved threshold", 2)
    if ternary and (ternary[1].get("task") != "ternary" or len(ternary[1].get("classes") or []) != 3):
        return _fail(f"{args.ternary_model}: not a ternary (normal, bacterial, viral) model", 2)

    results, status = [], 0
    for path in args.images:
        try:
            image = preprocess(path, meta)
        except (ImageDecodeError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 3
            continue
        p = float(model.predict(image[None, ..., None].astype("float32"), verbose=0).ravel()[0])
        row = {"image": path, "p_pneumonia": round(p, 4), "threshold": round(meta["threshold"], 4),
               "decision": "PNEUMONIA" if p >= meta["threshold"] else "NORMAL"}
        if ternary:
            t_model, t_meta = ternary
            t_img = preprocess(path, t_meta)
            probs = with_binary_normal(t_model.predict(t_img[None, ..., None].astype("float32"), verbose=0), [p])[0]
            row["ternary"] = {c: round(float(v), 4) for c, v in zip(t_meta["classes"], probs)}
        if args.gradcam:
            row["gradcam"] = _write_gradcam(model, image, row, args.gradcam, len(args.images) > 1)
        results.append(row)
        if not args.json:
            extra = "  " + " ".join(f"{c}={v:.3f}" for c, v in row.get("ternary", {}).items()) if ternary else ""
            print(f"{path}: p(pneumonia)={p:.3f} threshold={meta['threshold']:.3f} -> {row['decision']}{extra}")
    if args.json:
        print(json.dumps(results, indent=1))
    return status


def _write_gradcam(model, image, row, out: str, several: bool) -> str:
    import matplotlib

    matplotlib.use("Agg")  # a command-line tool writes files, it shows no window
    import matplotlib.pyplot as plt

    from .explain import grad_cam

    cam, _ = grad_cam(model, image, class_index=int(row["decision"] == "PNEUMONIA"))  # the decision at the threshold
    path = Path(out)
    if several:
        path = path.with_name(f"{path.stem}_{Path(row['image']).stem}{path.suffix}")
    fig, ax = plt.subplots(figsize=(5, 5.4))
    ax.imshow(image, cmap="gray")
    ax.imshow(cam, cmap="jet", alpha=0.35)
    title = f"{Path(row['image']).name}\np(pneumonia)={row['p_pneumonia']:.3f} -> {row['decision']}"
    if "ternary" in row:
        title += "\n" + " ".join(f"{c} {v:.2f}" for c, v in row["ternary"].items())
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
