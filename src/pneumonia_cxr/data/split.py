"""Train / validation / test assignment by patient, with exact duplicates kept together.

- The official 16-image val folder is too small to select anything on: its images join the train
  pool and are re-split by patient with it.
- Validation is carved from that pool by patient (stratified by subtype, seeded).
- When the dataset has an official test/ split it is the test set, untouched; pool images of a
  patient (or a duplicate image) that also appears in test are dropped from the pool, counted.
- Without test/, a test hold-out is carved from the pool first, the same way.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd


class LeakageError(AssertionError):
    """A patient (or an exact duplicate image) sits in two splits."""


def duplicate_groups(table: pd.DataFrame) -> np.ndarray:
    """Group id per row: patients linked by any exact-duplicate image share one group."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for patient in table["patient"]:
        find(patient)
    for _, patients in table.groupby("pixel_hash")["patient"]:
        first, *rest = patients.tolist()
        for other in rest:
            parent[find(other)] = find(first)
    return table["patient"].map(find).to_numpy()


def _carve(pool: pd.DataFrame, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask over `pool`: whole groups, about `fraction` of them, stratified by subtype."""
    per_group = pd.DataFrame({"group": groups, "subtype": pool["subtype"].to_numpy()})
    majority = per_group.groupby("group")["subtype"].agg(lambda s: s.mode().iloc[0]).sort_index()
    strata = majority if majority.value_counts().min() >= 2 else None
    if len(majority) < 4:
        raise ValueError(f"only {len(majority)} patients: too few to carve a {fraction:.0%} split")
    from sklearn.model_selection import train_test_split  # here: `predict` imports this package

    _, held = train_test_split(majority.index.to_numpy(), test_size=fraction, random_state=seed, stratify=strata)
    return np.isin(groups, held)


def split_by_patient(
    table: pd.DataFrame,
    seed: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> tuple[pd.DataFrame, Counter]:
    """Return `table` with a `split_assigned` column (train / val / test, '' = dropped).

    `table` needs the manifest columns and `pixel_hash` (from the image cache).
    """
    table = table.reset_index(drop=True).copy()
    groups = duplicate_groups(table)
    dropped: Counter = Counter()
    assigned = np.full(len(table), "", dtype=object)
    official_test = (table["split"] == "test").to_numpy()
    pool = ~official_test
    if official_test.any():
        assigned[official_test] = "test"
        leaked = pool & np.isin(groups, groups[official_test])
        dropped["patient also in official test (dropped from train pool)"] = int(leaked.sum())
        pool &= ~leaked
    else:
        idx = np.flatnonzero(pool)
        held = _carve(table.iloc[idx], groups[idx], test_fraction, seed)
        assigned[idx[held]] = "test"
        pool[idx[held]] = False
    idx = np.flatnonzero(pool)
    held = _carve(table.iloc[idx], groups[idx], val_fraction, seed + 1)
    assigned[idx] = np.where(held, "val", "train")
    table["split_assigned"] = assigned
    table["group"] = groups
    assert_no_leakage(table)
    return table, +dropped


def assert_no_leakage(table: pd.DataFrame) -> None:
    """Raise LeakageError if any patient or duplicate group appears in two assigned splits."""
    used = table[table["split_assigned"] != ""]
    for column in ("patient", "group"):
        per = used.groupby(column)["split_assigned"].nunique()
        crossing = per[per > 1]
        if len(crossing):
            raise LeakageError(f"{len(crossing)} {column}s in more than one split, e.g. {crossing.index[:5].tolist()}")


def cross_split_patients(table: pd.DataFrame) -> int:
    """Number of patients whose images sit in more than one assigned split (should be 0)."""
    used = table[table["split_assigned"] != ""]
    return int((used.groupby("patient")["split_assigned"].nunique() > 1).sum())
