"""Writes the notebook sources (outputs empty). Run once to (re)create them; the .ipynb files are
what papermill executes and what readers open."""
import nbformat as nbf
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def params(top=False):
    up = "" if top else "../"
    return f'''profile = "full"  # "smoke": a small real subset in minutes; "full": everything
data_dir = "{up}data/chest_xray"  # the dataset root (Kaggle or Mendeley layout)
cache_dir = "{up}data/cache"  # decoded-image cache
output_dir = "{up}reports"  # metrics/, figures/, predictions/
models_dir = "{up}models"  # trained .keras models (not in git)
weights_dir = None  # folder with Keras ImageNet weight files for offline use; None downloads
seed = 42
image_size = None  # None: the profile's size
epochs = None  # None: the profile's number'''


def nb(cells, path):
    book = nbf.v4.new_notebook()
    out = []
    for kind, src in cells:
        if kind == "md":
            out.append(nbf.v4.new_markdown_cell(src.strip()))
        elif kind == "params":
            c = nbf.v4.new_code_cell(src)
            c.metadata["tags"] = ["parameters"]
            out.append(c)
        else:
            out.append(nbf.v4.new_code_cell(src.strip()))
    book.cells = out
    book.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}}
    nbf.write(book, ROOT / path)


SETUP = '''%matplotlib inline
from pathlib import Path
import numpy as np, pandas as pd
from IPython.display import display, Markdown
from pneumonia_cxr import plots
from pneumonia_cxr.notebook import setup
'''

nb([
    ("md", """# 01 · Exploratory data analysis
Pediatric chest X-rays from Guangzhou Women and Children's Medical Center (Kermany et al., *Cell* 2018).
What is in the data, how it is split **by patient**, and whether anything leaks between splits.
Decisions made here: the official 16-image `val/` folder is too small to select models on, so its images
join the training pool; validation (and, when the dataset has no `test/`, a test hold-out) are carved
from that pool by patient, stratified by subtype; exact-duplicate images stay in one split."""),
    ("params", params()),
    ("code", SETUP + '''from pneumonia_cxr.data import summarize, assert_no_leakage
from pneumonia_cxr.data.summary import format_summary
from pneumonia_cxr.train import write_json
cfg, dirs, data = setup(profile, data_dir, cache_dir, output_dir, seed, "cnn_size", image_size)
t = data.table'''),
    ("md", "## Counts per split, class and subtype"),
    ("code", '''summary = summarize(data)
write_json(dirs["metrics"] / "eda.json", summary)
print(format_summary(summary))
plots.counts_by_split(t, dirs["figures"] / "01_counts_by_split.png");'''),
    ("md", "Most patients contribute one image, some several: splitting by image would put the same child in train and test."),
    ("code", '''plots.images_per_patient(t, dirs["figures"] / "01_images_per_patient.png");
t.groupby("label")["patient"].agg(images="size", patients="nunique")'''),
    ("md", "## Image size and aspect ratio as stored\nThe 224 px release is already squashed to a square; original downloads vary widely. The cache squashes every image to a square as well, so originals and the 224 px release look alike to the models."),
    ("code", '''plots.size_distributions(t, dirs["figures"] / "01_sizes.png");
t[["width", "height"]].describe().loc[["min", "50%", "max"]]'''),
    ("md", "## Intensity per class\nExposure differs between images; models standardise each image so that they learn anatomy, not exposure."),
    ("code", '''binary = (t["label"] == "PNEUMONIA").to_numpy().astype(int)
plots.intensity_histograms(data.images, binary, path=dirs["figures"] / "01_intensity.png");'''),
    ("md", "## Sample images per class"),
    ("code", '''rng = np.random.default_rng(seed)
picks = np.concatenate([rng.choice(np.flatnonzero((t["subtype"] == s) & (t["split_assigned"] == "train")), 6, replace=False)
                        for s in ("normal", "bacteria", "virus")])
fig = plots.sample_grid(data.images[picks], [f"{t.subtype[i]}\\n{t.patient[i]}" for i in picks], path=dirs["img"] / "sample_grid.png")
if data.synthetic:
    plots.synthetic_banner(fig)'''),
    ("md", "## Duplicates and the patient-leakage audit\nImages with identical pixels under two names, and the check that no patient (or duplicate) crosses splits."),
    ("code", '''dups = t[t["pixel_hash"].duplicated(keep=False)].sort_values("pixel_hash")
print(f"{len(dups)} images share their pixels with another image ({dups['pixel_hash'].nunique()} distinct)")
display(dups[["relpath", "patient", "split_assigned"]].head(10))
assert_no_leakage(t)
assert summary["cross_split_patients"] == 0
assert (dups.groupby("pixel_hash")["split_assigned"].nunique() == 1).all(), "a duplicate crosses splits"
assert t.groupby("patient")["split_assigned"].nunique().max() == 1
print("leakage audit passed: no patient and no duplicate image in two splits")'''),
], "notebooks/01_eda.ipynb")

