"""Evaluate a trained model's probabilities and write its metrics and predictions under reports/.

Each notebook writes its own files through these; the final notebook and README only read them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from .calibration import calibrate, calibration_report, fit_platt
from .data import TERNARY_CLASSES, XrayData
from .data.shifts import SHIFTS
from .evaluate import (
    assert_consistent,
    choose_threshold,
    evaluate_binary,
    rate_ci,
    shift_metrics,
    shift_predictions,
    shift_summary,
    ternary_metrics,
)
from .inference import predict_batches
from .published import PUBLISHED, official_test_anchors
from .selection import choose_model
from .train import EXACT_FLOATS, load_model, read_json, save_model, save_predictions, write_csv, write_json


def record_binary(
    name: str, p_val, p_test, data: XrayData, dirs: dict, cfg: dict, calibration: dict | None = None, **extra
) -> dict:
    """Threshold on validation for the target sensitivity, Platt calibration fitted on validation, test metrics with
    patient-bootstrap CIs; writes `<name>.json` and the per-image predictions (raw and calibrated).

    Args:
        name: the model's name in every file.
        p_val, p_test: the model's P(pneumonia) on the validation and test images, in `data.split` order.
        data, dirs, cfg: the notebook's data, output folders and settings.
        calibration: Platt parameters already fitted on these validation predictions (else fitted here).
        extra: more fields for the metrics file.

    Returns:
        The metrics as written.
    """
    _, y_val, rows_val = data.split("val")
    _, y_test, rows_test = data.split("test")
    calibration = calibration or fit_platt(y_val, p_val)
    result = {
        "model": name,
        "task": "binary",
        "profile": cfg["profile"],
        "synthetic": data.synthetic,
        "test_split": data.test_split,
        **evaluate_binary(
            y_val,
            p_val,
            y_test,
            p_test,
            rows_test["patient"].to_numpy(),
            cfg.get("target_sensitivity", 0.95),
            cfg["n_boot"],
            cfg.get("seed", 0),
        ),
        "calibration": calibration_report(calibration, y_val, p_val, rows_val["patient"].to_numpy(), y_test, p_test),
        **extra,
    }
    result["threshold_calibrated"] = float(calibrate([result["threshold"]], calibration)[0])
    save_predictions(dirs["predictions"] / f"{name}_val.csv", rows_val, p_val, y_val, calibrate(p_val, calibration))
    save_predictions(
        dirs["predictions"] / f"{name}_test.csv", rows_test, p_test, y_test, calibrate(p_test, calibration)
    )
    write_json(dirs["metrics"] / f"{name}.json", result)
    return result


def val_and_test(result: dict, keys=("roc_auc", "accuracy", "sensitivity", "specificity", "threshold")) -> pd.DataFrame:
    """A recorded model's validation and test numbers side by side, one row each (every notebook ends with it)."""
    return pd.DataFrame({"validation": result["val"], "test": result["test"]}).T[list(keys)]


