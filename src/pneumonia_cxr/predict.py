"""Predict and explain new chest X-rays with a saved model:

    python -m pneumonia_cxr.predict IMAGE [IMAGE ...] --model models/ensemble.keras
        [--ternary-model models/ternary.keras] [--prevalence P | --local local.json] [--json]
        [--gradcam OUT.png | --gradcam FOLDER/]

The model's metadata (image size, resize mode, thorax scale, validation-chosen threshold, calibration) travels beside
it and is checked before it is used, so the image is preprocessed exactly as in training. P(pneumonia) is reported
calibrated (Platt scaling fitted on validation), with the threshold on the same scale; the decision is the one made at
the validation-chosen threshold. --prevalence P moves the calibrated probability (and the threshold shown with it) to
an expected share P of pneumonia, so the probability reads as a chance at that prevalence; the decision, and with it
sensitivity and specificity, stay at the validated operating point. With a ternary model, P(normal) is 1 -
P(pneumonia) and P(pneumonia) is split between bacterial and viral as the ternary model splits it; the label shown
beside the decision agrees with it (normal for a NORMAL call, else the likelier subtype). The Grad-CAM overlay
explains the decision (for an ensemble: the mean of its members' heat maps); an overlay never replaces an existing
file (a counter is added), and a folder given to --gradcam gets one IMAGE_gradcam.png per image.
--local local.json (written by `pneumonia-cxr review calibrate` from a site's reviewed cases) reports the locally
calibrated P(pneumonia) and decides at the local threshold; the shipped model and its metadata are unchanged, and
without --local nothing local is used. The file is checked first (its schema, and that it was fitted for this model).
Only regular files are read. Before any call, each image is checked to look like a frontal chest X-ray
(`pneumonia_cxr.ood`, fitted on the training images, saved beside the model as ood.npz): one that does not is refused
with "not a frontal chest X-ray (score ...)" and gets no pneumonia call. Research code, not a medical device.

Exit codes: 0 every image scored; 2 a usage error (a bad option value, a --gradcam path that cannot be written, --local
with --prevalence), a model that cannot be used, metadata or a local calibration outside its schema (the message names
the file and the field); 3 an image could not be read or was refused, a non-X-ray included (the others are still
reported); 4 a Grad-CAM overlay could not be written (every score is still printed). With both 3 and 4, 3.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import secrets
import sys
import tempfile
from pathlib import Path

OVERLAY_SUFFIXES = (".png", ".jpg", ".jpeg")


def _fail(msg: str, code: int) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def share(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and 0 < value < 1):
        raise argparse.ArgumentTypeError(f"must be strictly between 0 and 1, not {text}")
    return value


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+")
    parser.add_argument("--model", required=True, help="binary .keras model saved by the notebooks")
    parser.add_argument("--ternary-model", help="optional normal/bacterial/viral .keras model (splits P(pneumonia))")
    parser.add_argument("--prevalence", type=share, help="expected share of pneumonia where used, in (0, 1)")
    parser.add_argument(
        "--local", help="a site's local calibration (pneumonia-cxr review calibrate): local P(pneumonia) and threshold"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--gradcam",
        help="write Grad-CAM overlays: a .png/.jpg file name (IMAGE name appended when several) or a folder",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="images per model call (at least 1)")
    parser.add_argument(
        "--no-ood-check",
        action="store_true",
        help="score every image, without first checking that it looks like a frontal chest X-ray (models/ood.npz)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.gradcam:
        try:
            target = overlay_target(args.gradcam)
        except ValueError as exc:
            return _fail(str(exc), 2)
    if args.local and args.prevalence is not None:
        return _fail("--local and --prevalence: a local calibration is fitted at the site's own share; give one", 2)
    local = None
    if args.local:
        from .local_calibration import LocalCalibrationError, read_local

        try:
            local = read_local(args.local)
        except LocalCalibrationError as exc:
            return _fail(str(exc), 2)

    with _native_stderr_silenced():
        from .scoring import Scorer, ScorerError, ood_check_beside

        try:
            ood = None if args.no_ood_check else ood_check_beside(args.model)
            scorer = Scorer(args.model, args.ternary_model, prevalence=args.prevalence, ood=ood, local=local)
        except ScorerError as exc:
            scorer, failure = None, str(exc)
    if scorer is None:
        return _fail(failure, 2)
    if local is not None:
        print(
            f"note: P(pneumonia) and the decision use the local calibration {args.local} (threshold "
            f"{scorer.threshold:.3f} on its scale), not the shipped one",
            file=sys.stderr,
        )
    if ood is None and not args.no_ood_check:
        print(
            f"warning: no out-of-distribution check beside {args.model} (ood.npz; `make all` makes it): every image "
            "gets a pneumonia call, whatever it shows",
            file=sys.stderr,
        )

    results, errors = scorer.score_files(args.images, args.batch_size)
    for _, why in errors:
        print(f"error: {why}", file=sys.stderr)
    unwritten = []
    if args.gradcam:
        for row in results:
            try:  # an overlay is extra: whatever goes wrong with it, the scores are printed
                row["gradcam"] = str(_write_gradcam(scorer, row, target, len(args.images) > 1))
            except Exception as exc:  # matplotlib, the file system and Grad-CAM raise many types
                row["gradcam"] = None
                unwritten.append(f"{row['image']}: Grad-CAM overlay not written ({type(exc).__name__}: {exc})")
    _print_rows(results, args.json)
    for why in unwritten:
        print(f"error: {why}", file=sys.stderr)
    return 3 if errors else 4 if unwritten else 0


def _print_rows(rows: list[dict], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        extra = ""
        if "ternary" in row:
            extra = f" ({row['ternary_label']})  " + " ".join(f"{c}={v:.3f}" for c, v in row["ternary"].items())
        if row.get("gradcam"):
            extra += f"  gradcam={row['gradcam']}"
        print(
            f"{row['image']}: p(pneumonia)={row['p_pneumonia']:.3f} threshold={row['threshold']:.3f} "
            f"-> {row['decision']}{extra}"
        )


def overlay_target(out: str) -> tuple[Path, bool]:
    """Where Grad-CAM overlays go, checked before any image is scored: (path, is_folder).

    An existing folder (or a path ending in a separator) takes one file per image; otherwise the path must end in
    .png, .jpg or .jpeg. Its folder is created if missing and must take a new file (probed with a temporary one).

    Raises:
        ValueError: naming the path and what is wrong with it.
    """
    path = Path(out)
    is_folder = path.is_dir() or out.endswith(("/", os.sep))
    if not is_folder and path.suffix.lower() not in OVERLAY_SUFFIXES:
        raise ValueError(f"--gradcam {out}: not an image file name (end it in {', '.join(OVERLAY_SUFFIXES)}) or folder")
    folder = path if is_folder else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"--gradcam {out}: cannot write in {folder} ({exc.strerror or exc})") from None
    return path, is_folder


def write_new_file(data: bytes, path: Path) -> Path:
    """`data` written at `path`, or at `stem_2`, `stem_3`... beside it where that name is taken: never over an
    existing file, whoever wrote it (another process too). Atomic: written to a temporary file, then hard-linked to a
    name only if the name is free (`os.link` fails on an existing name), so no reader sees half a file; where the
    file system has no hard links, the name is created exclusively (`open(..., "xb")`) instead."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "xb") as f:  # the user's umask, as every file the project writes
        f.write(data)
    try:
        n = 1
        while True:
            candidate = path if n == 1 else path.with_name(f"{path.stem}_{n}{path.suffix}")
            try:
                try:
                    os.link(tmp, candidate)
                except FileExistsError:
                    raise
                except OSError:  # no hard links here (some mounted file systems)
                    with open(candidate, "xb") as f:
                        f.write(data)
                return candidate
            except FileExistsError:
                n += 1
    finally:
        tmp.unlink()


