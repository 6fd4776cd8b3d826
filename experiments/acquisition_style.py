"""Acquisition-style audit on training and validation images: how films were taken, and how much that says of the label.

Training and validation only (the project's patient split, seed 42, exactly as the notebooks make it): no test image
enters any number. It writes, under reports/experiments/ (a record, not a pipeline stage):
- style_audit.csv: each descriptor (data/style.py) per class and per file series, median and IQR, train and val;
- style_audit_auc.csv: each descriptor alone, AUC of NORMAL vs pneumonia (train, val) and of NORMAL2-IM vs IM among
  NORMALs (train + val);
- style_audit_fullres.csv: original width, height, aspect of the full-resolution sample's files (train and val
  patients only), per class and series, and the aspect's AUC of NORMAL vs pneumonia there;
- style_only_auc.csv: the label predicted from style alone, fitted on train, AUC on val with a patient-bootstrap CI:
  descriptor classifiers (logistic regression, gradient boosting; all descriptors and each group) and a frozen
  ImageNet MobileNetV2 (alpha 0.35) probe of the image with its centre (the lung fields) masked, each on the images
  as they are and cropped to the thorax box;
- style_dependence.csv: among validation NORMALs, Spearman correlation (patient-bootstrap CI) of the committed
  ensemble's P(pneumonia) (predictions/ensemble_val.csv under --output-dir) with each descriptor;
- style_audit_stressed.csv: the ensemble's validation specificity at its threshold (reports/metrics/ensemble.json),
  plain and style-stressed (`style.stressed_specificity`).

    nice .venv/bin/python experiments/acquisition_style.py --data-dir ../shared/data/chest_xray_224
    # about 7 minutes on 2 cores (6 min CPU); reads the ensemble's files under --output-dir (default reports/)
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegressionCV  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import GroupKFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from pneumonia_cxr.config import resolve_weights  # noqa: E402
from pneumonia_cxr.data import build_manifest, load_dataset, style  # noqa: E402
from pneumonia_cxr.data.discover import series_numbers  # noqa: E402
from pneumonia_cxr.evaluate import patient_resamples  # noqa: E402
from pneumonia_cxr.io import read_json, write_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("acquisition_style")
SERIES = {"IM": "IM-", "NORMAL2-IM": "NORMAL2-IM-", "bacteria": "personN_bacteria", "virus": "personN_virus"}


def load_train_val(data_dir: str, cache_dir: str, seed: int) -> tuple[np.ndarray, pd.DataFrame]:
    """Decoded 224 px images (before any thorax scaling) and rows of the train and val splits only."""
    data = load_dataset(data_dir, 224, cache_dir, seed=seed)
    keep = data.table["split_assigned"].isin(["train", "val"]).to_numpy()
    rows = data.table[keep].reset_index(drop=True)
    rows["series"] = series_numbers(rows["relpath"])["series"].map(SERIES).to_numpy()
    rows["y"] = (rows["label"] == "PNEUMONIA").astype(int)
    return data.raw_images[keep], rows


def auc_ci(y, score, groups, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """AUC and its percentile 95% CI over patient resamples."""
    y, score = np.asarray(y), np.asarray(score)
    draws = [roc_auc_score(y[i], score[i]) for i in patient_resamples(groups, n_boot, seed) if len(set(y[i])) == 2]
    return float(roc_auc_score(y, score)), *(float(v) for v in np.percentile(draws, [2.5, 97.5]))


def audit_table(desc: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Median, quartiles and n of every descriptor per (split, class) and (split, file series)."""
    out = []
    for kind, column in (("class", "subtype"), ("series", "series")):
        for (split, group), part in desc.groupby([rows["split_assigned"], rows[column]]):
            q = part.quantile([0.25, 0.5, 0.75])
            for name in desc.columns:
                out.append(
                    {"split": split, "by": kind, "group": group, "descriptor": name, "n": len(part),
                     "median": q.loc[0.5, name], "q1": q.loc[0.25, name], "q3": q.loc[0.75, name]}
                )  # fmt: skip
    return pd.DataFrame(out)


