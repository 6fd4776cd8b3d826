"""Published results on the official 624-image test split: the anchors every table of this project stands beside.

The one home of published numbers. Numbers as their sources report them; nothing here is computed by this pipeline.
Only Kermany et al. chose their model on the test split; MedMNIST keeps the release's train/test division and
selects on validation (the best of MedMNIST+'s many configurations is a mild selection on test all the same).
"""

from __future__ import annotations

import pandas as pd

# Kermany et al., Cell 172(5):1122-1131, 2018 (InceptionV3; model chosen on the official test split).
PUBLISHED = {
    "Kermany et al. 2018 (binary)": {"accuracy": 0.928, "sensitivity": 0.932, "specificity": 0.901, "roc_auc": 0.968},
    "Kermany et al. 2018 (bacterial vs viral)": {"accuracy": 0.907, "roc_auc": 0.940},
}

# Sources: Kermany et al. 2018 (above); MedMNIST v2: Yang et al., Scientific Data 10:41, 2023 (PneumoniaMNIST);
# MedMNIST+: Doerrich et al., Scientific Reports 2025 (the same images at 224 px, chosen on validation);
# keras.io example "Pneumonia Classification on TPU" (Amy MiHyun Jang, 2020).
OFFICIAL_TEST = [
    {
        "source": "Kermany et al. 2018",
        "model": "InceptionV3",
        "chosen on test": "yes",
        **PUBLISHED["Kermany et al. 2018 (binary)"],
    },
    {
        "source": "MedMNIST+ 2025",
        "model": "DINO ViT-B/16, linear probe",
        "chosen on test": "no (best of many)",
        "roc_auc": 0.989,
        "accuracy": 0.916,
    },
    {
        "source": "MedMNIST+ 2025",
        "model": "ResNet-18, fine-tuned, 224 px",
        "chosen on test": "no",
        "roc_auc": 0.980,
        "accuracy": 0.911,
    },
    {
        "source": "MedMNIST v2 2023",
        "model": "ResNet-50, 224 px",
        "chosen on test": "no",
        "roc_auc": 0.962,
        "accuracy": 0.884,
    },
    {
        "source": "keras.io example",
        "model": "CNN on TPU",
        "chosen on test": "no",
        "accuracy": 0.79,
        "specificity": 0.46,
    },
]


def official_test_anchors() -> pd.DataFrame:
    """One row per published result on the official test split; a blank where the source reports no such number."""
    cols = ["source", "model", "chosen on test", "roc_auc", "accuracy", "sensitivity", "specificity"]
    return pd.DataFrame(OFFICIAL_TEST).reindex(columns=cols)
