"""Every cached loader of the dashboard, in one module.

Views call these functions and lay out what they return; they never read files or run models
themselves. ``st.cache_resource`` holds objects shared by every browser session (run readers,
FaceSets); ``st.cache_data`` holds arrays, tables and figures keyed by their (hashable) arguments.
Arguments whose names start with ``_`` are not hashed.

Runs are addressed by their directory as a string, so every cached value is keyed by the run.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from app import figures
from fercore.store.layout import runs_dir

# The model of a run is shared by every browser connected to the server; a forward pass with hooks
# must not interleave with another one.
_MODEL_LOCK = threading.Lock()
# Two browser tabs opening an empty cache build the default once: the second waits, then finds
# every stage cached.
_BUILD_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------------- runs
@st.cache_data(ttl=5, show_spinner=False)
def list_runs() -> list[dict]:
    """Every trained run under the cache's ``runs/`` folder (runs still training are left out),
    recorded runs first, newest first.

    Returns
    -------
    list of dict
        ``{"run_dir", "name", "dataset", "model", "label"}`` per run.
    """
    root = runs_dir()
    out = []
    if not root.is_dir():
        return out
    # Runs whose training finished (metrics.json written); recorded ones first, newest first.
    dirs = [d for d in root.iterdir() if d.is_dir() and (d / "config.json").is_file() and (d / "metrics.json").is_file()]
    dirs.sort(key=lambda d: ((d / "records.h5").exists(), (d / "metrics.json").stat().st_mtime), reverse=True)
    for d in dirs:
        try:
            config = json.loads((d / "config.json").read_text())
        except (OSError, ValueError):
            continue
        dataset = _dataset_name(config)
        model = _model_name(config)
        out.append({"run_dir": str(d), "name": d.name, "dataset": dataset, "model": model,
                    "label": f"{d.name} · {dataset} · {model}"})
    return out


def _dataset_name(config: dict) -> str:
    for key in ("faceset", "dataset", "data"):
        v = config.get(key)
        if isinstance(v, dict):
            for k in ("name", "source", "path"):
                if v.get(k):
                    return Path(str(v[k])).stem if k == "path" else str(v[k])
        elif v:
            return Path(str(v)).stem
    return "?"


def _model_name(config: dict) -> str:
    spec = config.get("model") or config.get("spec") or {}
    if isinstance(spec, dict):
        arch = spec.get("arch", "?")
        width = spec.get("width")
        size = spec.get("in_size")
        channels = spec.get("channels")
        shape = ("conv " + "/".join(map(str, channels)) if isinstance(channels, list | tuple) and channels
                 else f"width {width:g}" if isinstance(width, int | float) else "")
        extra = ", ".join(x for x in (shape, f"{size}px" if size else "",
                                       "+ AU head" if spec.get("n_aus") else "") if x)
        return f"{arch} ({extra})" if extra else str(arch)
    return str(spec)


@st.cache_resource(show_spinner=False, max_entries=8)
def reader(run_dir: str, stamp: float = 0.0):
    """The run's :class:`fercore.reader.RunReader` (cheap to open; caches its own arrays)."""
    from fercore.store.reader import open_run

    return open_run(run_dir)


def records_stamp(run_dir: str) -> float:
    """Modification time of the run's records file (a new file gives a new cached reader)."""
    p = Path(run_dir) / "records.h5"
    return p.stat().st_mtime if p.exists() else 0.0


def get_reader(run_dir: str):
    """The cached reader of the records file as it is now on disk."""
    return reader(run_dir, records_stamp(run_dir))


@st.cache_resource(show_spinner=False, max_entries=4)
def faceset(run_dir: str, stamp: float = 0.0):
    """The FaceSet the run was recorded on (shared, never copied)."""
    return reader(run_dir, stamp).faceset()


def get_faceset(run_dir: str):
    return faceset(run_dir, records_stamp(run_dir))