def univariate_auc(desc: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Each descriptor alone as a score (missing values at the median): AUC of pneumonia vs NORMAL on train and on
    val, and of NORMAL2-IM vs IM among the NORMALs of train and val together (0.5: no difference)."""
    filled = desc.fillna(desc.median())
    normal = (rows["y"] == 0).to_numpy()
    is_n2 = (rows["series"] == SERIES["NORMAL2-IM"]).to_numpy()
    out = []
    for name in desc.columns:
        row = {"descriptor": name, "group": next(g for g, n in style.DESCRIPTOR_GROUPS.items() if name in n)}
        for split in ("train", "val"):
            m = (rows["split_assigned"] == split).to_numpy()
            row[f"auc_pneumonia_{split}"] = roc_auc_score(rows["y"][m], filled[name][m])
        row["auc_normal2_vs_im"] = roc_auc_score(is_n2[normal], filled[name][normal])
        out.append(row)
    return pd.DataFrame(out)


def descriptor_models(seed: int) -> dict:
    """The two style classifiers: logistic regression (C by patient-grouped CV) and gradient boosting."""
    return {
        "logistic": lambda groups: make_pipeline(
            StandardScaler(),
            LogisticRegressionCV(
                Cs=5, cv=list(GroupKFold(5).split(np.zeros(len(groups)), groups=groups)), max_iter=3000
            ),
        ),
        "boosting": lambda groups: HistGradientBoostingClassifier(
            learning_rate=0.1, max_iter=150, max_leaf_nodes=15, l2_regularization=1.0, random_state=seed
        ),
    }


def fit_score(model_name: str, x: np.ndarray, rows: pd.DataFrame, seed: int) -> np.ndarray:
    """P(pneumonia) for every row from a classifier fitted on the train rows only."""
    train = (rows["split_assigned"] == "train").to_numpy()
    model = descriptor_models(seed)[model_name](rows["patient"][train].to_numpy())
    model.fit(x[train], rows["y"][train])
    return model.predict_proba(x)[:, 1]


def style_only_rows(desc: pd.DataFrame, rows: pd.DataFrame, images: str, n_boot: int, seed: int) -> list[dict]:
    """Validation AUC of the descriptor classifiers, all descriptors and each group alone."""
    val = (rows["split_assigned"] == "val").to_numpy()
    train_desc = desc[(rows["split_assigned"] == "train").to_numpy()]
    out = []
    for features, names in [("all descriptors", list(desc.columns)), *style.DESCRIPTOR_GROUPS.items()]:
        x = style.robust_scale(train_desc[names], desc[names])[0]
        for model_name in ("logistic", "boosting"):
            score = fit_score(model_name, x, rows, seed)
            auc, lo, hi = auc_ci(rows["y"][val], score[val], rows["patient"][val], n_boot, seed)
            out.append({"images": images, "features": features, "classifier": model_name, "n_val": int(val.sum()),
                        "val_auc": auc, "ci95_lo": lo, "ci95_hi": hi})  # fmt: skip
    return out


def mobilenet(weights_dir: str):
    """A frozen ImageNet MobileNetV2 (alpha 0.35, 224 px, global average pooled), weights from `weights_dir` when
    it holds Keras' file (config.resolve_weights), else downloaded."""
    import keras

    weights = resolve_weights("imagenet", "MobileNetV2", 0.35, weights_dir)
    return keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=0.35, include_top=False, weights=weights, pooling="avg"
    )


