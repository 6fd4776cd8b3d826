"""Every figure of the analysis; notebooks only call these. Each returns the figure and saves it
(PNG, 110 dpi; image grids at about their images' own size) when given a path."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn import metrics as skm

sns.set_theme(style="whitegrid", context="notebook")


def _save(fig, path, dpi: int = 110):
    fig.tight_layout()
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return fig


def synthetic_banner(fig):
    fig.suptitle("SYNTHETIC DEMO DATA - not real X-rays", color="red", fontweight="bold")


def counts_by_split(table: pd.DataFrame, path=None):
    fig, ax = plt.subplots(figsize=(7, 3.5))
    data = table.groupby(["split_assigned", "subtype"]).size().reset_index(name="images")
    sns.barplot(data=data, x="split_assigned", y="images", hue="subtype", order=["train", "val", "test"], ax=ax)
    for c in ax.containers:
        ax.bar_label(c, fontsize=8)
    ax.set(xlabel="split (by patient)", title="Images per split and subtype")
    return _save(fig, path)


def images_per_patient(table: pd.DataFrame, path=None):
    fig, ax = plt.subplots(figsize=(6, 3.2))
    per = table.groupby(["patient", "label"]).size().reset_index(name="images")
    sns.histplot(data=per, x="images", hue="label", discrete=True, multiple="dodge", shrink=0.8, ax=ax)
    ax.set(yscale="log", title="Images per patient", xlabel="images of one patient")
    return _save(fig, path)


def size_distributions(table: pd.DataFrame, path=None):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    t = table.assign(aspect=table["width"] / table["height"])
    sns.scatterplot(data=t, x="width", y="height", hue="label", s=8, alpha=0.5, ax=axes[0])
    axes[0].set_title("Stored image size (px)")
    sns.histplot(data=t, x="aspect", hue="label", bins=40, element="step", ax=axes[1])
    axes[1].set_title("Aspect ratio (width / height)")
    return _save(fig, path)


def intensity_histograms(images: np.ndarray, labels: np.ndarray, names=("NORMAL", "PNEUMONIA"), path=None):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for k, name in enumerate(names):
        sel = images[labels == k]
        axes[0].hist(
            sel.reshape(-1)[:: max(1, sel.size // 2_000_000)], bins=64, density=True, histtype="step", label=name
        )
        axes[1].hist(sel.reshape(len(sel), -1).mean(1), bins=40, density=True, histtype="step", label=name)
    axes[0].set(title="Pixel intensities", xlabel="gray level")
    axes[1].set(title="Mean intensity per image", xlabel="mean gray level")
    axes[0].legend()
    return _save(fig, path)


def sample_grid(images: np.ndarray, titles: list[str], ncols: int = 6, path=None):
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.1 * nrows))
    for ax, im, title in zip(np.ravel(axes), images, titles):
        ax.imshow(im, cmap="gray")
        ax.set_title(title, fontsize=8)
    for ax in np.ravel(axes):
        ax.axis("off")
    return _save(fig, path)


def training_curves(history: pd.DataFrame, title: str, path=None):
    metrics = [m for m in ("loss", "auc", "accuracy") if m in history]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3))
    for ax, m in zip(np.atleast_1d(axes), metrics):
        ax.plot(history["epoch"] + 1, history[m], marker="o", label="train")
        if f"val_{m}" in history:
            ax.plot(history["epoch"] + 1, history[f"val_{m}"], marker="o", label="validation")
        if "kept" in history and history["kept"].any():  # the epoch whose weights early stopping kept
            ax.axvline(history.loc[history["kept"], "epoch"].iloc[-1] + 1, color="grey", linestyle=":", label="kept")
        ax.set(title=m, xlabel="epoch")
        ax.legend()
    fig.suptitle(title)
    return _save(fig, path)


def confusion(cm, labels, title: str, path=None):
    fig, ax = plt.subplots(figsize=(3.6 + 0.4 * len(labels), 3.2 + 0.3 * len(labels)))
    sns.heatmap(
        np.asarray(cm), annot=True, fmt="d", cmap="Blues", cbar=False, xticklabels=labels, yticklabels=labels, ax=ax
    )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def roc_pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], path=None, operating_point=None):
    """curves: name -> (y_true, p). operating_point: (sensitivity, specificity) to mark."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, (y, p) in curves.items():
        fpr, tpr, _ = skm.roc_curve(y, p)
        axes[0].plot(fpr, tpr, label=f"{name} (AUC {skm.roc_auc_score(y, p):.3f})")
        prec, rec, _ = skm.precision_recall_curve(y, p)
        axes[1].plot(rec, prec, label=f"{name} (AP {skm.average_precision_score(y, p):.3f})")
    if operating_point:
        axes[0].plot(1 - operating_point[1], operating_point[0], "k*", ms=12, label="chosen threshold")
    axes[0].plot([0, 1], [0, 1], "k:", lw=1)
    axes[0].set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    axes[1].set(xlabel="recall (sensitivity)", ylabel="precision", title="Precision-recall")
    for ax in axes:
        ax.legend(fontsize=8, loc="lower right" if ax is axes[0] else "lower left")
    return _save(fig, path)


