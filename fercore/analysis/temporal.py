"""Filters in time: does a filter's activation rise and fall with an action unit over a sequence?

Pure functions on arrays (numpy only, no file access). The inputs are what a run's records and
its FaceSet hold: the per-image maximum activation of a layer's filters ``max_act`` (N, F) (the
records' ``/layers/<layer>/max_act``, in FaceSet order), and the FaceSet's ``sequences``,
``frames``, ``aus`` and ``au_ids``.

- :func:`sequence_curves` cuts them into per-sequence curves in frame order.
- :func:`sequence_correlations` correlates, within each sequence, every filter's activation curve
  with every AU's intensity curve (Pearson r over the sequence's frames).
- :func:`filter_au_correlation` summarises those per filter and AU as the median over the
  sequences that show the AU (and their count), with the best filter per AU; and, as a control,
  how closely the filter follows the expression as a whole in the sequences that do *not* show
  the AU, so that a filter that rises with every expression is not mistaken for an AU filter.

Within a sequence the AUs of an expression rise together (from neutral to the apex), so their
curves are correlated with each other, and a filter that responds to any facial movement
correlates with all of them. The control ``r_absent`` measures exactly that response: the
median, over the sequences that show an expression without the AU, of the filter's correlation
with the sequence's expression curve (the sum of its AU intensities). An AU-specific filter has
a high ``r_median`` and an ``r_absent`` near zero or below; ``specific_filter`` ranks filters by
``r_median - max(r_absent, 0)``.

On the phantom the AU curves are the ground truth of every frame. On data coded only at the apex
(CK+: the neutral first frame has every AU 0, the last three frames the FACS codes of the peak,
the frames between are NaN) ``interpolate="linear"`` ramps each AU linearly between the coded
frames (CK+ sequences run from neutral to the peak; the ramp's shape is an assumption), and
``interpolate="none"`` uses the coded frames only. There every AU of a sequence has the same
ramp, so a filter correlates equally with all AUs the sequence shows: such data tell AUs apart
only through which sequences show them (``docs/sequences.md``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from fercore.data.sequences import sequence_index

__all__ = ["INTERPOLATIONS", "SequenceCurves", "TemporalCorrelation", "filter_au_correlation",
           "sequence_correlations", "sequence_curves"]

#: How unknown (NaN) AU intensities between coded frames are treated.
INTERPOLATIONS = ("linear", "none")


@dataclass(frozen=True)
class SequenceCurves:
    """Per-sequence curves of filter activations and AU intensities, in frame order.

    Attributes
    ----------
    ids : (S,) str
        Sequence ids, sorted.
    rows : (S, T) int64
        FaceSet row of each frame; -1 after the sequence's end (T the longest sequence).
    frames : (S, T) int64
        Frame index of each frame (``FaceSet.frames``, else the position); -1 after the end.
    lengths : (S,) int64
    activation : (S, T, F) float32
        Filter activations; NaN after the end.
    intensity : (S, T, A) float32
        AU intensities; NaN after the end and where not coded.
    au_ids : (A,) int64
    """

    ids: np.ndarray
    rows: np.ndarray
    frames: np.ndarray
    lengths: np.ndarray
    activation: np.ndarray
    intensity: np.ndarray
    au_ids: np.ndarray


@dataclass(frozen=True)
class TemporalCorrelation:
    """Filter x AU correlation of activation and intensity curves within sequences.

    Attributes
    ----------
    au_ids : (A,) int64
    r_median : (F, A) float32
        Median over the sequences that show the AU of the Pearson r between the filter's
        activation curve and the AU's intensity curve; NaN where no sequence shows the AU (or the
        filter's curve is flat in all of them).
    n_sequences : (A,) int64
        Sequences that show the AU: at least ``min_frames`` used frames, the AU present on one of
        them and its intensity not constant.
    best_filter : (A,) int64
        The filter with the highest ``r_median`` per AU (the lowest index on ties); -1 where the
        column is all NaN.
    best_r : (A,) float32
        That filter's ``r_median`` (NaN where ``best_filter`` is -1).
    r_absent : (F, A) float32
        Median over the sequences that do not show the AU (absent on every used frame) but show an
        expression (their summed AU intensity varies) of the filter's r with that summed curve;
        NaN where there are none.
    n_absent : (A,) int64
        Those sequences.
    specific_filter : (A,) int64
        The filter with the highest ``r_median - max(r_absent, 0)`` (``r_absent`` NaN counts as 0);
        -1 where ``r_median`` is all NaN.
    specific_score : (A,) float32
        That difference for ``specific_filter``.
    interpolate : str
        How unknown intensities between coded frames were treated (:data:`INTERPOLATIONS`).
    min_frames : int
    """

    au_ids: np.ndarray
    r_median: np.ndarray
    n_sequences: np.ndarray
    best_filter: np.ndarray
    best_r: np.ndarray
    r_absent: np.ndarray
    n_absent: np.ndarray
    specific_filter: np.ndarray
    specific_score: np.ndarray
    interpolate: str
    min_frames: int


def _check_2d(name: str, a, n: int | None = None) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim != 2 or (n is not None and len(a) != n):
        want = f"({n}, ...)" if n is not None else "a 2-D array"
        raise ValueError(f"{name}: expected {want} (one row per image), got shape {a.shape}")
    return a


def sequence_curves(max_act: np.ndarray, sequences: np.ndarray, frames: np.ndarray | None, aus: np.ndarray,
                    au_ids: np.ndarray) -> SequenceCurves:
    """Cut per-image values into per-sequence curves in frame order.

    Parameters
    ----------
    max_act : (N, F) float
        Per-image maximum activation of each filter (records' ``max_act``, FaceSet order).
    sequences : (N,) str
        ``FaceSet.sequences``.
    frames : (N,) int or None
        ``FaceSet.frames``; None keeps the row order within a sequence.
    aus : (N, A) float
        ``FaceSet.aus``: intensities, NaN where not coded.
    au_ids : (A,) int

    Returns
    -------
    SequenceCurves
    """
    x = _check_2d("max_act", max_act)
    n = len(x)
    a = _check_2d("aus", aus, n)
    ids = np.asarray(au_ids, dtype=np.int64).reshape(-1)
    if len(ids) != a.shape[1]:
        raise ValueError(f"au_ids: expected {a.shape[1]} AU numbers (one per column of aus), got {len(ids)}")
    if sequences is None or len(sequences) != n:
        raise ValueError(f"sequences: expected {n} sequence ids (one per image), got "
                         f"{'None' if sequences is None else len(sequences)}; temporal curves need FaceSet.sequences")
    index = sequence_index(sequences, frames)
    mask = index.mask
    rows = np.maximum(index.rows, 0)
    act = x[rows]
    act[~mask] = np.nan
    inten = a[rows]
    inten[~mask] = np.nan
    fr = np.asarray(frames, dtype=np.int64)[rows] if frames is not None else np.broadcast_to(
        np.arange(rows.shape[1]), rows.shape).copy()
    fr[~mask] = -1
    return SequenceCurves(ids=index.ids, rows=index.rows, frames=fr, lengths=index.lengths,
                          activation=act.astype(np.float32), intensity=inten.astype(np.float32), au_ids=ids)


def _fill(y: np.ndarray, t: np.ndarray, how: str) -> np.ndarray:
    """(T, A) intensities with NaN runs between coded frames filled linearly in frame index."""
    if how == "none":
        return y
    out = y.copy()
    for j in range(y.shape[1]):
        known = np.isfinite(y[:, j])
        if known.sum() < 2 or known.all():
            continue
        lo, hi = t[known].min(), t[known].max()
        gap = ~known & (t > lo) & (t < hi)
        out[gap, j] = np.interp(t[gap], t[known], y[known, j])
    return out


def sequence_correlations(curves: SequenceCurves, *, interpolate: str = "linear", min_frames: int = 3) -> np.ndarray:
    """Within each sequence, Pearson r of every filter's activation curve with every AU's curve.

    Parameters
    ----------
    curves : SequenceCurves
    interpolate : {"linear", "none"}, keyword-only
        Unknown intensities between coded frames: filled linearly in frame index, or left out.
    min_frames : int, keyword-only
        Fewest used frames (AU intensity and activation known) for a sequence to count.

    Returns
    -------
    (S, F, A) float32
        NaN where the sequence does not show the AU (fewer than ``min_frames`` used frames, the AU
        absent on all of them, or its intensity constant) or the filter's curve is constant.
    """
    if interpolate not in INTERPOLATIONS:
        raise ValueError(f"interpolate: expected one of {', '.join(INTERPOLATIONS)}, got {interpolate!r}")
    if int(min_frames) < 2:
        raise ValueError(f"min_frames: expected at least 2 frames for a correlation, got {min_frames}")
    s_n, _, f_n = curves.activation.shape
    a_n = curves.intensity.shape[2]
    out = np.full((s_n, f_n, a_n), np.nan, np.float32)
    for s in range(s_n):
        length = int(curves.lengths[s])
        x = curves.activation[s, :length].astype(np.float64)  # (T, F)
        y = _fill(curves.intensity[s, :length].astype(np.float64), curves.frames[s, :length], interpolate)  # (T, A)
        used = np.isfinite(y) & np.isfinite(x).all(axis=1, keepdims=True)  # (T, A)
        count = used.sum(axis=0)
        yz = np.where(used, y, 0.0)
        shows = (count >= min_frames) & (np.where(used, y, 0.0).max(axis=0, initial=0.0) > 0)
        if not shows.any():
            continue
        # AUs that share the same used frames are correlated in one matrix product
        patterns: dict[bytes, list[int]] = {}
        for j in np.flatnonzero(shows):
            patterns.setdefault(used[:, j].tobytes(), []).append(int(j))
        for cols in patterns.values():
            m = used[:, cols[0]]
            xm = x[m] - x[m].mean(axis=0)  # (t, F)
            ym = yz[m][:, cols] - yz[m][:, cols].mean(axis=0)  # (t, k)
            nx = np.sqrt((xm * xm).sum(axis=0))  # (F,)
            ny = np.sqrt((ym * ym).sum(axis=0))  # (k,)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = (xm.T @ ym) / (nx[:, None] * ny[None, :])  # (F, k)
            r[(nx == 0)[:, None] | (ny == 0)[None, :] | ~np.isfinite(r)] = np.nan
            out[s][:, cols] = np.clip(r, -1.0, 1.0)
    return out


def filter_au_correlation(curves: SequenceCurves, *, interpolate: str = "linear",
                          min_frames: int = 3) -> TemporalCorrelation:
    """Per filter and AU, the median over the sequences that show the AU of the within-sequence
    correlation of the filter's activation curve with the AU's intensity curve; the best filter per AU.

    Parameters
    ----------
    curves : SequenceCurves
        From :func:`sequence_curves`.
    interpolate, min_frames
        See :func:`sequence_correlations`.

    Returns
    -------
    TemporalCorrelation
    """
    r = sequence_correlations(curves, interpolate=interpolate, min_frames=min_frames)  # (S, F, A)
    shows = np.isfinite(r).any(axis=1)  # (S, A)
    # a flat AU curve gives NaN for every filter, so "shows" is: some filter has a finite r; an AU
    # curve that varies makes r finite for every non-flat filter
    n_seq = shows.sum(axis=0).astype(np.int64)
    # the control: each sequence's expression curve (summed AU intensities, after filling)
    filled = np.stack([_fill(curves.intensity[s].astype(np.float64), curves.frames[s], interpolate)
                       for s in range(len(curves.ids))]) if len(curves.ids) else curves.intensity
    total = filled.sum(axis=2, keepdims=True)  # (S, T, 1); NaN where any AU is unknown
    control = SequenceCurves(ids=curves.ids, rows=curves.rows, frames=curves.frames, lengths=curves.lengths,
                             activation=curves.activation, intensity=total.astype(np.float32), au_ids=np.zeros(1, np.int64))
    r_expr = sequence_correlations(control, interpolate="none", min_frames=min_frames)[:, :, 0]  # (S, F)
    expressive = np.isfinite(r_expr).any(axis=1)  # (S,)
    with np.errstate(invalid="ignore"):
        absent = ~(np.nanmax(np.where(np.isfinite(filled), filled, -np.inf), axis=1) > 0)  # (S, A)
    absent &= np.isfinite(filled).any(axis=1) & expressive[:, None]
    n_abs = absent.sum(axis=0).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: AUs no sequence shows
        med = np.nanmedian(np.where(shows[:, None, :], r, np.nan), axis=0).astype(np.float32)  # (F, A)
        r_abs = np.nanmedian(np.where(absent[:, None, :], r_expr[:, :, None], np.nan), axis=0).astype(np.float32)
    score = med - np.maximum(np.nan_to_num(r_abs, nan=0.0), 0.0)  # (F, A)
    best, best_r = _argmax_columns(med)
    spec, spec_score = _argmax_columns(score)
    return TemporalCorrelation(au_ids=curves.au_ids.copy(), r_median=med, n_sequences=n_seq, best_filter=best,
                               best_r=best_r, r_absent=r_abs, n_absent=n_abs, specific_filter=spec,
                               specific_score=spec_score, interpolate=interpolate, min_frames=int(min_frames))


def _argmax_columns(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A,) int64 row of each column's largest finite value (-1 if none) and (A,) float32 the value."""
    idx = np.full(v.shape[1], -1, np.int64)
    val = np.full(v.shape[1], np.nan, np.float32)
    for j in range(v.shape[1]):
        if np.isfinite(v[:, j]).any():
            idx[j] = int(np.nanargmax(v[:, j]))
            val[j] = v[idx[j], j]
    return idx, val