# ------------------------------------------------------------------------------------ overview
@st.cache_data(show_spinner=False, max_entries=16)
def montage(run_dir: str, stamp: float, *, per_class: int = 8, size: int = 64) -> tuple[np.ndarray, pd.DataFrame]:
    """A montage of the data set, one row per class, and the counts per class.

    Returns
    -------
    image : (C*size, per_class*size) uint8
    counts : DataFrame with columns class, images
    """
    fs = faceset(run_dir, stamp)
    rows, counts = [], []
    rng = np.random.default_rng(0)
    for c, name in enumerate(fs.class_names):
        idx = np.flatnonzero(fs.labels == c)
        counts.append({"class": name, "images": int(len(idx))})
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False) if len(idx) else idx
        tiles = [figures.resize(fs.images[i], size) for i in np.sort(pick)]
        tiles += [np.full((size, size), 255, np.uint8)] * (per_class - len(tiles))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0), pd.DataFrame(counts)


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
    """What the overview shows from ``metrics.json`` (written by :func:`fercore.train.train`).

    Returns
    -------
    dict
        ``protocol`` (str, in words), ``protocol_items`` (dict), ``folds`` (DataFrame fold/test
        accuracy/best validation accuracy/best epoch), ``mean`` and ``sd`` (float or None),
        ``summary`` (str), ``confusion`` ((C, C) counts or None), ``curves`` (long DataFrame
        fold/epoch/series/value or None).
    """
    r = reader(run_dir, stamp)
    m = r.metrics or {}
    folds = [f for f in m.get("folds", []) if isinstance(f, dict)]
    table = pd.DataFrame([{"fold": f.get("fold", i), "test accuracy": f.get("test_acc"),
                           "best validation accuracy": f.get("best_val_acc"), "best epoch": f.get("best_epoch"),
                           "test images": f.get("n_test")} for i, f in enumerate(folds)])
    curves = []
    for i, f in enumerate(folds):
        for series, values in (f.get("curves") or {}).items():
            curves += [{"fold": f.get("fold", i), "epoch": e + 1, "series": series, "value": float(v)}
                       for e, v in enumerate(values) if isinstance(v, int | float)]
    protocol = m.get("protocol")
    if isinstance(protocol, dict):
        text = str(protocol.get("text") or "; ".join(f"{k}: {v}" for k, v in protocol.items()))
        items = {k: v for k, v in protocol.items() if k != "text"}
    else:
        text, items = (str(protocol) if protocol else "not stated in metrics.json"), {}
    conf = m.get("confusion")
    return {
        "protocol": text, "protocol_items": items, "folds": table,
        "mean": m.get("mean_test_acc"), "sd": m.get("sd_test_acc"), "summary": m.get("summary", ""),
        "confusion": None if conf is None else np.asarray(conf, dtype=float),
        "curves": pd.DataFrame(curves) if curves else None,
    }


# ------------------------------------------------------------------------------------- filters
@st.cache_data(show_spinner=False, max_entries=64)
def topk(run_dir: str, stamp: float, layer: str, f: int, distinct: bool):
    """The filter's top-K (the reader's TopK dataclass) as a plain dict of arrays."""
    t = reader(run_dir, stamp).topk(layer, int(f), distinct=distinct)
    return {k: np.asarray(getattr(t, k)) for k in ("index", "activation", "pos", "box", "patch", "deconv")}


@st.cache_data(show_spinner=False, max_entries=32)
def au_stats(run_dir: str, stamp: float, layer: str) -> dict:
    """Filter × AU statistics of a layer as a dict of arrays (see ``AUStats``)."""
    s = reader(run_dir, stamp).au_stats(layer)
    out = {}
    for k in ("topk_share", "corr", "corr_within", "pval", "qval", "spatial", "kl", "base_rate", "au_cooc"):
        v = getattr(s, k, None)
        if v is not None:
            out[k] = np.asarray(v, dtype=float)
    return out