def calibration(tables: dict[str, pd.DataFrame], path=None):
    fig, ax = plt.subplots(figsize=(4.5, 4))
    for name, t in tables.items():
        ax.plot(t["mean_predicted"], t["fraction_positive"], marker="o", label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="mean predicted probability", ylabel="observed fraction pneumonia", title="Calibration")
    ax.legend(fontsize=8)
    return _save(fig, path)


def gradcam_grid(images, cams, titles, path=None, ncols: int = 4):
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3.2 * nrows), squeeze=False)
    for ax, im, cam, title in zip(axes.ravel(), images, cams, titles):
        ax.imshow(im, cmap="gray")
        ax.imshow(cam, cmap="jet", alpha=0.35)
        ax.set_title(title, fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    return _save(fig, path, dpi=75)  # 3 in at 75 dpi is about a 224 px image's own size: no detail made up


def prevalence_curve(sensitivity: float, specificity: float, path=None, marks=(0.625, 0.74)):
    """How accuracy, PPV and NPV move with prevalence at fixed sensitivity and specificity."""
    from .evaluate import at_prevalence

    pis = np.linspace(0.05, 0.95, 91)
    rows = pd.DataFrame([at_prevalence({"sensitivity": sensitivity, "specificity": specificity}, p) for p in pis])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for col in ("accuracy", "ppv", "npv"):
        ax.plot(rows["prevalence"], rows[col], label=col.upper() if col != "accuracy" else col)
    ax.axhline(sensitivity, color="gray", ls="--", lw=1, label=f"sensitivity {sensitivity:.3f}")
    ax.axhline(specificity, color="gray", ls=":", lw=1, label=f"specificity {specificity:.3f}")
    for m in marks:
        ax.axvline(m, color="k", lw=0.6)
    ax.set(xlabel="pneumonia prevalence", ylim=(0, 1.02), title="At the chosen threshold, as prevalence changes")
    ax.legend(fontsize=8, loc="lower center", ncol=3)
    return _save(fig, path)


def val_vs_test(table: pd.DataFrame, model: str, path=None):
    """What validation promised and what test gave, per subgroup, for one model: each rate with its 95% CI on both
    splits (`tables.val_vs_test`'s table)."""
    rows = table[table["model"] == model].reset_index(drop=True)
    labels = [f"{r.metric}, {r.subgroup}" for r in rows.itertuples()]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    y = np.arange(len(rows))
    for offset, split, colour in ((-0.15, "val", "tab:blue"), (0.15, "test", "tab:red")):
        value = rows[f"{split} value"].to_numpy(float)
        lo, hi = rows[f"{split} ci_low"].to_numpy(float), rows[f"{split} ci_high"].to_numpy(float)
        err = np.vstack([value - np.where(np.isnan(lo), value, lo), np.where(np.isnan(hi), value, hi) - value])
        ax.errorbar(
            value,
            y + offset,
            xerr=err,
            fmt="o",
            color=colour,
            capsize=3,
            label="validation" if split == "val" else "test",
        )
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set(xlabel="rate at the validation-chosen threshold (95% CI)", title=f"{model}: validation vs test")
    ax.legend(loc="lower left")
    fig.tight_layout()
    return _save(fig, path)