COMMON_TRAIN = SETUP + '''import keras
from pneumonia_cxr.data import make_dataset, class_weights, xray_augmentation
from pneumonia_cxr.evaluate import assert_consistent, robustness_table
from pneumonia_cxr.results import record_binary
from pneumonia_cxr.train import compile_model, fit, save_model, load_model, write_json
'''

nb([
    ("md", """# 02 · Baselines: logistic regression and a dense network on pixels
The floor every later model must clear. Both see raw pixels at low resolution with no notion of space.
The decision threshold is chosen on validation for sensitivity ≥ 0.95 (few missed pneumonias); test is read once, at the end."""),
    ("params", params()),
    ("code", COMMON_TRAIN + '''from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
cfg, dirs, data = setup(profile, data_dir, cache_dir, output_dir, seed, "baseline_size", image_size, epochs=epochs)
x_tr, y_tr, _ = data.split("train"); x_va, y_va, _ = data.split("val")
flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255'''),
    ("md", "## Logistic regression on pixels\nThe regularisation strength is chosen on validation AUC."),
    ("code", '''scores = {}
for C in (1e-3, 1e-2, 1e-1):
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight="balanced", max_iter=300))
    lr.fit(flat(x_tr), y_tr)
    scores[C] = (roc_auc_score(y_va, lr.predict_proba(flat(x_va))[:, 1]), lr)
best_C = max(scores, key=lambda c: scores[c][0]); logreg = scores[best_C][1]
print({c: round(s, 4) for c, (s, _) in scores.items()}, "-> C =", best_C)'''),
    ("md", "## Dense network on pixels\nClass weights balance the 3:1 pneumonia:normal ratio; early stopping watches validation AUC."),
    ("code", '''from pneumonia_cxr.models import build_dense_baseline
dense = compile_model(build_dense_baseline(cfg["image_size"]), 1e-3)
history = fit(dense, make_dataset(x_tr, y_tr, cfg["batch_size"], training=True, seed=seed),
              make_dataset(x_va, y_va, 128), cfg["epochs"], class_weights(y_tr), cfg["patience"])
plots.training_curves(history, "Dense baseline", dirs["figures"] / "02_dense_curves.png");'''),
    ("md", "## Test, read once"),
    ("code", '''x_te, y_te, _ = data.split("test")
res_lr = record_binary("baseline_logreg", logreg.predict_proba(flat(x_va))[:, 1], logreg.predict_proba(flat(x_te))[:, 1],
                       data, dirs, cfg, C=best_C, image_size=cfg["image_size"])
p_va = dense.predict(make_dataset(x_va, None, 128), verbose=0).ravel()
p_te = dense.predict(make_dataset(x_te, None, 128), verbose=0).ravel()
path = save_model(dense, Path(models_dir) / "baseline_dense.keras", image_size=cfg["image_size"], resize="squash",
                  task="binary", classes=["NORMAL", "PNEUMONIA"], threshold=None)
res_dense = record_binary("baseline_dense", p_va, p_te, data, dirs, cfg, model_file=str(path), image_size=cfg["image_size"])
for r in (res_lr, res_dense):
    assert_consistent(r["test"]); assert_consistent(r["val"])
pd.DataFrame({r["model"]: {k: r["test"][k] for k in ("roc_auc", "accuracy", "sensitivity", "specificity")} for r in (res_lr, res_dense)}).round(3)'''),
    ("md", "Both baselines separate the classes to a degree, which is the bar: a useful model must be much better at the same sensitivity."),
], "notebooks/02_baseline_dense.ipynb")