#: Statistics of the FAU map: label -> (key in au_stats, transform)
STATISTICS = {
    "top-K co-occurrence": "topk_share",
    "KL selectivity (per filter)": "kl",
    "correlation": "corr",
    "emotion-controlled correlation": "corr_within",
    "spatial score": "spatial",
    "−log10 p (BH q)": "qval",
}


@st.cache_data(show_spinner=False, max_entries=32)
def filter_order(run_dir: str, stamp: float, layer: str, by: str) -> np.ndarray:
    """Filter indices sorted by ``by``: "selectivity" (KL, high first), "AU" (best AU, then
    strength), "cluster" (hierarchical clustering leaves of the top-K AU profile), "index"."""
    s = au_stats(run_dir, stamp, layer)
    share = s["topk_share"]
    n = share.shape[0]
    if by == "selectivity":
        return np.argsort(-s["kl"], kind="stable")
    if by == "AU":
        best = np.nanargmax(np.nan_to_num(share, nan=-1), axis=1)
        strength = np.nanmax(np.nan_to_num(share, nan=-1), axis=1)
        return np.lexsort((-strength, best))
    if by == "cluster" and n > 2:
        from scipy.cluster.hierarchy import leaves_list, linkage

        x = np.nan_to_num(share - s["base_rate"][None, :])
        return np.asarray(leaves_list(linkage(x, method="average", metric="euclidean")))
    return np.arange(n)


@st.cache_data(show_spinner=False, max_entries=16)
def filter_grid(run_dir: str, stamp: float, layer: str, kind: str, size: int = 48) -> list[bytes]:
    """PNG bytes per filter (index = filter): its top patch ("patch") or the deconvnet
    projection of its top activation ("deconv"), ``size`` pixels square."""
    r = reader(run_dir, stamp)
    tiles = []
    for f in range(r.n_filters(layer)):
        t = r.topk(layer, f)
        img = t.patch[0] if kind == "patch" else figures.to_uint8(t.deconv[0])
        tiles.append(figures.png_bytes(figures.resize(img, size)))
    return tiles


@st.cache_data(show_spinner=False, max_entries=16)
def filter_grid_png(run_dir: str, stamp: float, layer: str, kind: str, order: tuple[int, ...]) -> bytes:
    """The whole filter grid in ``order`` as one PNG (for downloading)."""
    import cv2

    tiles = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)
             for b in filter_grid(run_dir, stamp, layer, kind)]
    return figures.png_bytes(figures.tile([tiles[f] for f in order], cols=16))


