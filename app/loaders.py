"""Every cached loader of the dashboard, in one module: wrappers around fercore's read API.

Views call these functions and lay out what they return; no rule of the analysis lives here (what
counts as AU-selective, which AU a filter is judged by, how an upload is preprocessed: all in
fercore). ``st.cache_resource`` holds objects shared by every browser session (run readers,
FaceSets); ``st.cache_data`` holds arrays, tables and figures keyed by their (hashable)
arguments. Arguments whose names start with ``_`` are not hashed.

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

from app import figures

# The model of a run is shared by every browser connected to the server; a forward pass must not
# interleave with another one on the same module objects.
_MODEL_LOCK = threading.Lock()
# Two browser tabs opening an empty cache build the default once: the second waits, then finds
# every stage cached.
_BUILD_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------------- runs
@st.cache_data(ttl=5, show_spinner=False)
def list_runs() -> list[dict]:
    """Every trained run in the cache (runs still training are left out), recorded runs first,
    newest first: ``{"run_dir", "name", "dataset", "model", "label"}`` per run."""
    from fercore.store.layout import list_runs as runs

    done = [r for r in runs() if r.mean_acc is not None]
    done.sort(key=lambda r: (r.recorded, (r.dir / "metrics.json").stat().st_mtime), reverse=True)
    out = []
    for r in done:
        model = _model_name(r.dir)
        out.append({"run_dir": str(r.dir), "name": r.name, "dataset": r.dataset, "model": model,
                    "label": f"{r.name} · {r.dataset} · {model}"})
    return out


def _model_name(run_dir: Path) -> str:
    from fercore.store.layout import load_config

    spec = load_config(run_dir)["model"]
    channels = spec.get("channels")
    shape = "conv " + "/".join(map(str, channels)) if channels else f"width {spec.get('width', 1.0):g}"
    extra = ", ".join(x for x in (shape, f"{spec['in_size']}px" if spec.get("in_size") else "",
                                   "+ AU head" if spec.get("n_aus") else "") if x)
    return f"{spec.get('arch', '?')} ({extra})"


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
        ``confusion`` ((C, C) counts or None), ``curves`` (long DataFrame fold/epoch/series/value
        or None).
    """
    m = reader(run_dir, stamp).metrics or {}
    folds = [f for f in m.get("folds", []) if isinstance(f, dict)]
    table = pd.DataFrame([{"fold": f.get("fold", i), "test accuracy": f.get("test_acc"),
                           "best validation accuracy": f.get("best_val_acc"), "best epoch": f.get("best_epoch"),
                           "test images": f.get("n_test")} for i, f in enumerate(folds)])
    curves = [{"fold": f.get("fold", i), "epoch": e + 1, "series": series, "value": float(v)}
              for i, f in enumerate(folds) for series, values in (f.get("curves") or {}).items()
              for e, v in enumerate(values) if isinstance(v, int | float)]
    protocol = m.get("protocol")
    if isinstance(protocol, dict):
        text = str(protocol.get("text") or "; ".join(f"{k}: {v}" for k, v in protocol.items()))
        items = {k: v for k, v in protocol.items() if k != "text"}
    else:
        text, items = (str(protocol) if protocol else "not stated in metrics.json"), {}
    conf = m.get("confusion")
    return {"protocol": text, "protocol_items": items, "folds": table, "mean": m.get("mean_test_acc"),
            "sd": m.get("sd_test_acc"), "confusion": None if conf is None else np.asarray(conf, dtype=float),
            "curves": pd.DataFrame(curves) if curves else None}


# ------------------------------------------------------------------------------------ analysis
@st.cache_data(show_spinner=False, max_entries=64)
def topk(run_dir: str, stamp: float, layer: str, f: int, distinct: bool) -> dict:
    """The filter's top-K (the reader's TopK) as a plain dict of arrays."""
    t = reader(run_dir, stamp).topk(layer, int(f), distinct=distinct)
    return {k: np.asarray(getattr(t, k)) for k in ("index", "activation", "pos", "box", "patch", "deconv")}


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
    """The funnel for one filter and AU, stage by stage (:func:`fercore.analysis.criteria.verdict`)."""
    from fercore.analysis.criteria import verdict as rule

    ev = evidence(run_dir, stamp, layer)
    return rule({**ev, "spatial": ev["spatial_distinct"]}, criteria(run_dir, stamp), int(f), int(a))


@st.cache_data(show_spinner=False, max_entries=16)
def evidence_table(run_dir: str, stamp: float, layers: tuple[str, ...]) -> pd.DataFrame:
    """The ranked filter × AU table of the layers (what ``analyze --csv`` writes)."""
    from fercore.analysis.summary import CSV_COLUMNS, evidence_rows

    rows = evidence_rows(reader(run_dir, stamp), list(layers))
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def evidence_csv(run_dir: str, stamp: float, layers: tuple[str, ...]) -> str:
    from fercore.analysis.summary import evidence_csv as to_csv
    from fercore.analysis.summary import evidence_rows

    return to_csv(evidence_rows(reader(run_dir, stamp), list(layers)))