def _write_gradcam(scorer, row: dict, target: tuple[Path, bool], several: bool) -> Path:
    """The Grad-CAM overlay of one image's decision, written as a new file (`write_new_file`); with several images
    or a folder, named after its image."""
    import matplotlib

    matplotlib.use("Agg")  # a command-line tool writes files, it shows no window
    import matplotlib.pyplot as plt

    image, cam = scorer.explain(row["image"], row["decision"] == "PNEUMONIA")
    path, is_folder = target
    stem = Path(row["image"]).stem
    if is_folder:
        path = path / f"{stem}_gradcam.png"
    elif several:
        path = path.with_name(f"{path.stem}_{stem}{path.suffix}")
    fig, ax = plt.subplots(figsize=(5, 5.4))
    ax.imshow(image, cmap="gray")
    ax.imshow(cam, cmap="jet", alpha=0.35)
    title = f"{Path(row['image']).name}\np(pneumonia)={row['p_pneumonia']:.3f} -> {row['decision']}"
    if "ternary" in row:
        title += f" ({row['ternary_label']})\n" + " ".join(f"{c} {v:.2f}" for c, v in row["ternary"].items())
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format=path.suffix.lower().lstrip(".").replace("jpg", "jpeg"), dpi=100)
    finally:
        plt.close(fig)
    return write_new_file(buffer.getvalue(), path)


if __name__ == "__main__":
    sys.exit(main())
