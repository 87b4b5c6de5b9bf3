"""Every statistic of the filter-AU analysis, defined once.

Pure functions of arrays (no files, no models); :func:`fercore.analysis.analyze.analyze` calls
them once per layer and stores what they return in ``records.h5``, and every reader (summary,
CLI, CSV, dashboard) reads the stored values. The formulas and the data rule are in
``docs/records.md``.

**The data rule** (one for every statistic): an image counts for AU ``a`` when ``a`` is coded on
it (intensity not NaN); presence is intensity > 0 (:func:`fercore.data.facs.presence`). A
statistic that conditions on the emotion (per class, within class, expected share, the
within-emotion test) also needs the image to be labelled (label >= 0); the others keep unlabelled
images. Top-K statistics count the entries of a list whose AU is coded.

Shapes: N images, F filters, A AUs, C classes, K list length.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats as sps

from fercore.data.facs import AUS, in_region
from fercore.training.evaluate import roc_auc

__all__ = [
    "UnitTable",
    "au_cooccurrence",
    "au_correlation",
    "au_given_emotion",
    "base_rates",
    "benjamini_hochberg",
    "correlation",
    "correlation_p",
    "emotion_correlation",
    "expected_share",
    "kl_selectivity",
    "null_quantile",
    "per_class_correlation",
    "roc_auc",
    "spatial_share",
    "topk_au_share",
    "expected_topk",
    "unit_activations",
    "unit_table",
    "within_class_correlation",
    "within_emotion_auc",
]


def _check_index(name: str, idx, n: int) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name}: expected an (F, K) integer array of image indices, got {idx.shape} {idx.dtype}")
    if idx.size and idx.max() >= n:
        raise ValueError(f"{name}: image index {idx.max()} is out of range for {n} images; "
                         "were the records made on other data?")
    return idx.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Rates and shares


def base_rates(present: np.ndarray) -> np.ndarray:
    """(A,) float64: share of the images with the AU coded that carry it; NaN where none is coded.

    Parameters
    ----------
    present : (N, A) float
        1 present, 0 absent, NaN not coded.
    """
    p = np.asarray(present, dtype=np.float64)
    coded = (~np.isnan(p)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(coded > 0, np.nansum(p, axis=0) / np.maximum(coded, 1), np.nan)


def au_given_emotion(present: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, A) float64: P(AU present | emotion) over the coded images of each class (NaN if none)."""
    p = np.asarray(present, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(p):
        raise ValueError(f"labels: expected {len(p)} entries (one per image), got {len(labels)}")
    out = np.full((n_classes, p.shape[1]), np.nan)
    for c in range(n_classes):
        rows = p[labels == c]
        if len(rows):
            out[c] = base_rates(rows)
    return out


def topk_au_share(topk_index: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per filter, the share of its top-K images that carry each AU.

    Parameters
    ----------
    topk_index : (F, K) int
        Image indices of each filter's list; -1 marks an empty slot.
    present : (N, A) float
        1 / 0 / NaN (an entry whose AU is not coded is left out of that AU's share).

    Returns
    -------
    share : (F, A) float64
        Present / coded among the list's images; NaN where none is coded.
    counts : (F, A) float64
        Listed images carrying the AU (the filter's AU histogram).
    coded : (F, A) int64
        Listed images with the AU coded.
    """
    p = np.asarray(present, dtype=np.float64)
    idx = _check_index("topk_index", topk_index, len(p))
    valid = idx >= 0
    rows = p[np.where(valid, idx, 0)]  # (F, K, A)
    rows[~valid] = np.nan
    counts = np.nansum(rows, axis=1)
    coded = (~np.isnan(rows)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(coded > 0, counts / np.maximum(coded, 1), np.nan)
    return share, counts, coded.astype(np.int64)


def expected_share(topk_index: np.ndarray, labels: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """The AU share of each list that the emotions of its images alone predict.

    Parameters
    ----------
    topk_index : (F, K) int
        -1 marks an empty slot.
    labels : (N,) int
        Emotion per image, -1 unlabelled (left out).
    rates : (C, A) float
        P(AU | emotion), e.g. :func:`au_given_emotion` or :attr:`UnitTable.rates`.

    Returns
    -------
    (F, A) float64
        Mean over the labelled listed images of ``rates[label]``; NaN where none is labelled.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    idx = _check_index("topk_index", topk_index, len(labels))
    table = np.concatenate([np.asarray(rates, dtype=np.float64), np.full((1, np.shape(rates)[1]), np.nan)])
    lab = np.where(idx >= 0, labels[np.where(idx >= 0, idx, 0)], -1)  # (F, K); -1 picks the NaN row
    rows = table[lab]  # (F, K, A)
    known = (~np.isnan(rows)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known > 0, np.nansum(rows, axis=1) / np.maximum(known, 1), np.nan)


def kl_selectivity(counts: np.ndarray, base_rate: np.ndarray) -> np.ndarray:
    """Khorrami et al.'s selectivity: KL(top-K AU histogram || data AU distribution), per filter.

    Parameters
    ----------
    counts : (F, A) float
        AU histogram of each filter's top-K images (:func:`topk_au_share`).
    base_rate : (A,) float
        Share of coded images carrying each AU (:func:`base_rates`; NaN treated as 0).

    Returns
    -------
    (F,) float64
        ``sum_a p_a ln(p_a / q_a)`` with ``p`` the normalised histogram and ``q`` the normalised
        base rates (``scipy.stats.entropy``); NaN for an empty histogram; inf where the filter's
        images carry an AU the data set never shows.
    """
    counts = np.asarray(counts, dtype=np.float64)
    q = np.nan_to_num(np.asarray(base_rate, dtype=np.float64))
    out = np.full(len(counts), np.nan)
    ok = counts.sum(axis=1) > 0
    if ok.any() and q.sum() > 0:
        out[ok] = sps.entropy(counts[ok], q[None, :], axis=1)
    return out


def au_cooccurrence(present: np.ndarray) -> np.ndarray:
    """(A, A) P(AU j present | AU i present) over the images with both coded; NaN if AU i never
    occurs."""
    present = np.asarray(present, dtype=np.float64)
    coded = ~np.isnan(present)
    pr = np.nan_to_num(present)
    joint = pr.T @ pr  # images with i and j present
    cond = pr.T @ coded.astype(np.float64)  # images with i present and j coded
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cond > 0, joint / cond, np.nan)


# --------------------------------------------------------------------------------------------
# Correlations


def correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of every column of ``x`` (n, F) with ``y`` (n,): (F,) float64.

    NaN where ``y`` or a column of ``x`` is constant, or n < 3. With 0/1 ``y`` this is the
    point-biserial correlation.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(y) < 3:
        return np.full(x.shape[1], np.nan)
    return _corr_centred(x - x.mean(axis=0), y - y.mean())


def _corr_centred(xc: np.ndarray, yc: np.ndarray) -> np.ndarray:
    num = yc @ xc
    den = np.sqrt((xc * xc).sum(axis=0) * (yc @ yc))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    tiny = den <= 1e-12 * max(1.0, float(np.abs(xc).max(initial=0.0)))
    return np.clip(np.where(tiny, np.nan, r), -1.0, 1.0)


def correlation_p(r: np.ndarray, n, *, n_params: int = 2) -> np.ndarray:
    """Two-sided p-value of Pearson correlations: ``t = r sqrt(df / (1 - r^2))`` with
    ``df = n - n_params`` degrees of freedom (``scipy.stats.t``; 2 for a plain correlation,
    ``C + 1`` for a within-class correlation over C classes). NaN where r is NaN or df < 1."""
    r = np.asarray(r, dtype=np.float64)
    df = np.broadcast_to(np.asarray(n, dtype=np.float64) - n_params, r.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = r * np.sqrt(df / np.maximum(1.0 - r * r, 1e-300))
        p = 2.0 * sps.t.sf(np.abs(t), df)
    return np.where(np.isnan(r) | (df < 1), np.nan, p)


def au_correlation(x: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation of each filter's per-image maximum with each AU's presence.

    Parameters
    ----------
    x : (N, F) float
    present : (N, A) float, NaN = not coded (left out for that AU)

    Returns
    -------
    r : (F, A) float64
    p : (F, A) float64
        :func:`correlation_p` (images counted as independent: frames of one clip are not).
    n : (A,) int64
        Images used per AU.
    """
    x = np.asarray(x, dtype=np.float64)
    present = np.asarray(present, dtype=np.float64)
    r = np.full((x.shape[1], present.shape[1]), np.nan)
    n = np.zeros(present.shape[1], np.int64)
    for a in range(present.shape[1]):
        m = ~np.isnan(present[:, a])
        n[a] = int(m.sum())
        r[:, a] = correlation(x[m], present[m, a])
    return r, correlation_p(r, n), n


def emotion_correlation(x: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(F, C) float64: correlation of each filter with each emotion, one class against the rest
    (labelled images only)."""
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    keep = labels >= 0
    return np.stack([correlation(x[keep], (labels[keep] == c).astype(np.float64)) for c in range(n_classes)], axis=1) \
        if n_classes else np.zeros((x.shape[1], 0))


def _class_centred(v: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``v`` with each class's mean removed (the residuals of a regression on the class one-hot)."""
    _, inv = np.unique(labels, return_inverse=True)
    counts = np.bincount(inv).astype(np.float64)
    if v.ndim == 1:
        return v - (np.bincount(inv, weights=v) / counts)[inv]
    sums = np.zeros((len(counts), v.shape[1]))
    np.add.at(sums, inv, v)
    return v - (sums / counts[:, None])[inv]


def within_class_correlation(x: np.ndarray, present: np.ndarray, labels: np.ndarray
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled within-class correlation = partial correlation with the AU given the emotion.

    Per AU, over the labelled images with the AU coded: activation and presence each have their
    class means removed, and the residuals are correlated. A detector of an emotion loses its
    correlation with the emotion's AUs; a detector of the AU keeps it where the AU varies within
    classes.

    Parameters
    ----------
    x : (N, F) float
    present : (N, A) float, NaN = not coded
    labels : (N,) int, -1 = unlabelled (left out)

    Returns
    -------
    r : (F, A) float64
        NaN where the AU varies within no class.
    p : (F, A) float64
        :func:`correlation_p` with ``n - (C + 1)`` degrees of freedom (C classes present).
    n : (A,) int64
        Images used per AU.
    """
    x = np.asarray(x, dtype=np.float64)
    present = np.asarray(present, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    r = np.full((x.shape[1], present.shape[1]), np.nan)
    p = np.full_like(r, np.nan)
    n = np.zeros(present.shape[1], np.int64)
    for a in range(present.shape[1]):
        m = ~np.isnan(present[:, a]) & (labels >= 0)
        n[a] = int(m.sum())
        if n[a] < 3:
            continue
        k = len(np.unique(labels[m]))
        r[:, a] = _corr_centred(_class_centred(x[m], labels[m]), _class_centred(present[m, a], labels[m]))
        p[:, a] = correlation_p(r[:, a], n[a], n_params=k + 1)
    return r, p, n


def per_class_correlation(x: np.ndarray, present: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(F, A, C) float64: the correlation with the AU inside each class (coded, labelled images);
    NaN where the AU does not vary in that class."""
    x = np.asarray(x, dtype=np.float64)
    present = np.asarray(present, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    out = np.full((x.shape[1], present.shape[1], n_classes), np.nan)
    for c in range(n_classes):
        in_c = labels == c
        for a in range(present.shape[1]):
            m = in_c & ~np.isnan(present[:, a])
            if m.sum() >= 3:
                out[:, a, c] = correlation(x[m], present[m, a])
    return out


# --------------------------------------------------------------------------------------------
# Multiple testing, null quantiles


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) over the finite entries of ``p``, any shape.

    ``scipy.stats.false_discovery_control`` on the finite entries; NaN entries stay NaN and do not
    count in the number of tests.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = sps.false_discovery_control(p[ok], method="bh")
    return q


def null_quantile(values: np.ndarray, q: float = 0.95) -> np.ndarray:
    """The ``q`` quantile of a figure over a null network's filters, per column (AU).

    Parameters
    ----------
    values : (F_null, A) or (F_null,) float
        The figure for every filter of the null's same layer (NaN left out).

    Returns
    -------
    (A,) or () float64
        NaN for a column without finite values.
    """
    v = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN
        return np.nanquantile(np.where(np.isfinite(v), v, np.nan), q, axis=0)


# --------------------------------------------------------------------------------------------
# Where the filter looks


def spatial_share(topk_index: np.ndarray, box: np.ndarray, landmarks: np.ndarray | None,
                  au_ids: np.ndarray) -> np.ndarray:
    """Share of each filter's listed maxima that fall inside each AU's face region.

    Parameters
    ----------
    topk_index : (F, K) int, -1 = empty slot
    box : (F, K, 4) int
        Receptive-field boxes x0, y0, x1, y1 (inclusive, input pixels); the entry's point is the
        box centre.
    landmarks : (N, 68, 2) float or None
        In the same pixels; images with NaN landmarks are left out.
    au_ids : (A,) int

    Returns
    -------
    (F, A) float64
        NaN without landmarks, and for AUs without a region in :data:`fercore.data.facs.AUS`.
    """
    idx = np.asarray(topk_index)
    out = np.full((idx.shape[0], len(au_ids)), np.nan)
    if landmarks is None:
        return out
    box = np.asarray(box, dtype=np.float64)
    centres = np.stack([(box[..., 0] + box[..., 2]) / 2, (box[..., 1] + box[..., 3]) / 2], -1)
    ok = idx >= 0
    ok &= np.isfinite(landmarks[np.where(ok, idx, 0)]).all(axis=(2, 3))
    fi, ki = np.nonzero(ok)
    imgs = idx[fi, ki]
    pts = centres[fi, ki]
    n_ok = ok.sum(axis=1)
    for a, au_id in enumerate(au_ids):
        if int(au_id) not in AUS:
            continue
        hit = np.zeros(idx.shape, bool)
        for img in np.unique(imgs):
            sel = imgs == img
            hit[fi[sel], ki[sel]] = in_region(landmarks[img], int(au_id), pts[sel])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, a] = np.where(n_ok > 0, hit.sum(axis=1) / np.maximum(n_ok, 1), np.nan)
    return out


# --------------------------------------------------------------------------------------------
# The within-emotion test of a top-K list


class UnitTable:
    """The units that carry AU codes, per emotion class: the populations of the within-emotion test.

    A **unit** is the set of images of one group (sequence where the FaceSet has sequences, else
    subject) with one emotion label and the same AU codes: the three apex frames of a CK+
    sequence are one unit (one FACS code), its first frame another (neutral); a phantom face,
    whose AUs are drawn per image, is a unit of its own. Units are what is exchangeable under
    the null, so near-copies of one coded observation count once.

    Attributes
    ----------
    unit : (N,) int64
        Unit of each image; -1 for unlabelled images.
    label : (U,) int64
        Class of each unit.
    present : (U, A) float64
        The unit's AU presence (1 / 0; NaN where not coded).
    n : (C, A) int64
        Units of each class with the AU coded.
    m : (C, A) int64
        Of those, units carrying the AU.
    rates : (C, A) float64
        ``m / n``: P(AU | emotion) over units (NaN where n = 0).
    minority : (A,) int64
        Sum over classes of ``min(m, n - m)``: how many units within classes tell the AU's
        presence from its absence.
    """

    def __init__(self, unit, label, present, n, m):
        self.unit, self.label, self.present, self.n, self.m = unit, label, present, n, m
        with np.errstate(invalid="ignore", divide="ignore"):
            self.rates = np.where(n > 0, m / np.maximum(n, 1), np.nan)
        self.minority = np.minimum(m, n - m).sum(axis=0).astype(np.int64)

    @property
    def n_units(self) -> int:
        return int(len(self.label))


def unit_table(groups: np.ndarray, labels: np.ndarray, present: np.ndarray, n_classes: int) -> UnitTable:
    """Group the images into the units of :class:`UnitTable`.

    Parameters
    ----------
    groups : (N,) str
        ``FaceSet.groups`` (sequence ids, else subject ids).
    labels : (N,) int
        -1 unlabelled (no unit).
    present : (N, A) float, 1 / 0 / NaN
    n_classes : int
    """
    groups = np.asarray(groups).astype(str).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    present = np.asarray(present, dtype=np.float64)
    n_img, n_au = present.shape
    if not (len(groups) == len(labels) == n_img):
        raise ValueError(f"unit_table: groups, labels and present need one row per image, "
                         f"got {len(groups)}, {len(labels)}, {n_img}")
    code = np.where(np.isnan(present), 2, present).astype(np.int8)  # 0 / 1 / 2 = not coded
    _, g = np.unique(groups, return_inverse=True)
    key = np.concatenate([g[:, None], labels[:, None], code], axis=1)
    keep = labels >= 0
    unit = np.full(n_img, -1, np.int64)
    first = np.zeros(0, np.int64)
    if keep.any():
        uniq, first_pos, inv = np.unique(key[keep], axis=0, return_index=True, return_inverse=True)
        unit[keep] = inv.reshape(-1)
        first = np.flatnonzero(keep)[first_pos]
    u_label = labels[first]
    u_present = present[first]
    n = np.zeros((n_classes, n_au), np.int64)
    m = np.zeros((n_classes, n_au), np.int64)
    coded = ~np.isnan(u_present)
    for c in range(n_classes):
        in_c = u_label == c
        n[c] = coded[in_c].sum(axis=0)
        m[c] = np.nansum(u_present[in_c], axis=0).astype(np.int64)
    return UnitTable(unit, u_label, u_present, n, m)


def unit_activations(max_act: np.ndarray, units: UnitTable) -> np.ndarray:
    """(U, F) float64: each unit's mean of its images' per-image maxima (the three apex frames of a
    CK+ sequence count once, as their mean)."""
    x = np.asarray(max_act, dtype=np.float64)
    keep = units.unit >= 0
    sums = np.zeros((units.n_units, x.shape[1]))
    np.add.at(sums, units.unit[keep], x[keep])
    counts = np.bincount(units.unit[keep], minlength=units.n_units).astype(np.float64)
    return sums / np.maximum(counts, 1)[:, None]


def within_emotion_auc(x_units: np.ndarray, units: UnitTable, *, margin: float = 0.5,
                       min_minority: int = 5, ci: float = 0.95) -> dict[str, np.ndarray]:
    """Does a filter tell the units that carry an AU from those that do not, within each emotion?

    The effect is the within-emotion AUC: over the emotion classes where the AU varies, the
    probability that a unit carrying the AU has a higher activation than a unit of the same
    emotion without it (ties count half), ``sum_c U_c / sum_c m_c (n_c - m_c)`` with ``U_c`` the
    Mann-Whitney statistic of class c (``m_c`` of its ``n_c`` units carry the AU). 0.5: nothing
    beyond the emotion; 1: the AU's presence is read off the filter within every emotion.

    The test is the conditional permutation test that exchanges the AU codes among the units of
    each emotion class (so the filter keeps all of its dependence on the emotion and loses only
    what is specific to the AU): under it, ``sum_c U_c`` has the exact mean ``sum_c m_c (n_c -
    m_c) / 2`` and variance ``sum_c m_c (n_c - m_c) / (n_c (n_c - 1)) sum_u (r_u - r_c)^2`` (mid-ranks
    ``r`` within the class, ties included), and the stratified sum is close to normal. The
    one-sided p-value is for the null "the within-emotion AUC is at most ``margin``": ``z = (AUC -
    margin) / SE`` with the permutation SE; ``margin`` 0.5 is the plain permutation test, a
    larger margin asks for an effect of at least that size (an effect-size floor built into the
    test, conservative for weaker effects).

    Parameters
    ----------
    x_units : (U, F) float
        Activations of the units (:func:`unit_activations`).
    units : UnitTable
    margin : float
        The AUC of the null (0.5 <= margin < 1).
    min_minority : int
        AUs with fewer units within classes that tell presence from absence
        (:attr:`UnitTable.minority`) are untestable: NaN.
    ci : float
        Level of the confidence interval of the AUC (default 0.95).

    Returns
    -------
    dict
        ``auc`` (F, A) float64; ``z`` and ``p`` (F, A) float64; ``low`` and ``high`` (F, A)
        float64, the ``ci`` confidence interval of the AUC (DeLong's variance of each class's
        Mann-Whitney AUC, from the units' placements, pooled with the classes' pair weights; the
        interval is over the units, not under the null, and clipped to [0, 1]); ``by_class`` (F, A,
        C) float64 the AUC within each class (NaN where the AU does not vary in it); ``n_units`` (A,)
        int64 units in the classes where the AU varies (what the test rests on); ``testable``
        (A,) bool.
    """
    x = np.asarray(x_units, dtype=np.float64)
    n_f, n_a = x.shape[1], units.present.shape[1]
    if not 0.5 <= float(margin) < 1.0:
        raise ValueError(f"margin: expected an AUC in [0.5, 1), got {margin!r}")
    testable = units.minority >= int(min_minority)
    auc = np.full((n_f, n_a), np.nan)
    z = np.full((n_f, n_a), np.nan)
    half = np.full((n_f, n_a), np.nan)
    by_class = np.full((n_f, n_a, units.n.shape[0]), np.nan)
    n_units = np.zeros(n_a, np.int64)
    ranks: dict[tuple[int, bytes], np.ndarray] = {}  # mid-ranks per class and coded subset
    for a in range(n_a):
        u_sum = np.zeros(n_f)
        var = np.zeros(n_f)
        var_alt = np.zeros(n_f)  # sum_c pairs_c^2 Var(AUC_c), DeLong
        pairs = 0.0
        for c in range(units.n.shape[0]):
            sel = np.flatnonzero((units.label == c) & ~np.isnan(units.present[:, a]))
            y = units.present[sel, a]
            n, m = len(y), int(y.sum())
            if m == 0 or m == n:
                continue
            key = (c, sel.tobytes())
            if key not in ranks:
                ranks[key] = sps.rankdata(x[sel], axis=0)
            r = ranks[key]
            u_c = r[y == 1].sum(axis=0) - m * (m + 1) / 2
            by_class[:, a, c] = u_c / (m * (n - m))
            u_sum += u_c
            var += m * (n - m) / (n * (n - 1)) * ((r - r.mean(axis=0)) ** 2).sum(axis=0)
            var_alt += (m * (n - m)) ** 2 * _delong_var(x[sel], r, y == 1)
            pairs += m * (n - m)
            n_units[a] += n
        if pairs == 0:
            continue
        auc[:, a] = u_sum / pairs
        half[:, a] = sps.norm.isf((1.0 - ci) / 2) * np.sqrt(var_alt) / pairs
        if testable[a]:
            se = np.sqrt(var) / pairs
            with np.errstate(invalid="ignore", divide="ignore"):
                z[:, a] = np.where(se > 0, (auc[:, a] - margin) / np.where(se > 0, se, 1.0), np.nan)
    return {"auc": auc, "z": z, "p": sps.norm.sf(z), "low": np.clip(auc - half, 0.0, 1.0),
            "high": np.clip(auc + half, 0.0, 1.0), "by_class": by_class, "n_units": n_units, "testable": testable}


def _delong_var(x: np.ndarray, r: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(F,) DeLong's variance of one class's Mann-Whitney AUC from the units' placements.

    ``x`` (n, F) activations of the class's units, ``r`` their mid-ranks in the class, ``pos``
    (n,) bool the units with the AU. A positive unit's placement is the share of negatives below
    it (ties half), a negative's the share of positives above it: the difference of its rank in
    the class and its rank among its own side counts the other side's units below it.
    """
    m, k = int(pos.sum()), int((~pos).sum())
    below_pos = r[pos] - sps.rankdata(x[pos], axis=0)  # negatives below each positive
    below_neg = r[~pos] - sps.rankdata(x[~pos], axis=0)  # positives below each negative
    v10 = below_pos / k
    v01 = 1.0 - below_neg / m
    s10 = v10.var(axis=0, ddof=1) if m > 1 else np.zeros(x.shape[1])
    s01 = v01.var(axis=0, ddof=1) if k > 1 else np.zeros(x.shape[1])
    return s10 / m + s01 / k


def expected_topk(topk_index: np.ndarray, labels: np.ndarray, present: np.ndarray,
                  units: UnitTable) -> dict[str, np.ndarray]:
    """The AU share of a (distinct) top-K list next to the share its images' emotions predict.

    Expected: each listed image counts with P(AU | its emotion) over units (:attr:`UnitTable.rates`),
    the mean of the list's share when the AU codes are exchanged among the units of each class.

    Returns
    -------
    dict
        ``share``, ``expected_share``, ``excess`` (share - expected) (F, A) float64 over the
        labelled listed images with the AU coded, and ``n_listed`` (F, A) int64 how many.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    present = np.asarray(present, dtype=np.float64)
    idx = _check_index("topk_index", topk_index, len(labels))
    valid = idx >= 0
    lab = np.where(valid, labels[np.where(valid, idx, 0)], -1)
    pres = present[np.where(valid, idx, 0)]  # (F, K, A)
    use = ((lab >= 0) & valid)[:, :, None] & ~np.isnan(pres)
    observed = np.where(use, np.nan_to_num(pres), 0).sum(axis=1)
    n_listed = use.sum(axis=1).astype(np.int64)
    rates = np.concatenate([np.nan_to_num(units.rates), np.zeros((1, units.rates.shape[1]))])
    expected = np.where(use, rates[lab], 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_listed > 0, observed / np.maximum(n_listed, 1), np.nan)
        exp_share = np.where(n_listed > 0, expected / np.maximum(n_listed, 1), np.nan)
    return {"share": share, "expected_share": exp_share, "excess": share - exp_share, "n_listed": n_listed}
