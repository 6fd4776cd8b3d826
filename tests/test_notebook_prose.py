"""Numbers in the notebooks' prose cannot drift from what decides them: a number of a run is displayed by a code cell
(IPython's Markdown, from the run's values), and every number left in a markdown cell is a setting or a rule quoted
from the code, checked here against it. A number typed into a markdown cell and listed nowhere here fails."""

import ast
import json
import math
import re
from pathlib import Path

import pytest

from pneumonia_cxr.config import settings
from pneumonia_cxr.data.pipeline import AUGMENTATION
from pneumonia_cxr.data.thorax import MAX_ZOOM
from pneumonia_cxr.evaluate import bootstrap_ci, shift_metrics
from pneumonia_cxr.selection import MIN_MARGIN, MIN_WIN_SHARE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [*sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")), ROOT / "final_notebook.ipynb"]
FULL = settings("full")  # the prose describes the full profile
NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?:e-?\d+)?")  # 62.5, 5,856, 3e-4; not the 2 of MobileNetV2


def _default(notebook: str, parameter: str):
    """A parameter's default in a notebook's `parameters` cell."""
    book = json.loads((ROOT / notebook).read_text())
    cell = next(c for c in book["cells"] if "parameters" in c["metadata"].get("tags", []))
    for node in ast.parse("".join(cell["source"])).body:
        if isinstance(node, ast.Assign) and node.targets[0].id == parameter:
            return ast.literal_eval(node.value)
    raise KeyError(f"{notebook}: no parameter {parameter}")


def _default_argument(function, argument: str):
    import inspect

    return inspect.signature(function).parameters[argument].default


# notebook -> {a phrase of its markdown: what the number in it quotes}
QUOTED = {
    "01_eda": {"at most ×1.45": MAX_ZOOM},
    "02_baseline_dense": {"sensitivity ≥ 0.95": FULL["target_sensitivity"]},
    "03_scratch_cnn": {
        "blocks at 128 px": FULL["cnn_size"],
        "zoom ±30%": 100 * AUGMENTATION["zoom"],
        "official test's 62.5% prevalence": 100 * _default_argument(shift_metrics, "prevalence"),
    },
    "04_transfer_learning": {"MobileNetV2 α=0.5 by default": FULL["alpha"]},
    "05_ternary_classifier": {
        "The top 40 layers": FULL["fine_tune_layers"],
        "fine-tuned at 3e-4": _default("notebooks/05_ternary_classifier.ipynb", "fine_tune_lr"),
    },
    "06_keras_tuner_search": {"offers 8 or 16 first-block filters": FULL["tuner_base_filters"]},
    "07_ensemble": {
        "The scratch CNN (128 px)": FULL["cnn_size"],
        "MobileNetV2 (224 px)": FULL["transfer_size"],
        "by at least 0.01": MIN_MARGIN,
        "in at least 90% of paired bootstrap resamples": 100 * MIN_WIN_SHARE,
    },
    "final_notebook": {
        "sensitivity ≥ 0.95 on validation": FULL["target_sensitivity"],
        "the 95% CI": 100 * _default_argument(bootstrap_ci, "level"),
    },
}

# references rather than quantities: checked below where they can be wrong
NOTEBOOK_REFERENCE = re.compile(r"notebooks? (\d\d)")
NAMES = [re.compile(p) for p in (r"^# (\d\d) ·", r"## Phase \d:", r"\(Kermany et al\., \*Cell\* 2018\)")]


def markdown(notebook: Path) -> str:
    """The notebook's markdown cells, code spans and link targets left out (file names, commands)."""
    text = "\n".join(
        "".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "markdown"
    )
    return re.sub(r"\]\([^)]*\)", "]", re.sub(r"`[^`]*`", "", text))


def as_number(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_number_in_the_markdown_is_generated_or_quoted_and_checked(notebook):
    text = markdown(notebook)
    quoted = QUOTED.get(notebook.stem, {})
    for phrase, source in quoted.items():
        assert phrase in text, f"{notebook.name}: no longer says {phrase!r}; update QUOTED"
        written = [as_number(n) for n in NUMBER.findall(phrase)]
        expected = list(source) if isinstance(source, tuple | list) else [source]
        assert len(written) == len(expected) and all(map(math.isclose, written, expected)), (
            f"{notebook.name}: {phrase!r} but the code says {source}"
        )
        text = text.replace(phrase, "")
    for number in NOTEBOOK_REFERENCE.findall(text):
        assert list((ROOT / "notebooks").glob(f"{number}_*.ipynb")), f"{notebook.name}: no notebook {number}"
    heading = NAMES[0].search(text)
    if heading:
        assert notebook.stem.startswith(heading.group(1)), f"{notebook.name}: headed {heading.group(0)!r}"
    for pattern in [NOTEBOOK_REFERENCE, *NAMES]:
        text = pattern.sub("", text)
    typed = NUMBER.findall(text)
    assert not typed, (
        f"{notebook.name}: numbers typed into markdown {typed}: display them from the run in a code cell "
        "(IPython.display.Markdown), or quote a setting and check it in QUOTED"
    )


def test_the_check_catches_a_typed_number_and_a_quote_the_code_no_longer_makes(tmp_path):
    typed = "30 images are exact duplicates (`make seed-check SEED=7`, notebook 03)"
    (tmp_path / "99_example.ipynb").write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": [typed]}]}))
    with pytest.raises(AssertionError, match=r"\['30'\]"):
        test_every_number_in_the_markdown_is_generated_or_quoted_and_checked(tmp_path / "99_example.ipynb")
    stale = "# 01 · EDA\nA thorax magnified at most ×1.5."
    (tmp_path / "01_eda.ipynb").write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": [stale]}]}))
    with pytest.raises(AssertionError, match="no longer says"):
        test_every_number_in_the_markdown_is_generated_or_quoted_and_checked(tmp_path / "01_eda.ipynb")