def predict_binary(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return predict_batches(model, images, batch_size).ravel()


def _per_image(rows: pd.DataFrame, y, shifted: pd.DataFrame) -> pd.DataFrame:
    """A `*_shifts.csv`: each image's probabilities under every shift, beside its path, patient and label."""
    return pd.concat(
        [
            rows[["relpath", "patient"]].reset_index(drop=True),
            pd.DataFrame({"y_true": y}),
            shifted.reset_index(drop=True),
        ],
        axis=1,
    )


def save_and_record_binary(
    name: str, model, data: XrayData, dirs: dict, cfg: dict, models_dir, shifts=None, **extra
) -> tuple[dict, pd.DataFrame]:
    """The end of every binary model's notebook, in the order that keeps test out of every choice:

    threshold on validation -> validation under acquisition shifts (what `choose_model` ranks on) -> save
    with that threshold -> reload in safe mode (must predict the same) -> predict the test split once ->
    metrics with CIs -> the test split under the same shifts (per image, and the robustness table).
    `shifts(split, raw_images, y)`, if given, makes the shifted predictions instead of the model (the ensemble
    averages its members' saved ones); its unshifted column must be what the model predicts.
    """
    x_va, y_va, rows_va = data.split("val")
    p_va = predict_binary(model, x_va)
    threshold = choose_threshold(y_va, p_va, cfg["target_sensitivity"])

    def under_shifts(split, predictor, p_unshifted):
        raw, y = data.split(split, raw=True)[0], data.split(split)[1]
        if shifts is None:  # a shift happens to the image as acquired, before the preprocessing (thorax scale)
            return shift_predictions(
                lambda x: predict_binary(predictor, data.preprocess(x)), raw, y, given={"none": p_unshifted}
            )
        shifted = shifts(split, raw, y)
        assert np.allclose(shifted["none"], p_unshifted, atol=1e-5), f"{name}: shifted predictions of another model"
        return shifted.assign(none=p_unshifted)  # the model's own, which the threshold was chosen on

    shifted = under_shifts("val", model, p_va)
    # kept per image, so the final notebook can bootstrap how sure the model choice is
    write_csv(dirs["predictions"] / f"{name}_val_shifts.csv", _per_image(rows_va, y_va, shifted), EXACT_FLOATS)
    val_shifts = shift_metrics(shifted, y_va, threshold)
    write_csv(dirs["metrics"] / f"{name}_val_robustness.csv", val_shifts)
    calibration = fit_platt(y_va, p_va)
    path = save_model(
        model,
        Path(models_dir) / f"{name}.keras",
        image_size=cfg["image_size"],
        resize="squash",
        thorax_width=data.thorax_width,
        task="binary",
        classes=["NORMAL", "PNEUMONIA"],
        threshold=threshold,
        calibration=calibration,
        threshold_calibrated=float(calibrate([threshold], calibration)[0]),
        **extra,
    )
    reloaded, _ = load_model(path)
    assert np.allclose(predict_binary(reloaded, x_va), p_va, atol=1e-5), f"{path}: reloaded model predicts differently"
    x_te, y_te, rows_te = data.split("test")
    p_te = predict_binary(reloaded, x_te)
    result = record_binary(
        name,
        p_va,
        p_te,
        data,
        dirs,
        cfg,
        calibration,
        model_file=str(path),
        image_size=cfg["image_size"],
        val_under_shifts=shift_summary(val_shifts),
        **extra,
    )
    assert_consistent(result["test"])
    assert_consistent(result["val"])
    assert result["threshold"] == threshold
    shifted_te = under_shifts("test", reloaded, p_te)
    # kept per image, so notebook 07 reads the ensemble's instead of predicting them again
    write_csv(dirs["predictions"] / f"{name}_test_shifts.csv", _per_image(rows_te, y_te, shifted_te), EXACT_FLOATS)
    robustness = shift_metrics(shifted_te, y_te, threshold)
    write_csv(dirs["metrics"] / f"{name}_robustness.csv", robustness)
    return result, robustness


def ensemble_shift_predictions(
    members: dict, data: XrayData, predictions_dir: str | Path, image_size: int, split: str, raw: np.ndarray, y
) -> pd.DataFrame:
    """The ensemble's probabilities under every shift: the mean of its members'. A member trained at the ensemble's
    size saw these very images in its own notebook, which saved its shifted predictions (`<member>_<split>_shifts.csv`,
    read back); the others predict here, on the shifted image resized to their size, as inside the ensemble.

    Args:
        members: member name -> loaded Keras model.
        data: the run's data at the ensemble's image size.
        predictions_dir: where the members' per-image predictions are.
        image_size: the ensemble's input size.
        split, raw, y: the split's name, its decoded images and labels (`save_and_record_binary`'s `shifts` call).
    """
    from .models import build_ensemble

    rows = data.split(split)[2]["relpath"].reset_index(drop=True)
    total = 0
    for name, model in members.items():
        saved = Path(predictions_dir) / f"{name}_{split}_shifts.csv"
        if model.input_shape[1] == image_size and saved.exists():
            table = pd.read_csv(saved)
            if not table["relpath"].equals(rows):
                raise ValueError(f"{saved}: not the images of the {split} split of this run")
            total = total + table[list(SHIFTS)]
        else:
            alone = build_ensemble([model], image_size, name=f"{name}_at_{image_size}")
            total = total + shift_predictions(lambda x, m=alone: predict_binary(m, data.preprocess(x)), raw, y)
    return total / len(members)


def record_ternary(name: str, probs_val, probs_test, data: XrayData, dirs: dict, cfg: dict, **extra) -> dict:
    _, y_val, rows_val = data.split("val", ternary=True)
    _, y_test, rows_test = data.split("test", ternary=True)
    result = {
        "model": name,
        "task": "ternary",
        "profile": cfg["profile"],
        "synthetic": data.synthetic,
        "test_split": data.test_split,
        "classes": list(TERNARY_CLASSES),
        "val": ternary_metrics(y_val, probs_val),
        "test": ternary_metrics(y_test, probs_test),
        **extra,
    }
    save_predictions(dirs["predictions"] / f"{name}_val.csv", rows_val, probs_val, y_val)
    save_predictions(dirs["predictions"] / f"{name}_test.csv", rows_test, probs_test, y_test)
    write_json(dirs["metrics"] / f"{name}.json", result)
    return result


def load_metrics(metrics_dir: str | Path) -> dict[str, dict]:
    """Every model's metrics JSON under `metrics_dir`, by model name."""
    out = {}
    for f in sorted(Path(metrics_dir).glob("*.json")):
        m = read_json(f)
        if isinstance(m, dict) and "task" in m:
            out[m["model"]] = m
    return out


def binary_table(metrics: dict[str, dict], with_published: bool = True) -> pd.DataFrame:
    """One row per binary model: validation AUC (the selection criterion) and test metrics with CIs."""
    rows = []
    for name, m in metrics.items():
        if m["task"] != "binary":
            continue
        t, ci = m["test"], m["test_ci95"]
        fmt = lambda k, t=t, ci=ci: f"{t[k]:.3f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]"
        shifted = m.get("val_under_shifts", {}).get("mean_youden")
        rows.append(
            {
                "model": name,
                "val AUC": f"{m['val']['roc_auc']:.3f}",
                "val J (shifts)": "-" if shifted is None else f"{shifted:.3f}",
                "threshold": f"{m['threshold']:.3f}",
                "test AUC [95% CI]": fmt("roc_auc"),
                "accuracy": fmt("accuracy"),
                "sensitivity": fmt("sensitivity"),
                "specificity": fmt("specificity"),
                "n test": t["n"],
            }
        )
    table = pd.DataFrame(rows)
    if with_published:
        fmt = lambda v: "-" if v != v else f"{v:.3f}"  # noqa: E731 (NaN: not reported)
        pub = [
            {
                "model": f"published: {r['source']}, {r['model']} (chosen on test: {r['chosen on test']})",
                "val AUC": "-",
                "val J (shifts)": "-",
                "threshold": "-",
                "test AUC [95% CI]": fmt(r["roc_auc"]),
                "accuracy": fmt(r["accuracy"]),
                "sensitivity": fmt(r["sensitivity"]),
                "specificity": fmt(r["specificity"]),
                "n test": 624,
            }
            for _, r in official_test_anchors().iterrows()
        ]
        table = pd.concat([table, pd.DataFrame(pub)], ignore_index=True)
    return table


def ternary_table(metrics: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for name, m in metrics.items():
        if m["task"] != "ternary":
            continue
        t = m["test"]
        rows.append(
            {
                "model": name,
                "val macro AUC": f"{m['val']['macro_ovr_auc']:.3f}",
                "test accuracy": f"{t['accuracy']:.3f}",
                "test macro OvR AUC": f"{t['macro_ovr_auc']:.3f}",
                "bacterial-vs-viral AUC": f"{t['bacterial_vs_viral']['roc_auc']:.3f}",
                "n test": t["n"],
            }
        )
    pub = PUBLISHED["Kermany et al. 2018 (bacterial vs viral)"]
    rows.append(
        {
            "model": "published: Kermany et al. 2018 (bacterial vs viral)",
            "val macro AUC": "-",
            "test accuracy": "-",
            "test macro OvR AUC": "-",
            "bacterial-vs-viral AUC": f"{pub['roc_auc']:.3f}",
            "n test": "-",
        }
    )
    return pd.DataFrame(rows)


def subgroup_of(predictions: pd.DataFrame) -> pd.Series:
    """Pneumonias by subtype, NORMALs by the series of their file names (IM-... or NORMAL2-IM-..., two batches of
    the release); the images of one subgroup share a class."""
    normal_series = np.where(
        predictions["patient"].str.startswith("NORMAL2-"),
        "normal, NORMAL2- series",
        np.where(predictions["patient"].str.startswith("IM-"), "normal, IM- series", "normal, other names"),
    )
    pneumonia = predictions["subtype"].map({"bacteria": "bacterial pneumonia", "virus": "viral pneumonia"})
    return pd.Series(
        np.where(predictions["y_true"] == 1, pneumonia.fillna("pneumonia, subtype unknown"), normal_series),
        index=predictions.index,
    )


def subgroup_table(
    predictions_dir: str | Path, thresholds: dict[str, float], split: str = "test", n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Who is missed and who is falsely alarmed: per model, sensitivity on each pneumonia subtype and specificity
    on each NORMAL series, at the model's validation threshold, with patient-bootstrap 95% CIs."""
    rows = []
    for model, threshold in thresholds.items():
        pred = pd.read_csv(Path(predictions_dir) / f"{model}_{split}.csv")
        called = pred["p_pneumonia"].to_numpy() >= threshold
        for group, idx in pred.groupby(subgroup_of(pred)).indices.items():
            positive = bool(pred["y_true"].iloc[idx[0]])
            rate, lo, hi = rate_ci(called[idx] == positive, pred["patient"].iloc[idx], n_boot, seed)
            rows.append(
                {
                    "model": model,
                    "split": split,
                    "subgroup": group,
                    "metric": "sensitivity" if positive else "specificity",
                    "images": len(idx),
                    "patients": pred["patient"].iloc[idx].nunique(),
                    "value": rate,
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
    return pd.DataFrame(rows)


def val_vs_test(
    predictions_dir: str | Path, metrics: dict[str, dict], n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """What validation promised and what test gave: per binary model, overall and per subgroup, sensitivity or
    specificity at the model's validation threshold on both splits with patient-bootstrap CIs, and the gap. A report of
    how much validation tells, never a selection."""
    thresholds = {n: m["threshold"] for n, m in metrics.items() if m["task"] == "binary"}
    both = pd.concat([subgroup_table(predictions_dir, thresholds, split, n_boot, seed) for split in ("val", "test")])
    overall = []
    for model, threshold in thresholds.items():
        for split in ("val", "test"):
            pred = pd.read_csv(Path(predictions_dir) / f"{model}_{split}.csv")
            called = pred["p_pneumonia"].to_numpy() >= threshold
            for positive, metric in ((1, "sensitivity"), (0, "specificity")):
                idx = np.flatnonzero(pred["y_true"].to_numpy() == positive)
                rate, lo, hi = rate_ci(called[idx] == bool(positive), pred["patient"].iloc[idx], n_boot, seed)
                overall.append(
                    {
                        "model": model,
                        "split": split,
                        "subgroup": "all",
                        "metric": metric,
                        "images": len(idx),
                        "value": rate,
                        "ci_low": lo,
                        "ci_high": hi,
                    }
                )
    both = pd.concat([pd.DataFrame(overall), both], ignore_index=True)
    wide = both.pivot_table(
        index=["model", "subgroup", "metric"],
        columns="split",
        values=["value", "ci_low", "ci_high", "images"],
        aggfunc="first",
    )
    wide.columns = [f"{split} {what}" for what, split in wide.columns]
    wide = wide.reset_index()
    wide["test - val"] = wide["test value"] - wide["val value"]
    cols = [
        "model",
        "subgroup",
        "metric",
        "val images",
        "val value",
        "val ci_low",
        "val ci_high",
        "test images",
        "test value",
        "test ci_low",
        "test ci_high",
        "test - val",
    ]
    return wide.reindex(columns=cols)


def probabilities(pred_csv: str | Path) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(pred_csv)
    return df["y_true"].to_numpy(), df["p_pneumonia"].to_numpy()


def _notebook_code(run: dict) -> dict[str, str | None]:
    """Each trained notebook's code fingerprint in a run.json (None where the run predates fingerprints)."""
    return {nb: entry.get("code") for nb, entry in run.get("notebooks", {}).items() if nb != "final_notebook"}


def seed_runs(reports_dir: str | Path) -> dict[int, tuple[dict, dict[str, dict]]]:
    """(run.json, every model's metrics) by run seed: the main run's (`reports/metrics`) first, then each other
    seed's in seed order (`reports/seeds/<seed>/metrics`, written by `make seed-check SEED=<seed>`). The seed is
    read from each run.json, never from the folder name. Another seed's run counts only if it is complete and
    comparable: the same profile, dataset and models as the main run, and the same code for every notebook before
    the final one (the runner's `code` fingerprints in run.json; not checked when the main run predates them). An
    interrupted, different or outdated run is skipped with a warning: rerun `make seed-check` after a code change."""
    main_dir = Path(reports_dir) / "metrics"
    if not (main_dir / "run.json").exists():
        return {}
    main_run, main_metrics = read_json(main_dir / "run.json"), load_metrics(main_dir)
    main_code = _notebook_code(main_run)
    out = {main_run["seed"]: (main_run, main_metrics)}
    for metrics_dir in sorted((Path(reports_dir) / "seeds").glob("*/metrics")):
        run = read_json(metrics_dir / "run.json") if (metrics_dir / "run.json").exists() else {}
        metrics = load_metrics(metrics_dir)
        differs = [
            what
            for what, same in [
                ("no run.json", bool(run)),
                ("profile", run.get("profile") == main_run["profile"]),
                ("dataset", Path(run.get("data_dir", "")).name == Path(main_run["data_dir"]).name),
                ("models (an interrupted run?)", set(metrics) == set(main_metrics)),
                ("code (made before a code change?)", not all(main_code.values()) or _notebook_code(run) == main_code),
            ]
            if not same
        ]
        if differs:
            warnings.warn(f"{metrics_dir}: skipped, differs from {main_dir} in {', '.join(differs)}", stacklevel=2)
        elif run["seed"] in out:
            raise ValueError(f"{metrics_dir}: seed {run['seed']} was already read from another folder")
        else:
            out[run["seed"]] = (run, metrics)
    main, *others = out.items()
    return dict([main, *sorted(others)])


SEED_METRICS = {
    "binary": {
        "test AUC": "roc_auc",
        "sensitivity": "sensitivity",
        "specificity": "specificity",
        "accuracy": "accuracy",
    },
    "ternary": {"accuracy": "accuracy", "macro OvR AUC": "macro_ovr_auc"},
}


def seed_table(runs: dict[int, tuple[dict, dict[str, dict]]]) -> pd.DataFrame:
    """How much each model's test numbers move with the seed (which draws the split, the initial weights and the
    augmentation), from `seed_runs`: one row per (model, metric), one column per seed, and the spread (largest
    minus smallest); the last row is each run's chosen model."""
    rows = []
    for seed, (_, metrics) in runs.items():
        for name, m in sorted(metrics.items()):
            for label, key in SEED_METRICS[m["task"]].items():
                rows.append({"model": name, "metric": label, "seed": seed, "value": m["test"][key]})
            if m["task"] == "ternary":
                rows.append(
                    {
                        "model": name,
                        "metric": "bacterial-vs-viral AUC",
                        "seed": seed,
                        "value": m["test"]["bacterial_vs_viral"]["roc_auc"],
                    }
                )
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).pivot(index=["model", "metric"], columns="seed", values="value")
    table = table[list(runs)]  # the main run first
    table.columns = [f"seed {s}" for s in table.columns]
    table["spread"] = table.max(axis=1) - table.min(axis=1)
    chosen = pd.DataFrame(
        [{f"seed {s}": choose_model(m) for s, (_, m) in runs.items()}],
        index=pd.MultiIndex.from_tuples([("chosen", "model")], names=["model", "metric"]),
    )
    return pd.concat([table, chosen])


def headline_table(
    metrics: dict[str, dict], predictions_dir: str | Path, n_boot: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """The one table a reader needs, test split only: the chosen binary model, the ensemble, the best pixel baseline
    (by validation AUC), the reported ternary decision, each with patient-bootstrap 95% CIs, then the published
    results on the official test split (no CIs: as their sources report them).

    Returns:
        One row per model: task, AUC, accuracy, sensitivity, specificity (ternary: macro one-vs-rest AUC and accuracy).
    """
    from .targets import ternary_ci, ternary_name

    def cell(value, ci=None):
        if value is None or value != value:
            return "-"
        return f"{value:.3f}" if ci is None else f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"

    chosen = choose_model(metrics)
    baselines = [n for n, m in metrics.items() if m["task"] == "binary" and n.startswith("baseline")]
    names = list(
        dict.fromkeys([chosen, "ensemble", *sorted(baselines, key=lambda n: -metrics[n]["val"]["roc_auc"])[:1]])
    )
    rows = []
    for name in (n for n in names if n in metrics):
        t, ci = metrics[name]["test"], metrics[name]["test_ci95"]
        rows.append(
            {
                "model": name + (" (chosen)" if name == chosen else ""),
                "task": "normal vs pneumonia",
                **{
                    label: cell(t[k], ci[k])
                    for label, k in (
                        ("AUC", "roc_auc"),
                        ("accuracy", "accuracy"),
                        ("sensitivity", "sensitivity"),
                        ("specificity", "specificity"),
                    )
                },
            }
        )
    ternary = ternary_name(metrics)
    if ternary:
        t, ci = metrics[ternary]["test"], ternary_ci(Path(predictions_dir) / f"{ternary}_test.csv", n_boot, seed)
        rows.append(
            {
                "model": ternary,
                "task": "normal / bacterial / viral",
                "AUC": cell(t["macro_ovr_auc"], ci["macro_ovr_auc"]),
                "accuracy": cell(t["accuracy"], ci["accuracy"]),
                "sensitivity": "-",
                "specificity": "-",
            }
        )
    for _, r in official_test_anchors().iterrows():
        rows.append(
            {
                "model": f"{r['source']}: {r['model']}" + (" (chosen on test)" if r["chosen on test"] == "yes" else ""),
                "task": "published",
                "AUC": cell(r["roc_auc"]),
                "accuracy": cell(r["accuracy"]),
                "sensitivity": cell(r["sensitivity"]),
                "specificity": cell(r["specificity"]),
            }
        )
    return pd.DataFrame(rows)
