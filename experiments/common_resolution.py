"""One effective resolution for every film: does low-passing all images take the acquisition-style shortcut away?

Normal originals in this release are about 2.4 times larger than pneumonia originals, and the 224 px images keep that
as fine texture (data/style.py's Laplacian descriptor alone separates the classes at validation AUC 0.89). The lever
tried here brings every image to one effective resolution: downsample to `E` px (area) and back (bilinear), in
training and validation alike, so that no class keeps detail the other lacks.

Training and validation only (the project's patient split for `--seed`, exactly as the notebooks make it); no test
image is read. Three parts, each a record under reports/experiments/ (not a pipeline stage):
- `style`: style-only validation AUC (data/style.py descriptors: gradient boosting on all of them, on the exposure
  group and on the frame group; and a frozen MobileNetV2 probe with the lung fields masked), fitted on train, for
  the images as they are and low-passed to each `--levels` size (224 px frame) -> common_resolution_style.csv;
- `model`: notebook 03's scratch CNN, trained as that notebook does (profile "full", same functions and settings)
  on images low-passed to `--effective` px (0: as they are), then its validation AUC (patient-bootstrap CI), its
  sensitivity and specificity at the threshold chosen for the target sensitivity, and its dependence on style:
  among validation NORMALs, Spearman's rho of its P(pneumonia) with the style classifier's (fitted on train, on the
  films as acquired), and its false-positive rate in the least and most pneumonia-styled quarters
  -> common_resolution_model.csv (one row appended per run). `--baseline-predictions` scores a committed run's
  validation predictions the same way instead of training;
- `overlap`: whether reweighting by style could work instead: how far the classes' styles overlap in training
  (out-of-fold style classifier; share of each class styled as the other, inverse-propensity effective sample size)
  -> style_overlap.csv.

    nice .venv/bin/python experiments/common_resolution.py style --seed 42 --levels 112 64
    nice .venv/bin/python experiments/common_resolution.py model --seed 42 --effective 64
    nice .venv/bin/python experiments/common_resolution.py model --seed 42 \
        --baseline-predictions reports/predictions/scratch_cnn_val.csv
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from acquisition_style import (  # noqa: E402
    auc_ci,
    fit_score,
    load_train_val,
    mobilenet,
    mobilenet_features,
    probe_row,
    spearman_ci,
    style_only_rows,
)

from pneumonia_cxr.config import settings  # noqa: E402
from pneumonia_cxr.data import class_weights, load_dataset, make_dataset, style  # noqa: E402
from pneumonia_cxr.distribute import use_precision  # noqa: E402
from pneumonia_cxr.evaluate import binary_metrics, choose_threshold  # noqa: E402
from pneumonia_cxr.io import write_csv  # noqa: E402
from pneumonia_cxr.models import build_scratch_cnn  # noqa: E402
from pneumonia_cxr.predictions import predict_binary  # noqa: E402
from pneumonia_cxr.train import compile_model, fit, kept_epoch, seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
log = logging.getLogger("common_resolution")


def low_pass(images: np.ndarray, effective: int, batch: int = 256) -> np.ndarray:
    """(N, H, W) uint8 images brought to an effective resolution of `effective` px: area-downsampled to
    effective x effective, then bilinearly back to H x W; `effective` 0 returns them unchanged.

    Args:
        images: decoded gray images, uint8.
        effective: the common resolution in pixels across the frame (0: none).
        batch: images resized at once (bounds memory).

    Returns:
        uint8 images of the same shape.
    """
    if not effective:
        return images
    h, w = images.shape[1:3]
    out = np.empty_like(images)
    for start in range(0, len(images), batch):
        x = tf.convert_to_tensor(images[start : start + batch, ..., None], tf.float32)
        small = tf.image.resize(x, (effective, effective), method="area")
        back = tf.image.resize(small, (h, w), method="bilinear")
        out[start : start + batch] = np.clip(np.round(back.numpy()[..., 0]), 0, 255).astype(np.uint8)
    return out


def style_part(args) -> None:
    """Style-only validation AUCs, as they are and at each low-pass level."""
    images, rows = load_train_val(args.data_dir, args.cache_dir, args.seed)
    base, out = mobilenet(args.weights_dir), []
    for level in [0, *args.levels]:
        x = low_pass(images, level)
        name = "as they are" if not level else f"low-passed to {level} px"
        desc = style.describe(x)
        kept = ("all descriptors", "exposure", "frame")
        out += [r for r in style_only_rows(desc, rows, name, args.n_boot, args.seed)
                if r["classifier"] == "boosting" and r["features"] in kept]  # fmt: skip
        out.append(
            probe_row(
                mobilenet_features(base, style.mask_centre(x)),
                rows,
                name,
                "image, centre masked",
                args.n_boot,
                args.seed,
            )  # fmt: skip
        )
        log.info("%s done", name)
    table = pd.DataFrame(out)
    table.insert(0, "seed", args.seed)
    write_csv(args.out_dir / "common_resolution_style.csv", table, float_format="%.4f")
    print(table.round(3).to_string(index=False))


def descriptors(args) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(descriptors, rows) of the train and val images as acquired, for `args.seed`'s split. The descriptors do not
    depend on the split, so they are kept by relpath in build/experiments/style_descriptors.csv (made again when its
    images are not these)."""
    images, rows = load_train_val(args.data_dir, args.cache_dir, args.seed)
    cache = ROOT / "build" / "experiments" / "style_descriptors.csv"
    if cache.is_file():
        kept = pd.read_csv(cache).set_index("relpath")
        if set(kept.index) == set(rows["relpath"]):
            return kept.loc[rows["relpath"]].reset_index(drop=True), rows
    desc = style.describe(images)
    write_csv(cache, desc.assign(relpath=rows["relpath"].to_numpy()))
    return desc, rows