@st.cache_data(show_spinner=False, max_entries=64)
def filter_panels(run_dir: str, stamp: float, layer: str, f: int, distinct: bool) -> dict:
    """Everything the Filters view shows of one filter, drawn once and cached.

    Returns
    -------
    dict
        ``patches``, ``deconv``, ``sources`` (lists of PNG bytes, best first), ``captions``
        (activation values), ``source_captions`` (image index, label, AUs), ``sources_png``
        (one PNG of all source images), ``n`` (images listed).
    """
    t = topk(run_dir, stamp, layer, f, distinct)
    fs = faceset(run_dir, stamp)
    scale = max(1, 128 // fs.size)
    out = {"patches": [], "deconv": [], "sources": [], "captions": [], "source_captions": []}
    src = []
    for i, idx in enumerate(t["index"]):
        idx = int(idx)
        if idx < 0:  # a distinct list pads with -1 when the data has fewer groups than K
            continue
        out["patches"].append(figures.png_bytes(figures.resize(t["patch"][i], 96)))
        out["deconv"].append(figures.png_bytes(figures.resize(figures.to_uint8(t["deconv"][i]), 96)))
        img = figures.draw_box(fs.images[idx], t["box"][i], scale=scale, thickness=2)
        src.append(img)
        out["sources"].append(figures.png_bytes(img))
        label = fs.class_names[fs.labels[idx]] if fs.labels[idx] >= 0 else "unlabelled"
        present = [f"AU{int(a)}" for a, v in zip(fs.au_ids, fs.aus[idx], strict=True) if v > 0]
        out["captions"].append(f"act {t['activation'][i]:.2f}")
        out["source_captions"].append(f"#{idx} {label}: " + (" ".join(present) if present else "no AU"))
    out["sources_png"] = figures.png_bytes(figures.tile(src, cols=8)) if src else b""
    out["n"] = len(src)
    return out


@st.cache_data(show_spinner=False, max_entries=32)
def best_aus(run_dir: str, stamp: float, layer: str) -> np.ndarray:
    """(F,) int: per filter, the AU column whose top-K share is furthest above its base rate."""
    s = au_stats(run_dir, stamp, layer)
    return np.nanargmax(np.nan_to_num(s["topk_share"] - s["base_rate"][None, :], nan=-9), axis=1)


@st.cache_data(show_spinner=False, max_entries=32)
def fau_heatmap(run_dir: str, stamp: float, layer: str, stat_label: str, order_by: str, distinct: bool = False,
                nstamp: float = 0.0):
    """The FAU map of a layer: (figure, data frame of the shown values, value name).

    ``topk_share`` is shown minus the AU's base rate (with ``distinct``, the share of the distinct
    top-K list, one image per sequence or subject), ``qval`` as −log10 q, ``kl`` (one value per
    filter) repeated across the AUs. Each row label ends in ✓ when the filter survives every
    control for at least one AU (:func:`survives`), ✗ otherwise.
    """
    s = au_stats(run_dir, stamp, layer)
    key = STATISTICS[stat_label]
    order = filter_order(run_dir, stamp, layer, order_by)
    au_short = [f"AU{int(a)}" for a in reader(run_dir, stamp).au_ids]
    sel = summary(run_dir, stamp, nstamp).selectivity[layer]
    zmid, colorscale, zname = 0.0, "RdBu_r", stat_label
    if key == "topk_share" and distinct:
        z, zname = sel.share_distinct - s["base_rate"][None, :], "distinct top-K share − base rate"
    else:
        z = _stat_values(s, key, len(au_short))
        if key in ("qval", "kl", "spatial"):
            zmid, colorscale = None, "Oranges"
        elif key == "topk_share":
            zname = "top-K share − base rate"
    ok = survives(sel)
    z = z[order]
    ylabels = [f"filter {int(f)} {'✓' if ok[f] else '✗'}" for f in order]
    fig = figures.heatmap(z, x=au_short, y=ylabels, title=f"{layer}: filters × AUs ({zname}); ✓ survives the controls",
                          zlabel=zname, colorscale=colorscale, zmid=zmid)
    df = pd.DataFrame(z, index=[f"filter {int(f)}" for f in order], columns=au_short)
    df.insert(0, "survives controls", [bool(ok[f]) for f in order])
    return fig, df, zname


@st.cache_data(show_spinner=False, max_entries=16)
def cooc_heatmap(run_dir: str, stamp: float, layer: str):
    """The data set's AU × AU co-occurrence: (figure, data frame)."""
    cooc = au_stats(run_dir, stamp, layer)["au_cooc"]
    au_short = [f"AU{int(a)}" for a in reader(run_dir, stamp).au_ids]
    fig = figures.heatmap(cooc, x=au_short, y=au_short, title="P(column AU present | row AU present)",
                          zlabel="co-occurrence", colorscale="Oranges", zmid=None, height=560)
    return fig, pd.DataFrame(cooc, index=au_short, columns=au_short)


@st.cache_data(show_spinner=False, max_entries=16)
def match_table(run_dir: str, stamp: float, layer: str) -> tuple[pd.DataFrame, str]:
    """The ranked filter↔AU match table and its CSV text."""
    r = reader(run_dir, stamp)
    return pd.DataFrame(r.match_table(layer)), r.match_csv(layer)


@st.cache_data(show_spinner=False, max_entries=16)
def au_labels(run_dir: str, stamp: float) -> list[str]:
    """``AU12 lip corner puller`` style labels for the run's AU columns."""
    from fercore.data.facs import au_name

    out = []
    for a in reader(run_dir, stamp).au_ids:
        try:
            out.append(au_name(int(a)))  # "AU12 lip corner puller"
        except (KeyError, ValueError):
            out.append(f"AU{int(a)}")
    return out


# ------------------------------------------------------------------------------ honest controls
#: The null network the dashboard compares with.
NULL_KIND = "untrained"


def null_stamp(run_dir: str) -> float:
    """Modification time of the null network's records file (0.0 when it is not recorded)."""
    p = Path(run_dir) / "null" / NULL_KIND / "records.h5"
    return p.stat().st_mtime if p.exists() else 0.0


@st.cache_resource(show_spinner=False, max_entries=8)
def summary(run_dir: str, stamp: float, nstamp: float):
    """The run's :class:`fercore.summary.Summary` (counts per control, per-filter criteria, null
    thresholds), read-only: the null is used when it is recorded, never built here.

    Cached as a shared resource (it is only read) keyed by the records' and the null's stamps, so
    building the null gives a new summary.
    """
    from fercore.analysis.summary import summarize

    return summarize(run_dir, null=NULL_KIND, build_null=False)


def get_summary(run_dir: str, stamp: float):
    """The cached summary of the run as its records and null are on disk now."""
    return summary(run_dir, stamp, null_stamp(run_dir))


@st.cache_resource(show_spinner=False, max_entries=8)
def null_reader(run_dir: str, nstamp: float):
    """The null network's reader (None when it is not recorded)."""
    if not nstamp:
        return None
    from fercore.store.reader import open_run

    return open_run(Path(run_dir) / "null" / NULL_KIND)


def _stat_values(s: dict, key: str, n_au: int) -> np.ndarray:
    """(F, A) values of statistic ``key`` as the FAU map shows them (see :func:`fau_heatmap`)."""
    z = np.asarray(s[key], dtype=float)
    if key == "qval":
        return -np.log10(np.clip(z, 1e-300, 1.0))
    if key == "kl":
        return np.repeat(z[:, None], n_au, axis=1)
    if key == "topk_share":
        return z - s["base_rate"][None, :]
    return z


@st.cache_data(show_spinner=False, max_entries=64)
def null_p95(run_dir: str, stamp: float, nstamp: float, layer: str, key: str) -> np.ndarray | None:
    """(A,) float: the null network's 95th percentile (over its filters) of statistic ``key`` per
    AU, in the units the FAU map shows (top-K shares minus the base rate, −log10 q); None without
    a null.

    ``key`` is a key of :data:`STATISTICS` values or ``"share_distinct"`` (distinct top-K share).
    The shares and correlations come from the summary's thresholds (``Selectivity.null_p95``), the
    other statistics from the null's own analysis.
    """
    sel = summary(run_dir, stamp, nstamp).selectivity.get(layer)
    if sel is None or not sel.has_null:
        return None
    q = sel.criteria.null_quantile
    from_summary = {"topk_share": "share_raw", "share_distinct": "share_distinct", "corr": "r_au",
                    "corr_within": "r_partial"}
    if key in from_summary:
        v = np.asarray(sel.null_p95[from_summary[key]], dtype=float)
        return v - sel.base_rate if key in ("topk_share", "share_distinct") else v
    nr = null_reader(run_dir, nstamp)
    try:
        ns = nr.au_stats(layer)
    except (FileNotFoundError, ValueError, KeyError):
        return None
    s = {k: np.asarray(getattr(ns, k), dtype=float) for k in (key, "base_rate")}
    z = _stat_values(s, key, len(sel.au_ids))
    with np.errstate(all="ignore"):
        return np.array([np.nanquantile(c, q) if np.isfinite(c).any() else np.nan for c in z.T])


def survives(sel) -> np.ndarray:
    """(F,) bool: filters with at least one AU passing every control (``all``); without a null,
    every control but the null (raw, distinct, beyond emotion)."""
    m = sel.all if sel.has_null else (sel.raw & sel.distinct & sel.beyond_emotion)
    return m.any(axis=1)


def judged_aus(sel, lift_best: np.ndarray) -> np.ndarray:
    """(F,) int: per filter, the AU column its verdict is about: an AU passing every control when
    there is one (the highest distinct share), else its best AU by lift over the base rate
    (``lift_best``, as :func:`best_aus` gives it)."""
    m = sel.all if sel.has_null else (sel.raw & sel.distinct & sel.beyond_emotion)
    score = np.where(m, np.nan_to_num(sel.share_distinct, nan=-1.0), -np.inf)
    return np.where(m.any(axis=1), np.argmax(score, axis=1), np.asarray(lift_best)).astype(int)


def first_failed(sel, f: int, a: int) -> str:
    """The first control filter ``f``'s association with AU column ``a`` fails ("" if none)."""
    for name, label in (("raw", "raw"), ("distinct", "distinct"), ("beyond_emotion", "beyond emotion"),
                        ("beyond_null", "beyond null")):
        if name == "beyond_null" and not sel.has_null:
            continue
        if not bool(sel.matrix(name)[f, a]):
            return label
    return ""


@st.cache_data(show_spinner=False, max_entries=16)
def match_table_honest(run_dir: str, stamp: float, nstamp: float, layer: str) -> tuple[pd.DataFrame, str]:
    """The ranked match table with the controls: ``survives controls`` (✓/✗ for the pair),
    ``fails`` (the first control it fails) and the null's p95 of the top-K share; and its CSV."""
    table, _ = match_table(run_dir, stamp, layer)
    sel = summary(run_dir, stamp, nstamp).selectivity[layer]
    if len(table):
        col = {int(a): j for j, a in enumerate(sel.au_ids)}
        js = [col[int(a)] for a in table["au"]]
        fails = [first_failed(sel, int(f), j) for f, j in zip(table["filter"], js, strict=True)]
        table.insert(2, "survives controls", ["✓" if not x else "✗" for x in fails])
        table.insert(3, "fails", [x or "-" for x in fails])
        table["distinct_share"] = [float(sel.share_distinct[int(f), j]) for f, j in zip(table["filter"], js, strict=True)]
        if sel.has_null:
            p95 = sel.null_p95["share_distinct"]
            table["null_p95_distinct_share"] = [float(p95[j]) for j in js]
    return table, table.to_csv(index=False)


def build_null(run_dir: str, progress) -> None:
    """Build the run's untrained null network (the "Build the null network" button), then drop
    the caches that depend on it."""
    from fercore.analysis.nulls import ensure_null

    with _BUILD_LOCK:
        ensure_null(run_dir, kind=NULL_KIND, progress=progress)
    summary.clear()
    null_reader.clear()
    null_p95.clear()
    match_table_honest.clear()
    fau_heatmap.clear()


# -------------------------------------------------------------------------------------- upload
@st.cache_data(show_spinner=False, max_entries=32)
def decode_and_crop(data: bytes, run_dir: str, stamp: float, centre_crop: bool = False) -> dict:
    """Decode an uploaded file and cut the face out as the run's data was preprocessed.

    The run's recorded options (``config["preprocess"]``: size, alignment, margin,
    normalisation) are used, with face detection switched on: a photo is not a pre-cropped face.

    Returns
    -------
    dict
        ``grey`` (H, W) uint8 decoded photo, ``image`` (S, S) uint8 aligned face, ``box``
        (x0, y0, x1, y1) inclusive or None, ``n_faces``, ``centre_crop``, ``messages``.

    Raises
    ------
    fercore.preprocess.ImageDecodeError
        The bytes are not a readable image (the message says what and what to do).
    fercore.preprocess.NoFaceError
        No face found and ``centre_crop`` is False.
    """
    import dataclasses

    from fercore.data.preprocess import (
        PreprocessOptions,
        decode_image,
        options_from_meta,
        preprocess_face,
    )

    r = reader(run_dir, stamp)
    recorded = r.config.get("preprocess")
    options = options_from_meta({"preprocess": recorded}) if isinstance(recorded, dict) else PreprocessOptions()
    size = int((r.config.get("model") or {}).get("in_size") or options.size)
    options = dataclasses.replace(options, size=size, detect=True,
                                  on_no_face="center" if centre_crop else "skip")
    grey = decode_image(data, max_pixels=options.max_pixels)
    crop = preprocess_face(grey, options)
    box = None
    if crop.box is not None:
        x, y, w, h = (int(v) for v in crop.box)
        box = (x, y, x + w - 1, y + h - 1)
    return {"grey": grey, "image": np.asarray(crop.image), "box": box, "n_faces": int(crop.n_faces),
            "centre_crop": bool(crop.centre_crop), "messages": list(crop.messages or [])}


@st.cache_data(show_spinner=False, max_entries=32)
def analyze_face(run_dir: str, stamp: float, face_key: str, _face: np.ndarray, top: int = 8) -> dict:
    """Forward an aligned face through the run's model: probabilities, maps, Grad-CAM.

    ``face_key`` is a hash of ``_face`` (the array is not hashed by the cache).
    """
    from fercore.recording.face import analyze_face as run_analysis

    r = reader(run_dir, stamp)
    with _MODEL_LOCK:
        a = run_analysis(r, _face, top=top)
    top_filters = {k: [(int(f), float(v)) for f, v in fs] for k, fs in a.top_filters.items()}
    cams = [figures.resize(figures.overlay(_face, a.gradcam[c]), 128) for c in a.class_names]
    maps = {layer: [figures.png_bytes(figures.resize(figures.overlay(_face, acts[f]), 128)) for f, _ in top_filters[layer][:8]]
            for layer, acts in a.activations.items()}
    return {"probs": np.asarray(a.probs, dtype=float), "class_names": list(a.class_names), "pred": int(a.pred),
            "top_filters": top_filters,
            "map_shapes": {k: tuple(int(d) for d in np.shape(v)) for k, v in a.activations.items()},
            "gradcam_png": [figures.png_bytes(c) for c in cams],
            "gradcam_tile": figures.png_bytes(figures.tile(cams, cols=len(cams))),
            "maps_png": maps}


def array_key(a: np.ndarray) -> str:
    """A short content hash of an array (cache key for arrays that are not hashed)."""
    return hashlib.sha1(np.ascontiguousarray(a).tobytes() + str(a.shape).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------- rebuilding
def rebuild_records(run_dir: str, progress) -> None:
    """Record and analyse the run again (the "rebuild" button), and its null network when it has
    one; clears cached readers after."""
    from fercore.pipeline import refresh_records

    with _BUILD_LOCK:
        refresh_records(run_dir, progress=progress)
        if (Path(run_dir) / "null" / NULL_KIND / "config.json").exists():
            # the null must be recorded on the same data as the run (it is re-recorded when the
            # data set changed, and found cached otherwise)
            from fercore.analysis.nulls import ensure_null

            ensure_null(run_dir, kind=NULL_KIND, progress=progress)
    st.cache_resource.clear()
    st.cache_data.clear()


def build_default(progress) -> str:
    """Build the embedded default run (phantom, train, record, analyse, untrained null network)."""
    from fercore.pipeline import build_default as build

    with _BUILD_LOCK:
        run_dir = build(progress=progress)
    list_runs.clear()
    return str(run_dir)
