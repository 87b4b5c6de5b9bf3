"""Every cached loader of the dashboard, in one module: wrappers around fercore's read API.

Views call these functions and lay out what they return; no rule of the analysis lives here (what
counts as AU-selective, which AU a filter is judged by, how an upload is preprocessed: all in
fercore). ``st.cache_resource`` holds objects shared by every browser session (run readers,
FaceSets) and chart specs (one object per key, never changed by a view, so a chart keeps its
element id and its selection across runs); ``st.cache_data`` holds arrays and tables keyed by
their (hashable) arguments. An uploaded photo is the exception: what is
computed from it stays in its browser session's state (:func:`decode_and_crop`), never in a
cache other sessions share. The server-side builds (default run, rebuilt records, null network)
are started here and run in :mod:`app.jobs`.

Runs are addressed by their directory as a string, and every cached value is also keyed by the
records file's modification time (``stamp``), so a rebuilt file is read afresh.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, figures

# The model of a run is shared by every browser connected to the server; a forward pass must not
# interleave with another one on the same module objects.
_MODEL_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------------- runs
#: FaceSet sources whose images are drawn, not photographed (``config.json`` ``faceset.source``).
DRAWN_SOURCES = ("phantom", "phantom-sequences")


@st.cache_data(ttl=5, show_spinner=False)
def list_runs() -> list[dict]:
    """Every trained or imported run in the cache (runs still training are left out), recorded runs
    first, newest first. Per run: ``run_dir``, ``name`` (directory), ``dataset`` (for an imported
    network: the FaceSet it was recorded on), ``source`` (the training FaceSet's source; "" for an
    imported network), ``drawn`` (trained on drawn faces only), ``model``, ``accuracy`` and ``sd``
    (fractions; an imported network's latest ``evaluate``, None before), ``date`` (when training
    ended or the network was imported, ``YYYY-MM-DD HH:MM``, from the run's ``config.json``),
    ``date_from_files`` (``date`` is a file time: a run made before the time was stored),
    ``recorded`` (records that open), ``records`` ("none", "ok", "damaged") and ``records_error``
    (why damaged), ``analysed``, ``null``
    (kind or ""), ``protocol`` (short, in words), ``imported`` and ``label`` (what the run picker
    shows: data set · model · accuracy · date)."""
    from fercore.store.layout import list_runs as runs
    from fercore.store.layout import load_config
    from fercore.store.reader import open_run

    done = [r for r in runs() if r.mean_acc is not None or r.imported]
    done.sort(key=lambda r: (r.recorded, r.date.timestamp() if r.date else 0.0), reverse=True)
    out = []
    for r in done:
        cfg = load_config(r.dir)
        model = _model_name(cfg)
        when = f"{r.date:%Y-%m-%d %H:%M}" if r.date else ""
        source = "" if r.imported else str(cfg["faceset"].get("source") or "")
        analysed, null = False, ""
        if r.recorded:
            try:
                rd = open_run(r.dir)
                analysed = rd.has_stats
                null = str(rd.analysis_info().get("null") or "") if analysed else ""
            except (OSError, ValueError):
                pass
        acc = "not evaluated" if r.mean_acc is None else f"{100 * r.mean_acc:.1f} %"
        dataset = r.dataset or ("not recorded" if r.imported else "")
        out.append({"run_dir": str(r.dir), "name": r.name, "dataset": dataset, "source": source,
                    "drawn": source in DRAWN_SOURCES, "model": model,
                    "accuracy": None if r.mean_acc is None else float(r.mean_acc),
                    "sd": None if r.sd_acc is None else float(r.sd_acc), "date": when, "recorded": bool(r.recorded),
                    "date_from_files": r.date_from_files, "records": r.records, "records_error": r.records_error,
                    "analysed": analysed, "null": null, "protocol": _protocol_short(cfg), "imported": r.imported,
                    "label": (f"{r.name.rsplit('-', 1)[0]} ({cfg['model'].get('format')}, trained elsewhere) · {dataset} · "
                              f"{acc} · {when}") if r.imported else
                             f"{dataset} · {model} · {acc}{_rounds_note(cfg)} · {when}"})
    labels = [r["label"] for r in out]
    for r in out:  # two runs that read alike are told apart by their hash
        if labels.count(r["label"]) > 1:
            r["label"] += f" · {r['name'].rsplit('-', 1)[-1]}"
    return out


def _rounds_note(cfg: dict) -> str:
    """" · round 0 only" for a run trained on some of its data's rounds (the default's first look)."""
    if (cfg.get("train") or {}).get("folds") is None:
        return ""
    rounds = [int(r) for r in cfg.get("rounds") or []]
    return f" · round{'s' if len(rounds) > 1 else ''} {', '.join(map(str, rounds))} only"


def _model_name(cfg: dict) -> str:
    spec = cfg["model"]
    if cfg.get("kind") == "imported":
        channels = "RGB" if int(cfg["input"].get("channels", 1)) == 3 else "grey"
        return f"imported {spec.get('format', '?')} ({spec.get('in_size')}px {channels}, {len(cfg['layers'])} conv)"
    channels = spec.get("channels")
    shape = "conv " + "/".join(map(str, channels)) if channels else f"width {spec.get('width', 1.0):g}"
    extra = ", ".join(x for x in (shape, f"{spec['in_size']}px" if spec.get("in_size") else "",
                                   "+ AU head" if spec.get("n_aus") else "") if x)
    return f"{str(spec.get('arch', '?')).replace('_', '-')} ({extra})"


def _protocol_short(cfg: dict) -> str:
    if cfg.get("kind") == "imported":
        return "trained elsewhere"
    rounds = cfg.get("rounds") or []
    if cfg.get("protocol") == "splits":
        return f"{len(rounds)} predefined split(s)"
    return f"{len(rounds)} of the folds, subject-independent" if rounds else "k-fold"


def imported_text(cfg: dict) -> str:
    """An imported network in words (format, parameters, input, layers)."""
    from fercore.training.imported import describe

    return describe(cfg)


@st.cache_data(ttl=5, show_spinner=False)
def facesets() -> dict[str, str]:
    """FaceSet files of the cache's datasets folder: path -> label (name, images, size, classes)."""
    from fercore.store.faceset_h5 import FaceSetFileError, read_faceset_info
    from fercore.store.layout import datasets_dir

    out = {}
    root = datasets_dir()
    for path in sorted(root.glob("*.h5")) if root.is_dir() else []:
        try:
            info = read_faceset_info(path)
        except (FaceSetFileError, OSError):
            continue
        n = info.get("n_images", info.get("n", "?"))
        out[str(path)] = f"{path.stem} · {n} faces · {len(info.get('class_names', []))} classes"
    return out


def run_label(run_dir: str) -> str:
    """The readable label of a run (data set · model · accuracy · date), its name if unlisted."""
    for r in list_runs():
        if r["run_dir"] == run_dir:
            return r["label"]
    return Path(run_dir).name


@st.cache_resource(show_spinner=False, max_entries=8)
def reader(run_dir: str, stamp: float = 0.0):
    """The run's :class:`fercore.store.reader.RunReader` (cheap to open; caches its own arrays)."""
    from fercore.store.reader import open_run

    return open_run(run_dir)


def records_stamp(run_dir: str) -> float:
    """Modification time of the run's records file (a new file gives a new cached reader)."""
    p = Path(run_dir) / "records.h5"
    return p.stat().st_mtime if p.exists() else 0.0


