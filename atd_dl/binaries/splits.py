"""Seeded, stratified, group-aware train / test / validation splits.

Stamps of one source or simulated system share a ``group`` id; a group is never split
across subsets (no leakage). Groups are stratified by their label (the majority label
of their stamps), so each subset keeps the class balance.
"""

from __future__ import annotations

import numpy as np

SPLIT_NAMES = ("train", "test", "val")


def group_split(
    labels: np.ndarray,
    groups: np.ndarray,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    *,
    seed: int = 0,
) -> np.ndarray:
    """Assign each stamp to ``"train"``, ``"test"`` or ``"val"`` → str array ``[N]``.

    ``fractions`` are (train, test, val) shares of groups per class (Gezer et al.: 70 /
    15 / 15). With at least three groups in a class, every subset gets one of them.
    """
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    if labels.shape != groups.shape:
        raise ValueError("labels and groups must have the same length")
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or f.sum() <= 0:
        raise ValueError(f"fractions must be three non-negative numbers, got {fractions}")
    f = f / f.sum()
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(groups, return_inverse=True)
    # majority label per group
    labs, lab_idx = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(uniq), len(labs)))
    np.add.at(counts, (inverse, lab_idx), 1.0)
    glabel = labs[counts.argmax(axis=1)]
    gsplit = np.empty(len(uniq), dtype=object)
    for lab in np.unique(glabel):
        idx = rng.permutation(np.flatnonzero(glabel == lab))
        n = len(idx)
        n_test = int(round(f[1] * n))
        n_val = int(round(f[2] * n))
        if n >= 3:
            n_test = max(n_test, 1 if f[1] > 0 else 0)
            n_val = max(n_val, 1 if f[2] > 0 else 0)
        n_train = max(0, n - n_test - n_val)
        gsplit[idx[:n_train]] = "train"
        gsplit[idx[n_train : n_train + n_test]] = "test"
        gsplit[idx[n_train + n_test :]] = "val"
    return gsplit[inverse].astype(str)
