# The analysis as a DAG:  venv -> data -> the stages of stages.toml (notebooks by papermill, in order) -> reports/
#   make all    set up, then run the full analysis (real data in data/chest_xray, else a SYNTHETIC demo, which writes
#               only under build/demo/: the runner decides where a run on SYNTHETIC data goes, never the committed files)
#   make test   set up, then lint, unit tests and every notebook under nbval on the smoke profile, each once
#               (quicker, while editing: .venv/bin/python -m pytest -m "not slow" tests, without training)
#   make check-reports   are the committed reports/, README results and model card what the committed code makes?
#   make seed-check SEED=7   notebooks 01-07 again with another seed (reports/seeds/7/), then the final notebook
#   make refresh  after a code change: only the notebooks it made out of date, in the main run and every seed run
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
DATA   ?= $(if $(wildcard data/chest_xray),data/chest_xray,data/demo)
SHARED := ../shared/data/chest_xray_224
SMOKE_DATA ?= $(if $(wildcard $(SHARED)),$(SHARED),data/demo)
WEIGHTS_DIR ?= $(if $(wildcard ../shared/weights),../shared/weights,)
WEIGHTS := $(if $(WEIGHTS_DIR),--weights-dir $(WEIGHTS_DIR),)
PROFILE ?= full
SEED ?= 7
# every notebook but the final one, which reads all runs
NOTEBOOKS_01_07 := 01_ 02_ 03_ 04_ 05_ 06_ 07_
export TF_ENABLE_ONEDNN_OPTS := 1
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: all test lint unit nbval check-reports venv lock analysis seed-check refresh summary demo review review-evaluate ood benchmark predict-speed prediction-loop-speed notebook-speed training-step-speed training-input-speed decode-check aspect-ablation clean

all: analysis

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

venv: $(VENV)/.installed