def mobilenet_features(base, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """`base`'s features of (N, 224, 224) uint8 gray images (the gray repeated in 3 channels, scaled to [-1, 1])."""
    out = []
    for start in range(0, len(images), batch):
        x = images[start : start + batch].astype(np.float32) / 127.5 - 1.0
        out.append(base(np.repeat(x[..., None], 3, axis=-1), training=False).numpy())
    return np.concatenate(out)


def probe_row(features: np.ndarray, rows: pd.DataFrame, images: str, what: str, n_boot: int, seed: int) -> dict:
    """Validation AUC of a logistic regression on frozen CNN features, fitted on train."""
    val = (rows["split_assigned"] == "val").to_numpy()
    score = fit_score("logistic", features, rows, seed)
    auc, lo, hi = auc_ci(rows["y"][val], score[val], rows["patient"][val], n_boot, seed)
    return {"images": images, "features": what, "classifier": "logistic on MobileNetV2-0.35 features",
            "n_val": int(val.sum()), "val_auc": auc, "ci95_lo": lo, "ci95_hi": hi}  # fmt: skip


def spearman_ci(x, y, groups, n_boot: int, seed: int = 0) -> tuple[float, float, float]:
    """Spearman's rho and its patient-bootstrap percentile 95% CI (NaN-free inputs; a resample where `x` is constant,
    as for a descriptor that is non-zero on few images, has no rho and is left out)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rho = spearmanr(x, y).statistic
    resamples = [i for i in patient_resamples(groups, n_boot, seed) if np.ptp(x[i]) > 0]
    draws = [spearmanr(x[i], y[i]).statistic for i in resamples]
    return float(rho), *(float(v) for v in np.nanpercentile(draws, [2.5, 97.5]))


def dependence_table(extra: pd.DataFrame, vn: pd.DataFrame, threshold: float, n_boot: int, seed: int) -> pd.DataFrame:
    """Among validation NORMALs (`vn`: their rows joined to the ensemble's P), rho of P(pneumonia) with each column
    of `extra` (descriptors and style scores), and the P and false-positive rate in its top and bottom quartiles."""
    out = []
    p = vn["p_pneumonia"].to_numpy()
    for name in extra.columns:
        x = extra[name].to_numpy(float)
        ok = np.isfinite(x)
        if np.nanstd(x) == 0:
            continue
        rho, lo, hi = spearman_ci(x[ok], p[ok], vn["patient"].to_numpy()[ok], n_boot, seed)
        q1, q3 = np.nanpercentile(x, [25, 75])
        low, high = ok & (x <= q1), ok & (x >= q3)
        out.append({"descriptor": name, "n": int(ok.sum()), "spearman": rho, "ci95_lo": lo, "ci95_hi": hi,
                    "median_p_low_quartile": float(np.median(p[low])),
                    "median_p_high_quartile": float(np.median(p[high])),
                    "fp_rate_low_quartile": float((p[low] >= threshold).mean()),
                    "fp_rate_high_quartile": float((p[high] >= threshold).mean())})  # fmt: skip
    return pd.DataFrame(out).sort_values("spearman", key=np.abs, ascending=False)


def fullres_table(fullres_dir: str, rows: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Original size and aspect of the full-resolution sample's files whose patients are in train or val."""
    manifest = build_manifest(fullres_dir).table
    sizes = pd.DataFrame([style.original_size(p) for p in manifest["path"]])
    table = pd.concat([manifest[["relpath", "subtype", "patient"]], sizes[["aspect", "megapixels", "mode"]]], axis=1)
    split = rows.drop_duplicates("patient").set_index("patient")["split_assigned"]
    table["split_assigned"] = table["patient"].map(split)
    table = table[table["split_assigned"].isin(["train", "val"])].reset_index(drop=True)
    table["series"] = series_numbers(table["relpath"])["series"].map(SERIES).to_numpy()
    out = []
    for kind, column in (("class", "subtype"), ("series", "series")):
        for group, part in table.groupby(column):
            for name in ("aspect", "megapixels"):
                q = part[name].quantile([0.25, 0.5, 0.75])
                out.append({"by": kind, "group": group, "quantity": name, "n": len(part), "median": q[0.5],
                            "q1": q[0.25], "q3": q[0.75],
                            "rgb_share": float((part["mode"] != "L").mean())})  # fmt: skip
    y = (table["subtype"] != "normal").astype(int)
    for name in ("aspect", "megapixels"):
        auc, lo, hi = auc_ci(y, table[name], table["patient"], n_boot, seed)
        out.append({"by": "pneumonia vs normal AUC", "group": "all", "quantity": name, "n": len(table),
                    "median": auc, "q1": lo, "q3": hi})  # fmt: skip
    return pd.DataFrame(out)


def stressed_table(desc, rows, score, vn_index, p, threshold, n_boot, seed, k_clusters=6) -> pd.DataFrame:
    """Plain and style-stressed specificity of the ensemble on validation NORMALs."""
    train_n = desc[((rows["split_assigned"] == "train") & (rows["y"] == 0)).to_numpy()]
    val_n = desc.iloc[vn_index]
    ref, x = style.robust_scale(train_n, train_n, val_n)
    clusters = KMeans(k_clusters, n_init=10, random_state=seed).fit(ref).predict(x)
    groups = rows["patient"].to_numpy()[vn_index]
    out = []
    for name, atyp in (("kNN distance to training NORMALs", style.atypicality(train_n, val_n)),
                       ("style classifier P(pneumonia)", score[vn_index])):  # fmt: skip
        r = style.stressed_specificity(p, threshold, atyp, groups, clusters, n_boot=n_boot, seed=seed)
        for est in ("plain", "stressed", "weighted"):
            out.append({"atypicality": name, "estimate": est, "specificity": r[est], "ci95_lo": r[f"{est}_ci95"][0],
                        "ci95_hi": r[f"{est}_ci95"][1], "n": r["n_tail"] if est == "stressed" else r["n"]})  # fmt: skip
        if name.startswith("kNN"):
            out.append({"atypicality": f"k-means ({k_clusters}) on training NORMALs", "estimate": "cluster mean",
                        "specificity": r["cluster_mean"], "n": r["n"]})  # fmt: skip
            out.append({"atypicality": f"k-means ({k_clusters}) on training NORMALs", "estimate": "worst cluster",
                        "specificity": r["cluster_min"], "n": r["cluster_min_n"]})  # fmt: skip
    for series, part in pd.Series(p).groupby(rows["series"].to_numpy()[vn_index]):
        out.append({"atypicality": "file series", "estimate": series, "specificity": float((part < threshold).mean()),
                    "n": len(part)})  # fmt: skip
    return pd.DataFrame(out)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "chest_xray_224"))
    ap.add_argument("--fullres-dir", default=str(ROOT.parent / "shared" / "data" / "chest_xray_fullres_sample"))
    ap.add_argument("--weights-dir", default=str(ROOT.parent / "shared" / "weights"))
    ap.add_argument("--cache-dir", default=str(ROOT / "data" / "cache"))
    ap.add_argument("--output-dir", default=str(ROOT / "reports"))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--no-cnn", action="store_true", help="skip the masked-image MobileNetV2 probe")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    metrics, start = Path(args.output_dir) / "experiments", time.perf_counter()
    metrics.mkdir(parents=True, exist_ok=True)
    images, rows = load_train_val(args.data_dir, args.cache_dir, args.seed)
    assert not (rows["split_assigned"] == "test").any()
    log.info("%d train + val images (%.0f s)", len(rows), time.perf_counter() - start)
    desc = style.describe(images)
    cropped = style.crop_to_thorax(images)
    desc_crop = style.describe(cropped)
    log.info("descriptors (%.0f s)", time.perf_counter() - start)
    write_csv(metrics / "style_audit.csv", audit_table(desc, rows), float_format="%.4g")
    write_csv(metrics / "style_audit_auc.csv", univariate_auc(desc, rows), float_format="%.4f")
    write_csv(metrics / "style_audit_fullres.csv", fullres_table(args.fullres_dir, rows, args.n_boot, args.seed),
              float_format="%.4g")  # fmt: skip

    auc_rows = style_only_rows(desc, rows, "as they are", args.n_boot, args.seed)
    auc_rows += style_only_rows(desc_crop, rows, "cropped to the thorax box", args.n_boot, args.seed)
    if not args.no_cnn:
        base = mobilenet(args.weights_dir)
        for images_name, x in (("as they are", images), ("cropped to the thorax box", cropped)):
            feats = mobilenet_features(base, style.mask_centre(x))
            auc_rows.append(probe_row(feats, rows, images_name, "image, centre masked", args.n_boot, args.seed))
            log.info("masked probe on images %s (%.0f s)", images_name, time.perf_counter() - start)
        feats = mobilenet_features(base, images)
        auc_rows.append(probe_row(feats, rows, "as they are", "whole image (reference)", args.n_boot, args.seed))
    write_csv(metrics / "style_only_auc.csv", pd.DataFrame(auc_rows), float_format="%.4f")
    log.info("style-only AUCs (%.0f s)", time.perf_counter() - start)

    ensemble_json = Path(args.output_dir) / "metrics" / "ensemble.json"
    val_csv = Path(args.output_dir) / "predictions" / "ensemble_val.csv"
    for path in (ensemble_json, val_csv):
        if not path.is_file():
            raise SystemExit(f"{path}: not found; run notebook 07 (the ensemble) first")
    ensemble, val_pred = read_json(ensemble_json), pd.read_csv(val_csv)
    vn = rows.reset_index().merge(val_pred[["relpath", "p_pneumonia"]], on="relpath")
    vn = vn[(vn["split_assigned"] == "val") & (vn["y"] == 0)]
    if len(vn) != int(((rows["split_assigned"] == "val") & (rows["y"] == 0)).sum()):
        raise ValueError("reports/predictions/ensemble_val.csv: its validation NORMALs are not this split's")
    x_all = style.robust_scale(desc[(rows["split_assigned"] == "train").to_numpy()], desc)[0]
    score = fit_score("logistic", x_all, rows, args.seed)
    train_n = desc[((rows["split_assigned"] == "train") & (rows["y"] == 0)).to_numpy()]
    extra = desc.iloc[vn["index"]].reset_index(drop=True)
    extra["style classifier P(pneumonia)"] = score[vn["index"]]
    extra["kNN distance to training NORMALs"] = style.atypicality(train_n, desc.iloc[vn["index"]])
    extra["series NORMAL2-IM (vs IM)"] = (vn["series"] == SERIES["NORMAL2-IM"]).astype(float).to_numpy()
    threshold = ensemble["threshold"]
    dep = dependence_table(extra, vn.reset_index(drop=True), threshold, args.n_boot, args.seed)
    write_csv(metrics / "style_dependence.csv", dep, float_format="%.4f")
    p = vn["p_pneumonia"].to_numpy()
    stressed = stressed_table(desc, rows, score, vn["index"].to_numpy(), p, threshold, args.n_boot, args.seed)
    write_csv(metrics / "style_audit_stressed.csv", stressed, float_format="%.4f")
    log.info("done in %.0f s", time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
