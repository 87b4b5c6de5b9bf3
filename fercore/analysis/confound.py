"""Confound report: does a filter follow an action unit, or the emotion label the AU comes with?

On expression data the AUs are not independent of the emotion: AU12 (lip corner puller) is
present in almost every "happy" face and in few others. A filter that detects "happy" therefore
correlates with AU12 without responding to the lip corners at all. The report below separates the
two, per filter and AU, from the per-image maximum activations of a layer:

- ``r_au``: Pearson correlation of the activation with AU presence (point-biserial), all images
  whose AU is coded;
- ``r_emotion``: correlation with each emotion label, one class against the rest;
- ``r_partial``: partial correlation with the AU given the emotion: activation and AU presence are
  both residualised on the emotion one-hot (i.e. each has its class mean removed) and then
  correlated. This equals the pooled within-class correlation. ``p_partial`` is its two-sided
  p-value (t test with ``n - 2 - (k - 1)`` degrees of freedom for ``k`` classes);
- ``r_within``: the correlation inside each emotion class where the AU varies (some images with
  it, some without); NaN where it does not vary;
- the number of images each figure rests on, and ``weak`` flags where a figure rests on fewer than
  ``min_images`` images or fewer than ``min_minority`` of the rarer AU value.

When an AU is fully determined by the emotion (present in every image of some classes, absent in
all others), the within-class figures have no image to rest on: ``r_partial`` is NaN and the
report is flagged weak. Nothing about such an AU can be told apart from the emotion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "ConfoundReport",
    "confound_report",
    "correlate",
    "partial_correlation",
]

#: Figures resting on fewer images than this are flagged weak.
MIN_IMAGES = 20
#: Figures with fewer images than this of the rarer AU value (present / absent) are flagged weak.
MIN_MINORITY = 5


def _check_2d(name: str, a, n: int | None = None) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D (N, ...) array, got shape {a.shape}; pass one row per image")
    if n is not None and len(a) != n:
        raise ValueError(f"{name}: expected {n} rows (one per image), got {len(a)}")
    return a


def _check_labels(labels, n: int) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"labels: expected {n} entries (one per image), got {len(labels)}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels: expected integer class indices (-1 unlabelled), got dtype {labels.dtype}")
    return labels.astype(np.int64)


def correlate(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``x`` with the vector ``y``.

    Parameters
    ----------
    x : (n, F) float
        E.g. per-image max activations of F filters.
    y : (n,) float
        E.g. AU presence 0/1 (point-biserial correlation) or a one-vs-rest emotion indicator.

    Returns
    -------
    (F,) float64
        NaN where ``y`` or a column of ``x`` is constant (or n < 2).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    xc = x - x.mean(axis=0) if len(x) else x
    yc = y - y.mean() if len(y) else y
    return _corr_centred(xc, yc)


def _corr_centred(xc: np.ndarray, yc: np.ndarray) -> np.ndarray:
    num = yc @ xc  # (F,)
    den = np.sqrt((xc * xc).sum(axis=0) * (yc @ yc))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    tiny = den <= 1e-12 * max(1.0, float(np.abs(num).max(initial=0.0)))
    r = np.where(tiny, np.nan, r)
    return np.clip(r, -1.0, 1.0)


def _class_centre(v: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Subtract each class's mean (residuals of a regression on the class one-hot)."""
    onehot = np.zeros((len(labels), n_classes))
    onehot[np.arange(len(labels)), labels] = 1.0
    counts = onehot.sum(axis=0)
    means = (onehot.T @ v) / np.maximum(counts, 1)[:, None] if v.ndim == 2 else (onehot.T @ v) / np.maximum(counts, 1)
    return v - means[labels]


