r"""Any class-per-folder image tree: ``<root>/<class>/*.png|jpg|...``.

Each sub-folder of ``root`` is a class (sorted by name unless ``classes`` gives the order);
files in it whose suffix is an image suffix are its images (searched recursively). Subjects:
``subject_pattern`` is a regular expression searched in the file name whose group named
``subject`` (or first group, or whole match) is the subject id; folds are then
subject-independent (sorted subjects, subject i -> fold i mod k). Without a pattern every file
is its own subject and the folds are *not* subject-independent. AU labels: an optional CSV with a
``file`` column (the file name, or its path relative to ``root``) and one column per AU, named
``AU12`` or ``12``, holding the intensity 0-5 (or 0/1); an empty cell is unknown (NaN).

Sequences: a pattern with a group named ``sequence`` beside ``subject`` (e.g.
``(?P<subject>S\d+)_(?P<sequence>\d+)_(?P<frame>\d+)``) makes each file a frame of the sequence
``<subject>/<sequence>`` (``FaceSet.sequences``); its position in the sequence (``FaceSet.frames``,
0 = first) is the rank of the number in the group named ``frame``, or, without one, the rank of
its file name in natural order (``f2`` before ``f10``) among the sequence's files.

Pre-cropped faces (CK+48-style trees of small face crops): when every image is small (at most
:data:`PRECROPPED_MAX_SIDE` px on a side) and square, or with ``precropped=True``, no face is
searched: each image is kept as it is, at its own size, and its 68 points are fitted on it
(:func:`fercore.data.landmarks.fit_precropped`); the FaceSet records their mean geometry, so an
upload is cropped like them.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from fercore.data.datasets._common import (
    IMAGE_SUFFIXES,
    ImportResult,
    _Tally,
    stack_landmarks,
    subject_folds,
)
from fercore.data.faceset import FaceSet
from fercore.data.preprocess import PreprocessOptions
from fercore.data.sequences import natural_key
from fercore.util import Progress, no_progress

__all__ = ["DEFAULT_OPTIONS", "load_folder", "read_au_csv"]

#: Photographs: the face found (dlib, Haar as the fallback), its 68 points fitted, the canonical crop.
DEFAULT_OPTIONS = PreprocessOptions(size=96, detect=True, align=True, normalize="local_mean")
#: Images no larger than this on a side (and square) are taken for pre-cropped faces.
PRECROPPED_MAX_SIDE = 100
_AU_COL = re.compile(r"^(?:au)?\s*(\d+)$", re.IGNORECASE)


def read_au_csv(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read an AU label CSV.

    Returns
    -------
    au_ids : (A,) int64
        The AU numbers of the columns, sorted.
    rows : dict of str to (A,) float32
        Intensities per file name (NaN where the cell is empty).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such AU label CSV")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        head = next(reader, None)
        if not head or head[0].strip().lower() not in ("file", "filename", "file_name", "image"):
            raise ValueError(f"{path}:1: expected a header starting with 'file' then AU columns like AU12, "
                             f"got {head!r}")
        cols = []
        for h in head[1:]:
            m = _AU_COL.match(h.strip())
            if not m:
                raise ValueError(f"{path}:1: column {h!r} is not an AU (expected e.g. 'AU12' or '12')")
            cols.append(int(m.group(1)))
        if len(set(cols)) != len(cols):
            raise ValueError(f"{path}:1: an AU column appears twice: {cols}")
        order = np.argsort(cols)
        rows: dict[str, np.ndarray] = {}
        for line, row in enumerate(reader, 2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(head):
                raise ValueError(f"{path}:{line}: {len(row)} fields, expected {len(head)} like the header")
            vals = []
            for c in row[1:]:
                c = c.strip()
                try:
                    v = float(c) if c else np.nan
                except ValueError:
                    raise ValueError(f"{path}:{line}: AU value {c!r} is not a number (0-5, empty = unknown)") from None
                if not np.isnan(v) and not 0 <= v <= 5:
                    raise ValueError(f"{path}:{line}: AU value {v} outside 0-5")
                vals.append(v)
            key = row[0].strip()
            if key in rows:
                raise ValueError(f"{path}:{line}: file {key!r} listed twice")
            rows[key] = np.array(vals, dtype=np.float32)[order]
    return np.array(sorted(cols), dtype=np.int64), rows


def load_folder(root: str | os.PathLike, *, classes: tuple[str, ...] | None = None,
                subject_pattern: str | None = None, au_csv: str | os.PathLike | None = None,
                options: PreprocessOptions = DEFAULT_OPTIONS, n_folds: int = 10,
                precropped: bool | None = None, keep_size: bool = False,
                progress: Progress = no_progress) -> ImportResult:
    """Import a class-per-folder image tree.

    Parameters
    ----------
    root : path
        Folder whose sub-folders are the classes.
    classes : tuple of str, keyword-only, optional
        Class folder names in class-index order (default: all sub-folders, sorted).
    subject_pattern : str, keyword-only, optional
        Regular expression searched in each file name giving the subject id (group ``subject``,
        else group 1, else the match). A file that does not match is skipped and reported. A
        group named ``sequence`` gives the sequence id ``<subject>/<sequence>``, and an optional
        group named ``frame`` the frame number (else the natural order of the file names): see
        the module docstring.
    au_csv : path, keyword-only, optional
        AU label CSV keyed by file name (see :func:`read_au_csv`).
    options : PreprocessOptions, keyword-only
    n_folds : int, keyword-only
    precropped : bool or None, keyword-only
        The images are already cropped faces: no detection, kept as they are (``options``'
        detection and alignment are switched off), landmarks fitted on each. None (default)
        decides from the images: small and square means pre-cropped (see the module docstring).
    keep_size : bool, keyword-only
        Keep pre-cropped faces at their own side instead of ``options.size`` (what an
        automatically recognised pre-cropped tree does).
    progress : callable, keyword-only

    Returns
    -------
    ImportResult
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder; expected <root>/<class>/<images>")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = tuple(found)
    else:
        classes = tuple(classes)
        missing = [c for c in classes if c not in found]
        if missing:
            raise FileNotFoundError(f"{root}: class folder(s) {missing} missing; found {found}")
    if not classes:
        raise ValueError(f"{root}: no class sub-folders; expected <root>/<class>/<images>")
    pattern = None
    if subject_pattern is not None:
        try:
            pattern = re.compile(subject_pattern)
        except re.error as e:
            raise ValueError(f"subject_pattern {subject_pattern!r}: not a regular expression ({e})") from None
    with_seq = pattern is not None and "sequence" in pattern.groupindex
    if pattern is not None and "frame" in pattern.groupindex and not with_seq:
        raise ValueError(f"subject_pattern {subject_pattern!r}: a 'frame' group needs a 'sequence' group beside "
                         "'subject', e.g. (?P<subject>S\\d+)_(?P<sequence>\\d+)_(?P<frame>\\d+)")
    au_ids = np.zeros(0, np.int64)
    au_rows: dict[str, np.ndarray] = {}
    if au_csv is not None:
        au_ids, au_rows = read_au_csv(au_csv)
    files = []
    skipped: list[tuple[str, str]] = []
    for ci, c in enumerate(classes):
        for p in sorted((root / c).rglob("*")):
            if not p.is_file() or p.name.startswith("."):
                continue
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append((str(p), f"not an image suffix ({', '.join(IMAGE_SUFFIXES)})"))
                continue
            files.append((p, ci))
    seq_of: dict[Path, tuple[str, int]] = {}
    if with_seq:
        files, seq_of = _frame_order(files, pattern, subject_pattern, skipped)
    notes = []
    auto = _precropped_side(files, options) if precropped is None else None
    if precropped or auto is not None:
        own = auto or _precropped_side(files, options, force=True)
        size = own if own and (auto is not None or keep_size) else options.size
        options = dataclasses.replace(options, detect=False, align=False, geometry="box", landmarks=True,
                                      size=int(size))
        why = f"recognised: the images are square and at most {PRECROPPED_MAX_SIDE} px" if auto else "as asked"
        notes.append(f"pre-cropped faces ({why}): kept as they are at {options.size} px, 68 points fitted on each")
    tally = _Tally(options)
    images, labels, subjects, aus, seqs, frame_idx, kept = [], [], [], [], [], [], []
    used_keys = set()
    for k, (p, ci) in enumerate(files):
        if k % 20 == 0:
            progress(k, len(files), "folder")
        rel = p.relative_to(root).as_posix()
        if pattern is not None:
            m = pattern.search(p.name)
            if m is None:
                skipped.append((str(p), f"file name does not match subject_pattern {subject_pattern!r}"))
                continue
            subject = _subject(m, pattern)
        else:
            subject = rel
        crop = tally.file(p)
        if crop is None:
            continue
        key = rel if rel in au_rows else p.name
        row = au_rows.get(key)
        if row is not None:
            used_keys.add(key)
        images.append(crop.image)
        kept.append(crop)
        labels.append(ci)
        subjects.append(subject)
        if with_seq:
            seqs.append(seq_of[p][0])
            frame_idx.append(seq_of[p][1])
        aus.append(row if row is not None else np.full(len(au_ids), np.nan, np.float32))
    progress(len(files), len(files), "folder")
    unused = sorted(set(au_rows) - used_keys)
    if unused:
        notes.append(f"AU CSV rows with no imported image: {len(unused)} (e.g. {unused[:3]})")
    if au_csv is not None:
        notes.append(f"images without an AU row (AUs unknown): {sum(np.isnan(a).all() for a in aus) if len(au_ids) else 0}")
    subj = np.array(subjects, dtype=str)
    size = options.size
    seq_text = ""
    if with_seq:
        order = "its 'frame' group" if "frame" in pattern.groupindex else "the file names (natural order)"
        seq_text = f"; sequences <subject>/<sequence> from its 'sequence' group, whole sequences per fold, frame order from {order}"
    fs = FaceSet(
        images=np.stack(images) if images else np.zeros((0, size, size), np.uint8),
        labels=np.array(labels, dtype=np.int64),
        class_names=classes,
        label_set="custom",
        aus=np.array(aus, dtype=np.float32).reshape(len(images), len(au_ids)),
        au_ids=au_ids,
        subjects=subj,
        folds=subject_folds(subj, n_folds) if len(subj) else np.zeros(0, np.int64),
        sequences=np.array(seqs, dtype=str) if with_seq else None,
        frames=np.array(frame_idx, dtype=np.int64) if with_seq else None,
        landmarks=stack_landmarks(kept),
        meta={
            "source": "folder",
            "options": {"root": str(root), "classes": list(classes), "subject_pattern": subject_pattern,
                        "au_csv": None if au_csv is None else str(au_csv), "n_folds": n_folds},
            "preprocess": options.to_dict(),
            "protocol": (f"{n_folds} subject-independent folds by subject_pattern {subject_pattern!r}{seq_text}"
                         if pattern is not None else
                         f"{n_folds} folds with every file its own subject: NOT subject-independent "
                         "(give subject_pattern for subject-independent folds)"),
        },
    )
    return tally.result(fs, notes, skipped)