nb([
    ("md", """# 03 · A CNN trained from scratch
Five conv–batchnorm–ReLU–pool blocks with per-image standardisation (removes exposure differences between sites).
Augmentation changes acquisition, not anatomy: small rotations, shifts and zoom, contrast and brightness; never flips.
Class weights balance the classes; early stopping and the threshold use validation only."""),
    ("params", params()),
    ("code", COMMON_TRAIN + '''from pneumonia_cxr.models import build_scratch_cnn
cfg, dirs, data = setup(profile, data_dir, cache_dir, output_dir, seed, "cnn_size", image_size, epochs=epochs)
x_tr, y_tr, _ = data.split("train"); x_va, y_va, _ = data.split("val")'''),
    ("code", '''model = compile_model(build_scratch_cnn(cfg["image_size"]), 1e-3)
train_ds = make_dataset(x_tr, y_tr, cfg["batch_size"], training=True, seed=seed, augment=xray_augmentation(seed))
history = fit(model, train_ds, make_dataset(x_va, y_va, 128), cfg["epochs"], class_weights(y_tr), cfg["patience"])
plots.training_curves(history, "Scratch CNN", dirs["figures"] / "03_scratch_cnn_curves.png");'''),
    ("md", "## Save, reload in safe mode, evaluate on test once"),
    ("code", '''predict = lambda m, x: m.predict(make_dataset(x, None, 128), verbose=0).ravel()
p_va = predict(model, x_va)
x_te, y_te, _ = data.split("test")
from pneumonia_cxr.evaluate import choose_threshold
threshold = choose_threshold(y_va, p_va, cfg["target_sensitivity"])
path = save_model(model, Path(models_dir) / "scratch_cnn.keras", image_size=cfg["image_size"], resize="squash",
                  task="binary", classes=["NORMAL", "PNEUMONIA"], threshold=threshold)
reloaded, meta = load_model(path)
assert np.allclose(predict(reloaded, x_va), p_va, atol=1e-5), "reloaded model predicts differently"
res = record_binary("scratch_cnn", p_va, predict(reloaded, x_te), data, dirs, cfg, model_file=str(path),
                    image_size=cfg["image_size"], epochs_trained=len(history))
assert_consistent(res["test"]); assert res["threshold"] == threshold
pd.DataFrame({"validation": res["val"], "test": res["test"]}).T[["roc_auc", "accuracy", "sensitivity", "specificity", "threshold"]].round(3)'''),
    ("md", "## Robustness to acquisition shifts\nTest metrics at the same threshold when contrast, brightness, gamma, sharpness or resolution change, and what accuracy, PPV and NPV would be at the official test split's 62.5% prevalence."),
    ("code", '''rob = robustness_table(lambda x: predict(reloaded, x), x_te, y_te, threshold)
rob.to_csv(dirs["metrics"] / "scratch_cnn_robustness.csv", index=False)
rob.round(3)'''),
], "notebooks/03_scratch_cnn.ipynb")

