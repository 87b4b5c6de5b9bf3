"""The phantom data set: subjects, expressions sampled around the EMFACS prototypes, folds."""

from __future__ import annotations

import math

import cv2
import numpy as np

from fercore.data import facs
from fercore.data.faceset import FaceSet
from fercore.data.phantom.identity import random_identity, random_nuisance
from fercore.data.phantom.render import DRAWN_AUS, render_face
from fercore.util import Progress, no_progress

__all__ = ["CONFLICTS", "CORE_AUS", "EXTRA_EXCLUDED", "GENERATOR_VERSION", "generate_faceset", "montage", "sample_expression"]

#: Changes whenever the drawing or the sampling changes the generated images or labels.
GENERATOR_VERSION = 6

#: The AUs an expression keeps when others are dropped: those CK+ requires for the label, or
#: that tell it from its nearest neighbour (fear from surprise: AU4; anger from sadness: AU23).
#: Fear keeps 1 + 2 + 4, the brows CK+ requires for it.
CORE_AUS: dict[str, tuple[int, ...]] = {
    "neutral": (),
    "anger": (4, 23),
    "contempt": (12, 14),
    "disgust": (9,),
    "fear": (1, 2, 4),
    "happy": (12,),
    "sadness": (1, 15),
    "surprise": (2, 26),
}


#: Extra AUs never added to an emotion: those that would complete another emotion's defining
#: AUs (surprise + 4 reads as fear, anger + 1 + 2 as fear, happy + 14 as contempt, ...), so the
#: label stays the one the face shows.
EXTRA_EXCLUDED: dict[str, set[int]] = {
    "neutral": {1, 4, 9, 12, 14, 15, 23, 26},
    "anger": {1, 2, 20, 26},
    "contempt": {4, 6},
    "disgust": {1, 4},
    "fear": {23, 24},
    "happy": {14},
    "sadness": {2, 9, 23, 24},
    "surprise": {4, 7, 9, 20},
}

#: Extra AUs are not added beside these: the lips cannot part (25) where the jaw already drops
#: them apart (26) or the lower lip is pulled down (16), nor be pressed (24) or tightened (23)
#: while open, nor the chin boss raised (17) while the jaw drops.
CONFLICTS: dict[int, set[int]] = {
    25: {16, 26}, 24: {16, 25, 26}, 23: {16, 25, 26}, 17: {16, 25, 26},
    26: {17, 23, 24, 25}, 16: {17, 23, 24, 25},
}
_CONFLICTS = {a: {b for b in DRAWN_AUS if b in CONFLICTS.get(a, ()) or a in CONFLICTS.get(b, ())} for a in DRAWN_AUS}


def _lips_part(aus: dict[int, int]) -> dict[int, int]:
    """Code AU25 wherever AU26 or AU16 draws the lips apart (as FACS coders do: 25+26, 16+25)."""
    opener = max(aus.get(26, 0), aus.get(16, 0))
    if opener and 25 not in aus:
        aus[25] = opener
    return aus


def sample_expression(
    emotion: str,
    rng: np.random.Generator,
    *,
    au_variation: float = 1.0,
    p_drop: float = 0.15,
    p_extra: float = 0.3,
    extra_max: int = 3,
) -> tuple[dict[int, int], dict[int, str]]:
    """AU intensities and sides of one face showing ``emotion``.

    Starts from :data:`fercore.facs.PROTOTYPES`. With ``au_variation`` v > 0, each prototype AU
    other than the emotion's core AU (:data:`CORE_AUS`) is dropped with probability
    ``v * p_drop`` (at least two prototype AUs stay where the prototype has two or more), each
    intensity moves by -1, 0 or +1 with probability v (kept within 1-5), zero to two extra AUs
    are added (each with probability ``v * p_extra``, a third of that for neutral) at intensity 1 to
    ``extra_max`` (default 3, under the prototypes' 3 +- 1, so an AU's strongest faces show the
    emotion whose prototype holds it; 5 lets extras be as strong as any prototype AU),
    never beside an AU they cannot show with (:data:`CONFLICTS`) nor one that would make the
    face read as another emotion (:data:`EXTRA_EXCLUDED`), and a one-sided AU shows on
    either side with equal odds. With v = 0 the AUs are exactly the prototype's: the emotion
    fully determines them. In both cases AU25 (lips part) is coded, and drawn, wherever AU26 or
    AU16 opens the mouth, at the opener's intensity, as FACS coders code 25+26 and 16+25.

    Returns
    -------
    aus : dict of int to int
        AU number -> intensity 1-5 (absent AUs are left out).
    sides : dict of int to str
        ``"R"`` or ``"L"`` for one-sided AUs.
    """
    proto = facs.PROTOTYPES[emotion]
    proto_sides = facs.PROTOTYPE_SIDES.get(emotion, {})
    v = float(au_variation)
    if v <= 0:
        return _lips_part(dict(proto)), dict(proto_sides)
    u = iter(rng.random(48).tolist())  # one draw for every random choice below
    core = CORE_AUS.get(emotion, ())
    kept = [a for a in proto if a in core or next(u) >= v * p_drop]
    need = min(2, len(proto))
    dropped = sorted((a for a in proto if a not in kept), key=lambda a: next(u))
    while len(kept) < need and dropped:
        kept.append(dropped.pop())
    aus = {}
    for a in kept:
        k = proto[a]
        if next(u) < v:
            k += min(2, int(next(u) * 3)) - 1
        aus[a] = int(min(5, max(1, k)))
    pe = v * p_extra * (1 / 3 if emotion == "neutral" else 1.0)
    excluded = EXTRA_EXCLUDED.get(emotion, set())
    for _ in range(2):
        if next(u) < pe:
            pool = [a for a in DRAWN_AUS if a not in proto and a not in aus and a not in excluded
                    and not (_CONFLICTS[a] & aus.keys())]
            if pool:
                aus[pool[min(len(pool) - 1, int(next(u) * len(pool)))]] = 1 + min(extra_max - 1, int(next(u) * extra_max))
    _lips_part(aus)
    side = "R" if next(u) < 0.5 else "L"
    sides = {a: side for a in proto_sides if a in aus}
    return aus, sides