@st.cache_resource(show_spinner=False, max_entries=4)
def faceset(run_dir: str, stamp: float = 0.0):
    """The FaceSet the run was recorded on (shared, never copied)."""
    return reader(run_dir, stamp).faceset()


# ------------------------------------------------------------------------------------ overview
@st.cache_data(show_spinner=False, max_entries=16)
def montage(run_dir: str, stamp: float, *, per_class: int = 8, size: int = 64) -> tuple[np.ndarray, pd.DataFrame]:
    """A montage of the data set, one row per class (the first images of each), and the counts."""
    fs = faceset(run_dir, stamp)
    rows, counts = [], []
    for c, name in enumerate(fs.class_names):
        idx = np.flatnonzero(fs.labels == c)
        counts.append({"class": name, "images": int(len(idx))})
        rows.append([figures.resize(fs.images[i], size) for i in idx[:per_class]])
    return figures.class_rows(rows, per_class=per_class, size=size), pd.DataFrame(counts)


@st.cache_data(show_spinner=False, max_entries=16)
def layer_table(run_dir: str, stamp: float) -> pd.DataFrame:
    """Recorded layers with their filter count and exact receptive field."""
    r = reader(run_dir, stamp)
    rows = []
    for name in r.layers:
        g = r.geometry(name)
        rows.append({"layer": name, "filters": r.n_filters(name), "receptive field (px)": g.rf,
                     "stride (px)": g.jump, "map size": f"{g.out_size}×{g.out_size}"})
    return pd.DataFrame(rows)


@st.cache_data(show_spinner=False, max_entries=16)
def metrics_view(run_dir: str, stamp: float) -> dict:
    """What the overview shows from ``metrics.json`` (written by training).

    Returns
    -------
    dict
        ``protocol`` (str), ``protocol_items`` (dict), ``folds`` (DataFrame), ``mean``, ``sd``,
        ``per_class`` (class -> test accuracy over the folds), ``confusion`` ((C, C) counts or
        None), ``curves`` (long DataFrame fold/epoch/series/value, series in words, or None).
    """
    r = reader(run_dir, stamp)
    if r.config.get("kind") == "imported":
        return _evaluation_view(r)
    m = r.metrics or {}
    folds = [f for f in m.get("folds", []) if isinstance(f, dict)]
    table = pd.DataFrame([{"fold": f.get("fold", i), "test accuracy": f.get("test_acc"),
                           "best validation accuracy": f.get("best_val_acc"), "best epoch": f.get("best_epoch"),
                           "test images": f.get("n_test")} for i, f in enumerate(folds)])
    curves = [{"fold": f.get("fold", i), "epoch": e + 1, "series": figures.series_name(series), "value": float(v)}
              for i, f in enumerate(folds) for series, values in (f.get("curves") or {}).items()
              for e, v in enumerate(values) if isinstance(v, int | float)]
    protocol = m.get("protocol")
    if isinstance(protocol, dict):
        text = str(protocol.get("text") or "; ".join(f"{k}: {v}" for k, v in protocol.items()))
        items = {k: v for k, v in protocol.items() if k != "text"}
    else:
        text, items = (str(protocol) if protocol else "not stated in metrics.json"), {}
    conf = m.get("confusion")
    per_class = m.get("per_class_acc") if isinstance(m.get("per_class_acc"), dict) else {}
    return {"protocol": text, "protocol_items": items, "folds": table, "mean": m.get("mean_test_acc"),
            "per_class": {str(k): float(v) for k, v in per_class.items()},
            "sd": m.get("sd_test_acc"), "confusion": None if conf is None else np.asarray(conf, dtype=float),
            "confusion_classes": list(r.class_names), "curves": pd.DataFrame(curves) if curves else None,
            "imported": False, "evaluated_on": None}


def _evaluation_view(r) -> dict:
    """:func:`metrics_view` of an imported network: its latest ``evaluate`` (no folds, no curves)."""
    from fercore.store.layout import latest_evaluation

    ev = latest_evaluation(r.run_dir)
    empty = pd.DataFrame(columns=["fold", "test accuracy", "best validation accuracy", "best epoch", "test images"])
    base = {"protocol": "trained elsewhere: fercore does not know its training data, folds or protocol; not "
                        f"evaluated yet (python -m fercore evaluate --run {r.name} --data FACES.h5)",
            "protocol_items": {}, "folds": empty, "mean": None, "sd": None, "per_class": {}, "confusion": None,
            "confusion_classes": [], "curves": None, "imported": True, "evaluated_on": None}
    if ev is None:
        return base
    conf = np.asarray(ev.get("confusion") or [], dtype=float)
    classes = list(ev.get("data", {}).get("class_names", []))
    rows = conf.sum(axis=1) if conf.size else np.zeros(0)
    per_class = {c: float(conf[i, i] / rows[i]) for i, c in enumerate(classes) if conf.size and rows[i] > 0}
    data = Path(ev.get("data", {}).get("path", "")).name
    text = str(ev.get("protocol") or f"evaluated on {data}")
    items = {"data set": data, "images": ev.get("n_images"), "classes mapped": ", ".join(
        f"{m['data_class']}→{m['run_class']}" for m in ev.get("mapping", [])),
        "warnings": "; ".join(ev.get("warnings", [])) or "none"}
    return {**base, "protocol": "trained elsewhere; " + text, "protocol_items": items, "mean": ev.get("accuracy"),
            "per_class": per_class, "confusion": conf if conf.size else None, "confusion_classes": classes,
            "evaluated_on": data}


@st.cache_resource(show_spinner=False, max_entries=16)
def curves_figure(run_dir: str, stamp: float, per_fold: bool):
    """The learning-curve panels of a run (None without curves in metrics.json)."""
    m = metrics_view(run_dir, stamp)
    return None if m["curves"] is None else charts.curves(m["curves"], per_fold=per_fold)


@st.cache_resource(show_spinner=False, max_entries=16)
def confusion_figure(run_dir: str, stamp: float):
    """The confusion matrix of a run (None without one in metrics.json)."""
    m = metrics_view(run_dir, stamp)
    return None if m["confusion"] is None else charts.confusion(m["confusion"], m["confusion_classes"])


# ------------------------------------------------------------------------------------ analysis
@st.cache_data(show_spinner=False, max_entries=64)
def topk(run_dir: str, stamp: float, layer: str, f: int, distinct: bool) -> dict:
    """The filter's top-K (the reader's TopK without its projections, which are made on demand:
    :func:`projection_tiles`) as a plain dict of arrays."""
    r = reader(run_dir, stamp)
    n = r.n_filters(layer)
    if not 0 <= int(f) < n:
        raise ValueError(f"filter {f} out of range for {layer} ({n} filters: 0..{n - 1})")
    rows = {k: v[int(f)] for k, v in r.topk_arrays(layer, distinct=distinct).items()}
    return {**rows, "patch": r.patches(layer, distinct=distinct)[int(f)]}


def evidence(run_dir: str, stamp: float, layer: str):
    """What ``analyze`` stored for a layer (:class:`fercore.store.reader.LayerEvidence`; the
    reader caches it)."""
    return reader(run_dir, stamp).evidence(layer)


