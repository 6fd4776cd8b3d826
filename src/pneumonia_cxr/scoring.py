"""Score new X-ray files with saved models: the one path from a file to a decision, for `predict` and the review app.

Invariant: a model is used only once its metadata passed `model_metadata.read_metadata`; an image is decoded by
`data.decode` and preprocessed as the model's metadata says (size, resize mode, thorax scale), and every model sees all
the images in batches. One probability story: the reported P(pneumonia) is calibrated (and, given a prevalence, moved
to it), the threshold shown is on the same scale, the decision is the one made at the validation-chosen threshold
(a prevalence moves the probability and the threshold together, never the decision), and the ternary panel's P(normal)
is 1 - that P(pneumonia) with a label that agrees with the decision. A file that cannot be scored is an error line
naming it; the others are scored all the same. Only with a site's local calibration (`local_calibration.py`, given
explicitly) are the probability and the decision the local ones, and each row says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .calibration import at_prevalence, calibrate
from .data.decode import ImageDecodeError, load_image
from .data.thorax import normalise_thorax_scale
from .inference import predict_batches
from .model_metadata import MetadataError, read_metadata
from .ternary import ternary_labels, with_calibrated_normal
from .train import ModelFileError, load_model

OOD_IMAGE_SIZE = 224  # px: the side an out-of-distribution check gets its images at, unless it has `image_size`


class ScorerError(ValueError):
    """A model that cannot be used for scoring; the message names the file."""


def ood_check_beside(model_path: str | Path):
    """The out-of-distribution check saved in the model's folder by `python -m pneumonia_cxr.ood fit` (`make all`
    runs it), or None where that folder has none.

    Raises:
        ScorerError: a check that is there but damaged or inconsistent (the message names the file).
    """
    from .ood import MODEL_FILE, OodCheck, OodFileError

    folder = Path(model_path).parent
    if not (folder / MODEL_FILE).exists():
        return None
    try:
        return OodCheck.load(folder)
    except OodFileError as exc:
        raise ScorerError(str(exc)) from exc


class Scorer:
    """A binary model (and optionally the ternary one) loaded in safe mode with their validated metadata.

    Args:
        model_path: the binary `.keras` model (its `.json` beside it, with a threshold).
        ternary_path: the normal / bacterial / viral model; it splits the binary P(pneumonia) into subtypes.
        prevalence: the expected share of pneumonia where the model is used, in (0, 1); the calibrated probability is
            moved to it (`calibration.at_prevalence`). Needs a calibration that records the share it was fitted on.
        ood: an optional out-of-distribution check with `.scores(images) -> (N,) float` and `.threshold`, given the
            decoded images ((N, S, S) uint8, squashed to S = its `image_size` attribute, else `OOD_IMAGE_SIZE`). Each
            row then gets `ood_score`; an image scored above the check's threshold is refused before any model sees
            it ("not a frontal chest X-ray (score ...)", in the errors), so it gets no pneumonia call.
        local: a site's local calibration (`local_calibration.read_local`), fitted for this model: P(pneumonia) is
            then the locally calibrated one and the decision is made at the local threshold; each row says so
            (`local_calibration`, and `p_shipped`: the shipped calibrated probability). Not with a prevalence (a local
            calibration is fitted at the site's own share of pneumonia).

    Raises:
        ScorerError: a model missing, not loadable in safe mode, of another kind, metadata outside its schema, a
            prevalence the model cannot take, or a local calibration fitted for another model.
    """

    def __init__(
        self,
        model_path: str | Path,
        ternary_path: str | Path | None = None,
        *,
        prevalence: float | None = None,
        ood=None,
        local: dict | None = None,
    ):
        try:
            self.meta = read_metadata(model_path, "binary")
            t_meta = read_metadata(ternary_path, "ternary") if ternary_path else None
            self.model, _ = load_model(model_path)
            self.ternary = (load_model(ternary_path)[0], t_meta) if ternary_path else None
        except (MetadataError, ModelFileError) as exc:
            raise ScorerError(str(exc)) from exc
        self.model_path = str(model_path)
        self.calibration = self.meta.get("calibration")
        self.prevalence = self._checked_prevalence(prevalence, model_path)
        self.local = self._checked_local(local, model_path)
        self.ood = ood
        if self.local is None:
            self.threshold = float(self.shown([self.meta["threshold"]])[0])  # on the scale of the probability shown
        else:
            self.threshold = float(self.local["threshold"])

    def _checked_local(self, local, model_path) -> dict | None:
        from .local_calibration import LocalCalibrationError, check_fits_model

        if local is None:
            return None
        if self.prevalence is not None:
            raise ScorerError(
                f"{local.get('file', 'local calibration')}: a local calibration is fitted at the site's own share of "
                "pneumonia; give it or a prevalence, not both"
            )
        try:
            check_fits_model(local, model_path, self.meta)
        except LocalCalibrationError as exc:
            raise ScorerError(str(exc)) from exc
        return local

    @property
    def local_tag(self) -> str | None:
        """The local calibration's file name, as the review store records it (None: the shipped calibration)."""
        return None if self.local is None else Path(self.local.get("file", "local.json")).name

    def _checked_prevalence(self, prevalence, model_path) -> float | None:
        if prevalence is None:
            return None
        if not (isinstance(prevalence, int | float) and 0 < prevalence < 1):
            raise ScorerError(f"prevalence must be a number in (0, 1), not {prevalence!r}")
        if not (self.calibration and self.calibration.get("prevalence")):
            raise ScorerError(
                f"{Path(model_path).with_suffix('.json')}: calibration.prevalence missing (the share of pneumonia "
                "calibration was fitted on), which a prevalence needs; save the model again with this version"
            )
        return float(prevalence)

    def calibrated(self, raw) -> np.ndarray:
        """Raw P(pneumonia) -> calibrated (unchanged for a model saved without calibration)."""
        return calibrate(raw, self.calibration) if self.calibration else np.asarray(raw, np.float64).reshape(-1)

    def shown(self, raw) -> np.ndarray:
        """Raw P(pneumonia) -> the probability reported: calibrated, and moved to `prevalence` when one is given, or
        calibrated locally with a local calibration."""
        from .local_calibration import apply_local

        p = self.calibrated(raw)
        if self.local is not None:
            return apply_local(p, self.local)
        return p if self.prevalence is None else at_prevalence(p, self.prevalence, self.calibration["prevalence"])

    def called(self, raw) -> np.ndarray:
        """True where the decision is PNEUMONIA: at the validation-chosen threshold, or the local one."""
        from .local_calibration import local_decision

        if self.local is not None:
            return local_decision(self.calibrated(raw), self.local)
        return np.asarray(raw, np.float64).reshape(-1) >= self.meta["threshold"]

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

    def _decode(self, paths) -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[tuple[str, str]]]:
        """(kept paths, preprocessed images, decoded images, (path, message) of each refused file)."""
        kept, images, decoded, errors = [], [], [], []
        for path in paths:
            try:
                plain = load_image(path, self.meta["image_size"], self.meta["resize"])
                images.append(self.preprocess(path, self.meta, plain))
                decoded.append(plain)
                kept.append(str(path))
            except (ImageDecodeError, OSError, ValueError) as exc:
                errors.append((str(path), str(exc) if str(path) in str(exc) else f"{path}: {exc}"))
        return kept, images, decoded, errors

    def score_files(self, paths: list[str], batch_size: int = 64) -> tuple[list[dict], list[tuple[str, str]]]:
        """Score every file that can be decoded, one batched call per model.

        Returns:
            (rows, errors): a row per scored file, and (path, message) for each file refused. A row: image,
            p_pneumonia (calibrated; at `prevalence` when given), p_raw, threshold (on p_pneumonia's scale), decision
            (at the validation-chosen threshold); with a prevalence also prevalence and p_calibrated (before the
            move); with a ternary model ternary ({class: probability}, `with_calibrated_normal`) and ternary_label
            (`ternary_labels`: agrees with the decision); with an OOD check ood_score and out_of_distribution.
        """
        kept, images, decoded, errors = self._decode(paths)
        ood_scores = self._ood_scores(kept, decoded) if self.ood is not None and kept else None
        if ood_scores is not None:
            taken = ood_scores <= self.ood.threshold
            errors += [
                (
                    p,
                    f"{p}: not a frontal chest X-ray (score {s:.2f}, above {self.ood.threshold:.2f}); no call",
                )
                for p, s, ok in zip(kept, ood_scores, taken)
                if not ok
            ]
            kept, images, decoded = ([x for x, ok in zip(xs, taken) if ok] for xs in (kept, images, decoded))
            ood_scores = ood_scores[taken]
        if not kept:
            return [], errors
        raw = self._predict(self.model, images, batch_size).ravel()
        calibrated, shown = self.calibrated(raw), self.shown(raw)
        pneumonia = self.called(raw)  # the validation-chosen operating point (or the local one), whatever is shown
        rows = []
        for path, p, c, r, call in zip(kept, shown, calibrated, raw, pneumonia):
            row = {
                "image": path,
                "p_pneumonia": round(float(p), 4),
                "p_raw": round(float(r), 4),
                "threshold": round(self.threshold, 4),
                "decision": "PNEUMONIA" if call else "NORMAL",
            }
            if self.prevalence is not None:
                row.update(prevalence=self.prevalence, p_calibrated=round(float(c), 4))
            if self.local is not None:
                row.update(local_calibration=self.local_tag, p_shipped=round(float(c), 4))
            rows.append(row)
        if self.ternary:
            self._add_ternary(rows, kept, decoded, shown, pneumonia, batch_size)
        if ood_scores is not None:
            for row, score in zip(rows, ood_scores):
                row["ood_score"] = round(float(score), 4)
        return rows, errors

    def _add_ternary(self, rows, kept, decoded, shown, pneumonia, batch_size) -> None:
        t_model, t_meta = self.ternary
        same = (t_meta["image_size"], t_meta["resize"]) == (self.meta["image_size"], self.meta["resize"])
        t_images = [self.preprocess(p, t_meta, d if same else None) for p, d in zip(kept, decoded)]
        probs = with_calibrated_normal(self._predict(t_model, t_images, batch_size), shown)
        labels = ternary_labels(probs, pneumonia, t_meta["classes"])
        for row, pr, label in zip(rows, probs, labels):
            row["ternary"] = {c: round(float(v), 4) for c, v in zip(t_meta["classes"], pr)}
            row["ternary_label"] = label

    def _ood_scores(self, kept, decoded) -> np.ndarray:
        """The out-of-distribution scores of the decoded images (decoded again, squashed, where the check wants
        another size or resize mode than the binary model)."""
        size = int(getattr(self.ood, "image_size", OOD_IMAGE_SIZE))
        same = (size, "squash") == (self.meta["image_size"], self.meta["resize"])
        images = np.stack([d if same else load_image(p, size, "squash") for p, d in zip(kept, decoded)])
        return np.asarray(self.ood.scores(images), dtype=np.float64).reshape(-1)

    def explain(self, path, pneumonia: bool) -> tuple[np.ndarray, np.ndarray]:
        """(image as the model sees it, Grad-CAM heat map of the decision `pneumonia`) for one file."""
        from .explain import grad_cam

        image = self.preprocess(path, self.meta)
        cam, _ = grad_cam(self.model, image, class_index=int(pneumonia))
        return image, cam