@st.cache_data(show_spinner=False, max_entries=16)
def au_labels(run_dir: str, stamp: float) -> list[str]:
    """``AU12 lip corner puller`` style labels for the run's AU columns."""
    from fercore.data.facs import au_name

    return [au_name(int(a)) for a in reader(run_dir, stamp).au_ids]


#: What the FAU map can show: label -> (stored figure, unit shown).
STATISTICS = {
    "distinct top-K AU share": "share_distinct",
    "raw top-K AU share": "share_raw",
    "excess over the emotions' prediction": "excess",
    "within-emotion test, −log10 q": "q_emotion",
    "correlation with the AU": "r_au",
    "partial correlation given the emotion": "r_partial",
    "share of maxima in the AU's region": "spatial_distinct",
}


@st.cache_data(show_spinner=False, max_entries=32)
def fau_heatmap(run_dir: str, stamp: float, layer: str, stat_label: str, order_by: str):
    """The FAU map of a layer: (figure, data frame of the values shown, name of the values).

    Rows are filters in the stored order ``order_by`` ("evidence", "cluster", "index"); each row
    label ends in the deepest stage of the funnel the filter reaches; cells where the pair passes
    the beyond-emotion stage are marked."""
    ev = evidence(run_dir, stamp, layer)
    key = STATISTICS[stat_label]
    order = filter_order(run_dir, stamp, layer, order_by)
    au_short = [f"AU{int(a)}" for a in ev["au_ids"]]
    z = np.asarray(ev[key], dtype=float)
    if key == "q_emotion":
        z = figures.neg_log10(z)
    z = z[order]
    depth = np.asarray(ev["stage"]).max(axis=1)
    ylabels = [f"#{int(f)} {figures.STAGE_MARKS[int(depth[f])]}" for f in order]
    marks = np.asarray(ev["beyond_emotion"])[order]
    fig = figures.heatmap(z, x=au_short, y=ylabels, marks=marks, title=f"{layer}: filters × AUs — {stat_label}",
                          zlabel=stat_label, diverging=key in ("excess", "r_au", "r_partial"))
    df = pd.DataFrame(z, index=[f"filter {int(f)}" for f in order], columns=au_short)
    df.insert(0, "stage reached", [figures.STAGE_NAMES[int(depth[f])] for f in order])
    return fig, df, stat_label


def filter_order(run_dir: str, stamp: float, layer: str, by: str) -> np.ndarray:
    """Filter indices in a stored order: "evidence" (deepest stage first), "cluster" (filters with
    the same preferred AUs together) or "index"."""
    ev = evidence(run_dir, stamp, layer)
    if by == "evidence":
        return np.asarray(ev["order_evidence"])
    if by == "cluster":
        return np.asarray(ev["order_cluster"])
    return np.arange(ev.n_filters)


@st.cache_data(show_spinner=False, max_entries=16)
def cooc_heatmap(run_dir: str, stamp: float):
    """The data set's AU × AU co-occurrence: (figure, data frame)."""
    cooc = reader(run_dir, stamp).analysis_arrays()["au_cooc"]
    au_short = [f"AU{int(a)}" for a in reader(run_dir, stamp).au_ids]
    fig = figures.heatmap(cooc, x=au_short, y=au_short, title="P(column AU present | row AU present)",
                          zlabel="co-occurrence", height=560)
    return fig, pd.DataFrame(cooc, index=au_short, columns=au_short)


