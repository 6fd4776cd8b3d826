"""The model card of the chosen model (Mitchell et al., "Model Cards for Model Reporting", 2019), generated from a
run's metrics so that every number in it is the run's: `python -m pneumonia_cxr.report` writes docs/model_card.md
(for a run on SYNTHETIC data, a card of its own beside the run, which says so first and never calls its test split
official)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .formatting import value_ci
from .io import read_json
from .records import load_metrics
from .selection import choose_model
from .tables import describe_test_split, synthetic_run


def model_card(reports_dir: str | Path = "reports") -> str:
    """The card as Markdown: model details, intended use, out of scope, data, metrics with CIs (overall and by
    subgroup, validation beside test), calibration, limitations, ethical considerations. (Longer than most
    functions: it is the card's template, section by section, in the order the card is read.)"""
    metrics_dir = Path(reports_dir) / "metrics"
    metrics = load_metrics(metrics_dir)
    if not metrics:
        return "# Model card\n\nNo run yet: `make all`.\n"
    name = choose_model(metrics)
    m = metrics[name]
    run = read_json(metrics_dir / "run.json") if (metrics_dir / "run.json").exists() else {}
    eda = read_json(metrics_dir / "eda.json") if (metrics_dir / "eda.json").exists() else {}
    t, ci = m["test"], m["test_ci95"]
    synthetic = synthetic_run(metrics)
    official = m.get("test_split") == "official"
    test = (
        describe_test_split(m)
        if synthetic
        else "the official test split of the release"
        if official
        else "a patient-level hold-out carved from train"
    )
    data = (
        f"- SYNTHETIC demo data (`pneumonia_cxr.data.demo`): {eda.get('images', '?')} procedural images of "
        f"{eda.get('patients', '?')} made-up patients, not X-rays; split by patient."
        if synthetic
        else f"- Kermany et al. 2018 (Guangzhou Women and Children's Medical Center, children aged 1-5): "
        f"{eda.get('images', '?')} images of {eda.get('patients', '?')} patients, split by patient."
    )
    lines = [
        f"# Model card: `{name}` (normal vs pneumonia on pediatric chest X-rays)",
        "",
        *(
            ["**SYNTHETIC DEMO DATA: this card describes a model trained on drawings; use it for nothing.**", ""]
            if synthetic
            else []
        ),
        f"Generated from the run at commit `{run.get('git_commit', '?')}` (`reports/metrics`); do not edit by hand.",
        "",
        "## Model details",
        f"- `models/{name}.keras` with `models/{name}.json` (image size {m.get('image_size')}, threshold, calibration,"
        " commit). Chosen on validation by the rule in `src/pneumonia_cxr/selection.py`"
        + (f": {m['choice']['rule']}." if "choice" in m else "."),
        f"- Output: P(pneumonia), calibrated by Platt scaling on validation; decision PNEUMONIA at P >= "
        f"{m['threshold_calibrated']:.3f} (the threshold reaching sensitivity {m['target_sensitivity']:g} on "
        "validation).",
        "- Research code, MIT licence; trained on 2 CPU cores.",
        "",
        "## Intended use",
        "- Research and teaching: how a chest X-ray classifier is built, chosen and evaluated honestly.",
        "- A second reader in a study setting, its calls reviewed by a clinician (`pneumonia-cxr predict`).",
        "",
        "## Out of scope",
        "- Any clinical decision. Not a medical device; not validated outside one hospital.",
        "- Adults, lateral views, CT, or X-rays from other hospitals and machines without a new evaluation.",
        "",
        "## Before use at a new site",
        "- Reviewers answer the site's own X-rays on the review page (`pneumonia-cxr review`): at least 50 normal and "
        "50 pneumonia.",
        "- `pneumonia-cxr review evaluate --db reviews.sqlite` gives sensitivity, specificity, PPV, NPV, AUC and ECE "
        "there with 95% CIs, and says whether they are compatible with this card's.",
        "- `pneumonia-cxr review calibrate --db reviews.sqlite --out local.json` fits a local calibration and "
        "threshold, used only with `--local local.json`; the model and this card stay as they are.",
        "",
        "## Data",
        data,
        f"- Test: {test}, {t['n']} images, read once at the end of the run.",
        "",
        "## Metrics (test, at the validation-chosen threshold, 95% CI from a patient bootstrap)",
        "| metric | value [95% CI] |",
        "|---|---|",
        *[f"| {k} | {value_ci(t[k], *ci[k])} |" for k in ("roc_auc", "accuracy", "sensitivity", "specificity")],
    ]
    gap_file = metrics_dir / "val_vs_test.csv"
    if gap_file.exists():
        gap = pd.read_csv(gap_file).query("model == @name")
        lines += [
            "",
            "### By subgroup: validation beside test",
            "| subgroup | metric | validation | test |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['subgroup']} | {r['metric']} | {value_ci(r['val value'], r['val ci_low'], r['val ci_high'])} | "
            f"{value_ci(r['test value'], r['test ci_low'], r['test ci_high'])} |"
            for _, r in gap.iterrows()
        ]
    cal = m.get("calibration")
    if cal:
        lines += [
            "",
            "### Calibration",
            f"ECE {cal['val']['ece_cross_fitted']:.3f} on validation (cross-fitted by patient), "
            f"{cal['test']['ece']:.3f} on test ({cal['test']['ece_raw']:.3f} before calibration); Brier score on "
            f"test {cal['test']['brier']:.3f} ({cal['test']['brier_raw']:.3f} before).",
        ]
    lines += [
        "",
        "## Limitations",
        "- One hospital, one population and acquisition pipeline. Validation comes from the training folder and "
        "overstates specificity where test images look different (the table above shows by how much).",
        "- Sensitivity lands either side of its validation target on new patients by sampling alone.",
        "- Grad-CAM shows where the gradient is large, not why.",
        "",
        "## Ethical considerations",
        "- A missed pneumonia costs more than a false alarm, so the threshold favours sensitivity; the false alarms "
        "it buys fall on normal children, who get further tests.",
        "- The data are de-identified public images (CC BY 4.0); no patient can be contacted or re-identified here.",
        "- Performance by sex or age cannot be reported: the release carries neither.",
        "",
    ]
    return "\n".join(lines)
