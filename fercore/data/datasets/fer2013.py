"""FER2013 (``fer2013.csv``) and its FER+ relabelling (``fer2013new.csv``).

FER2013 (Goodfellow et al. 2013, Kaggle "Challenges in Representation Learning"): 35,887 grey
48x48 faces, one per CSV row ``emotion,pixels,Usage`` where ``pixels`` is 2304 space-separated
values 0-255 and ``Usage`` is Training / PublicTest / PrivateTest. The faces are already cropped,
so detection is off by default. There are no subject identities: the row index stands in as
the subject, so the 10 folds (row mod 10) are *not* subject-independent; the Usage split is the
protocol (``splits``: 1 train, 2 valid = PublicTest, 3 test = PrivateTest).

FER+ (Barsoum et al. 2016, Microsoft, MIT licence): ``fer2013new.csv`` has one row per
``fer2013.csv`` row, ``Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,
contempt,unknown,NF`` with 10 crowd votes per image. The four training targets follow the
authors' ``ferplus.py`` exactly (see :func:`ferplus_target`).
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np

from fercore.data.datasets._common import ImportResult, _Tally, stack_landmarks
from fercore.data.faceset import FaceSet
from fercore.data.facs import label_set
from fercore.data.preprocess import PreprocessOptions
from fercore.util import Progress, no_progress

__all__ = ["FERPLUS_SCHEMES", "DEFAULT_OPTIONS", "ferplus_target", "load_fer2013"]

USAGE = {"Training": 1, "PublicTest": 2, "PrivateTest": 3}
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                   "contempt", "unknown", "NF")
#: The FER+ label schemes, keys of ``FaceSet.targets``.
FERPLUS_SCHEMES = ("majority", "multilabel", "probability", "crossentropy")
#: FER2013 faces are already cropped and roughly aligned: no detection, kept at 48x48 as they
#: are (their mean geometry is within 1 % of :data:`fercore.data.landmarks.CANONICAL`), with the
#: 68 points fitted on each (upscaled) face.
DEFAULT_OPTIONS = PreprocessOptions(size=48, detect=False, align=False, normalize="standardize",
                                    geometry="box", landmarks=True)


def ferplus_target(votes, scheme: str) -> np.ndarray:
    """The FER+ training target of one image, by the rules of the authors' code.

    Parameters
    ----------
    votes : (10,) int
        Votes for neutral, happiness, surprise, sadness, anger, disgust, fear, contempt,
        unknown, not-a-face (``fer2013new.csv`` column order).
    scheme : {"majority", "multilabel", "probability", "crossentropy"}

    Returns
    -------
    (8,) float64
        The target over the 8 emotions, summing to 1; all zeros when the scheme drops the image.

    Notes
    -----
    1. Single stray votes (a count of 1) are removed first; ``total`` is the sum of the rest.
    2. majority: the top count must be more than half of ``total`` (so no ties), giving a
       one-hot target; otherwise the image is unknown.
    3. probability / crossentropy: take the emotions with the highest count (all tied ones at
       once), then the next highest, ... while fewer than 75 % of ``total`` and fewer than 3
       emotions are covered. Reaching unknown or not-a-face stops the loop (it is not taken if
       some emotion was taken before it). The image is unknown when the taken votes are no more
       than half of ``total`` or more than 3 emotions were taken (a tie). The target is the taken
       votes, normalised.
    4. multilabel: every column with at least 30 % of ``total``; unknown when they cover no
       more than half of ``total``. The target is their votes, normalised; its non-zero entries
       are the accepted labels.
    5. The image is dropped when the largest entry of the result is unknown or not-a-face; else
       the unknown and not-a-face entries are removed and the 8 emotions renormalised.
    """
    if scheme not in FERPLUS_SCHEMES:
        raise ValueError(f"FER+ scheme: expected one of {', '.join(FERPLUS_SCHEMES)}, got {scheme!r}")
    raw = [float(v) for v in np.asarray(votes).reshape(-1)]
    if len(raw) != 10:
        raise ValueError(f"FER+ votes: expected 10 counts, got {len(raw)}")
    size = 10
    unknown = [0.0] * size
    unknown[8] = 1.0
    raw = [0.0 if v < 1.0 + 1e-9 else v for v in raw]
    total = sum(raw)
    emo = [0.0] * size
    if scheme == "majority":
        top = max(raw)
        if top > 0.5 * total:
            emo[int(np.argmax(raw))] = top
        else:
            emo = unknown
    elif scheme in ("probability", "crossentropy"):
        part, count, valid = 0.0, 0, True
        while part < 0.75 * total and count < 3 and valid:
            top = max(raw)
            for i in range(size):
                if raw[i] == top:
                    emo[i] = top
                    raw[i] = 0.0
                    part += emo[i]
                    count += 1
                    if i >= 8:  # unknown or not-a-face reached
                        valid = False
                        if sum(emo) > top:  # emotions were taken before it: leave it out
                            emo[i] = 0.0
                            count -= 1
                        break
        if sum(emo) <= 0.5 * total or count > 3:
            emo = unknown
    else:  # multilabel
        for i in range(size):
            if raw[i] >= 0.3 * total:
                emo[i] = raw[i]
        if sum(emo) <= 0.5 * total:
            emo = unknown
    s = sum(emo)
    emo = [v / s for v in emo]
    if int(np.argmax(emo)) >= 8:
        return np.zeros(8)
    out = np.array(emo[:8], dtype=np.float64)
    return out / out.sum()


def _open_rows(path: Path, header: tuple[str, ...], name: str):
    """Yield (line number, fields) of a CSV after checking its header."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected the {name} CSV")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            head = [h.strip() for h in next(reader)]
        except StopIteration:
            raise ValueError(f"{path}: empty file; expected a header line {','.join(header)}") from None
        except csv.Error as e:
            raise ValueError(f"{path}:1: not a CSV file ({e}); expected {','.join(header)}") from None
        if [h.lower() for h in head[: len(header)]] != [h.lower() for h in header]:
            raise ValueError(f"{path}:1: header {','.join(head)!r} is not the {name} header {','.join(header)!r}")
        try:
            for row in reader:
                yield reader.line_num, row
        except csv.Error as e:
            raise ValueError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None


