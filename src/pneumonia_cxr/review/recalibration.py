"""A local calibration fitted on a site's reviewed cases, kept apart from the shipped model:

    pneumonia-cxr review calibrate --db reviews.sqlite --out local.json [--method platt|prior-shift]
        [--target-sensitivity 0.95] [--model models/ensemble.keras] [--folds 5]

Platt scaling (a logistic regression on the logit of the shipped calibrated P(pneumonia): a slope and an intercept)
or a prior shift (the intercept alone: the local share of pneumonia differs, the images do not), fitted on every
reviewed case (`cases.py`) and written to its own file (`local_calibration.py`), with a local threshold reaching the
target sensitivity (default: the model card's target) on those cases. Its quality is estimated honestly by
cross-fitting: each fold's cases are calibrated, and their threshold chosen, by a fit on the other folds (folds by
patient where the file names carry one, stratified by class), and the ECE before and after, and the sensitivity and
specificity at the local threshold, are read on the held-out cases with bootstrap 95% CIs. A report of before and
after is written beside the file (`OUT_STEM.md`).

`predict` and the review app use the file only when given `--local local.json`. The shipped model and its metadata are
only read; an existing --out that is not a local calibration is never overwritten. Research code, not a medical
device.

Exit codes: 0 written; 2 a usage error: no database, a model or metadata that cannot be read, too few cases to fit
(fewer than 10 of a class), an --out that would overwrite another kind of file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..calibration import EPS, calibrate, expected_calibration_error, fit_platt
from ..evaluate import binary_metrics, bootstrap_ci, choose_threshold
from ..local_calibration import FORMAT, METHODS, shipped_model
from .cases import ReviewedCases
from .evaluation import (
    MIN_PER_CLASS,
    EvaluationInputError,
    cases_from_db,
    ece_ci,
    find_reference,
    local_section,
    read_reference,
    resampled_ci,
    write_atomic,
)

MIN_TO_FIT = 10  # cases of each class: fewer, and a fold may hold none of one
DEFAULT_TARGET = 0.95  # the project's sensitivity target, where the model card does not state one


class LocalFitError(ValueError):
    """Too few cases, or a destination that must not be overwritten; the message says which."""


def _logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64).reshape(-1), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def fit(y, p, method: str) -> dict:
    """A local recalibration of the shipped calibrated P(pneumonia) `p` on labels `y`.

    Args:
        y: 0/1 reference labels.
        p: the shipped calibrated probabilities.
        method: "platt" (slope and intercept, `calibration.fit_platt`) or "prior_shift" (slope 1, the intercept by
            maximum likelihood: the log-odds move by one constant, as a change in the share of pneumonia moves them).

    Returns:
        {"a": slope > 0, "b": intercept}.
    """
    if method == "platt":
        params = fit_platt(y, p)
        return {"a": params["a"], "b": params["b"]}
    if method != "prior_shift":
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    from scipy.optimize import minimize_scalar

    y, z = np.asarray(y, dtype=np.float64).reshape(-1), _logit(p)
    best = minimize_scalar(
        lambda b: float(np.sum(np.logaddexp(0, z + b) - y * (z + b))), bounds=(-20, 20), method="bounded"
    )
    return {"a": 1.0, "b": float(best.x)}


def cross_fit(cases: ReviewedCases, method: str, target: float, folds: int = 5, seed: int = 0) -> dict:
    """Every case calibrated, and called at a threshold for sensitivity `target`, by a fit on the other folds' cases.

    Folds keep a patient's images together (or each case apart) and each class in every fold
    (`StratifiedGroupKFold`).

    Returns:
        {"p": held-out locally calibrated probabilities, "called": held-out decisions (1 PNEUMONIA) at the
        threshold chosen on the other folds, "folds": the number of folds}.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y, p, groups = cases.y, cases.p, cases.groups
    k = int(min(folds, np.bincount(y, minlength=2).min(), len(np.unique(groups))))
    if k < 2:
        raise LocalFitError(
            f"too few cases to cross-fit ({len(y)} cases, {np.bincount(y, minlength=2).min()} of a class)"
        )
    out, called = np.empty(len(y)), np.zeros(len(y), dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, held in splitter.split(p, y, groups):
        out[held] = calibrate(p[held], fit(y[train], p[train], method))
        threshold = choose_threshold(y[train], p[train], target) if y[train].any() else 1.0
        called[held] = p[held] >= threshold
    return {"p": out, "called": called, "folds": k}


def _rates(called, y, groups, n_boot: int, seed: int) -> dict:
    """Sensitivity and specificity of 0/1 decisions `called`, each [value, low, high], the CIs from the resamples
    `evaluate.bootstrap_ci` draws for the local evaluation (so the shipped operating point's read the same there)."""
    called = np.asarray(called, dtype=np.float64)
    m, ci = binary_metrics(y, called, 0.5), bootstrap_ci(y, called, 0.5, groups, n_boot, seed)
    return {k: [float(m[k]), *ci[k]] for k in ("sensitivity", "specificity")}


def local_calibration(
    cases: ReviewedCases,
    meta: dict,
    model_path: str | Path,
    method: str = "platt",
    target: float = DEFAULT_TARGET,
    folds: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    db: str = "",
) -> dict:
    """The local calibration file's content: the fit on every case, the local threshold, and the cross-fitted
    quality before and after with bootstrap CIs.

    Args:
        cases: `cases.reviewed_cases` of the model.
        meta: the model's metadata (its threshold and calibration are copied in, binding the file to it).
        model_path: the model's file.
        method: "platt" or "prior_shift".
        target: the sensitivity the local threshold must reach on the reviewed cases.
        folds, n_boot, seed: cross-fitting folds, bootstrap resamples, their seed.
        db: the database's name, recorded.

    Returns:
        A dict `local_calibration.validate_local` accepts.

    Raises:
        LocalFitError: fewer than `MIN_TO_FIT` cases of a class.
    """
    y, p, groups = cases.y, cases.p, cases.groups
    n0, n1 = cases.count(0), cases.count(1)
    if min(n0, n1) < MIN_TO_FIT:
        raise LocalFitError(
            f"{db or 'the database'}: too few reviewed cases to fit a local calibration ({n0} NORMAL, {n1} PNEUMONIA; "
            f"at least {MIN_TO_FIT} of each are needed to fit it, and {MIN_PER_CLASS} of each for a meaningful CI)"
        )
    params = fit(y, p, method)
    threshold_shipped = float(np.clip(choose_threshold(y, p, target), 1e-6, 1 - 1e-6))
    held = cross_fit(cases, method, target, folds, seed)
    after = held["p"]

    def change(idx):
        return expected_calibration_error(y[idx], after[idx]) - expected_calibration_error(y[idx], p[idx])

    before_ece, after_ece = (list(ece_ci(y, v, groups, n_boot, seed).values()) for v in (p, after))
    difference = after_ece[0] - before_ece[0]
    return {
        "format": FORMAT,
        "method": method,
        "a": params["a"],
        "b": params["b"],
        "threshold": float(np.clip(calibrate([threshold_shipped], params)[0], 1e-6, 1 - 1e-6)),
        "threshold_shipped": threshold_shipped,
        "target_sensitivity": float(target),
        "model": shipped_model(model_path, meta),
        "fitted_on": {
            "database": Path(db).name,
            "cases": int(len(y)),
            "normal": n0,
            "pneumonia": n1,
            "prevalence": n1 / len(y),
            "grouping": cases.grouping,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "quality": {
            "cases": int(len(y)),
            "folds": held["folds"],
            "n_boot": n_boot,
            "ece_before": before_ece,
            "ece_after": after_ece,
            "ece_change": [difference, *resampled_ci(change, groups, n_boot, seed, estimate=difference)],
            "brier_before": float(np.mean((p - y) ** 2)),
            "brier_after": float(np.mean((after - y) ** 2)),
            "shipped_threshold": _rates(cases.table["called"].to_numpy(), y, groups, n_boot, seed),
            "local_threshold_held_out": _rates(held["called"], y, groups, n_boot, seed),
        },
    }


def check_destination(out: Path, model: Path) -> None:
    """Refuse to write over the shipped model, its metadata, or any existing file that is not a local calibration.

    Raises:
        LocalFitError: naming `out` and why.
    """
    protected = {model.resolve(), model.with_suffix(".json").resolve()}
    if out.resolve() in protected:
        raise LocalFitError(f"{out}: is the shipped model's own file; a local calibration is kept apart from it")
    if out.exists():
        try:
            kind = json.loads(out.read_text()).get("format")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            kind = None
        if kind != FORMAT:
            raise LocalFitError(f"{out}: exists and is not a local calibration; not overwritten (choose another --out)")


def report_markdown(local: dict) -> str:
    """Before and after, for the file beside the local calibration."""
    lines = local_section({**local, "file": local.get("file", "local.json")})
    return "\n".join(lines).lstrip("\n").replace("### ", "## ", 1) + "\n\nResearch code, not a medical device.\n"


def main(argv: list[str] | None = None) -> int:
    from ..io import write_json
    from ..predict import _native_stderr_silenced, positive_int, share

    parser = argparse.ArgumentParser(
        prog="pneumonia-cxr review calibrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", required=True, help="the review database (read only)")
    parser.add_argument("--out", required=True, help="the local calibration file to write (e.g. local.json)")
    parser.add_argument("--model", help="the model the answers were given to (default: the one the database names)")
    parser.add_argument("--method", choices=["platt", "prior-shift"], default="platt")
    parser.add_argument("--target-sensitivity", type=share, help="for the local threshold (default: the model card's)")
    parser.add_argument("--reference", help="the model card's numbers, for the default target sensitivity")
    parser.add_argument("--folds", type=positive_int, default=5, help="cross-fitting folds for the quality estimate")
    parser.add_argument("--n-boot", type=positive_int, default=1000, help="bootstrap resamples for the CIs")
    args = parser.parse_args(argv)
    out = Path(args.out)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with _native_stderr_silenced():  # reading a model's metadata loads TensorFlow, whose start-up lines are noise
            cases, model, meta = cases_from_db(args.db, args.model)
        check_destination(out, model)
        if out.resolve() == Path(args.db).resolve():
            raise LocalFitError(f"{out}: is the review database; choose another --out")
        target = args.target_sensitivity
        if target is None:
            reference = read_reference(args.reference) if args.reference else find_reference(model, meta)
            target = float((reference or {}).get("target_sensitivity") or DEFAULT_TARGET)
        local = local_calibration(
            cases, meta, model, args.method.replace("-", "_"), target, args.folds, args.n_boot, db=str(args.db)
        )
    except (EvaluationInputError, LocalFitError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json(out, local)
    report = out.with_suffix(".md") if out.suffix != ".md" else out.with_name(f"{out.name}.report.md")
    write_atomic(report, report_markdown({**local, "file": str(out)}).encode())
    q = local["quality"]
    print(f"{out}: local calibration ({local['method']}) of {model.name} from {q['cases']} reviewed cases")
    print(f"{report}: before and after")
    print(
        f"ECE on held-out folds: {q['ece_before'][0]:.3f} before, {q['ece_after'][0]:.3f} after; local threshold "
        f"{local['threshold']:.3f} (sensitivity target {local['target_sensitivity']:.2f}); used only with --local {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
