"""The reviewed cases of one model, read from the review store: the reference is the reviewer's answer ("agree" counts
as the model's own call), one case per image (its latest answer, as the store counts it), with the model's
probability on the shipped calibrated scale and the decision it showed.

Invariant: a case is an image whose latest answer is readable, given to the model under evaluation at its shipped
operating point. Answers given to another model (file name or commit), on a page run with a local calibration, or
"not readable" are left out and counted, never silently dropped. A page run with `--prevalence` showed P(pneumonia)
and the threshold moved together by one constant in log-odds; the case's probability is moved back by the same
constant (the distance from the threshold in log-odds is kept), so every case is on the shipped scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..calibration import EPS, calibrate
from ..data.discover import parse_patient
from .store import labelled

SUBTYPES = ("normal", "bacterial", "viral")
SHOWN_SCALE_TOLERANCE = 1e-3  # a stored threshold this close to the shipped one: no prevalence was in effect


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def shipped_threshold(meta: dict) -> float | None:
    """The model's validation-chosen threshold on its calibrated scale (None for metadata without a threshold)."""
    if meta.get("threshold_calibrated") is not None:
        return float(meta["threshold_calibrated"])
    if meta.get("threshold") is None:
        return None
    return float(calibrate([meta["threshold"]], meta.get("calibration"))[0])


def model_subtype(table: pd.DataFrame) -> pd.Series:
    """The model's normal / bacterial / viral call as the page showed it: normal for a NORMAL decision, else the
    likelier of bacterial and viral; empty where the answer was stored without ternary probabilities."""
    out = pd.Series("", index=table.index, dtype=object)
    has = table[["p_bacterial", "p_viral"]].notna().all(axis=1)
    out[table["decision"] == "NORMAL"] = "normal"
    pneumonia = has & (table["decision"] == "PNEUMONIA")
    out[pneumonia] = np.where(
        table.loc[pneumonia, "p_viral"] > table.loc[pneumonia, "p_bacterial"], "viral", "bacterial"
    )
    return out


@dataclass
class ReviewedCases:
    """The cases of one model, and what was left out.

    Attributes:
        table: one row per case: sha256, path, reviewer, answer, label (normal / bacterial / viral / pneumonia), y (1
            for pneumonia), decision, called (1 for a PNEUMONIA call), p (shipped calibrated scale), p_op (p, nudged
            to the threshold's side the stored decision is on where rounding put it on the other), model_subtype,
            group.
        answers: every answer given to this model at its shipped operating point (all reviewers, all images,
            labelled), for the agreement between reviewers.
        threshold: the shipped threshold on the calibrated scale.
        grouping: "patient" when every file name carries a patient id (the release's naming), else "case".
        left_out: why answers or images were not used, with counts.
        model_file: the model the answers were given to.
    """

    table: pd.DataFrame
    answers: pd.DataFrame
    threshold: float
    grouping: str
    left_out: dict = field(default_factory=dict)
    model_file: str = ""

    @property
    def y(self) -> np.ndarray:
        return self.table["y"].to_numpy(np.int64)

    @property
    def p(self) -> np.ndarray:
        return self.table["p"].to_numpy(np.float64)

    @property
    def groups(self) -> np.ndarray:
        return self.table["group"].to_numpy()

    def count(self, label: int) -> int:
        return int((self.table["y"] == label).sum())


def _of_model(answers: pd.DataFrame, model_file: str | None, commit: str | None) -> pd.Series:
    """True for answers given to the model named `model_file` (by file name) with `commit` (where both are known)."""
    if model_file is None:
        return pd.Series(True, index=answers.index)
    same_name = answers["model_file"].map(lambda f: Path(str(f)).name) == Path(model_file).name
    if commit is None:
        return same_name
    return same_name & (answers["model_commit"].isna() | (answers["model_commit"] == commit))


def on_shipped_scale(p_shown, threshold_shown, threshold: float | None) -> np.ndarray:
    """Stored probabilities moved back to the shipped calibrated scale: where the stored threshold differs from the
    shipped one (a page run with --prevalence), the log-odds move by the difference of the thresholds' log-odds."""
    p_shown = np.asarray(p_shown, dtype=np.float64)
    if threshold is None:
        return p_shown
    threshold_shown = np.asarray(threshold_shown, dtype=np.float64)
    moved = np.abs(threshold_shown - threshold) > SHOWN_SCALE_TOLERANCE
    back = 1 / (1 + np.exp(-(_logit(p_shown) - _logit(threshold_shown) + _logit(threshold))))
    return np.where(moved, back, p_shown)


def patient_groups(paths) -> tuple[np.ndarray, str]:
    """(group per case, "patient" or "case"): patients from the release's file names where every name has one, else
    each case on its own."""
    patients = [parse_patient(Path(str(p)).name) for p in paths]
    if len(patients) and all(patients):
        return np.asarray(patients, dtype=object), "patient"
    return np.arange(len(patients)), "case"