def generate_faceset(
    n: int = 2000,
    *,
    size: int = 64,
    seed: int = 0,
    n_subjects: int | None = None,
    n_folds: int = 10,
    au_variation: float = 1.0,
    p_drop: float = 0.15,
    p_extra: float = 0.3,
    extra_max: int = 3,
    nuisance: float = 1.0,
    progress: Progress | None = None,
) -> FaceSet:
    """Generate the phantom data set: grey faces with known emotions, AUs, subjects and folds.

    Each subject has a fixed :class:`~fercore.phantom.Identity`; its images cycle through the
    eight CK+ classes (so classes are balanced to within one image overall), each an EMFACS
    prototype varied by :func:`sample_expression`, drawn with random nuisance (a few degrees,
    a few percent of scale and shift, light gradient, gamma, blur, noise).

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Image side in pixels, 48-128 (default 64).
    seed : int
        The same seed and options give the same images, bit for bit. Subject ``j``'s identity
        depends only on ``seed`` and ``j``.
    n_subjects : int or None
        Default: ``n / 16`` rounded, at least ``n_folds`` and at most ``n`` (2,000 images ->
        125 subjects, about the 123 of CK+).
    n_folds : int
        Subject-independent folds: subjects sorted by id, subject i goes to fold ``i % n_folds``
        (the CK+ protocol of Khorrami et al. 2015).
    au_variation : float
        0 makes the AUs fully determined by the emotion (the prototype exactly); 1 (default) is
        natural variation (drops, extras, intensity jitter); see :func:`sample_expression`.
    p_drop, p_extra : float
        Probability (times ``au_variation``) that a non-core prototype AU is dropped, and that
        each of up to two extra AUs is added; see :func:`sample_expression`.
    extra_max : int
        Highest intensity of an extra AU, 1-5 (default 3); see :func:`sample_expression`.
    nuisance : float
        Strength of the nuisance; 0 draws every face upright, centred, clean.
    progress : callable or None
        ``progress(done, total, "phantom")``.

    Returns
    -------
    FaceSet
        ``label_set="ckplus8"``; ``aus`` (n, 18) intensities 0-5 of :data:`DRAWN_AUS`;
        ``landmarks`` (n, 68, 2); ``sequences`` None (subjects stand in for sequences).
    """
    n, size, n_folds = int(n), int(size), int(n_folds)
    if n < 1:
        raise ValueError(f"n: expected at least 1 image, got {n}")
    if not 24 <= size <= 512:
        raise ValueError(f"size: expected 24-512 px (48-128 is the designed range), got {size}")
    if n_folds < 1:
        raise ValueError(f"n_folds: expected at least 1, got {n_folds}")
    if n_subjects is None:
        n_subjects = min(n, max(n_folds, int(round(n / 16))))
    n_subjects = int(n_subjects)
    if not 1 <= n_subjects <= n:
        raise ValueError(f"n_subjects: expected 1..n ({n}), got {n_subjects}")
    if not 0.0 <= float(au_variation) <= 3.0:
        raise ValueError(f"au_variation: expected 0 (determined) to 3, got {au_variation}")
    for name, p in (("p_drop", p_drop), ("p_extra", p_extra)):
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"{name}: expected a probability 0-1, got {p}")
    if int(extra_max) != extra_max or not 1 <= int(extra_max) <= 5:
        raise ValueError(f"extra_max: expected an AU intensity 1-5, got {extra_max!r}")
    extra_max = int(extra_max)
    if not 0.0 <= float(nuisance) <= 3.0:
        raise ValueError(f"nuisance: expected 0 (none) to 3, got {nuisance}")
    progress = progress or no_progress
    ls = facs.LABEL_SETS["ckplus8"]
    classes = ls.classes
    n_cls = len(classes)

    counts = np.full(n_subjects, n // n_subjects)
    counts[: n % n_subjects] += 1
    width = max(3, len(str(n_subjects - 1)))
    names = [f"P{j:0{width}d}" for j in range(n_subjects)]

    images = np.empty((n, size, size), np.uint8)
    landmarks = np.empty((n, 68, 2), np.float32)
    labels = np.empty(n, np.int64)
    aus = np.zeros((n, len(DRAWN_AUS)), np.float32)
    subjects = np.empty(n, dtype=object)
    folds = np.empty(n, np.int64)
    col = {a: i for i, a in enumerate(DRAWN_AUS)}

    i = 0
    offset = 0
    step = max(1, n // 100)
    progress(0, n, "phantom")
    for j in range(n_subjects):
        idn = random_identity(np.random.default_rng(np.random.SeedSequence([seed, j, 0])))
        rng = np.random.default_rng(np.random.SeedSequence([seed, j, 1]))
        for t in range(counts[j]):
            lab = (offset + t) % n_cls
            emo = classes[lab]
            a, sides = sample_expression(emo, rng, au_variation=au_variation, p_drop=p_drop, p_extra=p_extra,
                                         extra_max=extra_max)
            nz = random_nuisance(rng, nuisance) if nuisance > 0 else None
            img, lm = render_face(idn, a, size=size, nuisance=nz, sides=sides)
            images[i], landmarks[i], labels[i] = img, lm, lab
            for k, v in a.items():
                aus[i, col[k]] = v
            subjects[i] = names[j]
            folds[i] = j % n_folds
            i += 1
            if i % step == 0 or i == n:
                progress(i, n, "phantom")
        offset += counts[j]

    perm = np.random.default_rng(np.random.SeedSequence([seed, 2])).permutation(n)
    options = {
        "n": n, "size": size, "seed": int(seed), "n_subjects": n_subjects, "n_folds": n_folds,
        "au_variation": float(au_variation), "nuisance": float(nuisance), "p_drop": float(p_drop),
        "p_extra": float(p_extra), "extra_max": extra_max, "intensity_jitter": 1, "generator_version": GENERATOR_VERSION,
    }
    protocol = (
        f"{n} images, {n_subjects} subjects, {n_cls} classes, {n_folds} subject-independent folds "
        f"(subjects sorted, subject i -> fold i mod {n_folds})"
    )
    return FaceSet(
        images=images[perm],
        labels=labels[perm],
        class_names=classes,
        label_set="ckplus8",
        aus=aus[perm],
        au_ids=np.array(DRAWN_AUS),
        subjects=subjects[perm].astype(str),
        folds=folds[perm],
        landmarks=landmarks[perm],
        meta={
            "source": "phantom",
            "options": options,
            "preprocess": {"normalize": "standardize", "size": size, "detect": False},
            "protocol": protocol,
        },
    )


def montage(fs: FaceSet, per_class: int = 8) -> np.ndarray:
    """One row per class with its name at the left, ``per_class`` faces per row.

    Parameters
    ----------
    fs : FaceSet
    per_class : int
        Faces per row (the first ones of each class, in data-set order; fewer leave a gap).

    Returns
    -------
    (C * S, L + per_class * S) uint8
        S the image side, L the width of the label column.
    """
    per_class = int(per_class)
    if per_class < 1:
        raise ValueError(f"per_class: expected at least 1, got {per_class}")
    s = fs.size
    scale = max(0.3, s / 110)
    thick = max(1, int(round(s / 64)))
    label_w = max(int(math.ceil(cv2.getTextSize(c, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0]))
                  for c in fs.class_names) + 12
    out = np.full((len(fs.class_names) * s, label_w + per_class * s), 255, np.uint8)
    for c, name in enumerate(fs.class_names):
        idx = np.flatnonzero(fs.labels == c)[:per_class]
        y = c * s
        (tw, th), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        cv2.putText(out, name, (6, y + (s + th) // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, 0, thick, cv2.LINE_AA)
        for k, i in enumerate(idx):
            out[y : y + s, label_w + k * s : label_w + (k + 1) * s] = fs.images[i]
    return out
