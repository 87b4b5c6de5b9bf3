"""CK+ (Extended Cohn-Kanade, Lucey et al. 2010) from its official distribution layout.

Expected layout under ``root``::

    cohn-kanade-images/S005/001/S005_001_00000001.png ... (one PNG per frame, neutral -> peak)
    Emotion/S005/001/S005_001_00000011_emotion.txt        (one number 0-7; labelled sequences only)
    FACS/S005/001/S005_001_00000011_facs.txt              (lines "AU intensity"; 0 = not coded)
    Landmarks/S005/001/S005_001_00000001_landmarks.txt    (optional; 68 lines "x y")

Protocol (Khorrami et al. 2015): every sequence with an emotion file gives 4 images: its first
frame labelled neutral and its last three frames labelled with the sequence's emotion. The AUs
of the sequence's FACS file (coded on the peak frame) are attached to those three frames; every
AU not in the file is 0 (absent), since CK+ codes the peak frame exhaustively. The first frame is
neutral by protocol, so all its AUs are 0, not unknown. CK+ writes intensity 0 for an AU that is
present but whose intensity was not coded; such AUs are stored as 1 (present, intensity
unknown; ``meta["au_uncoded_intensity"]``). The AU columns are the AUs occurring in the FACS
files of the imported sequences, sorted. Eight classes (``ckplus8``) or six (``ckplus6``: neutral frames and contempt
sequences dropped). Folds: subjects sorted, subject i goes to fold i mod 10.

``frames="all"`` keeps every frame of each labelled sequence instead, in order, for sequence
models and the temporal analysis: ``frames`` holds each frame's position in its sequence (0 =
first), ``phases`` its phase. The first frame is neutral (phase 0, labelled neutral, all AUs 0),
the last three are the apex (phase 2: CK+'s peak is the last frame, and the last three are the
frames Khorrami et al. label with the emotion; labelled with the sequence's emotion, the FACS
codes attached), the frames between are onset (phase 1, label -1, AUs NaN: not coded). The
labelled images are exactly those of the default protocol.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from fercore.data.datasets._common import ImportResult, _Tally, subject_folds
from fercore.data.faceset import PHASE_CODES, FaceSet
from fercore.data.facs import label_set
from fercore.data.preprocess import PreprocessOptions
from fercore.data.sequences import natural_key
from fercore.util import Progress, no_progress

__all__ = ["APEX_FRAMES", "DEFAULT_OPTIONS", "FRAME_MODES", "load_ckplus", "read_emotion", "read_facs", "read_landmarks"]

#: Khorrami et al.: Haar detection, 96x96, local mean subtraction at train time.
DEFAULT_OPTIONS = PreprocessOptions(size=96, detect=True, align=True, normalize="local_mean")
#: Intensity stored for an AU that CK+ codes present with intensity 0 (not coded).
UNCODED_INTENSITY = 1.0
_SEQ = re.compile(r"^S\d+$")
#: What ``load_ckplus`` keeps of a sequence: Khorrami et al.'s first + last 3 frames, or every frame.
FRAME_MODES = ("khorrami", "all")
#: Frames at the end of a sequence that ``frames="all"`` marks apex (phase 2) and labels.
APEX_FRAMES = 3


def _numbers(path: Path, what: str) -> list[list[float]]:
    try:
        text = path.read_text(encoding="ascii", errors="strict")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: unreadable {what} file ({e})") from None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append([float(v) for v in line.split()])
        except ValueError:
            raise ValueError(f"{path}:{i}: expected numbers in a {what} file, got {line.strip()[:60]!r}") from None
    return rows


def read_emotion(path: str | os.PathLike) -> int:
    """The emotion code 0-7 of a CK+ ``*_emotion.txt`` file; ValueError naming the file otherwise."""
    path = Path(path)
    rows = _numbers(path, "CK+ emotion")
    vals = [v for r in rows for v in r]
    if len(vals) != 1 or vals[0] != int(vals[0]) or not 0 <= vals[0] <= 7:
        raise ValueError(f"{path}: expected one emotion code 0-7 (e.g. '3.0000000e+00'), got {vals[:5]}")
    return int(vals[0])


def read_facs(path: str | os.PathLike) -> dict[int, float]:
    """{AU number: intensity 0-5} of a CK+ ``*_facs.txt`` file (0 = present, intensity not coded)."""
    path = Path(path)
    out = {}
    for i, r in enumerate(_numbers(path, "CK+ FACS"), 1):
        if len(r) != 2 or r[0] != int(r[0]) or r[0] < 1 or not 0 <= r[1] <= 5:
            raise ValueError(f"{path}:{i}: expected 'AU intensity' (AU >= 1, intensity 0-5), got {r}")
        out[int(r[0])] = float(r[1])
    return out


def read_landmarks(path: str | os.PathLike) -> np.ndarray:
    """(68, 2) float32 x, y of a CK+ ``*_landmarks.txt`` file."""
    path = Path(path)
    rows = _numbers(path, "CK+ landmarks")
    a = np.array(rows, dtype=np.float32) if rows and all(len(r) == 2 for r in rows) else None
    if a is None or a.shape != (68, 2):
        raise ValueError(f"{path}: expected 68 lines of 'x y', got {len(rows)} lines")
    return a


def _sequences(root: Path):
    img_root = root / "cohn-kanade-images"
    for subj in sorted(p for p in img_root.iterdir() if p.is_dir() and _SEQ.match(p.name)):
        for seq in sorted(p for p in subj.iterdir() if p.is_dir()):
            yield subj.name, seq.name, seq


def load_ckplus(root: str | os.PathLike, *, classes: int = 8, options: PreprocessOptions = DEFAULT_OPTIONS,
                n_folds: int = 10, frames: str = "khorrami", progress: Progress = no_progress) -> ImportResult:
    """Import CK+ with Khorrami et al.'s protocol (4 images per labelled sequence), or every frame.

    Parameters
    ----------
    root : path
        The folder holding ``cohn-kanade-images/``, ``Emotion/``, ``FACS/`` and optionally
        ``Landmarks/``.
    classes : {8, 6}, keyword-only
        8: neutral, anger, contempt, disgust, fear, happy, sadness, surprise. 6: neutral frames
        and contempt sequences dropped.
    options : PreprocessOptions, keyword-only
    n_folds : int, keyword-only
        Subject-independent folds (subject i of the sorted subjects -> fold i mod n_folds).
    frames : {"khorrami", "all"}, keyword-only
        ``khorrami`` (default): the first frame (neutral) and the last three (the emotion).
        ``all``: every frame in order, with ``FaceSet.frames`` (position, 0 = first) and
        ``FaceSet.phases``: first frame neutral (label neutral, AUs 0; label -1 in six-class),
        last :data:`APEX_FRAMES` apex (the emotion, the FACS AUs), the frames between onset
        (label -1, AUs NaN).
    progress : callable, keyword-only

    Returns
    -------
    ImportResult
        ``faceset.sequences`` are ``"S005/001"``; ``landmarks`` (in crop pixels) when the
        ``Landmarks/`` folder exists, NaN for frames without a landmarks file.
    """
    root = Path(root)
    if classes not in (6, 8):
        raise ValueError(f"classes: expected 8 or 6, got {classes!r}")
    if frames not in FRAME_MODES:
        raise ValueError(f"frames: expected one of {', '.join(FRAME_MODES)} (first + last 3, or every frame), "
                         f"got {frames!r}")
    every = frames == "all"
    for sub in ("cohn-kanade-images", "Emotion"):
        if not (root / sub).is_dir():
            raise FileNotFoundError(f"{root / sub}: missing; expected the CK+ layout "
                                    f"<root>/cohn-kanade-images/, <root>/Emotion/, <root>/FACS/")
    has_facs = (root / "FACS").is_dir()
    has_lm = (root / "Landmarks").is_dir()
    ls = label_set("ckplus8" if classes == 8 else "ckplus6")
    tally = _Tally(options)
    skipped: list[tuple[str, str]] = []
    notes: list[str] = []
    if not has_facs:
        notes.append(f"{root / 'FACS'}: missing; AUs of the emotion frames are unknown (NaN)")
    seqs = list(_sequences(root))
    if not seqs:
        raise ValueError(f"{root / 'cohn-kanade-images'}: no sequence folders S###/###/ found")
    # (image, label, subject, seq, aus dict or None or {} for neutral, landmarks)
    recs = []
    unlabelled = dropped_contempt = 0
    for k, (subj, seq, folder) in enumerate(seqs):
        progress(k, len(seqs), "ckplus")
        emo_files = sorted((root / "Emotion" / subj / seq).glob("*_emotion.txt"))
        if not emo_files:
            unlabelled += 1
            continue
        if len(emo_files) > 1:
            skipped.append((str(emo_files[0].parent), f"several emotion files {[p.name for p in emo_files]}; "
                                                      "expected one per sequence"))
            continue
        try:
            code = read_emotion(emo_files[0])
        except ValueError as e:
            skipped.append((str(emo_files[0]), f"malformed emotion file: {e}"))
            continue
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
        if every:
            files.sort(key=lambda p: natural_key(p.name))
        if len(files) < 4:
            skipped.append((str(folder), f"sequence too short: {len(files)} frames, need 4 (first + last 3)"))
            continue
        aus = None
        if has_facs:
            facs_files = sorted((root / "FACS" / subj / seq).glob("*_facs.txt"))
            if len(facs_files) == 1:
                try:
                    aus = read_facs(facs_files[0])
                except ValueError as e:
                    skipped.append((str(facs_files[0]), f"malformed FACS file: {e}"))
                    continue
            else:
                notes.append(f"{root / 'FACS' / subj / seq}: {len(facs_files)} FACS files, expected 1; "
                             "AUs of this sequence are unknown")
        if code == 0:
            skipped.append((str(emo_files[0]), "emotion code 0 (neutral) on a sequence; expected 1-7"))
            continue
        if classes == 6 and code == 2:
            dropped_contempt += 1
            continue
        if every:  # (path, code or None = unlabelled, AUs, position, phase)
            last = len(files) - APEX_FRAMES
            chosen = [(f, 0 if t == 0 else (code if t >= last else None), {} if t == 0 else (aus if t >= last else None),
                       t, PHASE_CODES["neutral"] if t == 0 else PHASE_CODES["apex" if t >= last else "onset"])
                      for t, f in enumerate(files)]
        else:
            chosen = [(files[0], 0, {}, 0, 0), *[(f, code, aus, 0, 0) for f in files[-3:]]]
        for path, c, frame_aus, position, phase in chosen:
            if classes == 6 and c == 0 and not every:
                continue
            lm = None
            if has_lm:
                lm_path = root / "Landmarks" / subj / seq / f"{path.stem}_landmarks.txt"
                if lm_path.is_file():
                    try:
                        lm = read_landmarks(lm_path)
                    except ValueError as e:
                        notes.append(f"{lm_path}: ignored ({e})")
            crop = tally.file(path, landmarks=lm)
            if crop is None:
                continue
            label = -1 if c is None or (classes == 6 and c == 0) else ls.index(c)
            recs.append((crop.image, label, subj, f"{subj}/{seq}", frame_aus, crop.landmarks, position, phase))
    progress(len(seqs), len(seqs), "ckplus")
    au_ids = sorted({a for r in recs if r[4] for a in r[4]})
    col = {a: j for j, a in enumerate(au_ids)}
    n = len(recs)
    aus_arr = np.zeros((n, len(au_ids)), np.float32)
    for i, r in enumerate(recs):
        if r[4] is None:
            aus_arr[i] = np.nan
        else:
            for a, v in r[4].items():
                aus_arr[i, col[a]] = v if v > 0 else UNCODED_INTENSITY
    subjects = np.array([r[2] for r in recs], dtype=str)
    lms = None
    if n and any(r[5] is not None for r in recs):  # the Landmarks/ files, else the 68-point fits
        lms = np.stack([r[5] if r[5] is not None else np.full((68, 2), np.nan, np.float32) for r in recs])
    size = options.size
    meta_options = {"root": str(root), "classes": classes, "n_folds": n_folds}
    protocol = (
        f"CK+ {classes}-class, Khorrami et al.: first frame of each labelled sequence = neutral"
        f"{' (dropped in six-class)' if classes == 6 else ''}, last 3 frames = the sequence's emotion; "
        f"FACS AUs on the last 3 frames, all AUs 0 on the neutral frame; {n_folds} subject-independent "
        f"folds (sorted subjects, subject i -> fold i mod {n_folds}); test fold t, validation (t+1) mod "
        f"{n_folds}."
    )
    if every:
        meta_options["frames"] = "all"
        protocol = (
            f"CK+ {classes}-class, every frame of each labelled sequence in order (frames = position, 0 = first): "
            f"first frame neutral (phase 0, labelled {'neutral' if classes == 8 else '-1 (no neutral class)'}, "
            f"all AUs 0), last {APEX_FRAMES} frames apex (phase 2, the sequence's emotion, its FACS AUs), frames "
            f"between onset (phase 1, unlabelled -1, AUs NaN); the labelled images are Khorrami et al.'s; "
            f"{n_folds} subject-independent folds (sorted subjects, subject i -> fold i mod {n_folds}), whole "
            f"sequences per fold; test fold t, validation (t+1) mod {n_folds}."
        )
    fs = FaceSet(
        images=np.stack([r[0] for r in recs]) if recs else np.zeros((0, size, size), np.uint8),
        labels=np.array([r[1] for r in recs], dtype=np.int64),
        class_names=ls.classes,
        label_set=ls.name,
        aus=aus_arr,
        au_ids=np.array(au_ids, dtype=np.int64),
        subjects=subjects,
        folds=subject_folds(subjects, n_folds) if n else np.zeros(0, np.int64),
        sequences=np.array([r[3] for r in recs], dtype=str),
        frames=np.array([r[6] for r in recs], dtype=np.int64) if every else None,
        phases=np.array([r[7] for r in recs], dtype=np.int8) if every else None,
        landmarks=lms,
        meta={
            "source": "ckplus",
            "options": meta_options,
            "preprocess": options.to_dict(),
            "au_uncoded_intensity": UNCODED_INTENSITY,
            "protocol": protocol,
        },
    )
    notes.insert(0, f"sequences without an emotion label (not used): {unlabelled}")
    if dropped_contempt:
        notes.append(f"contempt sequences dropped (six-class): {dropped_contempt}")
    return tally.result(fs, notes, skipped)
