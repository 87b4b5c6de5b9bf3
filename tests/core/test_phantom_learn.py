"""The phantom's AUs can be learned from pixels: a linear probe on unseen subjects.

A ridge regression in numpy on landmark-aligned, standardised pixels predicts each AU's presence
with subject-independent cross-validation; every drawn AU must reach ROC AUC 0.85. The per-AU
figures are printed (``pytest -s``); ``bench/bench_phantom.py`` prints them for larger sets.
"""

from __future__ import annotations

import numpy as np
import pytest

from fercore.analysis.probe import align_faces, au_presence_auc
from fercore.data import phantom as ph
from fercore.training.evaluate import roc_auc


def test_roc_auc_matches_definition():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    y = np.array([False, False, True, True])
    assert roc_auc(scores, y) == pytest.approx(0.75)
    assert roc_auc(np.array([1.0, 1.0]), np.array([True, False])) == pytest.approx(0.5)
    assert np.isnan(roc_auc(scores, np.zeros(4, bool)))


def test_alignment_undoes_the_pose():
    idn = ph.random_identity(np.random.default_rng(0))
    imgs, lms = [], []
    for rot in (-6.0, 0.0, 6.0):
        img, lm = ph.render_face(idn, {}, size=64, nuisance=ph.Nuisance(rotation=rot, shift=(0.02, 0.0)))
        imgs.append(img)
        lms.append(lm)
    al = align_faces(np.stack(imgs), np.stack(lms)).astype(float)
    raw = np.stack(imgs).astype(float)
    assert np.abs(al[0] - al[2]).mean() < 0.5 * np.abs(raw[0] - raw[2]).mean()


def test_every_au_is_learnable_from_pixels():
    fs = ph.generate_faceset(1600, size=64, seed=3)
    auc = au_presence_auc(fs, n_groups=5)
    print("\nAU presence, linear probe on aligned pixels, 5-fold subject-independent ROC AUC:")
    print("  " + "  ".join(f"AU{a} {v:.3f}" for a, v in auc.items()))
    weak = {a: round(v, 3) for a, v in auc.items() if not v >= 0.85}
    assert not weak, f"AUs below ROC AUC 0.85: {weak}"