def overlap_part(args) -> None:
    """How much the classes' styles overlap in training, the condition for reweighting by style: out-of-fold
    (patient-grouped) style P(pneumonia) of every training image, and per class the share on the other class's side
    of 0.5 and the effective sample size (Kish) of inverse-propensity weights 1 / P(own class | style)."""
    desc, rows = descriptors(args)
    train = (rows["split_assigned"] == "train").to_numpy()
    x = style.robust_scale(desc[train], desc[train])[0]
    y, groups = rows["y"].to_numpy()[train], rows["patient"].to_numpy()[train]
    p = np.zeros(len(y))
    for fit_idx, out_idx in GroupKFold(5).split(x, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        p[out_idx] = model.fit(x[fit_idx], y[fit_idx]).predict_proba(x[out_idx])[:, 1]
    out = []
    for label, name in ((0, "NORMAL"), (1, "PNEUMONIA")):
        own = np.clip(np.where(y == label, p if label else 1 - p, np.nan)[y == label], 1e-6, None)
        w = 1 / own
        out.append({"seed": args.seed, "class": name, "n_train": int(len(own)),
                    "share_styled_as_other_class": float((own < 0.5).mean()),
                    "share_own_style_p_below_0.1": float((own < 0.1).mean()),
                    "ipw_effective_n": float(w.sum() ** 2 / (w**2).sum()),
                    "ipw_largest_weight_share": float(w.max() / w.sum())})  # fmt: skip
    table = pd.DataFrame(out)
    path = args.out_dir / "style_overlap.csv"
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    if not old.empty:
        old = old[old["seed"] != args.seed]
    write_csv(path, pd.concat([old, table], ignore_index=True), float_format="%.4f")
    print(table.round(3).to_string(index=False))


def style_scores(args) -> pd.DataFrame:
    """Each validation image's style-classifier P(pneumonia) (logistic on all descriptors of the film as acquired,
    fitted on train): relpath, patient, y, style_p."""
    desc, rows = descriptors(args)
    x = style.robust_scale(desc[(rows["split_assigned"] == "train").to_numpy()], desc)[0]
    rows = rows.assign(style_p=fit_score("logistic", x, rows, args.seed))
    return rows.loc[rows["split_assigned"] == "val", ["relpath", "patient", "y", "style_p"]]


def train_scratch_cnn(args) -> tuple[pd.DataFrame, dict]:
    """Notebook 03's scratch CNN on images low-passed to `args.effective` px; its validation predictions."""
    cfg = settings("full", seed=args.seed)
    cfg["image_size"] = cfg["cnn_size"]
    seed_everything(args.seed)
    use_precision(cfg["precision"])
    data = load_dataset(
        args.data_dir,
        cfg["image_size"],
        args.cache_dir,
        seed=args.seed,
        per_subtype=cfg["per_subtype"],
        thorax_width=cfg["thorax_width"],
    )
    x_tr, y_tr, _ = data.split("train")
    x_va, y_va, rows = data.split("val")
    x_tr, x_va = low_pass(x_tr, args.effective), low_pass(x_va, args.effective)
    model = compile_model(build_scratch_cnn(cfg["image_size"], equalize=cfg["cnn_equalize"]), 1e-3)
    train_ds = make_dataset(
        x_tr,
        y_tr,
        cfg["batch_size"],
        training=True,
        seed=args.seed,
        augment=1.0,
        max_batches=cfg["max_batches_per_epoch"],
    )
    start = time.perf_counter()
    history = fit(model, train_ds, make_dataset(x_va, y_va, 128), cfg["epochs"], class_weights(y_tr), cfg["patience"])
    info = {"kept_epoch": kept_epoch(history), "training_seconds": round(time.perf_counter() - start, 1)}
    return rows[["relpath"]].assign(p_pneumonia=predict_binary(model, x_va)), info | {
        "target": cfg["target_sensitivity"]
    }


def model_part(args) -> None:
    """Train (or read a committed run's predictions), then validation AUC, operating point and style dependence."""
    if args.baseline_predictions:
        pred, info = pd.read_csv(args.baseline_predictions)[["relpath", "p_pneumonia"]], {}
        what = f"as they are ({Path(args.baseline_predictions).as_posix()})"
        info["target"] = settings("full", seed=args.seed)["target_sensitivity"]
    else:
        pred, info = train_scratch_cnn(args)
        what = "as they are (retrained)" if not args.effective else f"low-passed to {args.effective} px"
    val = style_scores(args).merge(pred, on="relpath", how="left")
    if val["p_pneumonia"].isna().any():
        raise SystemExit(f"{args.baseline_predictions}: its validation images are not seed {args.seed}'s split")
    y, p, groups = val["y"].to_numpy(), val["p_pneumonia"].to_numpy(), val["patient"].to_numpy()
    auc, lo, hi = auc_ci(y, p, groups, args.n_boot, args.seed)
    threshold = choose_threshold(y, p, info.pop("target"))
    m = binary_metrics(y, p, threshold)
    normals = val[val["y"] == 0]
    s, pn = normals["style_p"].to_numpy(), normals["p_pneumonia"].to_numpy()
    rho, rho_lo, rho_hi = spearman_ci(s, pn, normals["patient"].to_numpy(), args.n_boot, args.seed)
    q1, q3 = np.percentile(s, [25, 75])
    row = {"seed": args.seed, "model": "scratch CNN", "images": what, "val_auc": auc, "ci95_lo": lo, "ci95_hi": hi,
           "threshold": threshold, "sensitivity": m["sensitivity"], "specificity": m["specificity"],
           "style_spearman": rho, "style_spearman_lo": rho_lo, "style_spearman_hi": rho_hi,
           "fp_rate_least_styled_quarter": float((pn[s <= q1] >= threshold).mean()),
           "fp_rate_most_styled_quarter": float((pn[s >= q3] >= threshold).mean()), **info}  # fmt: skip
    path = args.out_dir / "common_resolution_model.csv"
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    if not old.empty:
        old = old[~((old["seed"] == args.seed) & (old["images"] == what))]
    table = pd.concat([old, pd.DataFrame([row])], ignore_index=True)
    write_csv(path, table, float_format="%.4f")
    print(table.round(3).to_string(index=False))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["style", "model", "overlap"])
    ap.add_argument("--data-dir", default=str(SHARED / "data" / "chest_xray_224"))
    ap.add_argument("--weights-dir", default=str(SHARED / "weights"))
    ap.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    ap.add_argument("--out-dir", type=Path, default=ROOT / "reports" / "experiments")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--levels", type=int, nargs="+", default=[112, 64], help="style part: low-pass sizes")
    ap.add_argument("--effective", type=int, default=64, help="model part: low-pass size (0: none)")
    ap.add_argument("--baseline-predictions", help="model part: a run's val predictions CSV, scored instead")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    {"style": style_part, "model": model_part, "overlap": overlap_part}[args.part](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