def partial_correlation(x: np.ndarray, y: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correlation of each column of ``x`` with ``y`` once the class label is held constant.

    Both ``x`` and ``y`` are residualised on the one-hot of ``labels`` (each has its class mean
    removed) and the residuals are correlated; this is the pooled within-class correlation.

    Parameters
    ----------
    x : (n, F) float
    y : (n,) float
    labels : (n,) int
        Class indices >= 0 (drop unlabelled images before calling).

    Returns
    -------
    r : (F,) float64
        NaN where ``y`` (or a column of ``x``) does not vary within any class.
    p : (F,) float64
        Two-sided p-value of ``r`` (t test, ``n - 2 - (k - 1)`` degrees of freedom, ``k`` the
        number of classes present); NaN where ``r`` is NaN or too few images.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if not (len(x) == len(y) == len(labels)):
        raise ValueError(f"partial_correlation: x, y and labels need one row per image, got {len(x)}, {len(y)}, {len(labels)}")
    if len(labels) and labels.min() < 0:
        raise ValueError("partial_correlation: labels must be >= 0; drop unlabelled images (-1) first")
    if len(x) == 0:
        nan = np.full(x.shape[1] if x.ndim == 2 else 0, np.nan)
        return nan, nan.copy()
    _, labels = np.unique(labels, return_inverse=True)
    k = int(labels.max()) + 1
    r = _corr_centred(_class_centre(x, labels, k), _class_centre(y, labels, k))
    df = len(y) - 2 - (k - 1)
    if df < 1:
        return r, np.full_like(r, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = r * np.sqrt(df / np.maximum(1.0 - r * r, 1e-300))
    p = 2.0 * stats.t.sf(np.abs(t), df)
    p = np.where(np.isnan(r), np.nan, p)
    return r, p


@dataclass
class ConfoundReport:
    """Filter × AU figures with and without the emotion label held constant.

    Attributes
    ----------
    au_ids : (A,) int64
    class_names : tuple of str, length C
    r_au : (F, A) float64
        Correlation of activation with AU presence (point-biserial).
    n_au : (A,) int64
        Images the AU correlation rests on (AU coded, image labelled).
    minority_au : (A,) int64
        Of those, images with the rarer AU value (present or absent).
    r_emotion : (F, C) float64
        Point-biserial correlation with each emotion, one class against the rest.
    n_emotion : (C,) int64
        Images of each class.
    r_partial, p_partial : (F, A) float64
        Partial correlation with the AU given the emotion, and its two-sided p-value.
    n_partial : (A,) int64
        Images in the classes where the AU varies (the only images that carry within-class
        information).
    minority_partial : (A,) int64
        Of those, images with the rarer AU value.
    r_within : (F, A, C) float64
        Correlation with the AU inside each class where it varies; NaN elsewhere.
    n_within, minority_within : (A, C) int64
        Images of each class with the AU coded, and of those the rarer AU value.
    weak_au, weak_partial : (A,) bool
        True where ``r_au`` / ``r_partial`` rest on fewer than ``min_images`` images or fewer than
        ``min_minority`` of the rarer AU value.
    weak_within : (A, C) bool
        The same for each class's ``r_within``.
    min_images, min_minority : int
        The thresholds used.
    """

    au_ids: np.ndarray
    class_names: tuple[str, ...]
    r_au: np.ndarray
    n_au: np.ndarray
    minority_au: np.ndarray
    r_emotion: np.ndarray
    n_emotion: np.ndarray
    r_partial: np.ndarray
    p_partial: np.ndarray
    n_partial: np.ndarray
    minority_partial: np.ndarray
    r_within: np.ndarray
    n_within: np.ndarray
    minority_within: np.ndarray
    weak_au: np.ndarray
    weak_partial: np.ndarray
    weak_within: np.ndarray
    min_images: int = MIN_IMAGES
    min_minority: int = MIN_MINORITY

    @property
    def n_filters(self) -> int:
        return int(self.r_au.shape[0])

    def pooled_within(self) -> np.ndarray:
        """(F, A) float64: the pooled within-class correlation (equal to ``r_partial``)."""
        return self.r_partial

    def best_emotion(self) -> np.ndarray:
        """(F,) int64: per filter, the class its activation correlates with most (-1 if none)."""
        r = np.where(np.isnan(self.r_emotion), -np.inf, self.r_emotion)
        best = np.argmax(r, axis=1) if r.shape[1] else np.zeros(len(r), dtype=np.int64)
        none = ~np.isfinite(r).any(axis=1) if r.shape[1] else np.ones(len(r), dtype=bool)
        return np.where(none, -1, best).astype(np.int64)

    def filter_rows(self, f: int) -> list[dict]:
        """One dict per AU for filter ``f``: every figure next to the images it rests on.

        Meant for tables (the dashboard's filter page): keys ``au``, ``r_au``, ``n_au``,
        ``r_partial``, ``p_partial``, ``n_partial``, ``minority_partial``, ``weak``,
        ``best_emotion``, ``r_best_emotion``, ``r_within`` (dict class name -> r, classes where the
        AU varies).
        """
        if not 0 <= f < self.n_filters:
            raise ValueError(f"filter: expected an index in 0..{self.n_filters - 1}, got {f}")
        be = int(self.best_emotion()[f])
        rows = []
        for a, au in enumerate(self.au_ids):
            within = {
                self.class_names[c]: float(self.r_within[f, a, c])
                for c in range(len(self.class_names))
                if not np.isnan(self.r_within[f, a, c])
            }
            rows.append(
                {
                    "au": int(au),
                    "r_au": float(self.r_au[f, a]),
                    "n_au": int(self.n_au[a]),
                    "r_partial": float(self.r_partial[f, a]),
                    "p_partial": float(self.p_partial[f, a]),
                    "n_partial": int(self.n_partial[a]),
                    "minority_partial": int(self.minority_partial[a]),
                    "weak": bool(self.weak_partial[a]),
                    "best_emotion": self.class_names[be] if be >= 0 else "",
                    "r_best_emotion": float(self.r_emotion[f, be]) if be >= 0 else float("nan"),
                    "r_within": within,
                }
            )
        return rows


def _weak(n, minority, min_images, min_minority):
    return (np.asarray(n) < min_images) | (np.asarray(minority) < min_minority)


def confound_report(
    activations: np.ndarray,
    au_present: np.ndarray,
    labels: np.ndarray,
    *,
    au_ids: np.ndarray | None = None,
    class_names: tuple[str, ...] | None = None,
    min_images: int = MIN_IMAGES,
    min_minority: int = MIN_MINORITY,
) -> ConfoundReport:
    """Correlations of every filter with every AU, with and without the emotion held constant.

    Parameters
    ----------
    activations : (N, F) float (float16 accepted)
        Per-image max activation of each filter of one layer.
    au_present : (N, A) float
        1 where the AU is present, 0 absent, NaN not coded (``FaceSet.au_present``).
    labels : (N,) int
        Emotion class per image; -1 unlabelled (those images are left out of every figure).
    au_ids : (A,) int, optional
        AU numbers of the columns (default 0..A-1).
    class_names : tuple of str, optional
        Names of the C classes (default ``"0".."C-1"`` over the labels seen).
    min_images, min_minority : int
        Thresholds of the ``weak`` flags.

    Returns
    -------
    ConfoundReport
    """
    act = _check_2d("activations", activations)
    n, n_f = act.shape
    pres = _check_2d("au_present", au_present, n).astype(np.float64)
    labels = _check_labels(labels, n)
    n_a = pres.shape[1]
    if au_ids is None:
        au_ids = np.arange(n_a)
    au_ids = np.asarray(au_ids, dtype=np.int64).reshape(-1)
    if len(au_ids) != n_a:
        raise ValueError(f"au_ids: expected {n_a} AU numbers (one per column of au_present), got {len(au_ids)}")
    n_c = len(class_names) if class_names is not None else int(labels.max(initial=-1)) + 1
    if labels.max(initial=-1) >= n_c:
        raise ValueError(f"labels: values must lie in -1..{n_c - 1} for {n_c} classes, got {labels.max()}")
    class_names = tuple(str(c) for c in class_names) if class_names is not None else tuple(str(c) for c in range(n_c))
    act = act.astype(np.float64)
    labelled = labels >= 0

    r_emotion = np.full((n_f, n_c), np.nan)
    n_emotion = np.zeros(n_c, dtype=np.int64)
    xl = act[labelled]
    for c in range(n_c):
        ind = (labels[labelled] == c).astype(np.float64)
        n_emotion[c] = int(ind.sum())
        r_emotion[:, c] = correlate(xl, ind)

    r_au = np.full((n_f, n_a), np.nan)
    r_partial = np.full((n_f, n_a), np.nan)
    p_partial = np.full((n_f, n_a), np.nan)
    r_within = np.full((n_f, n_a, n_c), np.nan)
    n_au = np.zeros(n_a, dtype=np.int64)
    minority_au = np.zeros(n_a, dtype=np.int64)
    n_partial = np.zeros(n_a, dtype=np.int64)
    minority_partial = np.zeros(n_a, dtype=np.int64)
    n_within = np.zeros((n_a, n_c), dtype=np.int64)
    minority_within = np.zeros((n_a, n_c), dtype=np.int64)
    for a in range(n_a):
        keep = labelled & ~np.isnan(pres[:, a])
        x, y, lab = act[keep], pres[keep, a], labels[keep]
        n_au[a] = len(y)
        minority_au[a] = int(min(y.sum(), len(y) - y.sum()))
        r_au[:, a] = correlate(x, y)
        varies = np.zeros(len(y), dtype=bool)
        for c in range(n_c):
            in_c = lab == c
            pos = int(y[in_c].sum())
            n_within[a, c] = int(in_c.sum())
            minority_within[a, c] = min(pos, n_within[a, c] - pos)
            if minority_within[a, c] > 0:
                varies |= in_c
                r_within[:, a, c] = correlate(x[in_c], y[in_c])
        n_partial[a] = int(varies.sum())
        pos = int(y[varies].sum())
        minority_partial[a] = min(pos, n_partial[a] - pos)
        if n_partial[a] >= 3:
            # Over all labelled images with the AU coded, as the residualisation on the one-hot
            # defines it; classes where the AU is constant add nothing to the numerator.
            r_partial[:, a], p_partial[:, a] = partial_correlation(x, y, lab)
    return ConfoundReport(
        au_ids=au_ids,
        class_names=class_names,
        r_au=r_au,
        n_au=n_au,
        minority_au=minority_au,
        r_emotion=r_emotion,
        n_emotion=n_emotion,
        r_partial=r_partial,
        p_partial=p_partial,
        n_partial=n_partial,
        minority_partial=minority_partial,
        r_within=r_within,
        n_within=n_within,
        minority_within=minority_within,
        weak_au=_weak(n_au, minority_au, min_images, min_minority),
        weak_partial=_weak(n_partial, minority_partial, min_images, min_minority),
        weak_within=_weak(n_within, minority_within, min_images, min_minority),
        min_images=min_images,
        min_minority=min_minority,
    )