def summary(run_dir: str, stamp: float) -> dict:
    """The stored summary (the funnel per layer for the run and its null)."""
    return reader(run_dir, stamp).summary()


def criteria(run_dir: str, stamp: float):
    """The :class:`fercore.analysis.criteria.Criteria` the run was analysed with."""
    from fercore.analysis.criteria import Criteria

    return Criteria(**reader(run_dir, stamp).analysis_info()["criteria"])


def verdict(run_dir: str, stamp: float, layer: str, f: int, a: int) -> list[dict]:
    """The funnel for one filter and AU, stage by stage (:func:`fercore.analysis.criteria.verdict`),
    with the one-sentence verdict as ``.headline`` (:func:`fercore.analysis.criteria.explain`)."""
    from fercore.analysis.criteria import Verdict, explain
    from fercore.analysis.criteria import verdict as rule

    ev = {**evidence(run_dir, stamp, layer)}
    ev["spatial"] = ev["spatial_distinct"]
    crit = criteria(run_dir, stamp)
    names = reader(run_dir, stamp).class_names
    rows = rule(ev, crit, int(f), int(a))
    return Verdict(rows, explain(ev, crit, int(f), int(a), names, rows=rows))


@st.cache_data(show_spinner=False, max_entries=16)
def evidence_table(run_dir: str, stamp: float, layers: tuple[str, ...]) -> pd.DataFrame:
    """The ranked filter × AU table of the layers (what ``analyze --csv`` writes)."""
    from fercore.analysis.summary import CSV_COLUMNS, evidence_rows

    rows = evidence_rows(reader(run_dir, stamp), list(layers))
    return figures.sig3(pd.DataFrame(rows, columns=list(CSV_COLUMNS)))


def evidence_csv(run_dir: str, stamp: float, layers: tuple[str, ...]) -> str:
    from fercore.analysis.summary import evidence_csv as to_csv
    from fercore.analysis.summary import evidence_rows

    return to_csv(evidence_rows(reader(run_dir, stamp), list(layers)))


@st.cache_data(show_spinner=False, max_entries=16)
def au_labels(run_dir: str, stamp: float) -> list[str]:
    """``AU12 lip corner puller`` style labels for the run's AU columns."""
    from fercore.data.facs import au_name

    return [au_name(int(a)) for a in reader(run_dir, stamp).au_ids]


#: What the FAU map can show: name (kept in the view state and the address) -> label.
STATISTICS = {
    "share": "top-K AU share",
    "auc_emotion": "within-emotion AUC",
    "excess": "excess share over the emotions' prediction",
    "q_emotion": "within-emotion test, −log10 q",
    "r_au": "correlation with the AU",
    "r_partial": "partial correlation given the emotion",
    "spatial": "share of maxima in the AU's region",
}
_DIVERGING = ("excess", "r_au", "r_partial")


def stored_figure(stat: str, distinct: bool) -> str:
    """The stored figure a statistic of :data:`STATISTICS` reads: the distinct list's share (and
    region share) when ``distinct``, else the raw list's."""
    if stat == "share":
        return "share_distinct" if distinct else "share_raw"
    if stat == "spatial":
        return "spatial_distinct" if distinct else "spatial_raw"
    return stat


def stat_label(stat: str, distinct: bool) -> str:
    """The statistic in words, naming the top-K list it is computed on."""
    label = STATISTICS[stat]
    if stat in ("share", "spatial"):
        label += " (distinct top-K)" if distinct else " (raw top-K)"
    if stat == "q_emotion":
        label += f" (capped at {figures.NEG_LOG10_CAP:g})"
    return label


def _map_values(ev, stat: str, distinct: bool) -> tuple[np.ndarray, tuple[float, float] | None]:
    z = np.asarray(ev[stored_figure(stat, distinct)], dtype=float)
    if stat == "q_emotion":
        return figures.neg_log10(z), (0.0, figures.NEG_LOG10_CAP)
    if stat in ("share", "spatial"):
        return z, (0.0, 1.0)
    if stat in ("r_au", "r_partial"):
        return z, (-1.0, 1.0)
    if stat == "auc_emotion":
        return z, (0.5, 1.0)  # chance (0.5) and below are white
    return z, None


def statistics(ev) -> list[str]:
    """The statistics of :data:`STATISTICS` whose figures a layer's evidence holds."""
    return [s for s in STATISTICS if stored_figure(s, False) in ev and stored_figure(s, True) in ev]


def _short(stat: str) -> str:
    return {"share": "share", "auc_emotion": "AUC", "excess": "excess", "q_emotion": "−log10 q", "r_au": "r", "r_partial": "partial r",
            "spatial": "in region"}[stat]


def _rows(ev, order, marks=figures.STAGE_MARKS) -> list[str]:
    depth = np.asarray(ev["stage"]).max(axis=1)
    return [f"#{int(f)} {marks[int(depth[f])]}" for f in order]


@st.cache_resource(show_spinner=False, max_entries=32)
def fau_heatmap(run_dir: str, stamp: float, layer: str, stat: str, distinct: bool, order_by: str):
    """The FAU map of a layer: (figure, data frame of the values shown, label of the values).

    Rows are filters in the stored order ``order_by`` ("evidence", "cluster", "index"); each row
    label ends in the deepest stage of the funnel the filter reaches; a ring marks the cells that
    pass beyond emotion; the filter's KL selectivity stands in a column beside the map."""
    ev = evidence(run_dir, stamp, layer)
    order = filter_order(run_dir, stamp, layer, order_by)
    au_short = [f"AU{int(a)}" for a in ev["au_ids"]]
    z, zrange = _map_values(ev, stat, distinct)
    z = z[order]
    depth = np.asarray(ev["stage"]).max(axis=1)
    label = stat_label(stat, distinct)
    fig = charts.fau_map(z, aus=au_short, rows=_rows(ev, order), filters=order, kl=np.asarray(ev["kl"])[order],
                          marks=np.asarray(ev["beyond_emotion"])[order], title=f"{layer}: filters × AUs — {label}",
                          zlabel=_short(stat), diverging=stat in _DIVERGING, zrange=zrange,
                          capped=stat == "q_emotion")
    df = pd.DataFrame(z, index=[f"filter {int(f)}" for f in order], columns=au_short)
    df.insert(0, "KL selectivity", np.asarray(ev["kl"], dtype=float)[order])
    df.insert(0, "stage reached", [figures.STAGE_NAMES[int(depth[f])] for f in order])
    return fig, df, label


@st.cache_resource(show_spinner=False, max_entries=32)
def plain_map(run_dir: str, stamp: float, layer: str, stat: str, distinct: bool, title: str):
    """The same map without selection or KL column, filters by evidence (the Runs view puts
    several side by side): (figure, data frame)."""
    ev = evidence(run_dir, stamp, layer)
    order = filter_order(run_dir, stamp, layer, "evidence")
    au_short = [f"AU{int(a)}" for a in ev["au_ids"]]
    z, zrange = _map_values(ev, stat, distinct)
    z = z[order]
    fig = charts.heatmap(z, x=au_short, y=_rows(ev, order, figures.STAGE_SHORT), title=title, zlabel=_short(stat),
                         diverging=stat in _DIVERGING, zrange=zrange, capped=stat == "q_emotion", cell_width=13)
    df = pd.DataFrame(z, index=[f"filter {int(f)}" for f in order], columns=au_short)
    return fig, df