nb([
    ("md", """# 04 · Transfer learning from ImageNet
A `keras.applications` backbone (parameter `backbone`; MobileNetV2 α=0.35 is the CPU-friendly default, InceptionV3,
DenseNet121, ResNet50V2 or EfficientNetB0 work by changing it). First the backbone is frozen and only the head learns
(feature extraction), then the top layers are fine-tuned at a low learning rate, BatchNorm kept frozen.
`weights_dir` points at local Keras weight files for offline machines; otherwise `weights='imagenet'` downloads them."""),
    ("params", params() + '''
backbone = "MobileNetV2"
alpha = 0.35  # MobileNetV2 width'''),
    ("code", COMMON_TRAIN + '''from pneumonia_cxr.config import resolve_weights
from pneumonia_cxr.evaluate import choose_threshold
from pneumonia_cxr.models import build_transfer_model, unfreeze_top
cfg, dirs, data = setup(profile, data_dir, cache_dir, output_dir, seed, "transfer_size", image_size, epochs=epochs)
x_tr, y_tr, _ = data.split("train"); x_va, y_va, _ = data.split("val")
weights = resolve_weights("imagenet", backbone, alpha, weights_dir)
print("backbone weights:", weights)'''),
    ("md", "## Phase 1: frozen backbone, train the head"),
    ("code", '''model = compile_model(build_transfer_model(cfg["image_size"], backbone, weights, alpha), 1e-3)
train_ds = make_dataset(x_tr, y_tr, cfg["batch_size"], training=True, seed=seed, augment=xray_augmentation(seed))
val_ds = make_dataset(x_va, y_va, 128)
h1 = fit(model, train_ds, val_ds, cfg["transfer_epochs"], class_weights(y_tr), cfg["patience"])'''),
    ("md", "## Phase 2: fine-tune the top of the backbone"),
    ("code", '''unfreeze_top(model, cfg["fine_tune_layers"])
compile_model(model, 1e-4)
h2 = fit(model, train_ds, val_ds, cfg["fine_tune_epochs"], class_weights(y_tr), cfg["patience"])
history = pd.concat([h1, h2.assign(epoch=h2["epoch"] + len(h1))], ignore_index=True)
plots.training_curves(history, f"{backbone}: frozen, then fine-tuned (from epoch {len(h1) + 1})", dirs["figures"] / "04_transfer_curves.png");'''),
    ("md", "## Save, reload in safe mode, evaluate on test once"),
    ("code", '''predict = lambda m, x: m.predict(make_dataset(x, None, 64), verbose=0).ravel()
p_va = predict(model, x_va)
threshold = choose_threshold(y_va, p_va, cfg["target_sensitivity"])
path = save_model(model, Path(models_dir) / "transfer.keras", image_size=cfg["image_size"], resize="squash",
                  task="binary", classes=["NORMAL", "PNEUMONIA"], threshold=threshold, backbone=backbone)
reloaded, meta = load_model(path)
assert np.allclose(predict(reloaded, x_va), p_va, atol=1e-5), "reloaded model predicts differently"
x_te, y_te, _ = data.split("test")
res = record_binary("transfer", p_va, predict(reloaded, x_te), data, dirs, cfg, model_file=str(path),
                    image_size=cfg["image_size"], backbone=backbone, alpha=alpha)
assert_consistent(res["test"])
pd.DataFrame({"validation": res["val"], "test": res["test"]}).T[["roc_auc", "accuracy", "sensitivity", "specificity", "threshold"]].round(3)'''),
    ("md", "## Robustness to acquisition shifts"),
    ("code", '''rob = robustness_table(lambda x: predict(reloaded, x), x_te, y_te, threshold)
rob.to_csv(dirs["metrics"] / "transfer_robustness.csv", index=False)
rob.round(3)'''),
], "notebooks/04_transfer_learning.ipynb")

