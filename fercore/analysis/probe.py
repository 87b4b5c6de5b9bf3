"""Checks that the phantom's AUs can be learned from pixels: a linear probe in numpy.

Faces are aligned on their stable landmarks (eye corners and nose bridge, which no drawn AU
moves), then a ridge regression on the standardised pixels predicts each AU's presence, with
subject-independent cross-validation over the FaceSet's folds. Only numpy and OpenCV are used.
"""

from __future__ import annotations

import cv2
import numpy as np

from fercore.data.faceset import FaceSet
from fercore.training.evaluate import roc_auc

__all__ = ["STABLE_LANDMARKS", "align_faces", "au_presence_auc", "emotion_probe_accuracy", "roc_auc"]

#: Landmarks that no drawn AU moves: nose bridge and the four eye corners.
STABLE_LANDMARKS = (27, 28, 29, 30, 36, 39, 42, 45)


def align_faces(images: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Warp each face so its stable landmarks fall on their mean position (similarity transform).

    Parameters
    ----------
    images : (N, S, S) uint8
    landmarks : (N, 68, 2) float

    Returns
    -------
    (N, S, S) uint8
    """
    images = np.asarray(images)
    lm = np.ascontiguousarray(np.asarray(landmarks, dtype=np.float32)[:, list(STABLE_LANDMARKS)])
    ref = lm.mean(axis=0)
    s = images.shape[1]
    out = np.empty_like(images)
    for i in range(len(images)):
        mat, _ = cv2.estimateAffinePartial2D(lm[i], ref)
        if mat is None:
            out[i] = images[i]
            continue
        out[i] = cv2.warpAffine(images[i], mat, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def _probe_scores(fs: FaceSet, targets: np.ndarray, n_groups: int, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Held-out ridge scores (N, T) of ``targets`` (N, T) with subject-independent CV."""
    if fs.landmarks is None:
        raise ValueError("fs: the linear probe needs landmarks to align the faces")
    if fs.n_folds < 2:
        raise ValueError("fs: the linear probe needs at least 2 subject-independent folds")
    x = align_faces(fs.images, fs.landmarks).reshape(len(fs), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    x /= x.std(axis=1, keepdims=True) + 1e-6
    y = np.asarray(targets, dtype=np.float32)
    group = fs.folds % int(n_groups)
    scores = np.zeros_like(y)
    for g in range(int(n_groups)):
        test = (group == g) & (fs.folds >= 0)
        train = ~test & (fs.folds >= 0)
        if not test.any() or not train.any():
            continue
        mu = x[train].mean(axis=0)
        sd = x[train].std(axis=0) + 1e-6
        xtr = (x[train] - mu) / sd
        xte = (x[test] - mu) / sd
        yt = y[train] - y[train].mean(axis=0)
        gram = xtr @ xtr.T  # dual form: (n_train, n_train)
        gram[np.diag_indices_from(gram)] += ridge * x.shape[1]
        alpha = np.linalg.solve(gram, yt)
        scores[test] = xte @ (xtr.T @ alpha)
    return scores, fs.folds >= 0


def au_presence_auc(fs: FaceSet, *, n_groups: int = 5, ridge: float = 0.3) -> dict[int, float]:
    """Cross-validated ROC AUC of a linear probe for each AU's presence, on unseen subjects.

    The FaceSet's folds are merged into ``n_groups`` groups (fold f -> group f mod n_groups);
    each group is scored by a ridge regression trained on the others, and the AUC is computed
    over all held-out scores together.

    Parameters
    ----------
    fs : FaceSet
        With landmarks and subject-independent folds.
    n_groups : int
    ridge : float
        Ridge penalty per feature (the penalty is ``ridge * n_features``).

    Returns
    -------
    dict of int to float
        AU number -> AUC (NaN where an AU is never or always present).
    """
    y = (np.nan_to_num(fs.aus) > 0).astype(np.float32)
    scores, used = _probe_scores(fs, y, n_groups, ridge)
    return {int(a): roc_auc(scores[used, j], y[used, j] > 0) for j, a in enumerate(fs.au_ids)}


def emotion_probe_accuracy(fs: FaceSet, *, n_groups: int = 5, ridge: float = 0.3) -> float:
    """Subject-independent accuracy of the same linear probe on the emotion labels (one-vs-rest).

    A floor for what a CNN should reach on the same images.
    """
    onehot = np.eye(len(fs.class_names), dtype=np.float32)[np.clip(fs.labels, 0, None)]
    scores, used = _probe_scores(fs, onehot, n_groups, ridge)
    used &= fs.labels >= 0
    return float((scores[used].argmax(axis=1) == fs.labels[used]).mean())