@st.cache_data(show_spinner=False, max_entries=16)
def filter_grid(run_dir: str, stamp: float, layer: str, kind: str, size: int = 48) -> list[bytes]:
    """PNG bytes per filter (index = filter): its top patch ("patch") or the deconvnet
    projection of its top activation ("deconv"), ``size`` pixels square."""
    r = reader(run_dir, stamp)
    arrays = r.topk_arrays(layer)
    tiles = []
    for f in range(len(arrays["index"])):
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
    """Everything the Filters view shows of one filter's top-K, drawn once and cached.

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
    size_in = int(reader(run_dir, stamp).header.get("image_size", fs.size))
    out = {"patches": [], "deconv": [], "sources": [], "captions": [], "source_captions": []}
    src = []
    for i, idx in enumerate(t["index"]):
        if idx < 0:
            continue
        out["patches"].append(figures.png_bytes(figures.resize(t["patch"][i], 96)))
        out["deconv"].append(figures.png_bytes(figures.resize(figures.to_uint8(t["deconv"][i]), 96)))
        face = figures.resize(fs.images[idx], size_in)
        img = figures.draw_box(face, t["box"][i], scale=scale)
        src.append(img)
        out["sources"].append(figures.png_bytes(img))
        label = fs.class_names[fs.labels[idx]] if fs.labels[idx] >= 0 else "unlabelled"
        present = [f"AU{int(a)}" for a, v in zip(fs.au_ids, fs.aus[idx], strict=True) if v > 0]
        out["captions"].append(f"act {t['activation'][i]:.3g}")
        out["source_captions"].append(f"#{idx} {label}: " + (" ".join(present) if present else "no AU"))
    out["sources_png"] = figures.png_bytes(figures.tile(src, cols=8)) if src else b""
    out["n"] = len(src)
    return out


# ------------------------------------------------------------------------------------ the null
def null_kind(run_dir: str, stamp: float) -> str:
    """The null network the stored analysis compared with ("" when none)."""
    return str(reader(run_dir, stamp).analysis_info().get("null") or "")


def build_null(run_dir: str, progress, kind: str = "untrained") -> None:
    """Build the run's null network and analyse the run against it (the "Build the null
    network" button), then drop the cached readers."""
    from fercore.analysis.analyze import analyze

    with _BUILD_LOCK:
        analyze(run_dir, null=kind, progress=progress)
    st.cache_resource.clear()
    st.cache_data.clear()


# -------------------------------------------------------------------------------------- upload
@st.cache_data(show_spinner=False, max_entries=32)
def decode_and_crop(data: bytes, run_dir: str, stamp: float, centre_crop: bool = False) -> dict:
    """Decode an uploaded file and cut the face out as the run's data was preprocessed
    (:func:`fercore.data.preprocess.upload_options`).

    Returns
    -------
    dict
        ``grey`` (H, W) uint8 decoded photo, ``image`` (S, S) uint8 aligned face, ``box``
        (x0, y0, x1, y1) inclusive or None, ``n_faces``, ``centre_crop``, ``messages``.

    Raises
    ------
    fercore.data.preprocess.ImageDecodeError
        The bytes are not a readable image (the message says what and what to do).
    fercore.data.preprocess.NoFaceError
        No face found and ``centre_crop`` is False.
    """
    from fercore.data.preprocess import decode_image, preprocess_face, upload_options

    r = reader(run_dir, stamp)
    options = upload_options(r.config.get("preprocess"), size=int(r.config["model"]["in_size"]),
                             centre_crop=centre_crop)
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
    """Forward an aligned face through the run's model: probabilities, maps, Grad-CAM, and each
    most active filter's judged AU. ``face_key`` is a hash of ``_face`` (not hashed itself)."""
    from fercore.recording.face import analyze_face as run_analysis

    r = reader(run_dir, stamp)
    with _MODEL_LOCK:
        a = run_analysis(r, _face, top=top)
    top_filters = {k: [(int(f), float(v)) for f, v in fs] for k, fs in a.top_filters.items()}
    cams = [figures.resize(figures.overlay(_face, a.gradcam[c]), 128) for c in a.class_names]
    maps = {layer: [figures.png_bytes(figures.resize(figures.overlay(_face, acts[f]), 128)) for f, _ in top_filters[layer][:8]]
            for layer, acts in a.activations.items()}
    return {"probs": np.asarray(a.probs, dtype=float), "class_names": list(a.class_names), "pred": int(a.pred),
            "top_filters": top_filters, "filter_aus": a.filter_aus,
            "map_shapes": {k: tuple(int(d) for d in np.shape(v)) for k, v in a.activations.items()},
            "gradcam_png": [figures.png_bytes(c) for c in cams],
            "gradcam_tile": figures.png_bytes(figures.tile(cams, cols=len(cams))),
            "maps_png": maps}


def array_key(a: np.ndarray) -> str:
    """A short content hash of an array (cache key for arrays that are not hashed)."""
    return hashlib.sha1(np.ascontiguousarray(a).tobytes() + str(a.shape).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------- rebuilding
def rebuild_records(run_dir: str, progress) -> None:
    """Record and analyse the run again (the "rebuild" button), keeping its k and layers and the
    null it was compared with; clears cached readers after."""
    from fercore.pipeline import refresh_records
    from fercore.store.layout import null_dir

    null = "untrained" if (null_dir(run_dir, "untrained") / "config.json").exists() else None
    with _BUILD_LOCK:
        refresh_records(run_dir, null=null, progress=progress)
    st.cache_resource.clear()
    st.cache_data.clear()


def build_default(progress) -> str:
    """Build the embedded default run (phantom, train, record, null network, analysis)."""
    from fercore.pipeline import build_default as build

    with _BUILD_LOCK:
        run_dir = build(progress=progress)
    list_runs.clear()
    return str(run_dir)
