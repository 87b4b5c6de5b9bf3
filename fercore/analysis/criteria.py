"""When does a filter count as AU-selective? Four criteria, each a boolean (F, A) matrix.

1. **raw** — at least ``min_share`` (0.8) of the filter's top-K images show the AU, and the AU's
   base rate in the data set is below ``max_base_rate`` (0.4). This is the figure that is easy to
   inflate.
2. **distinct** — the same on the *distinct* top-K list, which holds at most one image per group
   (sequence, else subject): near-identical frames of one clip count once.
3. **beyond emotion** — the AU share of the (distinct) top-K exceeds what the top images' emotions
   predict. The expected share is the mean over the top images of P(AU present | that image's
   emotion), estimated on the whole data set. The rule is::

       excess >= min_excess                        (0.5)
       and r_partial > 0 and BH(p_partial) < alpha (0.05, Benjamini-Hochberg over the layer's F x A tests)
       and the partial correlation is not weak     (>= 20 images in classes where the AU varies,
                                                    >= 5 of the rarer AU value)

   where ``excess`` is, with ``Criteria.excess="relative"`` (default), ``(observed - expected) /
   (1 - expected)``: the part of the gap the emotions leave that the filter closes (0 when the
   emotions already predict every top image to show the AU); with ``excess="absolute"`` it is
   ``observed - expected`` (use ``min_excess=0.3``). The relative form is the default because an
   AU that comes with an emotion 85% of the time leaves at most 0.15 of absolute excess even to
   a perfect AU detector. ``r_partial`` is the correlation of the activation with AU presence
   once the emotion is held constant (:func:`fercore.confound.partial_correlation`).
4. **beyond null** — the distinct top-K AU share is above the ``null_quantile`` (95th percentile)
   of the same figure over the null network's filters (same layer, same AU). The null is an
   untrained network of the same architecture (:mod:`fercore.null`).

``all`` is the conjunction of the four. Every function here is pure: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from fercore.analysis.confound import ConfoundReport, confound_report

__all__ = [
    "Criteria",
    "Selectivity",
    "au_given_emotion",
    "base_rates",
    "beyond_emotion",
    "beyond_null",
    "best_au",
    "bh_adjust",
    "excess_share",
    "expected_share",
    "null_threshold",
    "raw_selective",
    "selectivity",
    "topk_au_share",
]


@dataclass(frozen=True)
class Criteria:
    """Thresholds of the selectivity criteria (see the module docstring for the rules).

    Attributes
    ----------
    min_share : float
        Share of the top-K images that must show the AU (raw and distinct criteria).
    max_base_rate : float
        The AU's base rate in the data must be below this (a common AU fills any top-K list).
    min_excess : float
        Least excess of the top-K's AU share over the share its emotions predict (beyond
        emotion), on the scale given by ``excess``.
    excess : {"relative", "absolute"}
        ``relative``: ``(observed - expected) / (1 - expected)``; ``absolute``:
        ``observed - expected``.
    alpha : float
        False discovery rate of the Benjamini-Hochberg step on the partial-correlation p-values.
    null_quantile : float
        Quantile of the null network's filters that a figure must exceed (beyond null).
    """

    min_share: float = 0.8
    max_base_rate: float = 0.4
    min_excess: float = 0.5
    alpha: float = 0.05
    null_quantile: float = 0.95
    excess: str = "relative"

    def __post_init__(self):
        for name in ("min_share", "max_base_rate", "alpha", "null_quantile"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"Criteria.{name}: expected a value in [0, 1], got {v}")
        if self.excess not in ("relative", "absolute"):
            raise ValueError(f"Criteria.excess: expected 'relative' or 'absolute', got {self.excess!r}")
        if not -1.0 <= self.min_excess <= 1.0:
            raise ValueError(f"Criteria.min_excess: expected a value in [-1, 1], got {self.min_excess}")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_index(name: str, idx, n: int) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name}: expected an (F, K) integer array of image indices, got {idx.shape} {idx.dtype}")
    if idx.size and idx.max() >= n:
        raise ValueError(f"{name}: image index {idx.max()} is out of range for {n} images; were the records made on other data?")
    return idx.astype(np.int64)


def base_rates(au_present: np.ndarray) -> np.ndarray:
    """(A,) float64: share of coded images showing each AU (NaN where none is coded).

    Parameters
    ----------
    au_present : (N, A) float, 1 present / 0 absent / NaN unknown
    """
    p = np.asarray(au_present, dtype=np.float64)
    known = (~np.isnan(p)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known > 0, np.nansum(p, axis=0) / known, np.nan)


def topk_au_share(topk_index: np.ndarray, au_present: np.ndarray) -> np.ndarray:
    """Share of each filter's top-K images that show each AU.

    Parameters
    ----------
    topk_index : (F, K) int
        Image indices of each filter's top-K list; -1 marks an empty slot.
    au_present : (N, A) float
        1 present, 0 absent, NaN unknown (an unknown entry is left out of that AU's share).

    Returns
    -------
    (F, A) float64
        NaN where no top image has the AU coded.
    """
    p = np.asarray(au_present, dtype=np.float64)
    idx = _check_index("topk_index", topk_index, len(p))
    valid = idx >= 0
    rows = p[np.where(valid, idx, 0)]  # (F, K, A)
    rows[~valid] = np.nan
    known = (~np.isnan(rows)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known > 0, np.nansum(rows, axis=1) / known, np.nan)


def au_given_emotion(au_present: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, A) float64: P(AU present | emotion) over the coded images of each class (NaN if none)."""
    p = np.asarray(au_present, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(p):
        raise ValueError(f"labels: expected {len(p)} entries (one per image), got {len(labels)}")
    out = np.full((n_classes, p.shape[1]), np.nan)
    for c in range(n_classes):
        rows = p[labels == c]
        if len(rows):
            out[c] = base_rates(rows)
    return out


def expected_share(topk_index: np.ndarray, labels: np.ndarray, au_present: np.ndarray, *, n_classes: int | None = None) -> np.ndarray:
    """AU share of each top-K list that the emotions of its images alone predict.

    Parameters
    ----------
    topk_index : (F, K) int
        -1 marks an empty slot.
    labels : (N,) int
        Emotion per image, -1 unlabelled (left out).
    au_present : (N, A) float

    Returns
    -------
    (F, A) float64
        Mean over the (labelled) top images of P(AU | that image's emotion).
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    idx = _check_index("topk_index", topk_index, len(labels))
    n_classes = int(labels.max(initial=-1)) + 1 if n_classes is None else n_classes
    table = au_given_emotion(au_present, labels, n_classes)  # (C, A)
    lab = np.where(idx >= 0, labels[np.where(idx >= 0, idx, 0)], -1)  # (F, K)
    rows = np.concatenate([table, np.full((1, table.shape[1]), np.nan)])[lab]  # (F, K, A); -1 -> NaN row
    known = (~np.isnan(rows)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known > 0, np.nansum(rows, axis=1) / known, np.nan)


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of any shape; NaN entries stay NaN."""
    p = np.asarray(p, dtype=np.float64)
    flat = p.ravel()
    ok = np.flatnonzero(~np.isnan(flat))
    q = np.full_like(flat, np.nan)
    m = len(ok)
    if m:
        order = ok[np.argsort(flat[ok])]
        ranked = flat[order] * m / np.arange(1, m + 1)
        ranked = np.minimum.accumulate(ranked[::-1])[::-1]
        q[order] = np.minimum(ranked, 1.0)
    return q.reshape(p.shape)


def raw_selective(share: np.ndarray, base_rate: np.ndarray, *, min_share: float = 0.8, max_base_rate: float = 0.4) -> np.ndarray:
    """(F, A) bool: ``share >= min_share`` and the AU's ``base_rate < max_base_rate``."""
    share = np.asarray(share, dtype=np.float64)
    base = np.asarray(base_rate, dtype=np.float64).reshape(1, -1)
    with np.errstate(invalid="ignore"):
        return (share >= min_share) & (base < max_base_rate)


def excess_share(share: np.ndarray, expected: np.ndarray, *, excess: str = "relative") -> np.ndarray:
    """(F, A) float64: how far the top-K's AU share exceeds the share its emotions predict.

    ``relative``: ``(share - expected) / (1 - expected)``, NaN where ``expected`` is 1 (nothing
    left to exceed); ``absolute``: ``share - expected``.
    """
    share = np.asarray(share, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    diff = share - expected
    if excess == "absolute":
        return diff
    if excess != "relative":
        raise ValueError(f"excess: expected 'relative' or 'absolute', got {excess!r}")
    gap = 1.0 - expected
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gap > 1e-9, diff / np.where(gap > 1e-9, gap, 1.0), np.nan)


def beyond_emotion(
    share: np.ndarray,
    expected: np.ndarray,
    r_partial: np.ndarray,
    p_partial: np.ndarray,
    *,
    min_excess: float = 0.5,
    alpha: float = 0.05,
    weak: np.ndarray | None = None,
    excess: str = "relative",
) -> np.ndarray:
    """(F, A) bool: the AU preference survives holding the emotion constant.

    ``excess_share(share, expected, excess=excess) >= min_excess`` and ``r_partial > 0`` and the
    Benjamini-Hochberg adjusted ``p_partial`` (over all finite entries passed) is below
    ``alpha``, and ``weak`` (A,) or (F, A) is False.
    """
    q = bh_adjust(p_partial)
    with np.errstate(invalid="ignore"):
        out = (excess_share(share, expected, excess=excess) >= min_excess) & (np.asarray(r_partial) > 0) & (q < alpha)
    if weak is not None:
        out &= ~np.broadcast_to(np.asarray(weak, dtype=bool), out.shape)
    return out


def null_threshold(null_values: np.ndarray, *, quantile: float = 0.95) -> np.ndarray:
    """(A,) float64: the ``quantile`` of a figure over the null network's filters, per AU.

    Parameters
    ----------
    null_values : (F_null, A) float
        The figure (e.g. distinct top-K AU share) for every filter of the null's same layer.
    """
    v = np.asarray(null_values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"null_values: expected (F_null, A), got shape {v.shape}")
    out = np.full(v.shape[1], np.nan)
    for a in range(v.shape[1]):
        col = v[:, a][~np.isnan(v[:, a])]
        if len(col):
            out[a] = np.quantile(col, quantile)
    return out


def beyond_null(values: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """(F, A) bool: ``values`` strictly above the null threshold of the same AU (False if NaN)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(values, dtype=np.float64) > np.asarray(threshold, dtype=np.float64).reshape(1, -1)


def best_au(mask: np.ndarray, score: np.ndarray) -> np.ndarray:
    """(F,) int64: per filter, the column of the highest ``score`` among ``mask``-ed AUs; -1 if none."""
    mask = np.asarray(mask, dtype=bool)
    s = np.where(mask & ~np.isnan(score), score, -np.inf)
    best = np.argmax(s, axis=1) if s.shape[1] else np.zeros(len(s), dtype=np.int64)
    return np.where(mask.any(axis=1), best, -1).astype(np.int64)


@dataclass
class Selectivity:
    """The four criteria for one layer, with the figures they rest on.

    Attributes
    ----------
    au_ids : (A,) int64
    base_rate : (A,) float64
    share_raw, share_distinct : (F, A) float64
        AU share of the top-K and of the distinct top-K list.
    expected : (F, A) float64
        AU share the emotions of the distinct top-K images predict.
    confound : ConfoundReport
    raw, distinct, beyond_emotion, beyond_null, all : (F, A) bool
        The criteria; ``beyond_null`` (and so ``all``) is all False when ``has_null`` is False.
    null_p95 : dict of str to (A,) float64
        The null's threshold of each figure (``share_raw``, ``share_distinct``, ``r_au``,
        ``r_partial``); empty without a null.
    null_counts : dict of str to int
        Filters of the null that pass ``raw``, ``distinct``, ``beyond_emotion``; empty without a null.
    criteria : Criteria
    """

    au_ids: np.ndarray
    base_rate: np.ndarray
    share_raw: np.ndarray
    share_distinct: np.ndarray
    expected: np.ndarray
    confound: ConfoundReport
    raw: np.ndarray
    distinct: np.ndarray
    beyond_emotion: np.ndarray
    beyond_null: np.ndarray
    criteria: Criteria
    has_null: bool = False
    null_p95: dict = field(default_factory=dict)
    null_counts: dict = field(default_factory=dict)

    @property
    def all(self) -> np.ndarray:
        return self.raw & self.distinct & self.beyond_emotion & self.beyond_null

    @property
    def n_filters(self) -> int:
        return int(self.raw.shape[0])

    def matrix(self, name: str) -> np.ndarray:
        """The (F, A) bool matrix of criterion ``name`` (raw, distinct, beyond_emotion, beyond_null, all)."""
        if name not in CRITERIA_NAMES:
            raise ValueError(f"criterion: expected one of {', '.join(CRITERIA_NAMES)}, got {name!r}")
        return getattr(self, name)

    def best_au(self, name: str = "all") -> np.ndarray:
        """(F,) int64: per filter, the AU *number* with the highest distinct share that passes ``name``; -1 if none."""
        col = best_au(self.matrix(name), self.share_distinct)
        return np.where(col >= 0, self.au_ids[np.maximum(col, 0)], -1)

    def count(self, name: str) -> int:
        """Number of filters selective for at least one AU under criterion ``name``."""
        return int(self.matrix(name).any(axis=1).sum())

    def aus(self, name: str) -> list[int]:
        """AU numbers for which at least one filter passes criterion ``name``."""
        return [int(a) for a in self.au_ids[self.matrix(name).any(axis=0)]]


#: Criterion names, in the order tables show them.
CRITERIA_NAMES = ("raw", "distinct", "beyond_emotion", "beyond_null", "all")


def selectivity(
    activations: np.ndarray,
    topk_index: np.ndarray,
    au_present: np.ndarray,
    labels: np.ndarray,
    *,
    distinct_index: np.ndarray | None = None,
    au_ids: np.ndarray | None = None,
    class_names: tuple[str, ...] | None = None,
    null: Selectivity | None = None,
    criteria: Criteria | None = None,
) -> Selectivity:
    """Evaluate the four criteria for one layer.

    Parameters
    ----------
    activations : (N, F) float
        Per-image max activation of each filter.
    topk_index : (F, K) int
        Top-K image indices per filter (-1 empty).
    au_present : (N, A) float
        1 present, 0 absent, NaN unknown.
    labels : (N,) int
        Emotion per image (-1 unlabelled).
    distinct_index : (F, K) int, optional
        Top-K with at most one image per sequence/subject; when None the plain list is used (and
        the distinct criterion equals the raw one).
    au_ids : (A,) int, optional
    class_names : tuple of str, optional
    null : Selectivity, optional
        The same layer of the null network (same data); gives ``beyond_null`` and the null figures.
    criteria : Criteria, optional

    Returns
    -------
    Selectivity
    """
    crit = criteria or Criteria()
    act = np.asarray(activations)
    au_present = np.asarray(au_present, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    conf = confound_report(act, au_present, labels, au_ids=au_ids, class_names=class_names)
    topk_index = _check_index("topk_index", topk_index, len(act))
    distinct_index = topk_index if distinct_index is None else _check_index("distinct_index", distinct_index, len(act))
    if topk_index.shape[0] != act.shape[1] or distinct_index.shape[0] != act.shape[1]:
        raise ValueError(
            f"topk_index: expected one row per filter ({act.shape[1]}), got {topk_index.shape[0]} "
            f"(distinct {distinct_index.shape[0]})"
        )
    base = base_rates(au_present)
    share_raw = topk_au_share(topk_index, au_present)
    share_distinct = topk_au_share(distinct_index, au_present)
    expected = expected_share(distinct_index, labels, au_present, n_classes=len(conf.class_names))
    raw = raw_selective(share_raw, base, min_share=crit.min_share, max_base_rate=crit.max_base_rate)
    distinct = raw_selective(share_distinct, base, min_share=crit.min_share, max_base_rate=crit.max_base_rate)
    be = beyond_emotion(
        share_distinct, expected, conf.r_partial, conf.p_partial,
        min_excess=crit.min_excess, alpha=crit.alpha, weak=conf.weak_partial, excess=crit.excess,
    )
    out = Selectivity(
        au_ids=conf.au_ids, base_rate=base, share_raw=share_raw, share_distinct=share_distinct,
        expected=expected, confound=conf, raw=raw, distinct=distinct, beyond_emotion=be,
        beyond_null=np.zeros_like(raw), criteria=crit,
    )
    if null is not None:
        if not np.array_equal(null.au_ids, out.au_ids):
            raise ValueError("null: its AU columns differ from the run's; record the null on the same data")
        q = crit.null_quantile
        out.null_p95 = {
            "share_raw": null_threshold(null.share_raw, quantile=q),
            "share_distinct": null_threshold(null.share_distinct, quantile=q),
            "r_au": null_threshold(null.confound.r_au, quantile=q),
            "r_partial": null_threshold(null.confound.r_partial, quantile=q),
        }
        out.beyond_null = beyond_null(share_distinct, out.null_p95["share_distinct"])
        out.has_null = True
        out.null_counts = {name: null.count(name) for name in ("raw", "distinct", "beyond_emotion")}
    return out