nb([
    ("md", """# 05 · Ternary classifier: normal, bacterial or viral
The same fine-tuned backbone with a three-way softmax. Bacterial and viral pneumonia look alike on a radiograph,
so per-class recall and the bacterial-vs-viral AUC matter more than overall accuracy."""),
    ("params", params() + '''
backbone = "MobileNetV2"
alpha = 0.35'''),
    ("code", COMMON_TRAIN + '''from pneumonia_cxr.config import resolve_weights
from pneumonia_cxr.data import TERNARY_CLASSES
from pneumonia_cxr.models import build_transfer_model, unfreeze_top
from pneumonia_cxr.results import record_ternary
from sklearn.metrics import roc_curve
cfg, dirs, data = setup(profile, data_dir, cache_dir, output_dir, seed, "transfer_size", image_size, epochs=epochs)
x_tr, y_tr, _ = data.split("train", ternary=True); x_va, y_va, _ = data.split("val", ternary=True)
onehot = lambda y: keras.utils.to_categorical(y, 3)
print("train images per class:", dict(zip(TERNARY_CLASSES, np.bincount(y_tr))))'''),
    ("code", '''weights = resolve_weights("imagenet", backbone, alpha, weights_dir)
model = compile_model(build_transfer_model(cfg["image_size"], backbone, weights, alpha, n_classes=3), 1e-3, n_classes=3)
train_ds = make_dataset(x_tr, onehot(y_tr), cfg["batch_size"], training=True, seed=seed, augment=xray_augmentation(seed))
val_ds = make_dataset(x_va, onehot(y_va), 128)
h1 = fit(model, train_ds, val_ds, cfg["transfer_epochs"], class_weights(y_tr), cfg["patience"])
unfreeze_top(model, cfg["fine_tune_layers"])
compile_model(model, 1e-4, n_classes=3)
h2 = fit(model, train_ds, val_ds, cfg["fine_tune_epochs"], class_weights(y_tr), cfg["patience"])
history = pd.concat([h1, h2.assign(epoch=h2["epoch"] + len(h1))], ignore_index=True)
plots.training_curves(history, "Ternary classifier", dirs["figures"] / "05_ternary_curves.png");'''),
    ("md", "## Save, reload, evaluate on test once"),
    ("code", '''predict = lambda m, x: m.predict(make_dataset(x, None, 64), verbose=0)
P_va = predict(model, x_va)
path = save_model(model, Path(models_dir) / "ternary.keras", image_size=cfg["image_size"], resize="squash",
                  task="ternary", classes=list(TERNARY_CLASSES), backbone=backbone)
reloaded, _ = load_model(path)
assert np.allclose(predict(reloaded, x_va), P_va, atol=1e-5)
x_te, y_te, _ = data.split("test", ternary=True)
P_te = predict(reloaded, x_te)
assert np.allclose(P_te.sum(1), 1, atol=1e-4), "class probabilities must sum to 1"
res = record_ternary("ternary", P_va, P_te, data, dirs, cfg, model_file=str(path), image_size=cfg["image_size"])
assert np.array(res["test"]["confusion_matrix"]).sum() == len(y_te)
assert 0 <= res["test"]["accuracy"] <= 1 and 0 <= res["test"]["macro_ovr_auc"] <= 1
print(f"test accuracy {res['test']['accuracy']:.3f}, macro one-vs-rest AUC {res['test']['macro_ovr_auc']:.3f}, "
      f"bacterial-vs-viral AUC {res['test']['bacterial_vs_viral']['roc_auc']:.3f} (n={res['test']['bacterial_vs_viral']['n']})")
pd.DataFrame(res["test"]["per_class"]).T.round(3)'''),
    ("code", '''plots.confusion(res["test"]["confusion_matrix"], list(TERNARY_CLASSES), "Ternary, test", dirs["figures"] / "05_ternary_confusion.png")
curves = {c: ((y_te == k).astype(int), P_te[:, k]) for k, c in enumerate(TERNARY_CLASSES)}
plots.roc_pr_curves(curves, dirs["figures"] / "05_ternary_roc_pr.png");'''),
], "notebooks/05_ternary_classifier.ipynb")

