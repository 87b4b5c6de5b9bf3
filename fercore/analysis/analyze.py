"""The analysis stage: every filter x AU statistic, criterion and confound figure, computed once.

:func:`analyze` reads a run's ``records.h5`` and the FaceSet it was recorded on, computes per
recorded layer everything the summary, the CLI, the CSV and the dashboard show (figures from
:mod:`fercore.analysis.estimators`, the funnel of :mod:`fercore.analysis.criteria`, the judged AU
of every filter, the filter orders), compares with the run's null network when asked (building
it when missing), and writes it all into the same ``records.h5`` (``docs/records.md``). Readers
never recompute a statistic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fercore.analysis import estimators as est
from fercore.analysis.criteria import STAGES, Criteria, funnel, judged_au, stage_reached
from fercore.analysis.power import STATUS_WORDS, au_power
from fercore.data.facs import presence
from fercore.store.layout import (
    is_null_dir,
    latest_evaluation,
    load_metrics,
    records_path,
    resolve_run,
)
from fercore.store.reader import open_run
from fercore.store.records_h5 import STATS_VERSION, write_stats
from fercore.util import Progress, no_progress

__all__ = ["NULL_FIGURES", "STATS_VERSION", "analyze", "layer_evidence", "run_warnings", "temporal_evidence"]

#: Figures compared with the null network's filters (its 95th percentile per AU).
NULL_FIGURES = ("share_raw", "share_distinct", "excess", "auc_emotion", "r_au", "r_partial", "spatial_distinct", "kl")
#: Runs whose mean test accuracy is below chance plus this margin are flagged weak.
WEAK_MARGIN = 0.10
#: Fewer units than this (labelled, AU-coded observations) make a data set too small for the test.
MIN_UNITS = 20


def layer_evidence(max_act: np.ndarray, raw_index: np.ndarray, raw_box: np.ndarray, distinct_index: np.ndarray,
                   distinct_box: np.ndarray, *, present: np.ndarray, labels: np.ndarray, units: est.UnitTable,
                   landmarks: np.ndarray | None, au_ids: np.ndarray, n_classes: int,
                   criteria: Criteria) -> dict[str, np.ndarray]:
    """Every figure of one recorded layer.

    Parameters
    ----------
    max_act : (N, F) float
        Per-image spatial maxima.
    raw_index, distinct_index : (F, K) int
        The top-K and distinct top-K lists (-1 empty).
    raw_box, distinct_box : (F, K, 4) int
        Their receptive-field boxes.
    present : (N, A) float, 1 / 0 / NaN
    labels : (N,) int
    units : estimators.UnitTable
    landmarks : (N, 68, 2) float or None
        In the boxes' pixels.
    au_ids : (A,) int
    n_classes : int
    criteria : Criteria

    Returns
    -------
    dict of str to array
        Figures (F, A) float32 ``share_raw``, ``share_distinct``, ``expected``, ``excess``,
        ``auc_emotion`` with its 95 % interval ``auc_low``, ``auc_high`` and per class
        ``auc_class`` (F, A, C), ``z_emotion``,
        ``p_emotion``, ``q_emotion``, ``r_au``, ``p_au``, ``q_au``, ``r_partial``, ``p_partial``,
        ``spatial_raw``, ``spatial_distinct``; ``n_listed`` (F, A) int; ``n_units`` (A,) int
        (units the within-emotion test rests on); the test's power at this layer's burden
        (:func:`fercore.analysis.power.au_power`): ``detectable_auc``, ``detectable_r``,
        ``critical_auc`` (A,) float, ``power_status`` (A,) int8, ``bh_threshold`` (); the emotion
        most of each distinct list shows, ``list_class`` (F,) int and its share ``list_class_share``
        (F,); ``r_emotion`` (F, C);
        ``r_within`` (F, A, C); ``kl`` (F,); the funnel masks (F, A) bool ``raw``, ``distinct``,
        ``beyond_emotion``, ``spatial``; ``stage`` (F, A) int8; ``judged`` (F,) int64;
        ``order_evidence``, ``order_cluster`` (F,) int64.
    """
    x = np.asarray(max_act, dtype=np.float32)
    base = est.base_rates(present)
    share_raw, counts, _ = est.topk_au_share(raw_index, present)
    share_distinct, _, _ = est.topk_au_share(distinct_index, present)
    test = est.within_emotion_auc(est.unit_activations(x, units), units, margin=criteria.min_auc,
                                  min_minority=criteria.min_minority)
    q_emotion = est.benjamini_hochberg(test["p"])
    top = est.expected_topk(distinct_index, labels, present, units)
    r_au, p_au, _ = est.au_correlation(x, present)
    r_partial, p_partial, _ = est.within_class_correlation(x, present, labels)
    ev = {
        "share_raw": share_raw, "share_distinct": share_distinct,
        "expected": top["expected_share"], "excess": top["excess"], "n_listed": top["n_listed"],
        "auc_emotion": test["auc"], "auc_low": test["low"], "auc_high": test["high"], "auc_class": test["by_class"],
        "z_emotion": test["z"], "p_emotion": test["p"], "q_emotion": q_emotion, "n_units": test["n_units"],
        "r_au": r_au, "p_au": p_au, "q_au": est.benjamini_hochberg(p_au),
        "r_partial": r_partial, "p_partial": p_partial,
        "r_emotion": est.emotion_correlation(x, labels, n_classes),
        "r_within": est.per_class_correlation(x, present, labels, n_classes),
        "kl": est.kl_selectivity(counts, base),
        "spatial_raw": est.spatial_share(raw_index, raw_box, landmarks, au_ids),
        "spatial_distinct": est.spatial_share(distinct_index, distinct_box, landmarks, au_ids),
        **au_power(units, test["p"], alpha=criteria.alpha, margin=criteria.min_auc,
                   min_minority=criteria.min_minority),
    }
    ev.update(_list_emotion(distinct_index, labels, n_classes))
    masks = funnel({**ev, "spatial": ev["spatial_distinct"], "base_rate": base, "testable": test["testable"]},
                   criteria)
    stage = stage_reached(masks)
    judged = judged_au(masks, {**ev, "base_rate": base})
    out = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in ev.items()}
    out.update({k: m.astype(bool) for k, m in masks.items()})
    out["stage"] = stage.astype(np.int8)
    out["judged"] = judged
    out["order_evidence"] = _evidence_order(stage, ev, judged)
    out["order_cluster"] = _cluster_order(share_distinct - base[None, :])
    return out


def _list_emotion(index: np.ndarray, labels: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """The emotion most of each filter's distinct list shows (``list_class`` (F,) int64, -1 for an
    empty list) and its share of the labelled listed images (``list_class_share`` (F,))."""
    idx = np.asarray(index)
    lab = np.where(idx >= 0, np.asarray(labels)[np.where(idx >= 0, idx, 0)], -1)
    counts = np.stack([(lab == c).sum(axis=1) for c in range(n_classes)], axis=1) if n_classes else \
        np.zeros((len(idx), 0), np.int64)
    total = counts.sum(axis=1)
    top = np.where(total > 0, counts.argmax(axis=1), -1) if n_classes else np.full(len(idx), -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, counts.max(axis=1, initial=0) / np.maximum(total, 1), np.nan)
    return {"list_class": top.astype(np.int64), "list_class_share": share}


def temporal_evidence(max_act: np.ndarray, fs) -> dict[str, np.ndarray]:
    """For a FaceSet of sequences (``sequences`` and ``frames``): how each filter's per-frame
    maximum follows each AU's intensity over a sequence (:mod:`fercore.analysis.temporal`): the
    median correlation over the sequences showing the AU, the best filter per AU, and the control
    for filters that follow every expression (their correlation in sequences without the AU)."""
    from fercore.analysis.temporal import filter_au_correlation, sequence_curves

    tc = filter_au_correlation(sequence_curves(max_act, fs.sequences, fs.frames, fs.aus, fs.au_ids))
    return {"r_median": tc.r_median, "n_sequences": tc.n_sequences, "best_filter": tc.best_filter,
            "best_r": tc.best_r, "r_absent": tc.r_absent, "n_absent": tc.n_absent,
            "specific_filter": tc.specific_filter, "specific_score": tc.specific_score}


def _evidence_order(stage: np.ndarray, ev: dict, judged: np.ndarray) -> np.ndarray:
    """Filters by the depth their judged AU reaches, then its q, then its within-emotion AUC, then KL."""
    f = np.arange(len(judged))
    depth = stage[f, judged].astype(np.float64)
    q = np.nan_to_num(ev["q_emotion"][f, judged], nan=2.0)
    exc = np.nan_to_num(ev["auc_emotion"][f, judged], nan=0.0)
    kl = np.nan_to_num(ev["kl"], nan=-1.0, posinf=1e9)
    return np.lexsort((-kl, -exc, q, -depth)).astype(np.int64)


def _cluster_order(profile: np.ndarray) -> np.ndarray:
    """Leaves of an average-linkage clustering of the filters' AU profiles (distinct share minus
    the base rate), so filters that prefer the same AUs sit together."""
    n = len(profile)
    if n < 3:
        return np.arange(n, dtype=np.int64)
    from scipy.cluster.hierarchy import leaves_list, linkage

    return np.asarray(leaves_list(linkage(np.nan_to_num(profile), method="average")), dtype=np.int64)


def _stage_summary(layer_ev: dict, au_ids: np.ndarray, alpha: float) -> dict:
    """Per stage: filters with at least one AU, filter x AU pairs, the AUs involved, and for the
    tested stages the bound on the expected number of false discoveries among their pairs:
    Benjamini-Hochberg keeps it at most alpha x (the layer's BH rejections), of which the stage's
    pairs are a subset."""
    rejections = int((np.asarray(layer_ev["q_emotion"]) < alpha).sum())
    out = {}
    for s in STAGES:
        m = np.asarray(layer_ev[s], bool)
        out[s] = {"filters": int(m.any(axis=1).sum()), "pairs": int(m.sum()),
                  "aus": [int(a) for a in au_ids[m.any(axis=0)]],
                  "expected_false": round(alpha * rejections, 3) if s in ("beyond_emotion", "spatial") else None}
    return out


def _power_summary(ev: dict, au_ids: np.ndarray, alpha: float) -> dict:
    """The layer's power per AU next to its best filter: ``bh_threshold`` and per AU ``au``,
    ``units`` (the test rests on), ``status`` (untestable / detectable / out of reach), ``detectable_auc``, ``detectable_r``,
    ``critical_auc``, the filter with the largest within-emotion AUC (``best_filter``,
    ``best_auc`` and its interval ``best_low``, ``best_high``) and ``found`` (a filter of the
    layer is beyond emotion for the AU), ``test_passed`` (a filter's within-emotion test passes,
    q < alpha, whether or not its top-K lists pass the stages before). None for figures that do not
    apply."""

    def num(v):
        return round(float(v), 4) if np.isfinite(v) else None

    rows = []
    for a, au in enumerate(au_ids):
        auc = np.asarray(ev["auc_emotion"][:, a], dtype=np.float64)
        best = int(np.nanargmax(auc)) if np.isfinite(auc).any() else None
        rows.append({
            "au": int(au), "units": int(ev["n_units"][a]), "status": STATUS_WORDS[int(ev["power_status"][a])],
            "detectable_auc": num(ev["detectable_auc"][a]), "detectable_r": num(ev["detectable_r"][a]),
            "critical_auc": num(ev["critical_auc"][a]), "best_filter": best,
            "best_auc": None if best is None else num(auc[best]),
            "best_low": None if best is None else num(ev["auc_low"][best, a]),
            "best_high": None if best is None else num(ev["auc_high"][best, a]),
            "found": bool(np.asarray(ev["beyond_emotion"])[:, a].any()),
            "test_passed": bool((np.nan_to_num(np.asarray(ev["q_emotion"][:, a], dtype=np.float64), nan=2.0)
                                 < alpha).any()),
        })
    return {"bh_threshold": float(ev["bh_threshold"]), "aus": rows}


def run_warnings(run_dir: Path, *, n_units: int, testable: np.ndarray) -> list[str]:
    """Why the run's counts should not be read as evidence: accuracy near chance, too few units."""
    out = []
    if not is_null_dir(run_dir):
        m = load_metrics(run_dir) or {}
        acc, conf = m.get("mean_test_acc"), m.get("confusion")
        ev = latest_evaluation(run_dir) if not m else None
        if ev is not None:  # a network trained elsewhere: its latest evaluate
            acc, conf = ev.get("accuracy"), ev.get("confusion")
        if acc is not None and conf:
            rows = np.asarray(conf, dtype=np.float64).sum(axis=1)
            chance = float(rows.max() / rows.sum()) if rows.sum() else 0.0
            if acc < chance + WEAK_MARGIN:
                out.append(f"weak run: {'accuracy' if ev is not None else 'mean test accuracy'} {acc:.1%} is within "
                           f"{WEAK_MARGIN:.0%} of chance "
                           f"({chance:.1%}, the most frequent class); its filters' AU counts are not evidence "
                           "of anything learned")
    if n_units < MIN_UNITS:
        out.append(f"too small for the test: {n_units} labelled, coded units (fewer than {MIN_UNITS})")
    elif not np.any(testable):
        out.append("too small for the test: no AU varies in enough units within the emotion classes")
    return out


def analyze(run_dir, *, null: str | None = "auto", criteria: Criteria | None = None,
            progress: Progress | None = None) -> Path:
    """Compute and store the filter x AU analysis of a recorded run.

    Parameters
    ----------
    run_dir : path or str
        A run directory (or run name / unique prefix) with ``records.h5``.
    null : {"auto", "untrained", "shuffled", "permuted"} or None
        The null network to compare with: built, recorded and analysed on the same data when
        missing (:func:`fercore.analysis.nulls.ensure_null`); its funnel and the 95th percentile
        of each figure over its filters are stored beside the run's. ``"auto"`` (default): the
        untrained null for a network trained here, the permuted one for an imported network
        (:func:`fercore.analysis.nulls.default_null`). None: no comparison. A null network itself
        is always analysed without one.
    criteria : Criteria, optional
    progress : callable, optional
        ``progress(done, total, stage)``: the null's stages (``record``, ...) then ``analyze``.

    Returns
    -------
    Path
        The records file, rewritten atomically with ``/layers/<layer>/stats``,
        ``/layers/<layer>/null`` and ``/analysis``.
    """
    run_dir = resolve_run(run_dir)
    path = records_path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no records yet; run `python -m fercore record --run {run_dir.name}` first")
    progress = progress or no_progress
    crit = criteria or Criteria()
    if is_null_dir(run_dir):
        null = None
    null_reader = None
    if null == "auto":
        from fercore.analysis.nulls import default_null

        null = default_null(run_dir)
    if null is not None:
        from fercore.analysis.nulls import ensure_null

        ndir = ensure_null(run_dir, kind=null, progress=progress)
        null_reader = open_run(ndir)
        if not _current(null_reader, crit):
            analyze(ndir, null=None, criteria=crit, progress=progress)
            null_reader = open_run(ndir)
    reader = open_run(run_dir)
    if not reader.has_records:
        raise FileNotFoundError(reader.records_error)
    fs = reader.faceset()
    labels, au_ids, n_classes = fs.labels, fs.au_ids, len(fs.class_names)
    present = presence(fs.aus).astype(np.float64)
    units = est.unit_table(fs.groups, labels, present, n_classes)
    landmarks = reader.data_landmarks()
    base = est.base_rates(present)
    layers: dict[str, dict[str, dict]] = {}
    summary_layers = []
    total = len(reader.layers)
    progress(0, total, "analyze")
    for t, layer in enumerate(reader.layers):
        raw, dist = reader.topk_arrays(layer, distinct=False), reader.topk_arrays(layer, distinct=True)
        ev = layer_evidence(reader.max_activations(layer), raw["index"], raw["box"], dist["index"], dist["box"],
                            present=present, labels=labels, units=units, landmarks=landmarks, au_ids=au_ids,
                            n_classes=n_classes, criteria=crit)
        layers[layer] = {"stats": ev}
        if fs.sequences is not None and fs.frames is not None:  # filters in time
            layers[layer]["temporal"] = temporal_evidence(reader.max_activations(layer), fs)
        row = {"layer": layer, "n_filters": int(ev["judged"].shape[0]),
               "stages": _stage_summary(ev, au_ids, crit.alpha), "power": _power_summary(ev, au_ids, crit.alpha),
               "groups_in_topk": _groups_in_list(raw["index"], fs.groups)}
        if null_reader is not None and layer in null_reader.layers:
            nev = null_reader.evidence(layer)
            layers[layer]["null"] = {k: est.null_quantile(nev[k]).astype(np.float32) for k in NULL_FIGURES}
            row["null_stages"] = _stage_summary(nev, au_ids, crit.alpha)
            for s in ("raw", "distinct"):
                row["stages"][s]["expected_false"] = row["null_stages"][s]["filters"]
        summary_layers.append(row)
        progress(t + 1, total, "analyze")
    n_units = int(units.n_units)
    summary = {
        "run": reader.name, "null": null or "", "criteria": crit.to_dict(), "n_images": len(fs),
        "n_groups": len(set(fs.groups)), "n_units": n_units, "k": int(reader.header.get("k", 0)),
        "layers": summary_layers,
        "testable_aus": [int(a) for a in au_ids[units.minority >= crit.min_minority]],
        "untestable_aus": [int(a) for a in au_ids[units.minority < crit.min_minority]],
        "warnings": run_warnings(run_dir, n_units=n_units, testable=units.minority >= crit.min_minority),
        "protocol": _protocol_text(reader),
    }
    analysis = {"au_ids": au_ids, "base_rate": base.astype(np.float32),
                "au_cooc": est.au_cooccurrence(present).astype(np.float32),
                "rates": units.rates.astype(np.float32), "unit_n": units.n, "unit_m": units.m,
                "minority": units.minority, "testable": units.minority >= crit.min_minority}
    attrs = {"stats_version": STATS_VERSION, "criteria": json.dumps(crit.to_dict()), "summary": json.dumps(summary),
             "null": null or "", "null_dir": "" if null_reader is None else str(null_reader.run_dir)}
    write_stats(path, layers=layers, analysis=analysis, attrs=attrs)
    return path


def _current(reader, crit: Criteria) -> bool:
    """Whether a reader's stored analysis is of this version and these criteria."""
    info = reader.analysis_info() if reader.has_stats else None
    return bool(info) and info.get("stats_version") == STATS_VERSION and info.get("criteria") == crit.to_dict()


def _groups_in_list(index: np.ndarray, groups: np.ndarray) -> float:
    """Mean number of distinct groups in a filter's plain top-K list."""
    if not len(index):
        return 0.0
    return float(np.mean([len(set(groups[row[row >= 0]])) for row in index]))


def _protocol_text(reader) -> str:
    m = reader.metrics or {}
    p = m.get("protocol")
    return str(p.get("text", "")) if isinstance(p, dict) else str(p or "")
