"""Published results: one home (`published.py`), and the README and notebooks quote it rather than type numbers."""

import re
from pathlib import Path

from pneumonia_cxr.published import PUBLISHED, official_test_anchors

SRC = Path(__file__).resolve().parents[1] / "src" / "pneumonia_cxr"


def test_published_numbers_live_in_published_py_alone():
    rows = [*PUBLISHED.values(), *official_test_anchors().to_dict("records")]
    numbers = {f"{v:.3f}" for row in rows for v in row.values() if isinstance(v, float) and v == v}
    for path in SRC.rglob("*.py"):
        if path.name == "published.py":
            continue
        text = path.read_text()
        found = [n for n in numbers if re.search(rf"(?<![\d.]){re.escape(n)}(?!\d)", text)]
        assert not found, f"{path.name} types published numbers {found}: read them from published.py"


def test_anchors_are_rates_and_only_kermany_chose_on_test():
    t = official_test_anchors()
    values = t[["roc_auc", "accuracy", "sensitivity", "specificity"]].to_numpy(float)
    assert ((values[~(values != values)] > 0.4) & (values[~(values != values)] < 1)).all()
    assert (t["chosen on test"] == "yes").tolist() == [s.startswith("Kermany") for s in t["source"]]