def filter_order(run_dir: str, stamp: float, layer: str, by: str) -> np.ndarray:
    """Filter indices in a stored order: "evidence" (deepest stage first), "cluster" (filters with
    the same preferred AUs together) or "index"."""
    ev = evidence(run_dir, stamp, layer)
    if by == "evidence":
        return np.asarray(ev["order_evidence"])
    if by == "cluster":
        return np.asarray(ev["order_cluster"])
    return np.arange(ev.n_filters)


@st.cache_resource(show_spinner=False, max_entries=16)
def cooc_heatmap(run_dir: str, stamp: float):
    """The data set's AU × AU co-occurrence: (figure, data frame)."""
    cooc = reader(run_dir, stamp).analysis_arrays()["au_cooc"]
    au_short = [f"AU{int(a)}" for a in reader(run_dir, stamp).au_ids]
    fig = charts.heatmap(cooc, x=au_short, y=au_short, title="P(column AU present | row AU present)",
                         zlabel="co-occurrence", zrange=(0.0, 1.0), height=24 * len(au_short), cell_width=24)
    return fig, pd.DataFrame(cooc, index=au_short, columns=au_short)


@st.cache_data(show_spinner=False, max_entries=16)
def filter_grid(run_dir: str, stamp: float, layer: str, kind: str, size: int = 48) -> list[bytes]:
    """PNG bytes per filter (index = filter): its top patch ("patch") or the projection of its top
    activation ("deconv"; call only once :func:`projections_ready` says the layer's are computed),
    ``size`` pixels square."""
    r = reader(run_dir, stamp)
    if kind == "patch":
        imgs = r.patches(layer)[:, 0]
    else:
        imgs = [figures.to_uint8(p) for p in r.top1_projections(layer)]
    return [figures.png_bytes(figures.resize(img, size)) for img in imgs]


# ----------------------------------------------------------------------- projections on demand
def projections_ready(run_dir: str, stamp: float, layer: str, f: int | None) -> bool:
    """Whether filter ``f``'s projections (``None``: every filter's first one, for the grid) are
    computed (read from the cache each time: another tab or a job may have just written them)."""
    r = reader(run_dir, stamp)
    return (r.top1_projections(layer) if f is None else r.projections(layer, int(f))) is not None


def start_projections(run_dir: str, stamp: float, layer: str, f: int | None):
    """Compute filter ``f``'s projections (``None``: every filter's first, for the grid) on the
    server and cache them beside the records: (Job, started). A second request for the same
    filter joins the running job."""
    from app import jobs
    from fercore.recording.face import cached_network

    # The network is loaded here, in the page's thread, not in the job's: loading an imported
    # network compiles Python (torch.fx code), and CPython 3.11 compiling in two threads at once can
    # fail ("AST constructor recursion depth mismatch") while Streamlit compiles a page.
    r = reader(run_dir, stamp)
    fold = r.header.get("fold")
    with _MODEL_LOCK:
        cached_network(run_dir, None if fold is None or int(fold) < 0 else int(fold))

    def work(progress):
        from fercore.recording.project import filter_projections, top1_projections

        r = reader(run_dir, stamp)
        with _MODEL_LOCK:  # the run's network is shared with uploads
            if f is None:
                top1_projections(r, layer)
            else:
                filter_projections(r, layer, int(f))
        progress(1, 1, "project")
        return run_dir

    what = "every filter's first projection" if f is None else f"filter #{f}'s projections"
    return jobs.registry().start("projections", f"{run_dir}|{stamp}|{layer}|{f}", work,
                                 label=f"Computing {what} of {layer}", stages=("project",), started_by=_who())


def projection_job(run_dir: str, stamp: float, layer: str, f: int | None):
    """The latest projection job of this filter (running or not), or None."""
    from app import jobs

    return jobs.registry().latest("projections", f"{run_dir}|{stamp}|{layer}|{f}")


# ------------------------------------------------------------------------------------ the null
def null_kind(run_dir: str, stamp: float) -> str:
    """The null network the stored analysis compared with ("" when none)."""
    return str(reader(run_dir, stamp).analysis_info().get("null") or "")


# ------------------------------------------------------------------------------ the Runs view
@st.cache_data(show_spinner=False, max_entries=32)
def run_card(run_dir: str, stamp: float) -> dict:
    """What the Runs view compares of one run: ``accuracy``, ``sd``, ``per_class`` (class ->
    accuracy), ``funnel`` (the stored summary per layer as rows, or None with ``warnings``),
    ``layers``."""
    r = reader(run_dir, stamp)
    m = metrics_view(run_dir, stamp)
    per_class = dict(m["per_class"])
    if not per_class and m["confusion"] is not None:
        conf = m["confusion"]
        rows = conf.sum(axis=1)
        per_class = {c: float(conf[i, i] / rows[i]) for i, c in enumerate(m["confusion_classes"]) if rows[i] > 0}
    funnel, warnings = None, []
    if r.has_stats:
        from app import components

        summary = r.summary()
        warnings = list(summary.get("warnings", []))
        funnel = components.funnel_frame(summary)
    return {"accuracy": m["mean"], "sd": m["sd"], "per_class": per_class, "funnel": funnel, "warnings": warnings,
            "layers": list(r.layers), "analysed": bool(r.has_stats)}


# -------------------------------------------------------------------------------------- upload
# An uploaded or camera photo is private to its browser session: nothing here is written to disk,
# and nothing is kept in a cache shared across sessions (st.cache_data would let another session's
# identical upload hit it, and keeps entries after the session ends). The last result is kept in
# the session's own state, so reruns of the page do not redo the work.
_UPLOAD_SLOT = "fercore_upload_memo"


def _session_memo(slot: str, key: tuple, compute):
    box = st.session_state.setdefault(_UPLOAD_SLOT, {})
    hit = box.get(slot)
    if hit is not None and hit[0] == key:
        return hit[1]
    value = compute()
    box[slot] = (key, value)
    return value


def forget_upload() -> None:
    """Drop this session's upload results (when the photo is removed)."""
    st.session_state.pop(_UPLOAD_SLOT, None)


def preload_face_models() -> None:
    """Start loading the face detector and landmark model in the background (once per server):
    called when the Upload view opens, so the first photo does not wait about a second for them."""
    from fercore.data.landmarks import preload

    preload()


def decode_and_crop(data: bytes, run_dir: str, stamp: float, centre_crop: bool = False) -> dict:
    """Decode an uploaded file and cut the face out as the run's data was preprocessed
    (:func:`fercore.recording.face.prepare_upload`: the run's preprocessing, cropped to the geometry of
    the run's faces); kept for this session only.

    Returns
    -------
    dict
        ``grey`` (H, W) uint8 decoded photo, ``image`` (S, S) uint8 aligned face, ``box``
        (x0, y0, x1, y1) inclusive or None, ``n_faces``, ``centre_crop``, ``landmarks``
        ((68, 2) float32 in crop pixels, or None when none were fitted), ``photo_landmarks`` (the same
        points in photo pixels), ``canonical`` (cropped to the eye/mouth template), ``messages``.

    Raises
    ------
    fercore.data.preprocess.ImageDecodeError
        The bytes are not a readable image (the message says what and what to do).
    fercore.data.preprocess.NoFaceError
        No face found and ``centre_crop`` is False.
    """
    key = (hashlib.sha1(data).hexdigest(), run_dir, stamp, bool(centre_crop))
    return _session_memo("crop", key, lambda: _decode_and_crop(data, run_dir, stamp, centre_crop))


