"""Relate recorded filters to FACS action units; the formulas are in ``docs/records.md``.

Per layer and filter ``f`` and AU ``a``:

- ``topk_share[f, a]``: share of the filter's top-K images (those with ``a`` coded) carrying ``a``;
- ``kl[f]``: Khorrami et al.'s KL divergence of the top-K AU histogram from the data's AU
  distribution;
- ``corr[f, a]``: point-biserial correlation of the per-image max activation with AU presence,
  ``pval`` its exact two-sided t-test p-value, ``qval`` Benjamini-Hochberg adjusted over the
  layer's F x A tests;
- ``corr_within[f, a]``: the correlation after centring both variables within each emotion
  class (pooled within-class correlation), which separates an AU detector from an emotion
  detector;
- ``spatial[f, a]``: share of the top-K argmax positions (receptive-field centres) inside the
  AU's face region (:func:`fercore.facs.in_region`), NaN without landmarks.

Missing AU codes (NaN) are left out per AU. :func:`analyze` writes the results into the run's
``records.h5``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import stats as sps

from fercore.data.facs import AUS, in_region
from fercore.store.records_h5 import (
    read_layer_array,
    read_layer_group,
    read_records_header,
    write_stats,
)
from fercore.util import Progress, no_progress

__all__ = [
    "analyze",
    "au_cooccurrence",
    "au_filter_stats",
    "base_rates",
    "bh_adjust",
    "kl_divergence",
    "point_biserial",
    "spatial_share",
    "topk_au_share",
    "within_class_corr",
]


def _present(aus: np.ndarray) -> np.ndarray:
    """(N, A) float64: 1 present (intensity > 0), 0 absent, NaN not coded."""
    aus = np.asarray(aus, dtype=np.float64)
    out = (aus > 0).astype(np.float64)
    out[np.isnan(aus)] = np.nan
    return out


def base_rates(present: np.ndarray) -> np.ndarray:
    """(A,) share of coded images carrying each AU; NaN for an AU coded nowhere."""
    coded = (~np.isnan(present)).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(coded > 0, np.nansum(present, 0) / np.maximum(coded, 1), np.nan)


def point_biserial(x: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Correlation of each column of ``x`` with each AU's presence, and its p-value.

    Parameters
    ----------
    x : (N, F) float
        Per-image scores (max activations).
    present : (N, A) float
        1 / 0 presence, NaN where the AU is not coded (those images are left out for that AU).

    Returns
    -------
    r : (F, A) float64
        Pearson correlation = point-biserial r; NaN where a variable is constant.
    p : (F, A) float64
        Two-sided p-value of t = r sqrt((n - 2) / (1 - r^2)) with n - 2 degrees of freedom.
    n : (A,) int64
        Images used per AU.
    """
    x = np.asarray(x, dtype=np.float64)
    present = np.asarray(present, dtype=np.float64)
    nf, na = x.shape[1], present.shape[1]
    r = np.full((nf, na), np.nan)
    n_used = np.zeros(na, np.int64)
    for a in range(na):
        m = ~np.isnan(present[:, a])
        n_used[a] = m.sum()
        r[:, a] = _pearson(x[m], present[m, a])
    return r, _r_pvalue(r, n_used), n_used


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(F,) correlation of each column of x (n, F) with y (n,)."""
    if len(y) < 3:
        return np.full(x.shape[1], np.nan)
    xc = x - x.mean(0)
    yc = y - y.mean()
    den = np.sqrt((xc**2).sum(0) * (yc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc[:, None]).sum(0) / den
    r[den <= 1e-12 * max(1.0, float(np.abs(xc).max(initial=0)))] = np.nan
    return np.clip(r, -1.0, 1.0)


def _r_pvalue(r: np.ndarray, n: np.ndarray, *, dof_loss=2) -> np.ndarray:
    df = np.broadcast_to(np.asarray(n, dtype=np.float64) - dof_loss, r.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = r * np.sqrt(df / np.maximum(1.0 - r**2, 1e-300))
        p = 2.0 * sps.t.sf(np.abs(t), df)
    p[np.isnan(r) | (df < 1)] = np.nan
    return p


def within_class_corr(x: np.ndarray, present: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled within-class correlation (controls for the emotion label).

    Within each class (labels >= 0), activation and AU presence are centred on their class means
    (over the images with the AU coded); the centred values of all classes are then correlated.
    An AU detector keeps its correlation; a filter that only tells the emotions apart loses it.

    Parameters
    ----------
    x : (N, F) float
    present : (N, A) float, NaN = not coded
    labels : (N,) int, -1 = unlabelled (left out)

    Returns
    -------
    r : (F, A) float64
    p : (F, A) float64
        t-test p-value with n - C - 1 degrees of freedom (C classes used).
    """
    x = np.asarray(x, dtype=np.float64)
    present = np.asarray(present, dtype=np.float64)
    labels = np.asarray(labels)
    nf, na = x.shape[1], present.shape[1]
    r = np.full((nf, na), np.nan)
    p = np.full((nf, na), np.nan)
    for a in range(na):
        m = ~np.isnan(present[:, a]) & (labels >= 0)
        xs, ys, ls = x[m], present[m, a], labels[m]
        xc, yc = np.empty_like(xs), np.empty_like(ys)
        classes = np.unique(ls)
        for c in classes:
            sel = ls == c
            xc[sel] = xs[sel] - xs[sel].mean(0)
            yc[sel] = ys[sel] - ys[sel].mean()
        if len(ys) < len(classes) + 2:
            continue
        den = np.sqrt((xc**2).sum(0) * (yc**2).sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            ra = (xc * yc[:, None]).sum(0) / den
        ra[~(den > 1e-12)] = np.nan
        r[:, a] = np.clip(ra, -1, 1)
        p[:, a] = _r_pvalue(r[:, a:a + 1], np.array([len(ys)]), dof_loss=len(classes) + 1)[:, 0]
    return r, p


def bh_adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) over all finite entries of ``p``.

    ``q_(i) = min_{j >= i} p_(j) m / j`` for the ascending p-values ``p_(1..m)``, capped at 1;
    NaN entries stay NaN and do not count in ``m``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.isfinite(flat)
    m = int(ok.sum())
    if m == 0:
        return q
    vals = flat[ok]
    order = np.argsort(vals, kind="stable")
    ranked = vals[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    qf = q.ravel()
    qf[ok] = out
    return qf.reshape(p.shape)


def topk_au_share(topk_index: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per filter, the share of its top-K images carrying each AU, and the AU counts.

    Parameters
    ----------
    topk_index : (F, K) int, -1 = padding
    present : (N, A) float, NaN = not coded

    Returns
    -------
    share : (F, A) float64
        Present / coded among the top-K images; NaN where none is coded.
    counts : (F, A) float64
        Number of top-K images carrying the AU (the AU histogram).
    """
    idx = np.asarray(topk_index)
    valid = idx >= 0
    rows = present[np.where(valid, idx, 0)]  # (F, K, A)
    rows[~valid] = np.nan
    counts = np.nansum(rows, axis=1)
    coded = (~np.isnan(rows)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(coded > 0, counts / np.maximum(coded, 1), np.nan)
    return share, counts


def kl_divergence(counts: np.ndarray, base_rate: np.ndarray) -> np.ndarray:
    """Khorrami et al.'s selectivity: KL(top-K AU histogram || data AU distribution).

    Parameters
    ----------
    counts : (F, A) float
        AU histogram of each filter's top-K images.
    base_rate : (A,) float
        Share of coded images carrying each AU.

    Returns
    -------
    (F,) float64
        ``sum_a p_a log(p_a / q_a)`` with ``p = counts / sum(counts)`` and ``q = base_rate /
        sum(base_rate)`` (natural log; terms with ``p_a = 0`` are 0); NaN for an empty histogram.
    """
    counts = np.asarray(counts, dtype=np.float64)
    q = np.nan_to_num(np.asarray(base_rate, dtype=np.float64))
    q = q / q.sum() if q.sum() > 0 else q
    tot = counts.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        pr = counts / tot
        terms = np.where(pr > 0, pr * np.log(pr / np.where(q > 0, q, np.nan)), 0.0)
    kl = terms.sum(1)
    kl[tot[:, 0] <= 0] = np.nan
    return kl


def spatial_share(topk_index: np.ndarray, centres: np.ndarray, landmarks: np.ndarray | None,
                  au_ids: np.ndarray) -> np.ndarray:
    """Share of each filter's top-K argmax positions inside each AU's face region.

    Parameters
    ----------
    topk_index : (F, K) int, -1 = padding
    centres : (F, K, 2) float
        Receptive-field box centres, x then y in input pixels.
    landmarks : (N, 68, 2) float or None
        In the same pixel frame; NaN rows are left out.
    au_ids : (A,) int

    Returns
    -------
    (F, A) float64
        NaN without landmarks, and for AUs without a region in :data:`fercore.facs.AUS`.
    """
    idx = np.asarray(topk_index)
    nf, k = idx.shape
    out = np.full((nf, len(au_ids)), np.nan)
    if landmarks is None:
        return out
    hit = np.zeros((nf, k, len(au_ids)), bool)
    ok = idx >= 0
    ok &= np.isfinite(landmarks[np.where(ok, idx, 0)]).all(axis=(2, 3))
    flat_idx = idx[ok]
    pts = centres[ok]
    fi, ki = np.nonzero(ok)
    for img in np.unique(flat_idx):
        sel = flat_idx == img
        for a, au_id in enumerate(au_ids):
            if int(au_id) in AUS:
                hit[fi[sel], ki[sel], a] = in_region(landmarks[img], int(au_id), pts[sel])
    n_ok = ok.sum(1)
    for a, au_id in enumerate(au_ids):
        if int(au_id) in AUS:
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, a] = np.where(n_ok > 0, hit[:, :, a].sum(1) / np.maximum(n_ok, 1), np.nan)
    return out


def au_cooccurrence(present: np.ndarray) -> np.ndarray:
    """(A, A) P(AU j present | AU i present), over images where both are coded; NaN if AU i never
    occurs."""
    present = np.asarray(present, dtype=np.float64)
    coded = ~np.isnan(present)
    pr = np.nan_to_num(present)
    joint = pr.T @ pr  # (A, A): images with i and j present
    cond = pr.T @ coded.astype(np.float64)  # (A, A): images with i present and j coded
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cond > 0, joint / cond, np.nan)


def au_filter_stats(max_act: np.ndarray, aus: np.ndarray, labels: np.ndarray, topk_index: np.ndarray,
                    topk_box: np.ndarray, landmarks: np.ndarray | None, au_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Every filter x AU statistic of one layer.

    Parameters
    ----------
    max_act : (N, F) float
    aus : (N, A) float, NaN = not coded
    labels : (N,) int
    topk_index : (F, K) int
    topk_box : (F, K, 4) int
        x0, y0, x1, y1 inclusive.
    landmarks : (N, 68, 2) float or None
    au_ids : (A,) int

    Returns
    -------
    dict
        ``topk_share``, ``corr``, ``corr_within``, ``pval``, ``pval_within``, ``qval``,
        ``spatial`` (F, A) float32; ``kl`` (F,) float32; ``n_coded`` (A,) int64.
    """
    present = _present(aus)
    base = base_rates(present)
    share, counts = topk_au_share(topk_index, present)
    r, p, n_used = point_biserial(max_act, present)
    rw, pw = within_class_corr(max_act, present, labels)
    box = np.asarray(topk_box, dtype=np.float64)
    centres = np.stack([(box[..., 0] + box[..., 2]) / 2, (box[..., 1] + box[..., 3]) / 2], -1)
    f32 = np.float32
    return {
        "topk_share": share.astype(f32), "corr": r.astype(f32), "corr_within": rw.astype(f32),
        "pval": p.astype(f32), "pval_within": pw.astype(f32), "qval": bh_adjust(p).astype(f32),
        "spatial": spatial_share(topk_index, centres, landmarks, au_ids).astype(f32),
        "kl": kl_divergence(counts, np.nan_to_num(base)).astype(f32), "n_coded": n_used,
    }


def analyze(run_dir, *, progress: Progress | None = None) -> Path:
    """Compute the filter x AU statistics of a run's records and store them in ``records.h5``.

    Parameters
    ----------
    run_dir : path or str
        A run directory (or run name / unique prefix) with ``records.h5`` (``python -m fercore
        record``).
    progress : callable, optional
        ``progress(done, total, "analyze")`` per layer.

    Returns
    -------
    Path
        The records file (rewritten atomically with ``/layers/<layer>/stats`` and ``/analysis``).
    """
    from fercore.store.layout import records_path, resolve_run

    run_dir = resolve_run(run_dir)
    path = records_path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no records yet; run `python -m fercore record --run {run_dir.name}` first")
    progress = progress or no_progress
    head = read_records_header(path)
    data = read_layer_group(path, None, "data")
    aus, labels, au_ids = data["aus"], data["labels"], np.asarray(head["au_ids"], dtype=np.int64)
    landmarks = data.get("landmarks")
    present = _present(aus)
    layers = {}
    total = len(head["layers"])
    progress(0, total, "analyze")
    for t, layer in enumerate(head["layers"]):
        max_act = read_layer_array(path, layer, "max_act").astype(np.float32)
        st = au_filter_stats(max_act, aus, labels, read_layer_array(path, layer, "topk/index"),
                             read_layer_array(path, layer, "topk/box"), landmarks, au_ids)
        d_idx = read_layer_array(path, layer, "topk_distinct/index")
        d_share, _ = topk_au_share(d_idx, present)
        st["topk_share_distinct"] = d_share.astype(np.float32)
        layers[layer] = st
        progress(t + 1, total, "analyze")
    base = base_rates(present)
    analysis = {"au_ids": au_ids, "base_rate": base.astype(np.float32),
                "au_cooc": au_cooccurrence(present).astype(np.float32)}
    write_stats(path, layers=layers, analysis=analysis, attrs={"stats_version": 1})
    return path