def _precropped_side(files: list[tuple[Path, int]], options: PreprocessOptions, *, force: bool = False,
                     sample: int = 32) -> int | None:
    """The side of the images when they look pre-cropped (the first ``sample`` files all square and
    at most :data:`PRECROPPED_MAX_SIDE` px; with ``force``, any square side), else None."""
    if not files or (not options.detect and not force):
        return None
    sides = set()
    for p, _ in files[:sample]:
        try:
            with Image.open(p) as im:
                w, h = im.size
        except (OSError, UnidentifiedImageError):
            continue  # reported when the file is read
        if w != h or (max(w, h) > PRECROPPED_MAX_SIDE and not force):
            return None
        sides.add(w)
    return max(sides) if sides else None


def _subject(m: re.Match, pattern: re.Pattern) -> str:
    return m.group("subject") if "subject" in pattern.groupindex else (m.group(1) if m.groups() else m.group(0))


def _frame_order(files: list[tuple[Path, int]], pattern: re.Pattern, subject_pattern: str,
                 skipped: list[tuple[str, str]]) -> tuple[list[tuple[Path, int]], dict[Path, tuple[str, int]]]:
    """Sequence id and frame position of every matching file; files whose frame group is not a
    number, or that repeat a sequence's frame, are skipped (named, with the reason)."""
    keyed: dict[str, list[tuple[tuple, Path]]] = {}
    kept = []
    seen: dict[tuple[str, tuple], Path] = {}
    for p, ci in files:
        m = pattern.search(p.name)
        if m is None:
            kept.append((p, ci))  # reported as not matching by the caller
            continue
        seq = f"{_subject(m, pattern)}/{m.group('sequence')}"
        if "frame" in pattern.groupindex:
            text = m.group("frame") or ""
            if not text.strip().isdigit():
                skipped.append((str(p), f"the 'frame' group of subject_pattern {subject_pattern!r} matched "
                                        f"{text!r}, not a frame number"))
                continue
            key = (int(text),)
        else:
            key = natural_key(p.name)
        if (seq, key) in seen:
            skipped.append((str(p), f"sequence {seq!r} already has this frame ({seen[(seq, key)].name})"))
            continue
        seen[(seq, key)] = p
        keyed.setdefault(seq, []).append((key, p))
        kept.append((p, ci))
    order = {}
    for seq, items in keyed.items():
        for t, (_, p) in enumerate(sorted(items, key=lambda kp: kp[0])):
            order[p] = (seq, t)
    return kept, order
