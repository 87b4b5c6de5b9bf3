"""FaceSet: the one in-memory type that every data source produces and training reads.

A FaceSet is saved as one HDF5 file (see :mod:`fercore.store.faceset_h5` and ``docs/faceset.md``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from fercore.data.facs import presence
from fercore.util import stable_hash

__all__ = ["FaceSet", "PHASE_CODES", "SPLIT_CODES"]

#: Codes of the ``splits`` table: per image and predefined round (TFD's 5 folds, FER2013's one
#: Training/PublicTest/PrivateTest split), what the image is used for.
SPLIT_CODES = {"unused": 0, "train": 1, "valid": 2, "test": 3}

#: Codes of the ``phases`` field: where a frame lies in the time course of its sequence's
#: expression. ``neutral``: no AU yet (before the onset); ``onset``: AUs rising, not all at their
#: apex; ``apex``: every AU at its apex (CK+: the last frames, the peak); ``offset``: after the
#: apex, AUs falling back towards neutral; ``micro``: a frame of a brief, low-intensity
#: micro-expression embedded in an otherwise neutral sequence; ``unknown``: not known.
PHASE_CODES = {"unknown": -1, "neutral": 0, "onset": 1, "apex": 2, "offset": 3, "micro": 4}


@dataclass(eq=False)
class FaceSet:
    """Grey face images with their labels, action units, subjects, landmarks and folds.

    Attributes
    ----------
    images : (N, H, W) uint8
        Grey faces, already detected, aligned and cropped.
    labels : (N,) int64
        Class index into ``class_names``; -1 where unlabelled.
    class_names : tuple of str
        Names of the C classes, in index order.
    label_set : str
        Name of the label set in :data:`fercore.facs.LABEL_SETS` (or ``"custom"``).
    aus : (N, A) float32
        AU intensities 0-5 (0 absent); NaN where not coded.
    au_ids : (A,) int64
        The AU numbers of the columns of ``aus``.
    subjects : (N,) str
        Subject identifiers (subject-independent folds group by them).
    folds : (N,) int64
        Subject-independent fold index 0..k-1; -1 where the image is in no fold.
    sequences : (N,) str or None
        Sequence (video clip) identifiers, for one-image-per-sequence statistics.
    frames : (N,) int64 or None
        Index of each image's frame within its sequence (0 = first), for data sets that keep
        the frames of a clip in order; -1 where unknown. Only meaningful with ``sequences``.
    phases : (N,) int8 or None
        Phase of each frame in its sequence's expression (:data:`PHASE_CODES`: -1 unknown,
        0 neutral, 1 onset, 2 apex, 3 offset, 4 micro-expression). Only meaningful with
        ``sequences``.
    landmarks : (N, 68, 2) float32 or None
        iBUG-68 landmarks, x then y in pixels of ``images``; NaN where unknown.
    label_dist : (N, C) float32 or None
        A label distribution per image (e.g. FER+ votes normalised to sum 1).
    splits : (N, R) int8 or None
        Predefined rounds of train/valid/test (:data:`SPLIT_CODES`); when present, training uses
        them instead of k-fold rotation over ``folds``.
    targets : dict of str to (N, C) float32
        Training targets of named label schemes (e.g. FER+ ``majority``, ``crossentropy``);
        an all-zero row means the scheme drops that image.
    meta : dict
        Provenance: ``source``, ``options``, ``preprocess`` (the face-preprocessing options, so
        an uploaded photo can be processed the same way), ``protocol`` (in words) and anything
        else JSON-able.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    aus: np.ndarray
    au_ids: np.ndarray
    subjects: np.ndarray
    folds: np.ndarray
    label_set: str = "custom"
    sequences: np.ndarray | None = None
    frames: np.ndarray | None = None
    phases: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    label_dist: np.ndarray | None = None
    splits: np.ndarray | None = None
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.images)
        self.images = np.asarray(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise ValueError(
                f"FaceSet.images: expected (N, H, W) uint8, got {self.images.shape} {self.images.dtype}"
            )
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.class_names = tuple(str(c) for c in self.class_names)
        self.au_ids = np.asarray(self.au_ids, dtype=np.int64).reshape(-1)
        aus = np.asarray(self.aus, dtype=np.float32)
        self.aus = aus.reshape(n, len(self.au_ids))
        self.subjects = np.asarray(self.subjects).astype(str).reshape(-1)
        self.folds = np.asarray(self.folds, dtype=np.int64).reshape(-1)
        if self.sequences is not None:
            self.sequences = np.asarray(self.sequences).astype(str).reshape(-1)
        if self.frames is not None:
            self.frames = np.asarray(self.frames, dtype=np.int64).reshape(-1)
        if self.phases is not None:
            phases = np.asarray(self.phases).reshape(-1)
            known = np.array(sorted(PHASE_CODES.values()))
            if phases.size and not np.isin(phases, known).all():
                bad = sorted(set(np.unique(phases).tolist()) - set(known.tolist()))[:5]
                raise ValueError(f"FaceSet.phases: expected codes {known.tolist()} (PHASE_CODES), got {bad}")
            self.phases = phases.astype(np.int8)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(n, 68, 2)
        if self.label_dist is not None:
            self.label_dist = np.asarray(self.label_dist, dtype=np.float32)
        if self.splits is not None:
            self.splits = np.asarray(self.splits, dtype=np.int8)
            if self.splits.ndim == 1:
                self.splits = self.splits[:, None]
        self.targets = {k: np.asarray(v, dtype=np.float32) for k, v in self.targets.items()}
        c = len(self.class_names)
        for name, arr in [
            ("labels", self.labels),
            ("subjects", self.subjects),
            ("folds", self.folds),
            ("sequences", self.sequences),
            ("frames", self.frames),
            ("phases", self.phases),
            ("label_dist", self.label_dist),
            ("splits", self.splits),
            *[(f"targets/{k}", v) for k, v in self.targets.items()],
        ]:
            if arr is not None and len(arr) != n:
                raise ValueError(f"FaceSet.{name}: expected {n} rows (one per image), got {len(arr)}")
        for name, arr in [("label_dist", self.label_dist), *[(f"targets/{k}", v) for k, v in self.targets.items()]]:
            if arr is not None and arr.shape != (n, c):
                raise ValueError(f"FaceSet.{name}: expected shape ({n}, {c}), got {arr.shape}")
        if n and (self.labels.max(initial=-1) >= c or self.labels.min(initial=0) < -1):
            raise ValueError(f"FaceSet.labels: values must lie in -1..{c - 1} for {c} classes")

    # ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        """Side of the (square) images in pixels."""
        return int(self.images.shape[1])

    @property
    def n_folds(self) -> int:
        return int(self.folds.max(initial=-1) + 1)

    @property
    def au_present(self) -> np.ndarray:
        """(N, A) float32: 1 where the AU is present (intensity > 0), 0 absent, NaN unknown
        (:func:`fercore.data.facs.presence`)."""
        return presence(self.aus)

    @property
    def groups(self) -> np.ndarray:
        """(N,) str: sequence ids where known, else subject ids (for distinct top-K)."""
        return self.sequences if self.sequences is not None else self.subjects

    def content_hash(self) -> str:
        """Hash of everything that affects training or analysis (not of ``meta`` wording)."""
        arrays = [self.images, self.labels, self.aus, self.au_ids, self.subjects, self.folds]
        for extra in (self.sequences, self.landmarks, self.label_dist, self.splits):
            arrays.append(np.zeros(0) if extra is None else extra)
        for k in sorted(self.targets):
            arrays.append(self.targets[k])
        if self.frames is not None:  # appended only when present, so older FaceSets keep their hash
            arrays.append(self.frames)
        if self.phases is not None:  # likewise; tagged so it cannot be mistaken for another field
            arrays.extend([np.frombuffer(b"phases", np.uint8), self.phases])
        head = {"classes": self.class_names, "label_set": self.label_set, "targets": sorted(self.targets),
                "preprocess": self.meta.get("preprocess")}
        return stable_hash(head, *arrays)

    def subset(self, index) -> FaceSet:
        """A new FaceSet of the selected rows (boolean mask or integer index)."""
        idx = np.asarray(index)
        kw = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("class_names", "label_set", "au_ids", "meta"):
                kw[f.name] = v
            elif f.name == "targets":
                kw[f.name] = {k: a[idx] for k, a in v.items()}
            else:
                kw[f.name] = None if v is None else v[idx]
        return FaceSet(**kw)

    def summary(self) -> str:
        """A few lines: counts per class and per fold, AUs, subjects."""
        lines = [f"{len(self)} images of {self.size}x{self.size} px, {len(np.unique(self.subjects))} subjects"]
        counts = np.bincount(self.labels[self.labels >= 0], minlength=len(self.class_names))
        lines.append("per class: " + ", ".join(f"{c} {k}" for c, k in zip(self.class_names, counts, strict=True)))
        if self.n_folds:
            fc = np.bincount(self.folds[self.folds >= 0], minlength=self.n_folds)
            lines.append("per fold: " + ", ".join(f"{i}: {k}" for i, k in enumerate(fc)))
        if self.splits is not None:
            lines.append(f"predefined splits: {self.splits.shape[1]} round(s)")
        if len(self.au_ids):
            coded = ~np.isnan(self.aus).all(axis=1)
            lines.append(f"AUs {', '.join(map(str, self.au_ids))} coded on {int(coded.sum())} images")
        return "\n".join(lines)
