"""What every loader shares: the import report, per-image preprocessing, folds by subject."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fercore.data.faceset import FaceSet
from fercore.data.preprocess import (
    FaceCrop,
    ImageDecodeError,
    NoFaceError,
    PreprocessOptions,
    decode_image,
    preprocess_face,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm")


@dataclass
class ImportResult:
    """A loader's FaceSet and its account of what was read, skipped and why.

    Attributes
    ----------
    faceset : FaceSet
    skipped : list of (str, str)
        (file or ``file:line``, reason) of every input that did not become an image.
    no_face : int
        Images in which the detector found no face (skipped or centre-cropped, see ``on_no_face``).
    centre_cropped : int
        Images for which the centre crop was used.
    multi_face : int
        Images with several faces (the largest was used).
    eyes_not_found : int
        Images that alignment could not rotate (no eyes found).
    on_no_face : str
        What was done with face-less images (``"skip"`` or ``"center"``).
    notes : list of str
        Other remarks (e.g. sequences without an emotion label).
    """

    faceset: FaceSet
    skipped: list[tuple[str, str]] = field(default_factory=list)
    no_face: int = 0
    centre_cropped: int = 0
    multi_face: int = 0
    eyes_not_found: int = 0
    on_no_face: str = "skip"
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict:
        """JSON-able summary numbers (stored in the FaceSet's ``meta["import"]``)."""
        reasons = Counter(r.split(":")[0].split(";")[0] for _, r in self.skipped)
        return {
            "n_images": len(self.faceset),
            "n_skipped": len(self.skipped),
            "skipped_reasons": dict(reasons),
            "skipped_first": [f"{f}: {r}" for f, r in self.skipped[:20]],
            "no_face": self.no_face,
            "centre_cropped": self.centre_cropped,
            "multi_face": self.multi_face,
            "eyes_not_found": self.eyes_not_found,
            "on_no_face": self.on_no_face,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """Counts per class and per fold, faces not found, files skipped and why."""
        return summary_text(self.faceset, self.counts())


def summary_text(fs: FaceSet, counts: dict) -> str:
    """Readable summary of a FaceSet plus its import counts (also used on a cache hit)."""
    lines = [fs.summary()]
    if fs.splits is not None:
        names = {1: "train", 2: "valid", 3: "test"}
        for r in range(fs.splits.shape[1]):
            c = np.bincount(fs.splits[:, r].astype(np.int64), minlength=4)
            lines.append(f"round {r}: " + ", ".join(f"{names[k]} {c[k]}" for k in (1, 2, 3)) + f", unused {c[0]}")
    action = "skipped" if counts.get("on_no_face") == "skip" else "centre-cropped"
    lines.append(f"faces not found: {counts.get('no_face', 0)} ({action}, on_no_face={counts.get('on_no_face')!r}); "
                 f"several faces (largest used): {counts.get('multi_face', 0)}; "
                 f"eyes not found (not rotated): {counts.get('eyes_not_found', 0)}")
    lines.append(f"skipped: {counts.get('n_skipped', 0)}")
    for why, k in sorted(counts.get("skipped_reasons", {}).items(), key=lambda kv: -kv[1]):
        lines.append(f"  {k} x {why}")
    for s in counts.get("skipped_first", [])[:10]:
        lines.append(f"  e.g. {s}")
    lines.extend(counts.get("notes", []))
    return "\n".join(lines)


class _Tally:
    """Counts what preprocessing did, for the ImportResult."""

    def __init__(self, options: PreprocessOptions):
        self.options = options
        self.skipped: list[tuple[str, str]] = []
        self.no_face = self.centre = self.multi = self.no_eyes = 0

    def face(self, grey: np.ndarray, where: str, *, landmarks=None) -> FaceCrop | None:
        """Preprocess one decoded image; None (and counted) when it is skipped."""
        try:
            crop = preprocess_face(grey, self.options, landmarks=landmarks)
        except NoFaceError as e:
            self.no_face += 1
            self.skipped.append((where, f"no face found; {e}"))
            return None
        if crop.centre_crop:
            self.no_face += 1
            self.centre += 1
        if crop.n_faces > 1:
            self.multi += 1
        if self.options.align and self.options.detect and landmarks is None and not crop.eyes_found \
                and not crop.centre_crop:
            self.no_eyes += 1
        return crop

    def file(self, path: Path, *, landmarks=None) -> FaceCrop | None:
        """Decode and preprocess one image file; None (and counted) when it is skipped."""
        try:
            grey = decode_image(path, max_pixels=self.options.max_pixels)
        except (ImageDecodeError, FileNotFoundError) as e:
            self.skipped.append((str(path), f"unreadable image: {e}"))
            return None
        return self.face(grey, str(path), landmarks=landmarks)

    def result(self, fs: FaceSet, notes: list[str] | None = None, skipped_before=()) -> ImportResult:
        res = ImportResult(fs, list(skipped_before) + self.skipped, self.no_face, self.centre, self.multi,
                           self.no_eyes, self.options.on_no_face, list(notes or []))
        fs.meta["import"] = res.counts()
        return res


def subject_folds(subjects: np.ndarray, k: int = 10) -> np.ndarray:
    """(N,) int64 fold per image: subjects sorted, subject i goes to fold i mod k."""
    if k < 1:
        raise ValueError(f"folds: expected k >= 1, got {k}")
    uniq = sorted(set(map(str, subjects)))
    fold_of = {s: i % k for i, s in enumerate(uniq)}
    return np.array([fold_of[str(s)] for s in subjects], dtype=np.int64)


def empty_images(size: int) -> np.ndarray:
    return np.zeros((0, size, size), dtype=np.uint8)
