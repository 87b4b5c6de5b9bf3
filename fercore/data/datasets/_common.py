"""What every loader shares: the import report, per-image preprocessing, folds by subject."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fercore.data.faceset import FaceSet
from fercore.data.landmarks import CANONICAL, estimate_geometry
from fercore.data.preprocess import (
    FaceCrop,
    ImageDecodeError,
    NoFaceError,
    PreprocessOptions,
    decode_image,
    preprocess_face,
)
from fercore.util import Progress, no_progress

#: Images preprocessed per worker task when an import fits landmarks in parallel.
_CHUNK = 500
#: Below this many images an import preprocesses in this process.
_PARALLEL_FROM = 2000

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
    landmarks_fitted, landmarks_implausible : int
        Images whose 68-point fit was plausible (kept), and those whose fit was not (no points kept;
        a canonical crop then falls back to the face box).
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
    landmarks_fitted: int = 0
    landmarks_implausible: int = 0

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
            "landmarks_fitted": self.landmarks_fitted,
            "landmarks_implausible": self.landmarks_implausible,
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
    if counts.get("landmarks_fitted") or counts.get("landmarks_implausible"):
        fitted, bad = counts.get("landmarks_fitted", 0), counts.get("landmarks_implausible", 0)
        lines.append(f"68-point landmarks: {fitted} plausible fits, {bad} implausible "
                     f"({100 * fitted / max(1, fitted + bad):.1f} % plausible)")
    lines.append(f"skipped: {counts.get('n_skipped', 0)}")
    for why, k in sorted(counts.get("skipped_reasons", {}).items(), key=lambda kv: -kv[1]):
        lines.append(f"  {k} x {why}")
    for s in counts.get("skipped_first", [])[:10]:
        lines.append(f"  e.g. {s}")
    lines.extend(counts.get("notes", []))
    return "\n".join(lines)


def _preprocess_chunk(greys: list[np.ndarray], options: PreprocessOptions, lms: list | None):
    """Worker of :meth:`_Tally.faces`: the crops of some images (a NoFaceError message for a
    skipped one)."""
    out = []
    for i, g in enumerate(greys):
        try:
            out.append(preprocess_face(g, options, landmarks=None if lms is None else lms[i]))
        except NoFaceError as e:
            out.append(str(e))
    return out


class _Tally:
    """Counts what preprocessing did, for the ImportResult."""

    def __init__(self, options: PreprocessOptions):
        self.options = options
        self.skipped: list[tuple[str, str]] = []
        self.no_face = self.centre = self.multi = self.no_eyes = 0
        self.fitted = self.implausible = 0

    def _count(self, crop: FaceCrop, landmarks) -> FaceCrop:
        if crop.centre_crop:
            self.no_face += 1
            self.centre += 1
        if crop.n_faces > 1:
            self.multi += 1
        if crop.geometry == "box" and self.options.align and self.options.detect and landmarks is None \
                and not crop.eyes_found and not crop.centre_crop:
            self.no_eyes += 1
        if crop.fit == "fitted":
            self.fitted += 1
        elif crop.fit.startswith("implausible"):
            self.implausible += 1
        return crop

    def face(self, grey: np.ndarray, where: str, *, landmarks=None) -> FaceCrop | None:
        """Preprocess one decoded image; None (and counted) when it is skipped."""
        try:
            crop = preprocess_face(grey, self.options, landmarks=landmarks)
        except NoFaceError as e:
            self.no_face += 1
            self.skipped.append((where, f"no face found; {e}"))
            return None
        return self._count(crop, landmarks)

    def faces(self, greys: list[np.ndarray], wheres: list[str], *, landmarks: list | None = None,
              progress: Progress = no_progress, stage: str = "faces") -> list[FaceCrop | None]:
        """:meth:`face` of many images; with landmarks to fit and many images, in worker processes
        (one per core: dlib runs single-threaded), chunk by chunk, results in order."""
        n = len(greys)
        if n < _PARALLEL_FROM or not self.options.landmarks or (os.cpu_count() or 1) < 2:
            out = []
            for i, (g, w) in enumerate(zip(greys, wheres, strict=True)):
                out.append(self.face(g, w, landmarks=None if landmarks is None else landmarks[i]))
                if i % 200 == 0:
                    progress(i, n, stage)
            progress(n, n, stage)
            return out
        chunks = [range(s, min(s + _CHUNK, n)) for s in range(0, n, _CHUNK)]
        results: list = []
        with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
            futures = [pool.submit(_preprocess_chunk, [greys[i] for i in c], self.options,
                                   None if landmarks is None else [landmarks[i] for i in c]) for c in chunks]
            for k, fut in enumerate(futures):
                results.extend(fut.result())
                progress(min((k + 1) * _CHUNK, n), n, stage)
        out = []
        for i, r in enumerate(results):
            if isinstance(r, str):
                self.no_face += 1
                self.skipped.append((wheres[i], f"no face found; {r}"))
                out.append(None)
            else:
                out.append(self._count(r, None if landmarks is None else landmarks[i]))
        return out

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
                           self.no_eyes, self.options.on_no_face, list(notes or []), self.fitted, self.implausible)
        fs.meta["import"] = res.counts()
        fs.meta["geometry"] = geometry_record(fs, self.options)
        return res


def stack_landmarks(crops: list[FaceCrop]) -> np.ndarray | None:
    """(N, 68, 2) float32 landmarks of the kept crops (NaN where a crop has none), or None when
    no crop has any."""
    if not any(c.landmarks is not None for c in crops):
        return None
    nan = np.full((68, 2), np.nan, np.float32)
    return np.stack([c.landmarks if c.landmarks is not None else nan for c in crops]).astype(np.float32)


def geometry_record(fs: FaceSet, options: PreprocessOptions) -> dict:
    """Where the faces of an import sit (``meta["geometry"]``): the crop made, and the template of
    eye centres and mouth centre (fractions of the side) an upload is cropped to, to match them.

    Canonical crops sit at :data:`fercore.data.landmarks.CANONICAL`; box crops (the papers' crop,
    pre-cropped faces kept as they are) at the mean geometry of their plausible fits (None
    without landmarks)."""
    rec = {"crop": options.geometry if options.align else "box", "template": None, "n_landmarks": 0}
    if fs.landmarks is not None:
        ok = np.isfinite(fs.landmarks).all(axis=(1, 2))
        rec["n_landmarks"] = int(ok.sum())
        if ok.any() and rec["crop"] == "box":
            rec["template"] = estimate_geometry(fs.landmarks, size=fs.size, plausible=ok)["template"].round(4).tolist()
    if rec["crop"] == "canonical":
        rec["template"] = np.asarray(CANONICAL).tolist()
    return rec


def subject_folds(subjects: np.ndarray, k: int = 10) -> np.ndarray:
    """(N,) int64 fold per image: subjects sorted, subject i goes to fold i mod k."""
    if k < 1:
        raise ValueError(f"folds: expected k >= 1, got {k}")
    uniq = sorted(set(map(str, subjects)))
    fold_of = {s: i % k for i, s in enumerate(uniq)}
    return np.array([fold_of[str(s)] for s in subjects], dtype=np.int64)