def _decode_and_crop(data: bytes, run_dir: str, stamp: float, centre_crop: bool) -> dict:
    from fercore.recording.face import prepare_upload

    r = reader(run_dir, stamp)
    up = prepare_upload(r, data, centre_crop=centre_crop)
    crop = up.crop
    box = None
    if crop.box is not None:
        x, y, w, h = (int(v) for v in crop.box)
        box = (x, y, x + w - 1, y + h - 1)
    lm = crop.landmarks
    return {"grey": up.grey, "image": np.asarray(crop.image), "box": box, "n_faces": int(crop.n_faces),
            "centre_crop": bool(crop.centre_crop), "landmarks": None if lm is None else np.asarray(lm, np.float32),
            "photo_landmarks": up.landmarks, "canonical": up.template is not None,
            "fit": str(getattr(crop, "fit", "none")), "messages": list(crop.messages or [])}


def analyze_face(run_dir: str, stamp: float, face: np.ndarray, top: int = 8) -> dict:
    """Forward an aligned face through the run's model (this session only): probabilities,
    activation maps on one colour scale per layer with its colour bar, Grad-CAM per class
    scaled by the class probability, and each most active filter's judged AU."""
    key = (run_dir, stamp, array_key(face), int(top))
    return _session_memo("analysis", key, lambda: _analyze_face(run_dir, stamp, face, top))


def _analyze_face(run_dir: str, stamp: float, face: np.ndarray, top: int) -> dict:
    from fercore.recording.face import analyze_face as run_analysis

    r = reader(run_dir, stamp)
    with _MODEL_LOCK:
        a = run_analysis(r, face, top=top)
    top_filters = {k: [(int(f), float(v)) for f, v in fs] for k, fs in a.top_filters.items()}
    probs = np.asarray(a.probs, dtype=float)
    # Grad-CAM is normalised per class; weighting it by the class probability keeps an unlikely
    # class from looking like a full-intensity map (opacity follows the weighted value).
    cams = [figures.resize(figures.overlay(face, np.asarray(a.gradcam[c]) * p, vmin=0.0, vmax=1.0, fade=True,
                                           alpha=0.75), 128)
            for c, p in zip(a.class_names, probs, strict=True)]
    maps, bars = {}, {}
    for layer, acts in a.activations.items():
        chosen = [np.asarray(acts[f], dtype=np.float32) for f, _ in top_filters[layer][:8]]
        if not chosen:
            continue
        lo = min(0.0, min(float(m.min()) for m in chosen))
        hi = max(float(m.max()) for m in chosen)
        maps[layer] = [figures.png_bytes(figures.resize(figures.overlay(face, m, vmin=lo, vmax=hi), 128))
                       for m in chosen]
        bars[layer] = figures.png_bytes(figures.colour_bar(lo, hi, label="activation"))
    return {"probs": probs, "class_names": list(a.class_names), "pred": int(a.pred),
            "top_filters": top_filters, "filter_aus": a.filter_aus,
            "map_shapes": {k: tuple(int(d) for d in np.shape(v)) for k, v in a.activations.items()},
            "gradcam_png": [figures.png_bytes(c) for c in cams],
            "gradcam_tile": figures.png_bytes(figures.tile(cams, cols=len(cams))),
            "gradcam_bar": figures.png_bytes(figures.colour_bar(0.0, 1.0, label="Grad-CAM x p")),
            "maps_png": maps, "maps_bar": bars}


def landmark_figure(face: np.ndarray, landmarks: np.ndarray | None, au: int | None, *, scale: int = 4) -> np.ndarray:
    """The crop enlarged with its 68 landmarks and the region of AU ``au``
    (:func:`fercore.data.facs.region_polygons`) drawn; unmarked when ``landmarks`` is None."""
    regions = None
    if landmarks is not None and au is not None:
        from fercore.data.facs import region_polygons

        try:
            regions = region_polygons(landmarks, int(au))
        except (KeyError, ValueError):
            regions = None
    return figures.draw_landmarks(face, landmarks, regions=regions, scale=scale)


