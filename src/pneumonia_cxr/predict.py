"""Predict and explain new chest X-rays with a saved model:

    python -m pneumonia_cxr.predict IMAGE [IMAGE ...] --model models/ensemble.keras
        [--ternary-model models/ternary.keras] [--json] [--gradcam OUT.png]

The model's metadata (image size, resize mode, thorax scale, validation-chosen threshold, calibration) travels beside
it, so the image is preprocessed exactly as in training. P(pneumonia) is reported calibrated (Platt scaling fitted on
validation), with the threshold on the same scale. All images go through each model in batches. The ternary
probabilities are the ones the project reports
(`ternary_with_ensemble`, notebook 07): P(normal) is the mean of the ternary model's and 1 − the binary model's
P(pneumonia), and the ternary model splits the rest between bacterial and viral. The Grad-CAM overlay explains the
decision made at the threshold (for an ensemble: the mean of its members' heat maps).
Research code, not a medical device.
Exit codes: 0 ok, 2 bad model, 3 an image could not be read or was refused (the others are still reported).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path


def _fail(msg: str, code: int) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


@contextlib.contextmanager
def _native_stderr_silenced():
    """TensorFlow's C++ start-up lines (absl, oneDNN, CUDA stubs) ignore TF_CPP_MIN_LOG_LEVEL; a command-line tool
    hides them while TensorFlow loads. Python errors are raised as usual and printed after."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--model", required=True, help="binary .keras model saved by the notebooks")
    parser.add_argument("--ternary-model", help="optional normal/bacterial/viral .keras model (combined with --model)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--gradcam", help="write a Grad-CAM overlay PNG (IMAGE name appended when several)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    with _native_stderr_silenced():
        from .scoring import Scorer, ScorerError

        try:
            scorer = Scorer(args.model, args.ternary_model)
        except ScorerError as exc:
            scorer, failure = None, str(exc)
    if scorer is None:
        return _fail(failure, 2)

    results, errors = scorer.score_files(args.images, args.batch_size)
    for _, why in errors:
        print(f"error: {why}", file=sys.stderr)
    names = set()
    for row in results:
        if args.gradcam:
            row["gradcam"] = _write_gradcam(scorer, row, args.gradcam, len(args.images) > 1, names)
        if not args.json:
            extra = "  " + " ".join(f"{c}={v:.3f}" for c, v in row["ternary"].items()) if "ternary" in row else ""
            print(
                f"{row['image']}: p(pneumonia)={row['p_pneumonia']:.3f} threshold={row['threshold']:.3f} "
                f"-> {row['decision']}{extra}"
            )
    if args.json:
        print(json.dumps(results, indent=1))
    return 3 if errors else 0


def _write_gradcam(scorer, row: dict, out: str, several: bool, taken: set) -> str:
    """The Grad-CAM overlay of one image's decision; with several images, each file named after its image, made
    unique (a counter) when two images share a name."""
    import matplotlib

    matplotlib.use("Agg")  # a command-line tool writes files, it shows no window
    import matplotlib.pyplot as plt

    image, cam = scorer.explain(row["image"], row["decision"] == "PNEUMONIA")
    path = Path(out)
    if several:
        path = path.with_name(f"{path.stem}_{Path(row['image']).stem}{path.suffix}")
    stem, n = path.stem, 1
    while str(path) in taken:
        n += 1
        path = path.with_name(f"{stem}_{n}{path.suffix}")
    taken.add(str(path))
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