nb([
    ("md", """# 06 · Hyperparameter search with keras-tuner
Bayesian optimisation of the scratch CNN's depth, width, dropout and learning rate on validation AUC,
within a trial budget (`max_trials`). The tuner folder is overwritten and seeded, so a re-run repeats the search.
The best configuration is then retrained for the full number of epochs and evaluated like every other model."""),
    ("params", params() + '''
max_trials = None  # None: the profile's budget'''),
    ("code", COMMON_TRAIN + '''from pneumonia_cxr.evaluate import choose_threshold
from pneumonia_cxr.tuning import cnn_hypermodel, search, trials_table
cfg, dirs, data = setup(profile, data_dir, cache_dir, output_dir, seed, "tuner_size", image_size, epochs=epochs,
                        tuner_max_trials=max_trials)
x_tr, y_tr, _ = data.split("train"); x_va, y_va, _ = data.split("val")
train_ds = make_dataset(x_tr, y_tr, cfg["batch_size"], training=True, seed=seed, augment=xray_augmentation(seed))
val_ds = make_dataset(x_va, y_va, 128)'''),
    ("code", '''build = cnn_hypermodel(cfg["image_size"])
tuner = search(build, train_ds, val_ds, cfg["tuner_max_trials"], cfg["tuner_epochs"], Path(models_dir) / "tuner",
               seed, class_weights(y_tr))
trials = trials_table(tuner)
assert (trials["status"] == "COMPLETED").all(), "a tuner trial failed: see its message above"
trials.to_csv(dirs["metrics"] / "tuner_trials.csv", index=False)
trials.round(4)'''),
    ("md", "## Retrain the best configuration"),
    ("code", '''best_hp = tuner.get_best_hyperparameters(1)[0]
keras.utils.set_random_seed(seed)
model = build(best_hp)
history = fit(model, train_ds, val_ds, cfg["epochs"], class_weights(y_tr), cfg["patience"])
plots.training_curves(history, f"Tuned CNN {best_hp.values}", dirs["figures"] / "06_tuned_cnn_curves.png");'''),
    ("code", '''predict = lambda m, x: m.predict(make_dataset(x, None, 128), verbose=0).ravel()
p_va = predict(model, x_va)
threshold = choose_threshold(y_va, p_va, cfg["target_sensitivity"])
path = save_model(model, Path(models_dir) / "tuned_cnn.keras", image_size=cfg["image_size"], resize="squash",
                  task="binary", classes=["NORMAL", "PNEUMONIA"], threshold=threshold, hyperparameters=best_hp.values)
reloaded, _ = load_model(path)
assert np.allclose(predict(reloaded, x_va), p_va, atol=1e-5)
x_te, y_te, _ = data.split("test")
res = record_binary("tuned_cnn", p_va, predict(reloaded, x_te), data, dirs, cfg, model_file=str(path),
                    image_size=cfg["image_size"], hyperparameters=best_hp.values)
assert_consistent(res["test"])
pd.DataFrame({"validation": res["val"], "test": res["test"]}).T[["roc_auc", "accuracy", "sensitivity", "specificity", "threshold"]].round(3)'''),
], "notebooks/06_keras_tuner_search.ipynb")

