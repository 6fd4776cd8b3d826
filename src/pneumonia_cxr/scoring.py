"""Score new X-ray files with saved models: the one path from a file to a decision, for `predict` and the review app.

Invariant: an image is decoded by `data.decode` and preprocessed as the model's metadata says (size, resize mode,
thorax scale), every model sees all the images in batches, and the reported P(pneumonia) is calibrated with the
threshold on the same scale (the decision is the one made at the validation-chosen threshold). A file that cannot be
scored is an error line naming it; the others are scored all the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .calibration import calibrate
from .data.decode import ImageDecodeError, load_image
from .data.thorax import normalise_thorax_scale
from .inference import predict_batches
from .ternary import with_binary_normal
from .train import ModelFileError, load_model


class ScorerError(ValueError):
    """A model that cannot be used for scoring; the message names the file."""


class Scorer:
    """A binary model (and optionally the ternary one) loaded in safe mode with their metadata.

    Args:
        model_path: the binary `.keras` model (its `.json` beside it, with a threshold).
        ternary_path: the normal / bacterial / viral model, combined with the binary one as notebook 07 does.

    Raises:
        ScorerError: a model missing, not loadable in safe mode, or not of the expected kind.
    """

    def __init__(self, model_path: str | Path, ternary_path: str | Path | None = None):
        try:
            self.model, self.meta = load_model(model_path)
            self.ternary = load_model(ternary_path) if ternary_path else None
        except ModelFileError as exc:
            raise ScorerError(str(exc)) from exc
        self.model_path = str(model_path)
        if self.meta.get("task") != "binary" or self.meta.get("threshold") is None:
            raise ScorerError(f"{model_path}: not a binary model with a saved threshold")
        ternary_meta = self.ternary[1] if self.ternary else {}
        if self.ternary and (ternary_meta.get("task") != "ternary" or len(ternary_meta.get("classes") or []) != 3):
            raise ScorerError(f"{ternary_path}: not a ternary (normal, bacterial, viral) model")
        calibration = self.meta.get("calibration")
        self.threshold = float(calibrate([self.meta["threshold"]], calibration)[0]) if calibration else None

    @staticmethod
    def preprocess(path, meta: dict, decoded: np.ndarray | None = None) -> np.ndarray:
        """One file as the model with metadata `meta` was trained to see it (`decoded`: the file already decoded at
        that size and resize mode, so a second model does not decode it again)."""
        image = load_image(path, meta["image_size"], meta["resize"]) if decoded is None else decoded
        if meta.get("thorax_width") is None:  # trained on images as decoded (the ternary model)
            return image
        return normalise_thorax_scale(image[None], meta["thorax_width"], what=str(path))[0]

    def _predict(self, model, images: list[np.ndarray], batch_size: int) -> np.ndarray:
        return predict_batches(model, np.stack(images), batch_size)

    def score_files(self, paths: list[str], batch_size: int = 64) -> tuple[list[dict], list[tuple[str, str]]]:
        """Score every file that can be decoded, one batched call per model.

        Returns:
            (rows, errors): a row per scored file (image, p_pneumonia calibrated, p_raw, threshold on the calibrated
            scale, decision, ternary probabilities), and (path, message) for each file refused.
        """
        kept, images, decoded, errors = [], [], [], []
        for path in paths:
            try:
                plain = load_image(path, self.meta["image_size"], self.meta["resize"])
                images.append(self.preprocess(path, self.meta, plain))
                decoded.append(plain)
                kept.append(str(path))
            except (ImageDecodeError, OSError, ValueError) as exc:
                errors.append((str(path), str(exc) if str(path) in str(exc) else f"{path}: {exc}"))
        if not kept:
            return [], errors
        raw = self._predict(self.model, images, batch_size).ravel()
        calibration = self.meta.get("calibration")
        shown = calibrate(raw, calibration) if calibration else raw
        threshold = self.threshold if calibration else self.meta["threshold"]
        rows = [
            {
                "image": path,
                "p_pneumonia": round(float(p), 4),
                "p_raw": round(float(r), 4),
                "threshold": round(float(threshold), 4),
                "decision": "PNEUMONIA" if r >= self.meta["threshold"] else "NORMAL",
            }
            for path, p, r in zip(kept, shown, raw)
        ]
        if self.ternary:
            t_model, t_meta = self.ternary
            same = (t_meta["image_size"], t_meta["resize"]) == (self.meta["image_size"], self.meta["resize"])
            t_images = [self.preprocess(p, t_meta, d if same else None) for p, d in zip(kept, decoded)]
            probs = with_binary_normal(self._predict(t_model, t_images, batch_size), raw)
            for row, pr in zip(rows, probs):
                row["ternary"] = {c: round(float(v), 4) for c, v in zip(t_meta["classes"], pr)}
        return rows, errors

    def explain(self, path, pneumonia: bool) -> tuple[np.ndarray, np.ndarray]:
        """(image as the model sees it, Grad-CAM heat map of the decision `pneumonia`) for one file."""
        from .explain import grad_cam

        image = self.preprocess(path, self.meta)
        cam, _ = grad_cam(self.model, image, class_index=int(pneumonia))
        return image, cam