# pin what .venv has now, after a deliberate upgrade inside it (the committed runs were made with the old pins)
lock: venv
	{ grep '^#' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v '^pneumonia-cxr'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

data/demo/SYNTHETIC_DATASET.txt: | $(VENV)/.installed
	$(PY) -m pneumonia_cxr.data.demo data/demo

demo: data/demo/SYNTHETIC_DATASET.txt

# --report: then the README results block, the model card and the PDF (on SYNTHETIC data: build/demo/README.md,
# build/demo/model_card.md, build/demo/reports/final_report.pdf)
analysis: venv $(if $(filter data/demo,$(DATA)),demo,)
	@if [ "$(DATA)" = "data/demo" ]; then echo "data/chest_xray not found: make all runs the SYNTHETIC demo"; fi
	$(PY) -m pneumonia_cxr.runner --make --report --profile $(PROFILE) --data-dir $(DATA) $(WEIGHTS)

# How much the numbers move with the seed (split, initial weights, augmentation): every model again, apart from
# the main run, then the final notebook and README of the main run, which read reports/seeds/*/metrics.
seed-check: venv
	$(PY) -m pneumonia_cxr.runner --profile $(PROFILE) --data-dir $(DATA) $(WEIGHTS) --seed $(SEED) \
	  --output-dir reports/seeds/$(SEED) --models-dir models/seed_$(SEED) --executed-dir build/seed_$(SEED) \
	  --only $(NOTEBOOKS_01_07)
	$(PY) -m pneumonia_cxr.runner --profile $(PROFILE) --data-dir $(DATA) $(WEIGHTS) --only final_notebook --report

# Like make, by content: a stage of stages.toml runs again when its code or a module it loads changed, or when results
# it reads were made again since (`stages.out_of_date`); first in the main run (the OOD check too), then in each seed
# run (whose models must be here, in models/seed_N), then the final notebook, which reads them all.
refresh: venv
	$(PY) -m pneumonia_cxr.runner --stale --profile $(PROFILE) --data-dir $(DATA) $(WEIGHTS) --only $(NOTEBOOKS_01_07) ood
	for log in $$(ls reports/seeds/*/metrics/run.json 2>/dev/null); do seed=$$(basename $${log%/metrics/run.json}); \
	  $(PY) -m pneumonia_cxr.runner --stale --profile $(PROFILE) --data-dir $(DATA) $(WEIGHTS) --seed $$seed \
	    --output-dir reports/seeds/$$seed --models-dir models/seed_$$seed --executed-dir build/seed_$$seed \
	    --only $(NOTEBOOKS_01_07) || exit 1; done
	$(PY) -m pneumonia_cxr.runner --profile $(PROFILE) --data-dir $(DATA) $(WEIGHTS) --only final_notebook --report

benchmark: venv
	$(PY) benchmarks/run.py

# predict on the official test images, this checkout against the commit before batching, after `make all`
predict-speed: venv
	$(PY) benchmarks/predict_speed.py

# notebooks 01-07 of an older commit (BASELINE) and of HEAD, one after the other in scratch copies on this host, then
# their times side by side (about 70 min of a quiet 2-core host)
BASELINE ?= a32a681
notebook-speed: venv
	$(PY) benchmarks/notebook_speed.py run --commit $(BASELINE)
	$(PY) benchmarks/notebook_speed.py run --commit HEAD
	$(PY) benchmarks/notebook_speed.py table --baseline $(BASELINE) --current $$(git rev-parse --short HEAD)

# one training step and one prediction batch of the notebooks' models: float32, XLA, bfloat16
training-step-speed: venv
	$(PY) benchmarks/training_step_speed.py

# epochs of the scratch CNN (MODEL=transfer: the MobileNetV2 fine-tuning) under autotuned and fixed tf.data threads
MODEL ?= scratch
training-input-speed: venv
	$(PY) benchmarks/training_input_speed.py --model $(MODEL)

# model.predict on an autotuned tf.data pipeline against inference.predict_batches, and the two ways to load (needs models/)
prediction-loop-speed: venv
	$(PY) benchmarks/prediction_loop_speed.py

# The review app on the latest run's models, at http://127.0.0.1:7860 (INBOX=folder of X-rays to review, read only)
review: venv
	$(PY) -m pneumonia_cxr.review --models models --db reviews.sqlite $(if $(INBOX),--inbox $(INBOX),) \
	  $(if $(PREVALENCE),--prevalence $(PREVALENCE),)

# The answers in reviews.sqlite against the model card: reviews_evaluation.md and its reliability figure beside it
# (LOCAL=local.json: also before and after a site's local calibration, made by `pneumonia-cxr review calibrate`)
review-evaluate: venv
	$(PY) -m pneumonia_cxr.review evaluate --db reviews.sqlite $(if $(LOCAL),--local $(LOCAL),)

# "Is this a frontal chest X-ray?", before any pneumonia call: fitted on the training split, threshold on validation
# (models/ood.npz, models/ood.json); rejection rates of real and generated non-X-ray images in reports/metrics/ood.csv.
# `make all` runs it too, as the stage `ood` of stages.toml; this runs that stage alone and records it in run.json.
ood: venv $(if $(filter data/demo,$(DATA)),demo,)
	$(PY) -m pneumonia_cxr.runner --profile $(PROFILE) --data-dir $(DATA) $(WEIGHTS) --only ood

decode-check: venv
	$(PY) benchmarks/decode_consistency.py

# Notebook 03's aspect-offset ablation (validation only), kept out of the timed profile; after notebook 03
aspect-ablation: venv
	$(PY) experiments/aspect_offset_ablation.py --data-dir $(DATA)

summary: venv
	$(PY) -m pneumonia_cxr.data.summary $(SMOKE_DATA)

test: lint unit nbval

lint: venv
	$(PY) -m ruff check src tests benchmarks experiments notebooks final_notebook.ipynb
	$(PY) -m ruff format --check src tests benchmarks experiments notebooks final_notebook.ipynb

unit: venv
	$(PY) -m pytest tests

# Not part of `make test`: a comment edit must not turn the suite red. CI prints its verdict as a warning line.
check-reports: venv
	$(PY) -m pneumonia_cxr.report --check

# Every notebook once, on SMOKE_DATA without its test/ folder (train/ and val/ linked): the run carves a hold-out by
# patient, the layout the committed run (official test/) never takes; then the checks of what that run wrote.
nbval: venv $(if $(filter data/demo,$(SMOKE_DATA)),demo,)
	rm -rf build/smoke
	$(PY) tests/test_official_test_path.py $(SMOKE_DATA) build/smoke/data/chest_xray
	$(PY) -m pneumonia_cxr.runner --profile smoke --prepare-only --data-dir build/smoke/data/chest_xray \
	  --cache-dir build/smoke/cache --output-dir build/smoke/reports --models-dir build/smoke/models \
	  --executed-dir build/smoke/notebooks $(WEIGHTS)
	$(PY) -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider build/smoke/notebooks
	SMOKE_RUN=build/smoke $(PY) -m pytest -p no:cacheprovider tests/test_official_test_path.py

clean:
	rm -rf build data/cache models
