"""A site's local evaluation of the shipped model, from its reviewers' answers:

    pneumonia-cxr review evaluate --db reviews.sqlite [--out report.md] [--model models/ensemble.keras]
        [--reference reports/metrics/ensemble.json] [--local local.json]

The reference is the reviewer's answer ("agree" counts as the model's call; `cases.py`). The report gives the number of
cases and of images not readable; sensitivity, specificity, PPV, NPV and ROC AUC at the shipped operating point with
bootstrap 95% CIs (by patient where the file names carry one, else by case), and the normal / bacterial / viral
confusion where reviewers gave a subtype; calibration on the reviewed cases (ECE, and a reliability plot saved as PNG
beside the report); each reviewer's agreement with the model and, where two reviewers read the same image, with each
other (Cohen's kappa); and a sentence on whether the local numbers are compatible with the model card's, judged from
the local CIs. Under 50 cases of a class, it says how many more are needed. With --local, it adds the local
calibration's before and after. The review page's Summary tab shows the same text. Only the database is read (and the
model's metadata); the report and the plot are written aside and renamed. Research code, not a medical device.

Exit codes: 0 report written; 2 a usage error: no database, a model or metadata that cannot be read, a bad
reference or local calibration file (the message names the file).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from ..calibration import expected_calibration_error
from ..evaluate import binary_metrics, bootstrap_ci, calibration_table, patient_resamples, rate_ci
from ..formatting import value_ci
from .cases import SUBTYPES, ReviewedCases, between_reviewers, reviewed_cases, reviewer_agreement

MIN_PER_CLASS = 50  # cases of each class for a CI narrow enough to read (about +-0.1 on a rate near 0.8)
COMPARED = ("sensitivity", "specificity", "roc_auc")  # the model card's numbers that do not move with prevalence
NAMES = {"sensitivity": "sensitivity", "specificity": "specificity", "ppv": "PPV", "npv": "NPV", "roc_auc": "ROC AUC"}
LEVEL = 0.95


class EvaluationInputError(ValueError):
    """A file the evaluation needs is missing or not what it should be; the message names it."""


def resampled_ci(
    statistic,
    groups,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = LEVEL,
    estimate: float | None = None,
    floor: float | None = None,
) -> tuple[float, float]:
    """Percentile CI of `statistic(indices)` over bootstrap resamples of whole groups (`evaluate.patient_resamples`).

    Args:
        statistic: indices of the cases drawn -> a number (NaN where undefined in that draw; skipped).
        groups: a group per case (a patient, or the case itself).
        n_boot, seed, level: as in `evaluate.bootstrap_ci`.
        estimate: the statistic on all cases, for a statistic that resampling biases (ECE: sampling noise adds to it,
            so every resample's ECE is larger on average): the interval is then moved by the bootstrap's estimate of
            that bias (the resamples' mean less `estimate`).
        floor: the least value the statistic can take (0 for an ECE), where the moved interval is cut.

    Returns:
        (low, high), NaN where no draw gave a number.
    """
    draws = np.array([statistic(idx) for idx in patient_resamples(groups, n_boot, seed)], dtype=np.float64)
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return float("nan"), float("nan")
    low, high = np.percentile(draws, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    if estimate is not None:
        bias = float(draws.mean()) - estimate
        low, high = low - bias, high - bias
    if floor is not None:
        low, high = max(low, floor), max(high, floor)
    return float(low), float(high)


def ece_ci(y, p, groups, n_boot: int = 1000, seed: int = 0) -> dict:
    """ECE (`calibration.expected_calibration_error`) of `p` on `y` with its bias-corrected bootstrap 95% CI.

    Returns:
        {"value", "low", "high"}.
    """
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    value = expected_calibration_error(y, p)
    low, high = resampled_ci(
        lambda idx: expected_calibration_error(y[idx], p[idx]), groups, n_boot, seed, estimate=value, floor=0.0
    )
    return {"value": value, "low": low, "high": high}


def _escape(value) -> str:
    from .app import as_text  # text a reviewer or a file name brings is shown as text, never as markup

    return as_text(value)


def read_reference(path: str | Path) -> dict:
    """The model card's numbers of a model: its metrics file (`reports/metrics/NAME.json`, the run's record that the
    model card is generated from).

    Returns:
        {"source", "test", "test_ci95", "val", "calibration", "target_sensitivity"} (the last three may be None).

    Raises:
        EvaluationInputError: the file missing, not JSON, or without test metrics and their CIs.
    """
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise EvaluationInputError(f"{path}: no model card numbers there (a run's reports/metrics/NAME.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvaluationInputError(f"{path}: unreadable model card numbers ({exc})") from None
    ok = isinstance(data, dict) and isinstance(data.get("test"), dict) and isinstance(data.get("test_ci95"), dict)
    missing = [k for k in COMPARED if not ok or not isinstance(data["test"].get(k), int | float)]
    if missing:
        raise EvaluationInputError(f"{path}: not a model's metrics file (test.{', test.'.join(missing)} missing)")
    return {
        "source": str(path),
        "test": data["test"],
        "test_ci95": data["test_ci95"],
        "val": data.get("val"),
        "calibration": data.get("calibration"),
        "target_sensitivity": data.get("target_sensitivity"),
    }


def find_reference(model_path: str | Path, meta: dict | None = None) -> dict | None:
    """The model card's numbers for the model at `model_path`: from its metadata where that carries them, else from
    `reports/metrics/NAME.json` of the repository holding its models folder, else of the current folder; None
    where there is none."""
    model_path = Path(model_path)
    if meta and isinstance(meta.get("test"), dict) and isinstance(meta.get("test_ci95"), dict):
        return read_reference_from(meta, str(model_path.with_suffix(".json")))
    for folder in (model_path.resolve().parent.parent, Path.cwd()):
        candidate = folder / "reports" / "metrics" / f"{model_path.stem}.json"
        if candidate.is_file():
            return read_reference(candidate)
    return None


def read_reference_from(meta: dict, source: str) -> dict:
    """`read_reference`'s dict from metadata that carries the numbers itself."""
    keys = ("test", "test_ci95", "val", "calibration", "target_sensitivity")
    return {"source": source, **{k: meta.get(k) for k in keys}}


def too_few(n_normal: int, n_pneumonia: int, minimum: int = MIN_PER_CLASS) -> str | None:
    """The sentence saying how many more cases a meaningful CI needs, or None where each class has `minimum`."""
    counts = {"NORMAL": n_normal, "PNEUMONIA": n_pneumonia}
    short = {c: minimum - n for c, n in counts.items() if n < minimum}
    if not short:
        return None
    total = n_normal + n_pneumonia
    needs = []
    for c, more in short.items():
        share = counts[c] / total if total else 0.0
        at_mix = (
            f" (about {math.ceil(more / share)} more reviews at this site's mix of {share:.0%} {c})"
            if share
            else " (none reviewed yet)"
        )
        needs.append(f"{more} more {c} case{'s' if more != 1 else ''}{at_mix}")
    return (
        f"Too few cases for a meaningful CI: {n_normal} NORMAL and {n_pneumonia} PNEUMONIA readable cases, and at "
        f"least {minimum} of each are needed. Review {' and '.join(needs)}."
    )


def compatibility(metrics: dict, reference: dict | None, few: str | None) -> str:
    """Whether the local sensitivity, specificity and ROC AUC are compatible with the model card's test numbers:
    compatible where the card's value lies inside the local 95% CI (and, where it does not, whether the card's
    validation value does)."""
    if reference is None:
        return "No model card numbers found for this model (pass --reference reports/metrics/NAME.json): not compared."
    if not all(np.isfinite(metrics[k]["low"]) for k in COMPARED):
        return "Not compared with the model card: the local CIs need readable cases of both classes."
    names = {"sensitivity": "sensitivity", "specificity": "specificity", "roc_auc": "ROC AUC"}
    val = reference.get("val") if isinstance(reference.get("val"), dict) else {}
    differ, same, val_inside = [], [], []
    for k in COMPARED:
        card, m = reference["test"][k], metrics[k]
        if m["low"] <= card <= m["high"]:
            same.append(names[k])
            continue
        side = "lower" if m["high"] < card else "higher"
        differ.append(f"{names[k]} is {side} here, {value_ci(m['value'], m['low'], m['high'])} against {card:.3f}")
        if isinstance(val.get(k), int | float) and m["low"] <= val[k] <= m["high"]:
            val_inside.append(f"{names[k]} {val[k]:.3f}")
    caveat = " (with so few cases the CIs are wide, so this says little)" if few else ""
    if not differ:
        values = ", ".join(f"{reference['test'][k]:.3f}" for k in COMPARED)
        return (
            f"Compatible with the model card{caveat}: its test sensitivity, specificity and ROC AUC ({values}) each "
            "lie inside the local 95% CI."
        )
    text = f"Not compatible with the model card{caveat}: {'; '.join(differ)} on the card's test split (outside the "
    text += "local 95% CI)" + (f"; {' and '.join(same)} compatible." if same else ".")
    if val_inside:
        text += f" The card's validation {', '.join(val_inside)} {'lie' if len(val_inside) > 1 else 'lies'} inside."
    return text + " At this site, go by the local numbers, not the model card's."


def local_evaluation(
    cases: ReviewedCases, reference: dict | None = None, local: dict | None = None, n_boot: int = 1000, seed: int = 0
) -> dict:
    """The local evaluation's numbers.

    Args:
        cases: `cases.reviewed_cases`.
        reference: `read_reference` (the model card's numbers), or None.
        local: a local calibration (`local_calibration.read_local`) to report before and after, or None.
        n_boot, seed: bootstrap resamples of groups (patients or cases): `evaluate.bootstrap_ci` for sensitivity,
            specificity, PPV and ROC AUC; `evaluate.rate_ci` over the NORMAL calls for NPV; `ece_ci` for the ECE.

    Returns:
        {"n_cases", "n_normal", "n_pneumonia", "left_out", "threshold", "grouping", "metrics" ({name: {"value",
        "low", "high"}}), "confusion" (tn fp fn tp), "subtypes" (the normal / bacterial / viral table, or None),
        "ece" ({"value", "low", "high"}), "reviewers", "between_reviewers", "too_few", "compatibility",
        "reference", "local", "local_cross_fitted" (held-out locally calibrated probabilities, or None)}.
    """
    y, p, groups = cases.y, cases.table["p_op"].to_numpy(np.float64), cases.groups
    n0, n1 = cases.count(0), cases.count(1)
    nan = {"value": float("nan"), "low": float("nan"), "high": float("nan")}
    metrics = {k: dict(nan) for k in NAMES}
    confusion = {"tn": 0, "fp": 0, "fn": 0, "tp": 0}
    ece = dict(nan)
    if len(y):
        m = binary_metrics(y, p, cases.threshold)
        confusion = {k: m[k] for k in confusion}
        npv = m["tn"] / (m["tn"] + m["fn"]) if m["tn"] + m["fn"] else float("nan")
        values = {"sensitivity": m["sensitivity"], "specificity": m["specificity"], "ppv": m["precision"]}
        values.update(npv=npv, roc_auc=m["roc_auc"])
        cis = {k: (float("nan"), float("nan")) for k in NAMES}
        if n0 and n1:
            ci = bootstrap_ci(y, p, cases.threshold, groups, n_boot, seed)
            cis.update(sensitivity=ci["sensitivity"], specificity=ci["specificity"], ppv=ci["precision"])
            cis["roc_auc"] = ci["roc_auc"]
            called_normal = cases.table["called"].to_numpy() == 0
            if called_normal.any():
                cis["npv"] = rate_ci(y[called_normal] == 0, groups[called_normal], n_boot, seed)[1:]
        metrics = {k: {"value": float(values[k]), "low": cis[k][0], "high": cis[k][1]} for k in NAMES}
        ece = ece_ci(y, cases.p, groups, n_boot, seed)
    few = too_few(n0, n1)
    cross_fitted = None
    if local is not None and n0 and n1:
        from .recalibration import MIN_TO_FIT, cross_fit

        if min(n0, n1) >= MIN_TO_FIT:
            cross_fitted = cross_fit(cases, local["method"], target=local["target_sensitivity"], seed=seed)["p"]
    return {
        "n_cases": int(len(y)),
        "n_normal": n0,
        "n_pneumonia": n1,
        "left_out": dict(cases.left_out),
        "threshold": cases.threshold,
        "grouping": cases.grouping,
        "n_boot": n_boot,
        "metrics": metrics,
        "confusion": confusion,
        "subtypes": subtype_confusion(cases.table),
        "ece": ece,
        "reviewers": reviewer_agreement(cases.answers),
        "between_reviewers": between_reviewers(cases.answers),
        "too_few": few,
        "compatibility": compatibility(metrics, reference, few) if len(y) else "No reviewed cases yet.",
        "reference": reference,
        "local": local,
        "local_cross_fitted": cross_fitted,
        "model_file": cases.model_file,
        "y": y,
        "p": cases.p,
    }


def subtype_confusion(table: pd.DataFrame) -> pd.DataFrame | None:
    """The model's normal / bacterial / viral call by the reviewer's, on cases where the reviewer gave a subtype and
    the model had a ternary panel; None where there are none."""
    typed = table[table["label"].isin(SUBTYPES) & (table["model_subtype"] != "")]
    if typed.empty:
        return None
    out = pd.crosstab(typed["model_subtype"], typed["label"])
    return out.reindex(index=list(SUBTYPES), columns=list(SUBTYPES), fill_value=0)


def reliability_png(evaluation: dict) -> bytes | None:
    """The reliability plot (`plots.calibration` over `evaluate.calibration_table`'s quantile bins) of the shipped
    calibrated P(pneumonia) on the reviewed cases, and of the local calibration on held-out folds when there is one,
    as PNG bytes; None with fewer than 10 cases or one class only."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plots import calibration as calibration_plot

    y = evaluation["y"]
    if len(y) < 10 or len(np.unique(y)) < 2:
        return None
    bins = min(10, max(2, len(y) // 10))
    ece = evaluation["ece"]["value"]
    tables = {f"shipped (ECE {ece:.3f})": calibration_table(y, evaluation["p"], bins)}
    if evaluation["local_cross_fitted"] is not None:
        after = evaluation["local_cross_fitted"]
        name = f"local, held-out folds (ECE {expected_calibration_error(y, after):.3f})"
        tables[name] = calibration_table(y, after, bins)
    fig = calibration_plot(tables)
    fig.axes[0].set_title(f"Reliability on {len(y)} reviewed cases", fontsize=10)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _table(frame: pd.DataFrame) -> list[str]:
    """A small table as Markdown lines, every cell escaped (the headers are the report's own)."""
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return [header, rule, *rows]


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return _escape(value)


def _card(reference: dict | None, split: str, key: str) -> str:
    if reference is None or not isinstance(reference.get(split), dict) or key not in reference[split]:
        return "-"
    ci = (reference.get("test_ci95") or {}).get(key) if split == "test" else None
    return value_ci(reference[split][key], *(ci or (None, None)))


def report_markdown(evaluation: dict, db: str = "", plot_file: str | None = None) -> str:
    """The local evaluation as Markdown (the report file, and the review page's Summary tab).

    Args:
        evaluation: `local_evaluation`'s result.
        db: the database's name, for the first line.
        plot_file: the reliability plot's file name beside the report, linked where given.

    Returns:
        The text; reviewer names and file names are escaped (shown as text, never as markup).
    """
    e, ref = evaluation, evaluation["reference"]
    m, c = e["metrics"], e["confusion"]
    not_readable = e["left_out"].get("images not readable (latest answer)", 0)
    model = Path(e["model_file"]).name or "the model"
    how = "a patient bootstrap (patients from the file names)" if e["grouping"] == "patient" else "a case bootstrap"
    lines = [
        f"## Local evaluation of {_escape(model)} on reviewed cases",
        "",
        f"{_escape(Path(db).name) + ': ' if db else ''}**{e['n_cases']} cases** ({e['n_normal']} NORMAL, "
        f"{e['n_pneumonia']} PNEUMONIA by the reviewers' answers); {not_readable} not readable and left out. The "
        "reference is the reviewer's answer (\"agree\" counts as the model's call); 95% CIs from "
        f"{how}, {e['n_boot']} resamples.",
        "",
        f"**Compared with the model card:** {e['compatibility']}",
    ]
    if e["too_few"]:
        lines += ["", f"**{e['too_few']}**"]
    lines += [
        "",
        f"### At the shipped operating point (P(pneumonia) >= {e['threshold']:.3f}, calibrated)",
        "| metric | local [95% CI] | model card, test | model card, validation |",
        "|---|---|---|---|",
    ]
    for k, name in NAMES.items():
        key = "precision" if k == "ppv" else k
        card_test = _card(ref, "test", key) if k != "npv" else "-"
        card_val = _card(ref, "val", key) if k != "npv" else "-"
        lines.append(f"| {name} | {value_ci(m[k]['value'], m[k]['low'], m[k]['high'])} | {card_test} | {card_val} |")
    lines += [
        "",
        "PPV and NPV depend on the share of pneumonia, which differs between sites; the card's PPV is at its own test "
        "split's share.",
        "",
        "| model \\ reviewer | NORMAL | PNEUMONIA |",
        "|---|---|---|",
        f"| NORMAL | {c['tn']} | {c['fn']} |",
        f"| PNEUMONIA | {c['fp']} | {c['tp']} |",
    ]
    if e["subtypes"] is not None:
        sub = e["subtypes"].rename_axis(index=None).reset_index().rename(columns={"index": "model \\ reviewer"})
        lines += [
            "",
            f"Normal / bacterial / viral, where the reviewer gave a subtype ({int(e['subtypes'].values.sum())} cases):",
        ]
        lines += ["", *_table(sub)]
    lines += ["", "### Calibration on the reviewed cases"]
    ece = e["ece"]
    card_cal = (ref or {}).get("calibration") or {}
    card_text = ""
    if card_cal.get("val") and card_cal.get("test"):
        card_text = (
            f"; the model card: {card_cal['val'].get('ece_cross_fitted', float('nan')):.3f} on validation "
            f"(cross-fitted), {card_cal['test'].get('ece', float('nan')):.3f} on test"
        )
    lines.append(
        f"ECE {value_ci(ece['value'], ece['low'], ece['high'])} (10 equal-width bins) of the shipped calibrated "
        f"P(pneumonia){card_text}."
    )
    if plot_file:
        lines += ["", f"![Reliability on the reviewed cases]({plot_file})"]
    lines += local_section(e["local"])
    lines += ["", "### Reviewers"]
    reviewers = e["reviewers"].assign(kappa=e["reviewers"]["kappa"].astype(object))
    if len(reviewers):
        reviewers = reviewers.rename(columns={"agree": "agree with the model", "kappa": "Cohen's kappa"})
        lines += ["", *_table(reviewers)]
    pairs = e["between_reviewers"]
    if len(pairs):
        lines += ["", "Where two reviewers read the same image:", "", *_table(pairs.astype(object))]
    else:
        lines += ["", "No image was read by two reviewers: no agreement between reviewers yet."]
    other = {k: v for k, v in e["left_out"].items() if k != "images not readable (latest answer)"}
    if other:
        lines += ["", "Left out: " + "; ".join(f"{_escape(k)}: {v}" for k, v in other.items()) + "."]
    if ref:
        source = Path(ref["source"])
        if source.is_absolute() and source.is_relative_to(Path.cwd()):
            source = source.relative_to(Path.cwd())  # the repository's own file, named as the repository names it
        lines += ["", f"Model card numbers from {_escape(source)}."]
    return "\n".join(lines) + "\n"


def local_section(local: dict | None) -> list[str]:
    """The local calibration's before and after (from its file's quality block), as Markdown lines; none without
    one."""
    if local is None:
        return []
    q = local.get("quality") or {}
    name = _escape(Path(local.get("file", "local calibration")).name)

    def ci(key):
        v = q.get(key) or [None, None, None]
        return value_ci(*v)

    lines = [
        "",
        f"### Local calibration ({name}: {local['method'].replace('_', ' ')}, kept apart from the shipped model)",
        f"Fitted on {q.get('cases', '?')} reviewed cases; quality on held-out folds ({q.get('folds', '?')}-fold "
        "cross-fitting).",
        "",
        "| | before (shipped) | after (local, held-out) |",
        "|---|---|---|",
        f"| ECE | {ci('ece_before')} | {ci('ece_after')} |",
    ]
    shipped, held = q.get("shipped_threshold") or {}, q.get("local_threshold_held_out") or {}
    for k in ("sensitivity", "specificity"):
        lines.append(f"| {k} | {value_ci(*(shipped.get(k) or [None]))} | {value_ci(*(held.get(k) or [None]))} |")
    change = q.get("ece_change") or [None, None, None]
    if None not in change and change[2] < 0:
        verdict = f"ECE lower on held-out cases by {-change[0]:.3f} [{-change[2]:.3f}, {-change[1]:.3f}]."
    elif None not in change:
        verdict = (
            f"No clear gain in calibration on held-out cases (ECE change {value_ci(*change)}): the shipped "
            "calibration is as good here."
        )
    else:
        verdict = ""
    lines += [
        "",
        f"{verdict} Local threshold {local['threshold']:.3f} on the local scale ({local['threshold_shipped']:.3f} on "
        f"the shipped one) for a sensitivity of {local['target_sensitivity']:.2f}; used only with `--local`.".lstrip(),
    ]
    return lines


def write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name beside `path`, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(evaluation: dict, out: str | Path, db: str = "") -> tuple[Path, Path | None]:
    """The report (Markdown) at `out` and its reliability plot beside it (`OUT_STEM_reliability.png`), each written
    aside and renamed.

    Returns:
        (report path, plot path or None where there is too little to plot).
    """
    out = Path(out)
    png = reliability_png(evaluation)
    plot = out.with_name(f"{out.stem}_reliability.png") if png is not None else None
    if plot is not None:
        write_atomic(plot, png)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    text = report_markdown(evaluation, db, plot.name if plot else None)
    text += f"\nWritten {stamp} by `pneumonia-cxr review evaluate`. Research code, not a medical device.\n"
    write_atomic(out, text.encode())
    return out, plot


def load_model_meta(model: str | Path) -> dict:
    """The model's validated metadata (`model_metadata.read_metadata`).

    Raises:
        EvaluationInputError: the model or its metadata missing or outside the schema (the message names the file).
    """
    from ..model_metadata import MetadataError, read_metadata

    try:
        return read_metadata(model, "binary")
    except MetadataError as exc:
        raise EvaluationInputError(str(exc)) from None


def cases_from_db(db: str | Path, model: str | Path | None) -> tuple[ReviewedCases, Path, dict]:
    """(the cases, the model's path, its metadata) for the database `db`; `model` None: the model the latest answer
    was given to.

    Raises:
        EvaluationInputError: no database at `db`, no answers, or the model's metadata unusable.
    """
    from .store import ReviewStoreError, read_answers

    if not Path(db).is_file():
        raise EvaluationInputError(f"{db}: no review database there")
    try:
        answers = read_answers(db)
    except ReviewStoreError as exc:
        raise EvaluationInputError(str(exc)) from None
    if answers.empty and model is None:
        raise EvaluationInputError(f"{db}: no answers yet, so no model to evaluate")
    model = Path(model) if model is not None else Path(answers["model_file"].iloc[-1])
    if not model.is_file():
        raise EvaluationInputError(f"{model}: the model the answers in {db} were given to is not there; pass --model")
    meta = load_model_meta(model)
    return reviewed_cases(answers, meta, str(model), meta.get("git_commit")), model, meta


def main(argv: list[str] | None = None) -> int:
    from ..predict import positive_int

    parser = argparse.ArgumentParser(
        prog="pneumonia-cxr review evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", required=True, help="the review database (read only)")
    parser.add_argument("--out", help="the report (Markdown); default DB_STEM_evaluation.md beside the database")
    parser.add_argument("--model", help="the model the answers were given to (default: the one the database names)")
    parser.add_argument("--reference", help="the model card's numbers (default: reports/metrics/MODEL.json)")
    parser.add_argument("--local", help="a local calibration (review calibrate) to report before and after")
    parser.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples for the CIs")
    args = parser.parse_args(argv)
    from ..local_calibration import LocalCalibrationError, read_local
    from ..predict import _native_stderr_silenced

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    db = Path(args.db)
    out = Path(args.out) if args.out else db.with_name(f"{db.stem}_evaluation.md")
    try:
        with _native_stderr_silenced():  # reading a model's metadata loads TensorFlow, whose start-up lines are noise
            cases, model, meta = cases_from_db(db, args.model)
        reference = read_reference(args.reference) if args.reference else find_reference(model, meta)
        local = read_local(args.local) if args.local else None
        kept = {db.resolve(), model.resolve(), model.with_suffix(".json").resolve()}
        if {out.resolve(), out.with_name(f"{out.stem}_reliability.png").resolve()} & kept:
            raise EvaluationInputError(f"{out}: the report would replace the database or the model; choose another")
    except (EvaluationInputError, LocalCalibrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    evaluation = local_evaluation(cases, reference, local, n_boot=args.n_boot)
    report, plot = write_report(evaluation, out, str(db))
    print(f"{report}: local evaluation of {model.name} on {evaluation['n_cases']} cases")
    if plot is not None:
        print(f"{plot}: reliability plot")
    print(evaluation["compatibility"])
    if evaluation["too_few"]:
        print(evaluation["too_few"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