def _count_lines(path: Path) -> int:
    """Number of lines (for the progress bar; a fast byte scan, no parsing)."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def _parse_pixels(text: str) -> np.ndarray | str:
    """(P,) int64 pixel values, or the reason they are not valid."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pix = np.fromstring(text, dtype=np.int64, sep=" ")  # text mode: fast and not deprecated
    if pix.size != 48 * 48:
        # fromstring stops at the first bad token: tell a bad token from a wrong count
        tokens = text.split()
        if not all(t.isdigit() for t in tokens):
            return "bad pixels: expected space-separated integers 0-255"
        return f"wrong number of pixels: expected 2304 (48x48), got {len(tokens)}"
    if pix.min() < 0 or pix.max() > 255:
        return "bad pixels: values outside 0-255"
    return pix


def load_fer2013(csv_path: str | os.PathLike, *, ferplus: str | os.PathLike | None = None,
                 options: PreprocessOptions = DEFAULT_OPTIONS, n_folds: int = 10,
                 progress: Progress = no_progress) -> ImportResult:
    """Import FER2013, or FER+ when ``ferplus`` (``fer2013new.csv``) is given.

    Parameters
    ----------
    csv_path : path
        ``fer2013.csv`` (header ``emotion,pixels,Usage``).
    ferplus : path, keyword-only, optional
        ``fer2013new.csv``, row for row beside ``fer2013.csv``. Then the classes are the 8 FER+
        emotions, ``label_dist`` the normalised votes, ``targets`` the four schemes of
        :func:`ferplus_target` (validation and test rows carry the majority target in every
        scheme), ``labels`` the majority label (-1 for a training image that only other schemes
        keep). Rows without an image name, rows that every scheme drops, and validation/test rows
        without a majority are dropped.
    options : PreprocessOptions, keyword-only
        Face preprocessing (default: no detection, 48x48).
    n_folds : int, keyword-only
        Folds by row index (not subject-independent).
    progress : callable, keyword-only

    Returns
    -------
    ImportResult
        ``faceset.splits`` is (N, 1) int8 from Usage; ``subjects`` the original row index.

    Raises
    ------
    FileNotFoundError, ValueError
        A missing file, a wrong header, or FER+ rows that do not match FER2013's.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: no such file; expected the fer2013.csv CSV")
    plus_rows = None
    if ferplus is not None:
        ferplus = Path(ferplus)
        plus_rows = list(_open_rows(ferplus, ("Usage", "Image name", *FERPLUS_COLUMNS), "fer2013new.csv"))
    rows = _open_rows(csv_path, ("emotion", "pixels", "Usage"), "fer2013.csv")
    total = _count_lines(csv_path) - 1
    if plus_rows is not None and len(plus_rows) != total:
        raise ValueError(f"{ferplus}: {len(plus_rows)} data rows, but {csv_path} has {total}; "
                         f"fer2013new.csv must list the same images in the same order")
    ls = label_set("ferplus" if ferplus is not None else "fer2013")
    tally = _Tally(options)
    skipped: list[tuple[str, str]] = []
    greys, wheres, labels, subjects, splits, dists = [], [], [], [], [], []
    targets: dict[str, list] = {s: [] for s in FERPLUS_SCHEMES}
    n_dropped = {"no image name": 0, "dropped by every scheme": 0, "no majority (valid/test)": 0}
    n_rows = 0
    for k, (line, row) in enumerate(rows):
        n_rows = k + 1
        if k % 500 == 0:
            progress(k, max(total, k), "fer2013")
        if plus_rows is not None and k >= len(plus_rows):
            continue  # counted below: the files do not match
        where = f"{csv_path}:{line}"
        if len(row) != 3:
            skipped.append((where, f"malformed row: expected 3 fields emotion,pixels,Usage, got {len(row)}"))
            continue
        emo_s, pix_s, usage = (c.strip() for c in row)
        if usage not in USAGE:
            skipped.append((where, f"bad Usage: {usage!r} is not one of {', '.join(USAGE)}"))
            continue
        pix = _parse_pixels(pix_s)
        if isinstance(pix, str):
            skipped.append((where, pix))
            continue
        if plus_rows is None:
            try:
                label = ls.index(int(emo_s))
            except ValueError:
                skipped.append((where, f"bad emotion: {emo_s!r} is not a code 0-6"))
                continue
        else:
            pline, prow = plus_rows[k]
            pwhere = f"{ferplus}:{pline}"
            if len(prow) != 12:
                skipped.append((pwhere, f"malformed row: expected 12 fields, got {len(prow)}"))
                continue
            if prow[0].strip() != usage:
                raise ValueError(f"{pwhere}: Usage {prow[0].strip()!r} differs from {where} ({usage!r}); "
                                 f"the two files are not row-aligned")
            if not prow[1].strip():
                n_dropped["no image name"] += 1
                continue
            try:
                votes = np.array([int(float(v)) for v in prow[2:]], dtype=np.int64)
            except ValueError:
                skipped.append((pwhere, "bad votes: expected 10 integer counts"))
                continue
            if votes.min() < 0:
                skipped.append((pwhere, "bad votes: negative count"))
                continue
            t = {s: ferplus_target(votes, s) for s in FERPLUS_SCHEMES}
            maj = t["majority"]
            if USAGE[usage] != 1:
                if not maj.any():
                    n_dropped["no majority (valid/test)"] += 1
                    continue
                t = {s: maj for s in FERPLUS_SCHEMES}
            elif not any(v.any() for v in t.values()):
                n_dropped["dropped by every scheme"] += 1
                continue
            label = int(np.argmax(maj)) if maj.any() else -1
            for s in FERPLUS_SCHEMES:
                targets[s].append(t[s])
            v8 = votes[:8].astype(np.float64)
            dists.append(v8 / v8.sum() if v8.sum() else v8)
        greys.append(pix.astype(np.uint8).reshape(48, 48))
        wheres.append(where)
        labels.append(label)
        subjects.append(str(k))
        splits.append(USAGE[usage])
    if plus_rows is not None and n_rows != len(plus_rows):
        raise ValueError(f"{ferplus}: {len(plus_rows)} data rows, but {csv_path} has {n_rows}; "
                         f"fer2013new.csv must list the same images in the same order")
    progress(n_rows, n_rows, "fer2013")
    crops = tally.faces(greys, wheres, progress=progress, stage="faces")
    keep = [i for i, c in enumerate(crops) if c is not None]
    kept = [crops[i] for i in keep]
    images = [c.image for c in kept]
    labels, subjects, splits = ([v[i] for i in keep] for v in (labels, subjects, splits))
    if plus_rows is not None:
        dists = [dists[i] for i in keep]
        targets = {k: [v[i] for i in keep] for k, v in targets.items()}
    size = options.size
    subj = np.array(subjects, dtype=str)
    fs = FaceSet(
        images=np.stack(images) if images else np.zeros((0, size, size), np.uint8),
        labels=np.array(labels, dtype=np.int64),
        class_names=ls.classes,
        label_set=ls.name,
        aus=np.zeros((len(images), 0), np.float32),
        au_ids=np.zeros(0, np.int64),
        subjects=subj,
        folds=np.array([int(s) % n_folds for s in subjects], dtype=np.int64),
        splits=np.array(splits, dtype=np.int8).reshape(-1, 1),
        landmarks=stack_landmarks(kept),
        label_dist=np.array(dists, dtype=np.float32).reshape(-1, 8) if plus_rows is not None else None,
        targets={s: np.array(v, dtype=np.float32).reshape(-1, 8) for s, v in targets.items()}
        if plus_rows is not None else {},
        meta={
            "source": "ferplus" if plus_rows is not None else "fer2013",
            "options": {"csv": str(csv_path), "ferplus": None if ferplus is None else str(ferplus),
                        "n_folds": n_folds},
            "preprocess": options.to_dict(),
            "protocol": (
                "FER2013 Usage split (splits round 0: Training=train, PublicTest=valid, PrivateTest=test). "
                "No subject identities: subjects are row indices and folds (row mod "
                f"{n_folds}) are NOT subject-independent."
                + (" FER+ labels: targets by the authors' rules (majority, multilabel, probability, "
                   "crossentropy); validation and test use majority labels." if plus_rows is not None else "")
            ),
        },
    )
    notes = [f"FER+ rows dropped: {k} ({why})" for why, k in n_dropped.items() if k and plus_rows is not None]
    return tally.result(fs, notes, skipped)