def reviewed_cases(
    answers: pd.DataFrame, meta: dict | None, model_file: str | None = None, commit: str | None = None
) -> ReviewedCases:
    """The cases of the model `model_file` (by file name; with `commit`, that commit's answers and those stored
    without one) from the store's answers.

    Args:
        answers: `ReviewStore.answers()`.
        meta: the model's metadata (`model_metadata.read_metadata`), for its threshold on the calibrated scale; None:
            the stored probabilities are taken as they are.
        model_file: the model's file; None: every answer counts.
        commit: the model's commit (its metadata's `git_commit`), or None.

    Returns:
        The cases and what was left out.
    """
    answers = labelled(answers)
    if "local_calibration" not in answers:
        answers["local_calibration"] = None
    left_out = {}
    mine = _of_model(answers, model_file, commit)
    if (~mine).any():
        left_out["answers given to another model"] = int((~mine).sum())
    local = mine & answers["local_calibration"].notna()
    if local.any():
        left_out["answers given on a page run with a local calibration"] = int(local.sum())
    answers = answers[mine & ~local].copy()
    answers["latest"] = ~answers["sha256"].duplicated(keep="last")
    latest = answers[answers["latest"]]
    unreadable = latest["label_binary"] == ""
    if unreadable.any():
        left_out["images not readable (latest answer)"] = int(unreadable.sum())
    table = latest[~unreadable].copy()
    threshold = shipped_threshold(meta) if meta else None
    if threshold is None:
        threshold = float(table["threshold"].iloc[-1]) if len(table) else 0.5
    table["p"] = on_shipped_scale(table["p_pneumonia"], table["threshold"], threshold)
    table["y"] = (table["label_binary"] == "PNEUMONIA").astype(np.int64)
    table["called"] = (table["decision"] == "PNEUMONIA").astype(np.int64)
    # the stored probability is rounded: where that put it on the other side of the threshold than the decision shown,
    # it is moved to the threshold's side the decision is on (the decision is what the reviewer judged)
    wrong_side = (table["p"] >= threshold).astype(np.int64) != table["called"]
    below = np.nextafter(threshold, 0.0)
    table["p_op"] = np.where(wrong_side, np.where(table["called"] == 1, threshold, below), table["p"])
    table["model_subtype"] = model_subtype(table)
    groups, grouping = patient_groups(table["path"])
    table["group"] = groups
    keep = ["sha256", "path", "reviewer", "answer", "label", "label_binary", "y", "decision", "called", "p", "p_op"]
    table = table[[*keep, "model_subtype", "group"]].reset_index(drop=True)
    return ReviewedCases(table, answers, threshold, grouping, left_out, model_file or "")


def reviewer_agreement(answers: pd.DataFrame) -> pd.DataFrame:
    """Each reviewer against the model, on the reviewer's latest readable answer per image: images, agreeing
    (normal vs pneumonia) and Cohen's kappa (None where undefined: one side never varies)."""
    rows = []
    for reviewer, mine in _latest_by_reviewer(answers).groupby("reviewer", sort=True):
        called = mine["decision"].to_numpy()
        said = mine["label_binary"].to_numpy()
        rows.append(
            {
                "reviewer": reviewer,
                "images": len(mine),
                "agree": int((called == said).sum()),
                "kappa": _kappa(called, said),
            }
        )
    return pd.DataFrame(rows, columns=["reviewer", "images", "agree", "kappa"])


def between_reviewers(answers: pd.DataFrame) -> pd.DataFrame:
    """Each pair of reviewers who read the same images: images both read (readable to both), agreeing on normal vs
    pneumonia, Cohen's kappa on that, and on normal / bacterial / viral where both gave a subtype."""
    latest = _latest_by_reviewer(answers)
    names = sorted(latest["reviewer"].unique())
    rows = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a = latest[latest["reviewer"] == first].set_index("sha256")
            b = latest[latest["reviewer"] == second].set_index("sha256")
            both = a.index.intersection(b.index)
            if not len(both):
                continue
            la, lb = a.loc[both, "label_binary"].to_numpy(), b.loc[both, "label_binary"].to_numpy()
            sa, sb = a.loc[both, "label"].to_numpy(), b.loc[both, "label"].to_numpy()
            typed = np.isin(sa, SUBTYPES) & np.isin(sb, SUBTYPES)
            rows.append(
                {
                    "reviewers": f"{first} / {second}",
                    "images": len(both),
                    "agree": int((la == lb).sum()),
                    "kappa": _kappa(la, lb),
                    "images with subtypes": int(typed.sum()),
                    "kappa on subtypes": _kappa(sa[typed], sb[typed]) if typed.any() else None,
                }
            )
    columns = ["reviewers", "images", "agree", "kappa", "images with subtypes", "kappa on subtypes"]
    return pd.DataFrame(rows, columns=columns)


def _latest_by_reviewer(answers: pd.DataFrame) -> pd.DataFrame:
    readable = answers[answers["label_binary"] != ""]
    return readable[~readable[["reviewer", "sha256"]].duplicated(keep="last")]


def _kappa(a, b) -> float | None:
    """sklearn's Cohen's kappa, None where it is undefined (no pair, or neither side varies)."""
    from sklearn.metrics import cohen_kappa_score

    if not len(a):
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        value = float(cohen_kappa_score(a, b))
    return None if value != value else value
