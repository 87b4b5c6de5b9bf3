"""Record what every filter of a trained run responds to: one streaming pass, one file.

:func:`record` runs the run's fold-0 weights (the lowest trained round) over the whole FaceSet
the run was trained on (or another one), with forward hooks on the chosen conv layers, and keeps
per filter the top-K images by spatial-max activation (plus a *distinct* top-K with at most one
image per group: sequence, else subject), and per image and filter the maximum activation (an
N x F float16 matrix). The pass runs the conv stack up to the deepest recorded layer only (the
classifier adds nothing to the records); a batch is merged into a filter's lists only where it
beats the list's K-th score, and the argmax position is computed only there. Memory does not
grow with N beyond that matrix. A second small pass over only the top-K images (a forward pass
up to the deepest layer's input, for the max-pool switches) cuts each entry's receptive-field
patch and computes its Zeiler-Fergus deconvnet projection. Everything goes into
``<run_dir>/records.h5`` (``docs/records.md``), written under a temporary name and renamed.

Note: the images of the folds the recorded weights were trained (and validated) on are in the
records too; only the weights' test fold was unseen by the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fercore.data.faceset import FaceSet
from fercore.recording.deconv import deconv_project, forward_switches, run_features
from fercore.recording.hooks import LayerCapture
from fercore.recording.streaming import RunningDistinctTopK, RunningTopK
from fercore.store.faceset_h5 import load_faceset
from fercore.store.records_h5 import (
    RECORDS_SCHEMA,
    RecordsFileError,
    read_records_header,
    write_records,
)
from fercore.training.inputs import check_method, normalize, to_input
from fercore.training.models import FERNet, conv_layers, layer_geometry, resolve_layer
from fercore.util import Progress, no_progress

__all__ = ["DEFAULT_K", "MAX_K", "record", "record_model"]

DEFAULT_K = 16
MAX_K = 1000
_TOPK_LISTS = ("topk", "topk_distinct")


def _check_k(k) -> int:
    if not isinstance(k, int | np.integer) or not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k: expected an integer from 1 to {MAX_K} (top images per filter), got {k!r}")
    return int(k)


def _check_layers(model: FERNet, layers) -> list[str]:
    convs = conv_layers(model)
    if layers is None or len(layers) == 0:
        return convs
    out = []
    for name in layers:
        resolve_layer(model, name)
        if name not in convs:
            raise ValueError(f"layers: {name!r} is not a conv layer; conv layers are {', '.join(convs)}")
        if name not in out:
            out.append(name)
    return sorted(out, key=convs.index)


@dataclass
class _LayerState:
    name: str
    n_filters: int
    map_w: int
    max_act: np.ndarray  # (N, F) float16
    topk: RunningTopK
    distinct: RunningDistinctTopK


def record_model(model: FERNet, faceset: FaceSet, path: str | Path, *, normalize_method: str,
                 k: int = DEFAULT_K, layers: list[str] | None = None, batch_size: int = 128,
                 attrs: dict | None = None, progress: Progress | None = None) -> Path:
    """Record ``model`` over ``faceset`` into ``path`` (the loop driver behind :func:`record`).

    Parameters
    ----------
    model : FERNet
    faceset : FaceSet
        N images (any square size; resized to the model's input like in training).
    path : path
        The records file to write (temporary name, then rename).
    normalize_method : str
        Pixel normalisation of the model's training (:mod:`fercore.normalize`).
    k : int
        Top images kept per filter (1..1000).
    layers : list of str, optional
        Conv layers to record (dotted names); all conv layers when None.
    batch_size : int
    attrs : dict, optional
        Extra root attributes (run name, faceset path, fold ...).
    progress : callable, optional
        ``progress(done, total, stage)``; stages ``record`` then ``deconv``. An exception it
        raises aborts the recording and leaves any previous file intact.

    Returns
    -------
    Path
    """
    k = _check_k(k)
    check_method(normalize_method)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    progress = progress or no_progress
    layers = _check_layers(model, layers)
    n = len(faceset)
    if n == 0:
        raise ValueError("record: the FaceSet has no images")
    in_size = model.spec.in_size
    groups = faceset.groups
    group_code: dict[str, int] = {}  # grows with the number of groups, not of images
    geos = {name: layer_geometry(model, name) for name in layers}
    states: dict[str, _LayerState] = {}
    for name in layers:
        nf = resolve_layer(model, name).out_channels
        states[name] = _LayerState(name, nf, geos[name].out_size, np.zeros((n, nf), np.float16),
                                   RunningTopK(k), RunningDistinctTopK(k))

    # pass 1: stream every image once, through the conv stack up to the deepest recorded layer
    # (the classifier adds nothing to the records)
    deepest = layers[-1]
    progress(0, n, "record")
    with torch.no_grad(), LayerCapture(model, layers) as cap:
        for s in range(0, n, batch_size):
            e = min(s + batch_size, n)
            run_features(model, to_input(faceset.images[s:e], in_size=in_size, method=normalize_method),
                         deepest, through=True, with_switches=False)
            codes = np.array([group_code.setdefault(g, len(group_code)) for g in groups[s:e]], np.int64)
            for name, st in states.items():
                a = cap.outputs[name].flatten(2)  # (B, F, h*w)
                mx = a.amax(dim=2).numpy()  # (B, F) float32
                st.max_act[s:e] = mx
                arg = _argmax_where(a, mx, st.distinct.threshold())
                st.topk.add(mx, payload=arg)
                st.distinct.add(mx, codes, payload=arg)
            progress(e, n, "record")

    # pass 2: patches and deconvnet projections of the top-K images only
    lists = {}
    for name, st in states.items():
        for key, stat in (("topk", st.topk), ("topk_distinct", st.distinct)):
            lists[(name, key)] = _topk_arrays(stat, st.map_w, geos[name])
    _fill_patches_and_deconv(model, faceset, lists, geos, in_size=in_size, method=normalize_method,
                             batch_size=max(8, min(batch_size, 128)), progress=progress)

    fs_hash = faceset.content_hash()
    head = {
        "k": k, "n": n, "layers": layers, "image_size": in_size, "normalize": normalize_method,
        "class_names": list(faceset.class_names), "au_ids": faceset.au_ids.tolist(),
        "faceset_hash": fs_hash, "batch_size": int(batch_size),
    }
    head.update(attrs or {})
    # views of the FaceSet's arrays (no per-image copies); groups and subjects stay in the FaceSet file
    data = {"labels": faceset.labels, "aus": faceset.aus, "au_ids": faceset.au_ids, "folds": faceset.folds,
            "landmarks": _scaled_landmarks(faceset, in_size)}
    out_layers = {}
    for name, st in states.items():
        g = geos[name]
        out_layers[name] = {
            "attrs": {"layer": name, "n_filters": st.n_filters, "rf": g.rf, "jump": g.jump, "start": g.start,
                      "out_size": g.out_size, "k": k, "n": n},
            "max_act": st.max_act,
            "topk": lists[(name, "topk")],
            "topk_distinct": lists[(name, "topk_distinct")],
        }
    write_records(path, attrs=head, data=data, layers=out_layers)
    return Path(path)


def _argmax_where(a: torch.Tensor, mx: np.ndarray, thr: np.ndarray | None) -> np.ndarray:
    """(B, F) flat argmax positions of the maps ``a`` (B, F, h*w), computed only where the spatial
    max ``mx`` can enter a top-K list (above ``thr``, the lower distinct list's threshold, which
    is at most the raw list's); -1 elsewhere (the statistics never read those)."""
    if thr is None:
        return a.argmax(dim=2).numpy()
    bi, fi = np.nonzero(mx > thr[None, :])
    out = np.full(mx.shape, -1, np.int64)
    if bi.size:
        sel = a[torch.from_numpy(bi), torch.from_numpy(fi)]  # (M, h*w)
        out[bi, fi] = sel.argmax(dim=1).numpy()
    return out


def _scaled_landmarks(fs: FaceSet, in_size: int) -> np.ndarray | None:
    """Landmarks in model-input pixels (the frame of the receptive-field boxes)."""
    if fs.landmarks is None:
        return None
    scale = in_size / fs.size
    return (fs.landmarks * scale).astype(np.float32) if scale != 1 else fs.landmarks


def _topk_arrays(stat: RunningTopK, map_w: int, geo) -> dict[str, np.ndarray]:
    vals, idx = stat.result()
    pay = stat.payload
    ok = idx >= 0
    row, col = np.divmod(pay, map_w)
    pos = np.stack([row, col], -1).astype(np.int32)
    box = geo.boxes(row, col)
    pos[~ok] = -1
    box[~ok] = -1
    nf, kk = idx.shape
    return {"index": idx.astype(np.int64), "activation": np.where(ok, vals, np.nan).astype(np.float32),
            "pos": pos, "box": box,
            "patch": np.zeros((nf, kk, geo.rf, geo.rf), np.uint8),
            "deconv": np.zeros((nf, kk, geo.rf, geo.rf), np.float16)}


def _fill_patches_and_deconv(model, fs: FaceSet, lists: dict, geos: dict, *, in_size: int, method: str,
                             batch_size: int, progress: Progress) -> None:
    """Cut the patch and compute the deconvnet projection of every top-K entry (both lists).

    A forward pass over only the images in some list, ``batch_size`` at a time (so memory does
    not depend on N or on the lists), keeps their max-pool switches up to the deepest layer; each
    list's entries on those images are projected together."""
    wanted = np.unique(np.concatenate([a["index"][a["index"] >= 0] for a in lists.values()]))
    deepest = max(geos, key=lambda name: conv_layers(model).index(name))
    total = len(wanted)
    progress(0, total, "deconv")
    with torch.no_grad():
        for s in range(0, total, batch_size):
            chunk = wanted[s:s + batch_size]
            unit = to_input(fs.images[chunk], in_size=in_size, method="none") + 0.5  # (B, 1, S, S) in [0, 1]
            x = normalize(unit, method)
            pix = np.clip(np.round(unit[:, 0].numpy() * 255.0), 0, 255).astype(np.uint8)  # (B, S, S)
            switches = forward_switches(model, x, deepest)
            for (name, key), arr in lists.items():  # per layer the raw list comes first
                fi, ki = np.nonzero(np.isin(arr["index"], chunk))
                if fi.size == 0:
                    continue
                local = np.searchsorted(chunk, arr["index"][fi, ki])
                arr["patch"][fi, ki] = _cut(pix, local, arr["box"][fi, ki], geos[name].rf)
                todo = np.ones(len(fi), bool)
                if key == "topk_distinct":  # an entry also in the raw list has the same projection
                    raw = lists[(name, "topk")]
                    same = raw["index"][fi] == arr["index"][fi, ki][:, None]  # (P, K)
                    hit = same.any(1)
                    kr = same.argmax(1)
                    arr["deconv"][fi[hit], ki[hit]] = raw["deconv"][fi[hit], kr[hit]]
                    todo = ~hit
                if todo.any():
                    f_, k_ = fi[todo], ki[todo]
                    proj = deconv_project(model, x, name, torch.from_numpy(local[todo]), torch.from_numpy(f_),
                                          torch.from_numpy(arr["pos"][f_, k_].astype(np.int64)),
                                          # Zeiler-Fergus project the rectified map: a negative maximum projects to 0
                                          torch.from_numpy(np.maximum(arr["activation"][f_, k_], 0)), switches=switches)
                    arr["deconv"][f_, k_] = proj.to(torch.float16).numpy()
            progress(min(s + batch_size, total), total, "deconv")


def _cut(pix: np.ndarray, local: np.ndarray, box: np.ndarray, rf: int) -> np.ndarray:
    """(P, rf, rf) uint8 patches of ``pix[local]`` under ``box`` (x0, y0, ...), zero outside the
    image (no padded copy of the images: only the P patches are allocated)."""
    size = pix.shape[-1]
    rows = box[:, 1, None] + np.arange(rf)[None]  # (P, rf)
    cols = box[:, 0, None] + np.arange(rf)[None]
    out = pix[local[:, None, None], np.clip(rows, 0, size - 1)[:, :, None], np.clip(cols, 0, size - 1)[:, None, :]]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    out[~inside] = 0
    return out


# --------------------------------------------------------------------------------------------
# The stage on a run directory


def record(run_dir, *, data=None, k: int = DEFAULT_K, layers: list[str] | None = None,
           batch_size: int = 128, progress: Progress | None = None) -> Path:
    """Record a trained run's filters into ``<run_dir>/records.h5`` (cached).

    Parameters
    ----------
    run_dir : path or str
        A run directory, a run name under ``runs_dir()`` or a unique prefix.
    data : path, optional
        A FaceSet file to record on; default the FaceSet the run was trained on.
    k : int
        Top images kept per filter (default 16, up to 1000).
    layers : list of str, optional
        Conv layers (dotted names); all when None.
    batch_size : int
    progress : callable, optional

    Returns
    -------
    Path
        The records file. It is not rebuilt when it already matches (same run, weights fold,
        data hash, k, layers and schema).
    """
    from fercore.store.layout import (
        load_config,
        records_path,
        resolve_run,
        run_faceset_path,
        trained_folds,
    )
    from fercore.training.models import load_model

    run_dir = resolve_run(run_dir)
    cfg = load_config(run_dir)
    folds = trained_folds(run_dir)
    if not folds:
        raise FileNotFoundError(f"{run_dir}: no weights/fold*.pt; finish training with `python -m fercore train`")
    fold = 0 if 0 in folds else folds[0]
    data_path = Path(data) if data is not None else run_faceset_path(run_dir)
    if not data_path.exists():
        raise FileNotFoundError(f"--data {data_path}: no such FaceSet file")
    from fercore.store.faceset_h5 import read_faceset_info

    info = read_faceset_info(data_path)
    model = load_model(run_dir, fold=fold)
    layer_list = _check_layers(model, layers)
    k = _check_k(k)
    out = records_path(run_dir)
    if out.exists():
        try:
            h = read_records_header(out)
            if (h.get("schema_version") == RECORDS_SCHEMA and h.get("run_hash") == cfg.get("run_hash")
                    and h.get("faceset_hash") == info["content_hash"] and h.get("k") == k
                    and list(h.get("layers", [])) == layer_list and h.get("fold") == fold):
                return out
        except RecordsFileError:
            pass  # unreadable: rebuild
    fs = load_faceset(data_path)
    method = cfg.get("normalize") or "standardize"
    attrs = {"run": run_dir.name, "run_hash": cfg.get("run_hash", ""), "run_dir": str(run_dir.resolve()),
             "faceset_path": str(data_path.resolve()), "fold": fold,
             "trained_on_run_faceset": data_path.resolve() == Path(cfg["faceset"]["path"]).resolve(),
             "weights": f"weights/fold{fold}.pt",
             "data_note": ("images of folds other than the weights' test fold were training/validation "
                           "images of this model")}
    return record_model(model, fs, out, normalize_method=method, k=k, layers=layer_list,
                        batch_size=batch_size, attrs=attrs, progress=progress)