def array_key(a: np.ndarray) -> str:
    """A short content hash of an array (cache key for arrays that are not hashed)."""
    return hashlib.sha1(np.ascontiguousarray(a).tobytes() + str(a.shape).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------- server-side builds
#: Test hook: a JSON object of :func:`fercore.pipeline.build_run` keyword arguments (phantom,
#: train_options, k) that replaces the embedded default when the cache is empty, so the browser
#: test can watch a whole build in seconds (tests/app/test_browser.py).
DEFAULT_BUILD_ENV = "FERCORE_APP_DEFAULT_BUILD"


def _after_build() -> None:
    """Runs and records changed: drop the cached run list (readers are keyed by file times)."""
    list_runs.clear()


def _who() -> str:
    from app.jobs import session_id

    return session_id()


def _default_builds() -> dict:
    """The default's two builds as :func:`fercore.pipeline.build_run` keyword arguments: ``first``
    (round 0 only: a complete run within a minute on two free cores) and ``full`` (every round),
    with ``rounds``; the embedded default, or the test hook's build (:data:`DEFAULT_BUILD_ENV`)."""
    import json
    import os

    from fercore.pipeline import FIRST_LOOK_FOLDS

    spec = os.environ.get(DEFAULT_BUILD_ENV)
    if not spec:
        from fercore.training.presets import DEFAULT_PHANTOM

        return {"first": {"null": "untrained", "train_options": {"folds": FIRST_LOOK_FOLDS}},
                "full": {"null": "untrained"}, "rounds": int(DEFAULT_PHANTOM.get("n_folds", 10)), "hook": False}
    kw = json.loads(spec)
    opts = dict(kw.get("train_options", {}))
    if "folds" in opts:
        opts["folds"] = tuple(opts["folds"])
    rounds = len(opts.get("folds", ())) or int(kw.get("phantom", {}).get("n_folds", 10))
    return {"first": {**kw, "train_options": {**opts, "folds": FIRST_LOOK_FOLDS}}, "full": {**kw, "train_options": opts},
            "rounds": rounds, "hook": True}


def _build(kw: dict, first_look: bool):
    """The work of one of the default's builds (the embedded default through
    :func:`fercore.pipeline.build_default`)."""

    def work(progress):
        from fercore import pipeline

        if kw.get("hook"):
            return pipeline.build_run(progress=progress, **kw["first" if first_look else "full"])
        return pipeline.build_default(progress=progress, first_look=first_look)

    return work


def start_default_build():
    """Start the default's first look on the server (or join the one running): (Job, started).

    One round is trained, recorded and analysed first, so the views open within about a minute;
    when it is done the other rounds train in a background job (:func:`start_full_default`)."""
    from app import jobs

    kw = _default_builds()

    def then() -> None:
        _after_build()
        job = jobs.registry().latest("default", "")
        if job is not None and not job.error and job.result:
            start_full_default(job.result)

    return jobs.registry().start("default", "", _build(kw, True), label="Building a first look at the default run "
                                 "(one round of the training)", stages=jobs.PIPELINE, rounds=1,
                                 started_by=_who(), done=then)


def start_full_default(partial: str | None = None):
    """Train the default's other rounds (and record and analyse the full run) in a background job
    the views do not wait for: (Job, started). ``partial`` is the first-look run the views show
    meanwhile."""
    from app import jobs

    kw = _default_builds()
    job, started = jobs.registry().start("background", "default", _build(kw, False),
                                         label="Training the default run's other rounds", stages=jobs.PIPELINE,
                                         rounds=kw["rounds"], started_by=_who(), done=_after_build)
    if started:
        job.about = str(partial or "")
    return job, started


def background_default():
    """The background job training the full default (running or the latest), or None."""
    from app import jobs

    return jobs.registry().find("background", "default") or jobs.registry().latest("background", "default")


def resume_full_default(runs: list[dict]) -> None:
    """Start the full default in the background when its first look is in the cache and it is
    not (a server restarted during the background part); fold checkpoints make it resume."""
    from fercore import pipeline

    if background_default() is not None:
        return
    first, full = default_dirs()
    have = {r["run_dir"] for r in runs}
    # on every page run: only the run list is consulted until the first look is there without the full run
    if first is not None and first in have and full not in have and not pipeline.run_complete(full):
        start_full_default(first)


@st.cache_data(ttl=30, show_spinner=False)
def default_dirs() -> tuple[str | None, str | None]:
    """The run directories of the default's first look and of the full default (None before
    the phantom data set exists)."""
    from fercore import pipeline

    kw = _default_builds()
    out = []
    for which in ("first", "full"):
        try:
            d = pipeline.planned_run_dir(**{k: v for k, v in kw[which].items() if k in ("phantom", "train_options")})
        except (OSError, ValueError):
            d = None
        out.append(None if d is None else str(d))
    return out[0], out[1]


def start_rebuild(run_dir: str):
    """Record and analyse the run again on the server, keeping its k and layers and the null it
    was compared with: (Job, started)."""
    from app import jobs

    def work(progress):
        from fercore.pipeline import refresh_records
        from fercore.store.layout import NULL_KINDS, null_dir

        kinds = [k for k in NULL_KINDS if (null_dir(run_dir, k) / "config.json").exists()]
        used = reader(run_dir, records_stamp(run_dir))
        used = str(used.analysis_info().get("null") or "") if used.has_stats else ""
        null = used if used in kinds else (kinds[0] if kinds else None)
        return refresh_records(run_dir, null=null, progress=progress)

    return jobs.registry().start("run", run_dir, work, label=f"Recording and analysing {Path(run_dir).name} again",
                                 stages=("record", "null", "analyze"), started_by=_who(), done=_after_build)


def start_null(run_dir: str, kind: str = "auto"):
    """Build the run's null network and analyse the run against it, on the server: (Job, started)."""
    from app import jobs

    def work(progress):
        from fercore.analysis.analyze import analyze
        from fercore.analysis.nulls import ensure_null
        from fercore.pipeline import STAGES, _stage_progress

        ensure_null(run_dir, kind=kind, progress=_stage_progress(progress, STAGES.index("null"), "null"))
        analyze(run_dir, null=kind, progress=_stage_progress(progress, STAGES.index("analyze"), "analyze"))
        progress(len(STAGES) * 1000, len(STAGES) * 1000, "done")
        return run_dir

    return jobs.registry().start("run", run_dir, work, label=f"Building the null network of {Path(run_dir).name}",
                                 stages=("null", "analyze"), started_by=_who(), done=_after_build)


def start_record(run_dir: str, data: str):
    """Record an imported network on the FaceSet ``data`` and analyse it (with its permuted null),
    on the server: (Job, started)."""
    from app import jobs

    def work(progress):
        from fercore.analysis.analyze import analyze
        from fercore.analysis.nulls import ensure_null
        from fercore.pipeline import STAGES, _stage_progress
        from fercore.recording.record import record

        record(run_dir, data=data, progress=_stage_progress(progress, STAGES.index("record"), "record"))
        ensure_null(run_dir, kind="auto", progress=_stage_progress(progress, STAGES.index("null"), "null"))
        analyze(run_dir, null="auto", progress=_stage_progress(progress, STAGES.index("analyze"), "analyze"))
        progress(len(STAGES) * 1000, len(STAGES) * 1000, "done")
        return run_dir

    return jobs.registry().start("run", run_dir, work, label=f"Recording and analysing {Path(run_dir).name} on "
                                 f"{Path(data).stem}", stages=("record", "null", "analyze"), started_by=_who(),
                                 done=_after_build)


def projection_words(run_dir: str, stamp: float, layer: str) -> str:
    """How the layer's projections were made, in words."""
    method = reader(run_dir, stamp).projection(layer)
    return {"deconvnet": "deconvnet projection (Zeiler & Fergus)",
            "guided_backprop": "guided backpropagation (Springenberg et al.)"}.get(method, method)


def running_job(run_dir: str | None = None):
    """The server's running job on ``run_dir`` (None: the default build), or None."""
    from app import jobs

    return jobs.registry().find("run", run_dir) if run_dir else jobs.registry().find("default", "")


@st.cache_data(show_spinner=False, max_entries=16)
def sequence_table(run_dir: str, stamp: float) -> pd.DataFrame | None:
    """One row per sequence of the run's FaceSet (``sequence``, ``subject``, ``expression`` — the
    label of its apex (or micro-expression) frames, else of its last labelled frame, ``frames``, ``micro`` frames), sorted;
    None when the FaceSet
    keeps no sequences with frames."""
    from fercore.data.faceset import PHASE_CODES
    from fercore.data.sequences import sequence_index

    fs = faceset(run_dir, stamp)
    if fs.sequences is None or fs.frames is None:
        return None
    index = sequence_index(fs.sequences, fs.frames)
    rows = []
    for s, sid in enumerate(index.ids):
        r = index.rows[s, : index.lengths[s]]
        lab = fs.labels[r]
        for phase in ("apex", "micro"):  # the sequence's expression: its apex's (a micro-expression's)
            if fs.phases is not None and (fs.phases[r] == PHASE_CODES[phase]).any():
                lab = lab[fs.phases[r] == PHASE_CODES[phase]]
                break
        lab = lab[lab >= 0]
        expr = fs.class_names[int(lab[-1])] if len(lab) else "unlabelled"
        micro = int((fs.phases[r] == PHASE_CODES["micro"]).sum()) if fs.phases is not None else 0
        rows.append({"sequence": str(sid), "subject": str(fs.subjects[r[0]]), "expression": expr,
                     "frames": int(len(r)), "micro frames": micro})
    return pd.DataFrame(rows)


@st.cache_data(show_spinner=False, max_entries=32)
def sequence_view(run_dir: str, stamp: float, sequence: str) -> dict:
    """One sequence through the run (:func:`fercore.recording.face.sequence_frames`) as plain
    arrays: ``images``, ``labels``, ``phases``, ``probs``, ``intensity``, ``activation``,
    ``class_names``, ``au_ids``."""
    from fercore.recording.face import sequence_frames

    r = reader(run_dir, stamp)
    with _MODEL_LOCK:
        sf = sequence_frames(r, sequence)
    return {"images": sf.images, "labels": sf.labels, "phases": sf.phases, "probs": sf.probs,
            "intensity": sf.intensity, "activation": sf.activation, "class_names": list(sf.class_names),
            "au_ids": [int(a) for a in sf.au_ids]}


# ------------------------------------------------------------------- the Filters view's gallery
#: The gallery's tiles (px), the space between them and its columns (it fills the left column of
#: the Filters view, beside the details of the open filter, from a 1400 px window up).
GALLERY_TILE = 64
GALLERY_PAD = 6
GALLERY_COLS = 5
#: The width (px) the details column draws its image panels for.
DETAILS_PX = 520


@st.cache_resource(show_spinner=False, max_entries=16)
def filter_gallery(run_dir: str, stamp: float, layer: str, kind: str, order_by: str) -> dict:
    """Every filter of ``layer`` as a captioned tile, in ``order_by`` order (:func:`filter_order`),
    drawn as one PNG with the cell of each filter, for :func:`app.charts.gallery` (shared by every
    session: never change what it returns).

    A tile is the filter's top patch (``kind`` "patch") or the projection of its top activation
    ("deconv"; call once :func:`projections_ready` says the layer's are computed). A layer whose
    receptive field covers at least :data:`app.figures.FACE_TILE_SHARE` of the image is shown, for
    "patch", by the face of each filter's top activation with the field's box drawn instead. Under
    each tile: the filter's number, the AU it is judged by and the deepest stage of the funnel it
    reaches (:data:`app.figures.STAGE_SHORT`).

    Returns
    -------
    dict
        ``uri`` (the PNG as a data URI), ``png`` (its bytes, for the download), ``size`` (width,
        height in px), ``tiles`` (DataFrame, one row per filter in order: ``filter``, its cell
        ``x0``, ``y0``, ``x1``, ``y1`` in px of the PNG, ``AU judged``, ``stage reached``),
        ``faces`` (whether the tiles are faces), ``rf`` (the receptive field in px, None when not
        recorded) and ``image_size`` (the network's input, px).
    """
    import base64

    r = reader(run_dir, stamp)
    ev = evidence(run_dir, stamp, layer)
    labels = au_labels(run_dir, stamp)
    order = [int(f) for f in filter_order(run_dir, stamp, layer, order_by)]
    judged = np.asarray(ev["judged"])
    depth = np.asarray(ev["stage"]).max(axis=1)
    fs = faceset(run_dir, stamp)
    size_in = int(r.header.get("image_size", fs.size))
    try:
        rf = int(r.geometry(layer).rf)
    except (KeyError, ValueError):
        rf = None
    faces = kind == "patch" and rf is not None and figures.rf_share(rf, size_in) >= figures.FACE_TILE_SHARE
    t = GALLERY_TILE
    if kind == "deconv":
        images = [figures.to_uint8(p) for p in r.top1_projections(layer)]
        tiles = [figures.resize(images[f], t) for f in order]
    elif faces:
        top = r.topk_arrays(layer)
        index, boxes = top["index"][:, 0], top["box"][:, 0]
        blank = np.full((t, t, 3), 255, np.uint8)
        scale = max(1, round(2 * t / size_in))  # drawn larger, then shrunk: a box about 2 px wide on the tile
        thick = max(1, round(2 * size_in * scale / t))
        tiles = [blank if index[f] < 0 else figures.resize(figures.draw_box(
            figures.resize(fs.images[index[f]], size_in), boxes[f], scale=scale, thickness=thick), t) for f in order]
    else:
        patches = r.patches(layer)[:, 0]
        tiles = [figures.resize(patches[f], t) for f in order]
    captions = [f"#{f} AU{int(ev['au_ids'][judged[f]])}\n{figures.STAGE_SHORT[int(depth[f])]}" for f in order]
    font, lines, pad, cols = 11, 2, GALLERY_PAD, GALLERY_COLS
    img = figures.captioned_tiles(tiles, captions, cols=cols, pad=pad, font_size=font, lines=lines)
    cell_w, cell_h = t + pad, t + lines * (font + 3) + pad  # as captioned_tiles lays them out
    row, col = np.divmod(np.arange(len(order)), cols)
    cells = pd.DataFrame({"filter": order, "x0": col * cell_w - 2, "y0": row * cell_h - 2,
                          "x1": col * cell_w + t + 2, "y1": row * cell_h + cell_h - pad + 1,
                          "AU judged": [labels[judged[f]] for f in order],
                          "stage reached": [figures.STAGE_NAMES[int(depth[f])] for f in order]})
    png = figures.png_bytes(img)
    return {"uri": "data:image/png;base64," + base64.b64encode(png).decode("ascii"), "png": png,
            "size": (int(img.shape[1]), int(img.shape[0])), "tiles": cells, "faces": bool(faces), "rf": rf,
            "image_size": size_in}


@st.cache_data(show_spinner=False, max_entries=64)
def filter_details(run_dir: str, stamp: float, layer: str, f: int, distinct: bool, width: int = DETAILS_PX) -> dict:
    """One filter's top-K (raw or distinct), laid out for a column ``width`` px wide (the Filters
    view's details beside the gallery): ``patches``, ``sources``: one PNG each, the top-K best first
    in a grid of tiles with their captions drawn under them (activation values; image index, label
    and AUs under the sources); ``table`` (rank, image, label, AUs, activation); ``n`` (images
    listed). The projections come on their own (:func:`projection_tiles`): they are made on
    demand."""
    t = topk(run_dir, stamp, layer, f, distinct)
    fs = faceset(run_dir, stamp)
    scale = max(1, 128 // fs.size)
    size_in = int(reader(run_dir, stamp).header.get("image_size", fs.size))
    patches, sources, acts, src_caps, rows = [], [], [], [], []
    for i, idx in enumerate(t["index"]):
        if idx < 0:
            continue
        patches.append(figures.resize(t["patch"][i], 96))
        sources.append(figures.draw_box(figures.resize(fs.images[idx], size_in), t["box"][i], scale=scale))
        label = fs.class_names[fs.labels[idx]] if fs.labels[idx] >= 0 else "unlabelled"
        present = [f"AU{int(a)}" for a, v in zip(fs.au_ids, fs.aus[idx], strict=True) if v > 0]
        acts.append(f"act {t['activation'][i]:.3g}")
        src_caps.append(f"#{idx} {label}\n" + (" ".join(present) if present else "no AU"))
        rows.append({"rank": len(rows) + 1, "image": int(idx), "label": label, "AUs present": " ".join(present),
                     "activation": float(t["activation"][i])})
    src_cols = max(1, width // (sources[0].shape[1] + 6)) if sources else 1
    return {"patches": figures.png_bytes(figures.captioned_tiles(patches, acts, cols=max(1, width // 102), lines=1)),
            "sources": figures.png_bytes(figures.captioned_tiles(sources, src_caps, cols=src_cols, lines=3)),
            "table": figures.sig3(pd.DataFrame(rows, columns=["rank", "image", "label", "AUs present", "activation"])),
            "n": len(sources)}


@st.cache_data(show_spinner=False, max_entries=64)
def projection_tiles(run_dir: str, stamp: float, layer: str, f: int, distinct: bool, width: int = DETAILS_PX) -> bytes:
    """One filter's top-K projections as one PNG of captioned tiles, best first, laid out for a
    column ``width`` px wide (call once :func:`projections_ready`)."""
    r = reader(run_dir, stamp)
    t = topk(run_dir, stamp, layer, f, distinct)
    proj = r.projections(layer, int(f))["distinct" if distinct else "raw"]
    tiles = [figures.resize(figures.to_uint8(proj[i]), 96) for i, idx in enumerate(t["index"]) if idx >= 0]
    caps = [f"act {a:.3g}" for a, idx in zip(t["activation"], t["index"], strict=True) if idx >= 0]
    return figures.png_bytes(figures.captioned_tiles(tiles, caps, cols=max(1, width // 102), lines=1))


# ------------------------------------------------------------------ a sequence run, built on request
#: The small sequence run the Sequences view offers to build on a run of still images: phantom
#: sequences (:func:`fercore.data.phantom.sequences.generate_sequences` options), the training preset
#: and its overrides, the null network the analysis compares with. Read when a build starts, so a
#: test can make it tiny (tests/app/test_app_sequences.py).
SEQUENCE_BUILD = {"sequences": dict(n_subjects=32, per_subject=8, n_frames=16, size=48, seed=0, n_folds=10),
                  "preset": "phantom-default", "train_options": dict(folds=(0,)), "null": "untrained"}
#: What that build costs from an empty cache on two CPU cores (seconds, wall), as the offer states
#: it. Measured 2026-12-08: the job alone 18-22 s (load about 1; phantom 3.5 s, train 6.5 s,
#: record and null 2 s, analyse 5 s), 46 s in a live dashboard whose tab polls it while other
#: work holds part of a core (load 2.5-3.4); 20 subjects of 12 frames took 12-13 s but their
#: network reached 80 % test accuracy instead of 93 %.
SEQUENCE_BUILD_SECONDS = 30


def sequence_build_words() -> str:
    """The sequence build in words (data, preset, folds), for the Sequences view's offer."""
    seq, opts = SEQUENCE_BUILD["sequences"], SEQUENCE_BUILD["train_options"]
    folds = opts.get("folds")
    rounds = f"{len(folds)} of its {seq.get('n_folds', 10)} subject-independent folds" if folds else "every fold"
    return (f"{seq['n_subjects']} drawn subjects × {seq.get('per_subject', 8)} sequences × {seq['n_frames']} frames "
            f"(neutral to apex, every AU known on every frame), the `{SEQUENCE_BUILD['preset']}` network trained on "
            f"{rounds}, its filters recorded and analysed")


def _sequence_data_path(options: dict) -> Path:
    """Where the phantom sequences made with ``options`` are cached: named by the hash of the
    options and the generators' versions, so the same build finds them again."""
    from fercore.data.phantom import GENERATOR_VERSION
    from fercore.data.phantom.sequences import SEQUENCE_VERSION
    from fercore.store.layout import datasets_dir
    from fercore.util import stable_hash

    key = {**options, "sequence_version": SEQUENCE_VERSION, "generator_version": GENERATOR_VERSION}
    return datasets_dir() / f"phantom-seq-{stable_hash(key)[:8]}.h5"


def _pipeline_stage(progress, stage: str):
    """A stage's own ``progress(done, total)`` mapped onto the pipeline's stages
    (:data:`fercore.pipeline.STAGES`), as :class:`app.jobs.Job` reads them."""
    from fercore.pipeline import STAGES

    i, n = STAGES.index(stage), len(STAGES)

    def inner(done: float, total: float, what: str = "") -> None:
        frac = min(max(done / total, 0.0), 1.0) if total else 0.0
        progress(int(round((i + frac) * 1000)), n * 1000, f"{stage} ({i + 1}/{n})")

    return inner


def start_sequence_build():
    """Build (or find in the cache) the small sequence run of :data:`SEQUENCE_BUILD` on the
    server: phantom sequences, trained, recorded, the null network, analysed; every stage is
    cached, so a second build returns the same run within seconds. (Job, started); the job's
    result is the run directory."""
    from app import jobs

    spec = {**SEQUENCE_BUILD, "sequences": dict(SEQUENCE_BUILD["sequences"]),
            "train_options": dict(SEQUENCE_BUILD["train_options"])}

    def work(progress):
        from fercore.analysis.analyze import analyze
        from fercore.analysis.nulls import ensure_null
        from fercore.data.phantom.sequences import generate_sequences
        from fercore.pipeline import STAGES
        from fercore.recording.record import record
        from fercore.store.faceset_h5 import FaceSetFileError, read_faceset_info, save_faceset
        from fercore.store.reader import open_run
        from fercore.training.presets import train_preset

        path = _sequence_data_path(spec["sequences"])
        stage = _pipeline_stage(progress, "phantom")
        stage(0, 1)
        try:
            read_faceset_info(path)
        except (FaceSetFileError, OSError):  # missing or damaged: made again
            path.parent.mkdir(parents=True, exist_ok=True)
            save_faceset(generate_sequences(**spec["sequences"], progress=stage), path)
        run = Path(train_preset(path, spec["preset"], progress=_pipeline_stage(progress, "train"),
                                **spec["train_options"]))
        if not open_run(run).has_records:
            record(run, progress=_pipeline_stage(progress, "record"))
        null = spec["null"]
        if null is not None:
            ensure_null(run, kind=null, progress=_pipeline_stage(progress, "null"))
        r = open_run(run)
        if not (r.has_stats and (r.analysis_info().get("null") or None) == null):
            analyze(run, null=null, progress=_pipeline_stage(progress, "analyze"))
        progress(len(STAGES) * 1000, len(STAGES) * 1000, "done")
        return run

    folds = spec["train_options"].get("folds")
    return jobs.registry().start("sequences", "", work, label="Building a sequence run", stages=jobs.PIPELINE,
                                 rounds=len(folds) if folds else int(spec["sequences"].get("n_folds", 10)),
                                 started_by=_who(), done=_after_build)


def sequence_build_job():
    """The server's running sequence build (:func:`start_sequence_build`), or None."""
    from app import jobs

    return jobs.registry().find("sequences", "")


def sequence_build_result(job_id: str) -> str | None:
    """The run directory (as :func:`list_runs` names it) that the finished sequence build
    ``job_id`` made; None while it runs, when it failed, or when the server does not know it."""
    from app import jobs

    job = jobs.registry().get(job_id)
    if job is None or job.running or job.error or not job.result:
        return None
    name = Path(job.result).name
    return next((r["run_dir"] for r in list_runs() if r["name"] == name), None)


def sequence_runs() -> list[dict]:
    """The runs of the cache trained on phantom sequences (:func:`list_runs` entries), recorded first."""
    return [r for r in list_runs() if r["source"] == "phantom-sequences" and r["recorded"]]


# ------------------------------------------------------------------------------ the server's heap
_HEAP_LOCK = threading.Lock()
_HEAP_FROZEN = threading.Event()


def freeze_heap() -> None:
    """Once per server process: collect garbage, then leave every object alive now out of later
    full collections (:func:`gc.freeze`). Called by a view once it has loaded a run, so the
    modules, readers, FaceSets and cached tables it holds are not scanned again on every click.

    Measured on the default run (two CPU cores): without it, a full collection went over about
    330,000 long-lived objects every one or two clicks and stopped the server for 150-300 ms each
    time, more than the rest of a click's run. Objects frozen stay alive as long as anything refers
    to them (reference counting still frees them); only a cycle among them would never be
    collected."""
    import gc

    if _HEAP_FROZEN.is_set():
        return
    with _HEAP_LOCK:
        if not _HEAP_FROZEN.is_set():
            gc.collect()
            gc.freeze()
            _HEAP_FROZEN.set()
