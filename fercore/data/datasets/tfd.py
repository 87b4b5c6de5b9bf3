"""The Toronto Face Database (TFD; Susskind, Anderson, Hinton 2010) from its MATLAB file.

``TFD_48x48.mat`` / ``TFD_96x96.mat`` (MATLAB v5/v7, read with :func:`scipy.io.loadmat`) hold:

- ``images``  (N, S, S) uint8: faces, already detected, aligned and cropped;
- ``labs_ex`` (N, 1): expression 1-7 (anger, disgust, fear, happy, sad, surprise, neutral),
  -1 (or 0) for the unlabelled majority;
- ``labs_id`` (N, 1): subject identity (-1 / 0 unknown);
- ``folds``   (N, 5): the 5 official folds, per image 0 unused, 1 train, 2 valid, 3 test.

The official folds are the protocol: ``splits`` is ``folds`` as is (N x 5). ``folds`` of the
FaceSet is the round in which an image is a test image (-1 if none). Only labelled images are
kept unless ``include_unlabelled``. MATLAB v7.3 files are HDF5 and are refused with a message
saying to re-save them as v7 (``save(..., '-v7')``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io

from fercore.data.datasets._common import ImportResult, _Tally, stack_landmarks
from fercore.data.faceset import FaceSet
from fercore.data.facs import label_set
from fercore.data.preprocess import PreprocessOptions
from fercore.util import Progress, no_progress

__all__ = ["DEFAULT_OPTIONS", "load_tfd"]

#: TFD faces are already cropped and aligned.
DEFAULT_OPTIONS = PreprocessOptions(size=96, detect=False, align=False, normalize="local_mean",
                                    geometry="box", landmarks=True)
_FIELDS = ("images", "labs_ex", "labs_id", "folds")


def _read_mat(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected TFD_96x96.mat or TFD_48x48.mat")
    with open(path, "rb") as f:
        head = f.read(128)
    if b"MATLAB 7.3" in head or head[:8] == b"\x89HDF\r\n\x1a\n":
        raise ValueError(f"{path}: a MATLAB v7.3 (HDF5) file; re-save it in MATLAB/Octave with "
                         f"save('TFD.mat', 'images', 'labs_ex', 'labs_id', 'folds', '-v7')")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for a corrupt file
        raise ValueError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
    missing = [k for k in _FIELDS if k not in mat]
    if missing:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: missing variable(s) {missing}; a TFD file holds {list(_FIELDS)}, found {present}")
    return mat


def load_tfd(mat_path: str | os.PathLike, *, options: PreprocessOptions = DEFAULT_OPTIONS,
             include_unlabelled: bool = False, progress: Progress = no_progress) -> ImportResult:
    """Import TFD with its 5 official folds.

    Parameters
    ----------
    mat_path : path
        The TFD ``.mat`` file.
    options : PreprocessOptions, keyword-only
        Default: no detection (the faces are cropped), resized to 96x96.
    include_unlabelled : bool, keyword-only
        Keep images with no expression label (``labels`` -1).
    progress : callable, keyword-only

    Returns
    -------
    ImportResult
        ``faceset.splits`` (N, 5) int8 from the file's ``folds``; ``subjects`` from ``labs_id``
        (images with unknown identity get ``"unknown-<index>"``).
    """
    path = Path(mat_path)
    mat = _read_mat(path)
    images = np.asarray(mat["images"])
    n = images.shape[0] if images.ndim == 3 else -1
    if images.ndim != 3:
        raise ValueError(f"{path}: 'images' has shape {images.shape}; expected (N, S, S)")
    ex = np.asarray(mat["labs_ex"]).reshape(-1)
    ids = np.asarray(mat["labs_id"]).reshape(-1)
    folds = np.asarray(mat["folds"])
    for name, a in (("labs_ex", ex), ("labs_id", ids)):
        if len(a) != n:
            raise ValueError(f"{path}: '{name}' has {len(a)} entries; expected {n} (one per image)")
    if folds.shape != (n, 5):
        raise ValueError(f"{path}: 'folds' has shape {folds.shape}; expected ({n}, 5)")
    if not np.isin(folds, (0, 1, 2, 3)).all():
        raise ValueError(f"{path}: 'folds' holds codes {sorted(set(np.unique(folds).tolist()) - {0, 1, 2, 3})}; "
                         "expected 0 unused, 1 train, 2 valid, 3 test")
    ls = label_set("tfd")
    bad = sorted(set(np.unique(ex).tolist()) - set(ls.codes) - {0, -1})
    if bad:
        raise ValueError(f"{path}: 'labs_ex' holds codes {bad}; expected 1-7 (or -1/0 unlabelled)")
    tally = _Tally(options)
    out, labels, subj, keep_rows = [], [], [], []
    if images.dtype != np.uint8:
        if images.min() < 0 or images.max() > 255:
            raise ValueError(f"{path}: 'images' values outside 0-255 ({images.dtype})")
        images = images.astype(np.uint8)
    for i in range(n):
        if i % 200 == 0:
            progress(i, n, "tfd")
        code = int(ex[i])
        if code in ls.codes:
            label = ls.index(code)
        elif include_unlabelled:
            label = -1
        else:
            continue
        labels.append(label)
        subj.append(str(int(ids[i])) if int(ids[i]) > 0 else f"unknown-{i}")
        keep_rows.append(i)
    progress(n, n, "tfd")
    crops = tally.faces([np.ascontiguousarray(images[i]) for i in keep_rows],
                        [f"{path}: image {i}" for i in keep_rows], progress=progress, stage="faces")
    kept = [j for j, c in enumerate(crops) if c is not None]
    out = [crops[j].image for j in kept]
    labels, subj, keep_rows = ([v[j] for j in kept] for v in (labels, subj, keep_rows))
    rows = np.array(keep_rows, dtype=np.int64)
    splits = folds[rows].astype(np.int8) if len(rows) else np.zeros((0, 5), np.int8)
    test_round = np.where((splits == 3).any(axis=1), np.argmax(splits == 3, axis=1), -1) if len(rows) else rows
    size = options.size
    fs = FaceSet(
        images=np.stack(out) if out else np.zeros((0, size, size), np.uint8),
        labels=np.array(labels, dtype=np.int64),
        class_names=ls.classes,
        label_set=ls.name,
        aus=np.zeros((len(out), 0), np.float32),
        au_ids=np.zeros(0, np.int64),
        subjects=np.array(subj, dtype=str),
        folds=np.asarray(test_round, dtype=np.int64),
        splits=splits,
        landmarks=stack_landmarks([crops[j] for j in kept]),
        meta={
            "source": "tfd",
            "options": {"mat": str(path), "include_unlabelled": include_unlabelled},
            "preprocess": options.to_dict(),
            "protocol": "TFD's 5 official folds (splits rounds 0-4: 1 train, 2 valid, 3 test); "
                        "folds = the round in which the image is a test image",
        },
    )
    notes = [f"unlabelled images not kept: {int((~np.isin(ex, list(ls.codes))).sum())}"] if not include_unlabelled else []
    return tally.result(fs, notes)