nb([
    ("md", """# Pneumonia on pediatric chest X-rays: what a small CPU-trained model can and cannot do
**Problem.** Pneumonia is a leading cause of death in children under five; a chest X-ray is the standard test, and
reading it takes a trained eye that many clinics lack. We classify pediatric chest X-rays as NORMAL vs PNEUMONIA, and
as normal / bacterial / viral, on the Guangzhou dataset of Kermany et al. (*Cell* 2018).
A missed pneumonia costs more than a false alarm, so the decision threshold is set on validation data for a
sensitivity target, and sensitivity is always reported beside specificity: a model that calls everything pneumonia is worthless.

This notebook only reads what the numbered notebooks wrote under `reports/` and `models/`."""),
    ("params", params(top=True)),
    ("code", SETUP.replace("from pneumonia_cxr.notebook import setup\n", "") + '''from pneumonia_cxr.config import output_dirs, settings
from pneumonia_cxr.evaluate import assert_consistent, at_prevalence, calibration_table
from pneumonia_cxr.results import binary_table, choose_model, load_metrics, probabilities, ternary_table
from pneumonia_cxr.train import read_json, git_commit
from datetime import date
dirs = output_dirs(output_dir)
metrics = load_metrics(dirs["metrics"])
eda = read_json(dirs["metrics"] / "eda.json")
run = read_json(dirs["metrics"] / "run.json") if (dirs["metrics"] / "run.json").exists() else {}
display(Markdown(f"*Run of {date.today().isoformat()}, git commit `{git_commit()}`, profile `{profile}`, dataset `{eda['root']}`.*"))
if eda["synthetic"]:
    display(Markdown("<div style='color:red;font-size:150%'><b>SYNTHETIC DEMO DATA</b>: every number below only shows the pipeline runs.</div>"))'''),
    ("md", "## Data\nImages are split **by patient**; exact-duplicate images stay in one split. Counts of this run:"),
    ("code", '''display(pd.DataFrame(eda["assigned_split_counts"]).T.assign(patients=pd.Series(eda["patients_per_split"])))
print(f"{eda['images']} images of {eda['patients']} patients; patients in two splits: {eda['cross_split_patients']}; "
      f"images with an exact duplicate: {eda['duplicate_images']}")
assert eda["cross_split_patients"] == 0'''),
    ("md", """## Method
Every image is decoded once, converted to grayscale and squashed to a square, then cached. Five model families are
trained with class weights and early stopping on validation AUC: logistic regression and a dense network on pixels
(the floor), a CNN from scratch, an ImageNet MobileNetV2 fine-tuned, and a keras-tuner-searched CNN. For each, the
threshold is the highest one that reaches sensitivity ≥ 0.95 on validation. The model reported below is the one with the
best **validation** AUC. Test is read once; 95% confidence intervals come from 1,000 bootstrap resamples of patients."""),
    ("md", "## Every model, beside the published anchor"),
    ("code", '''table = binary_table(metrics)
table.to_csv(dirs["metrics"] / "results_table.csv", index=False)
display(table)
display(ternary_table(metrics))
for m in metrics.values():
    if m["task"] == "binary":
        assert_consistent(m["test"]); assert_consistent(m["val"])'''),
    ("md", "The published figures were measured on the official 624-image test split with a model selected on that split; ours are on a patient-level hold-out carved from the training folder (or on the official test split when the dataset has one), with nothing selected on it. They are not directly comparable, and a hold-out from the same folder is easier than the official test."),
    ("md", "## The chosen model"),
    ("code", '''name = choose_model(metrics)
best = metrics[name]
t, ci = best["test"], best["test_ci95"]
display(Markdown(
    f"**{name}** (best validation AUC, {best['val']['roc_auc']:.3f}). Threshold **{best['threshold']:.3f}**, chosen on validation "
    f"for sensitivity ≥ {best['target_sensitivity']:.2f}. On the {t['n']} test images: "
    f"sensitivity **{t['sensitivity']:.3f}** [{ci['sensitivity'][0]:.3f}, {ci['sensitivity'][1]:.3f}], "
    f"specificity **{t['specificity']:.3f}** [{ci['specificity'][0]:.3f}, {ci['specificity'][1]:.3f}], "
    f"accuracy {t['accuracy']:.3f} [{ci['accuracy'][0]:.3f}, {ci['accuracy'][1]:.3f}], "
    f"ROC AUC {t['roc_auc']:.3f} [{ci['roc_auc'][0]:.3f}, {ci['roc_auc'][1]:.3f}]; "
    f"{t['fn']} missed pneumonias and {t['fp']} false alarms."))'''),
    ("code", '''curves = {n: probabilities(dirs["predictions"] / f"{n}_test.csv") for n, m in metrics.items() if m["task"] == "binary"}
plots.roc_pr_curves(curves, dirs["img"] / "roc_pr.png", operating_point=(t["sensitivity"], t["specificity"]));'''),
    ("code", '''y_va, p_va = probabilities(dirs["predictions"] / f"{name}_val.csv")
y_te, p_te = probabilities(dirs["predictions"] / f"{name}_test.csv")
plots.calibration({"validation": calibration_table(y_va, p_va), "test": calibration_table(y_te, p_te)}, dirs["figures"] / "final_calibration.png")
plots.confusion([[t["tn"], t["fp"]], [t["fn"], t["tp"]]], ["NORMAL", "PNEUMONIA"], f"{name}, test, threshold {best['threshold']:.2f}", dirs["img"] / "confusion.png");'''),
    ("md", """## Prevalence and acquisition shifts
Sensitivity and specificity do not depend on prevalence; accuracy, PPV and NPV do. Training data are 74% pneumonia,
the official test split 62.5%. The threshold was chosen for a sensitivity target, which does not move with prevalence."""),
    ("code", '''plots.prevalence_curve(t["sensitivity"], t["specificity"], dirs["figures"] / "final_prevalence.png")
display(pd.DataFrame([at_prevalence(t, p) for p in (0.5, 0.625, 0.74)]).round(3))
rob_file = dirs["metrics"] / f"{name}_robustness.csv"
if rob_file.exists():
    display(Markdown(f"Test metrics of **{name}** at the same threshold under acquisition shifts:"))
    display(pd.read_csv(rob_file).round(3))'''),
    ("md", "## Where the model looks: Grad-CAM on right and wrong test cases"),
    ("code", '''from pneumonia_cxr.data import load_dataset
from pneumonia_cxr.explain import grad_cam
from pneumonia_cxr.train import load_model
cnn = max((n for n, m in metrics.items() if m["task"] == "binary" and m.get("model_file") and not n.startswith("baseline")), key=lambda n: metrics[n]["val"]["roc_auc"])
model, meta = load_model(metrics[cnn]["model_file"])
data = load_dataset(data_dir, meta["image_size"], cache_dir, seed=seed, per_subtype=settings(profile)["per_subtype"])
x_te, y_cnn, rows = data.split("test")
pred = pd.read_csv(dirs["predictions"] / f"{cnn}_test.csv")
assert (pred["relpath"].to_numpy() == rows["relpath"].to_numpy()).all()
called = pred["p_pneumonia"].to_numpy() >= metrics[cnn]["threshold"]
k = 2 if profile == "smoke" else 4
picks = []
for truth, call, what in ((1, True, "pneumonia, found"), (0, False, "normal, cleared"), (1, False, "MISSED pneumonia"), (0, True, "FALSE ALARM")):
    idx = np.flatnonzero((y_cnn == truth) & (called == call))[: k // 2]
    picks += [(i, what) for i in idx]
cams = [grad_cam(model, x_te[i])[0] for i, _ in picks]
titles = [f"{what}\\np={pred['p_pneumonia'][i]:.2f}" for i, what in picks]
plots.gradcam_grid(x_te[[i for i, _ in picks]], cams, titles, dirs["img"] / "gradcam.png");'''),
    ("md", "## Cost of this run"),
    ("code", '''if run:
    print(f"profile {run['profile']}: {run.get('wall_seconds', 0) / 60:.1f} min for the notebooks before this one "
          f"on {run.get('cpu_count')} CPU cores, peak memory {run.get('peak_memory_mb', 0):.0f} MB")
    display(pd.DataFrame(run["notebooks"]).T)'''),
    ("md", """## Limitations
- Research code, not a medical device: never use it to make a clinical decision.
- One hospital, one population (children aged 1–5 in Guangzhou), one acquisition pipeline; performance elsewhere is unknown.
- The hold-out is carved from the training folder. The official test split is known to be harder (a different mix and look of NORMAL images), so expect lower specificity there; the threshold strategy keeps sensitivity but specificity may fall.
- Labels are the dataset's, graded by physicians; the bacterial/viral distinction from a radiograph alone is uncertain even for experts.
- Grad-CAM shows where the gradient is large, not why; a heat map outside the lungs is a warning sign of shortcut learning."""),
], "final_notebook.ipynb")
