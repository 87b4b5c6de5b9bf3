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

Any other network (:mod:`fercore.training.network`: imported, or any ``nn.Module`` with its
:class:`~fercore.training.inputs.InputSpec`) takes the one walk for the rest: forward hooks on the
recorded modules end the pass after the deepest one (:class:`fercore.recording.hooks.LayerCapture`),
the receptive fields are measured on the network (:mod:`fercore.recording.fields`), and the
projections are guided backpropagation (:mod:`fercore.recording.guided`); the records say which
method made them.

Note: the images of the folds the recorded weights were trained (and validated) on are in the
records too; only the weights' test fold was unseen by the model.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fercore.data.faceset import FaceSet
from fercore.recording.deconv import (
    is_pool2x2,
    pool2x2,
)
from fercore.recording.fields import measure_geometry
from fercore.recording.hooks import LayerCapture
from fercore.recording.streaming import RunningDistinctTopK, RunningTopK
from fercore.store.faceset_h5 import load_faceset
from fercore.store.records_h5 import (
    RECORDS_SCHEMA,
    RecordsFileError,
    read_records_header,
    write_records,
)
from fercore.training import distributed
from fercore.training.inputs import InputSpec, check_method, to_input
from fercore.training.loop import default_device
from fercore.training.models import (
    FERNet,
    feature_modules,
    layer_geometry,
    resolve_layer,
)
from fercore.training.network import fernet_layers, module_layers
from fercore.util import Progress, no_progress

__all__ = ["DEFAULT_K", "MAX_K", "record", "record_model"]

DEFAULT_K = 16
MAX_K = 1000
_TOPK_LISTS = ("topk", "topk_distinct")


def _check_k(k) -> int:
    if not isinstance(k, int | np.integer) or not 1 <= int(k) <= MAX_K:
        raise ValueError(f"k: expected an integer from 1 to {MAX_K} (top images per filter), got {k!r}")
    return int(k)


@dataclass
class _LayerState:
    name: str
    n_filters: int
    map_w: int
    max_act: np.ndarray  # (n, F) float16: this process's images
    topk: RunningTopK
    distinct: RunningDistinctTopK


def record_model(model: nn.Module, faceset: FaceSet, path: str | Path, *, normalize_method: str | None = None,
                 inputs: InputSpec | None = None, k: int = DEFAULT_K, layers: list[str] | None = None,
                 batch_size: int = 128,
                 attrs: dict | None = None, progress: Progress | None = None,
                 device: str | torch.device | None = None, projections: str = "none") -> Path:
    """Record ``model`` over ``faceset`` into ``path`` (the loop driver behind :func:`record`).

    Under ``torchrun`` (:func:`fercore.training.distributed.context`) every process streams its
    contiguous share of the images and cuts the patches of the list entries on them; the lists are
    merged exactly (the single-process result, ties to the earlier image), the per-image maxima
    gathered in order, and rank 0 writes the file. Every process must call it with the same
    arguments.

    Parameters
    ----------
    model : nn.Module
        A :class:`~fercore.training.models.FERNet` (its fast path: ReLU and 2 x 2 pools fused,
        exact geometry from the layer chain, deconvnet projections) or any module (hooks, measured
        geometry, guided backpropagation).
    faceset : FaceSet
        N images (any square size; resized to the model's input like in training).
    path : path
        The records file to write (temporary name, then rename).
    normalize_method : str, optional
        Pixel normalisation of a FERNet's training (:mod:`fercore.normalize`).
    inputs : InputSpec, optional
        How a face becomes the network's input; required for a module other than FERNet.
    k : int
        Top images kept per filter (1..1000).
    layers : list of str, optional
        Layers to record (dotted names): conv layers of a FERNet, any modules of another network;
        every conv layer (in forward order) when None.
    batch_size : int
    attrs : dict, optional
        Extra root attributes (run name, faceset path, fold ...).
    progress : callable, optional
        ``progress(done, total, stage)``; stages ``record``, ``patches`` (and ``project``). An
        exception it raises aborts the recording and leaves any previous file intact. Rank 0 only
        reports.
    device : str or torch.device, optional
        Where the network runs: default CUDA when present (under ``torchrun`` the process's own
        GPU), else the CPU. The model is moved there and back.
    projections : {"none", "all"}
        The projections of the list entries are made on demand and cached beside the records
        (:mod:`fercore.recording.project`); ``"all"`` computes every one of them now, after the
        records are written (``record --projections all``).

    Returns
    -------
    Path
    """
    k = _check_k(k)
    if projections not in ("none", "all"):
        raise ValueError(f"projections: expected 'none' (made on demand) or 'all' (now), got {projections!r}")
    fernet = isinstance(model, FERNet)
    if fernet:
        if normalize_method is None:
            normalize_method = inputs.normalize if inputs is not None else None
        if normalize_method is None:
            raise ValueError("record_model: normalize_method (the FERNet's pixel normalisation) is required")
        check_method(normalize_method)
        spec = InputSpec(size=int(model.spec.in_size), channels=1, normalize=normalize_method)
    else:
        if inputs is None:
            raise ValueError("record_model: inputs (the network's InputSpec: size, channels, normalisation) is "
                             "required for a network other than FERNet")
        spec = inputs
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    progress = progress or no_progress
    layers = fernet_layers(model, layers) if fernet else module_layers(model, layers, spec)
    n = len(faceset)
    if n == 0:
        raise ValueError("record: the FaceSet has no images")
    ctx = distributed.context()
    if ctx is not None and not ctx.is_main:
        progress = no_progress
    dev = torch.device(device) if device is not None else (ctx.device if ctx is not None else default_device())
    start, end = distributed.shard(n, ctx.rank, ctx.world_size) if ctx is not None else (0, n)
    world = ctx.world_size if ctx is not None else 1
    in_size = spec.size
    groups = faceset.groups
    group_code: dict[str, int] = {}  # grows with the number of groups, not of images
    home = next(iter(model.parameters()), torch.zeros(0)).device
    was_training = model.training
    model.to(dev).eval()
    if fernet:
        geos = {name: layer_geometry(model, name) for name in layers}
        methods = {name: "layer chain" for name in layers}
        widths = {name: resolve_layer(model, name).out_channels for name in layers}
    else:
        measured = measure_geometry(model, layers, size=in_size, channels=spec.channels, device=dev)
        geos = {name: g for name, (g, _) in measured.items()}
        methods = {name: m for name, (_, m) in measured.items()}
        widths = _widths(model, layers, spec, dev)
    states: dict[str, _LayerState] = {}
    for name in layers:
        nf = widths[name]
        states[name] = _LayerState(name, nf, geos[name].out_size, np.zeros((end - start, nf), np.float16),
                                   RunningTopK(k, start=start), RunningDistinctTopK(k, start=start))
    capture = None if fernet else LayerCapture(model, layers, stop=True)
    try:
        # pass 1: stream every image once, through the conv stack up to the deepest recorded layer
        # (the classifier adds nothing to the records)
        progress(0, n, "record")
        with torch.no_grad(), capture or contextlib.nullcontext():
            for s in range(start, end, batch_size):
                e = min(s + batch_size, end)
                x = spec.prepare(faceset.images[s:e]).to(dev)
                if fernet:
                    maps = _stream_forward(model, x, layers)
                else:
                    capture.run(x)
                    maps = {name: _map_and_max(capture.outputs[name]) for name in layers}
                codes = np.array([group_code.setdefault(g, len(group_code)) for g in groups[s:e]], np.int64)
                for name, st in states.items():
                    a, mx_t = maps[name]
                    mx = mx_t.cpu().numpy()  # (B, F) float32
                    st.max_act[s - start:e - start] = mx
                    arg = _argmax_where(a.flatten(2), mx, st.distinct.threshold())
                    st.topk.add(mx, payload=arg)
                    st.distinct.add(mx, codes, payload=arg)

                progress(min(n, start + (e - start) * world), n, "record")
        if ctx is not None:
            for st in states.values():
                st.topk, st.distinct = _merge_lists(ctx, st.topk, st.distinct, groups, st.n_filters)

        # pass 2: the patches of the top-K images only (this process's); no network runs
        frames = {name: "box" if fernet or geos[name].rf <= in_size else "image" for name in layers}
        lists = {}
        for name, st in states.items():
            side = geos[name].rf if frames[name] == "box" else in_size
            for key, stat in (("topk", st.topk), ("topk_distinct", st.distinct)):
                lists[(name, key)] = _topk_arrays(stat, st.map_w, geos[name], side=side)
        _fill_patches(faceset, lists, geos, frames, in_size=in_size, batch_size=max(8, min(batch_size, 256)),
                      progress=progress, own=(start, end))
    finally:
        model.to(home).train(was_training)
    max_acts = {name: st.max_act for name, st in states.items()}
    if ctx is not None:
        max_acts = _gather_results(ctx, lists, max_acts, n)
        if not ctx.is_main:
            distributed.barrier(ctx)  # rank 0 writes the file
            return Path(path)

    fs_hash = faceset.content_hash()
    projection = "deconvnet" if fernet else "guided_backprop"
    head = {
        "k": k, "n": n, "layers": layers, "image_size": in_size, "normalize": spec.normalize,
        "input": spec.to_dict(), "projection": projection,
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
                      "out_size": g.out_size, "k": k, "n": n, "projection": projection,
                      "rf_method": methods[name], "patch_frame": frames[name]},
            "max_act": max_acts[name],
            "topk": lists[(name, "topk")],
            "topk_distinct": lists[(name, "topk_distinct")],
        }
    try:
        write_records(path, attrs=head, data=data, layers=out_layers)
    finally:
        distributed.barrier(ctx)
    if projections == "all":
        if ctx is None or ctx.is_main:
            _project_all(model, path, spec, layers, faceset, progress)
    return Path(path)


def _project_all(model: nn.Module, path: Path, spec: InputSpec, layers: list[str], faceset: FaceSet,
                 progress: Progress) -> None:
    """Every projection of the records just written, into their cache (``projections="all"``)."""
    from fercore.recording.project import ensure_projections
    from fercore.store.reader import RunReader
    from fercore.training.network import Network

    reader = RunReader(Path(path).parent, records_file=Path(path).name)
    net = Network(module=model, inputs=spec, class_names=reader.class_names, layers=tuple(layers),
                  imported=not isinstance(model, FERNet))
    ensure_projections(reader, network=net, faceset=faceset, progress=progress)


def _stream_forward(model: FERNet, x: torch.Tensor, layers: list[str]):
    """Run ``model.features`` up to the deepest of ``layers``.

    The same values as calling the modules, computed faster: a ReLU followed by a 2 x 2 max-pool
    runs as the pool first (:func:`fercore.recording.deconv.pool2x2`), then the ReLU on the 4x
    smaller map (max and ReLU commute); a recorded conv's spatial maximum is read off that pooled
    map when the pool's windows cover the whole conv map (even sides).

    Returns
    -------
    dict of layer to ((B, F, h, w) output, (B, F) spatial maximum)
    """
    want = set(layers)
    chain = feature_modules(model, layers[-1])
    out: dict[str, list] = {}
    h = x
    i = 0
    while i < len(chain):
        name, m = chain[i]
        if isinstance(m, nn.Conv2d):
            h = m(h)
            if name in want:
                out[name] = [h, None]
        elif isinstance(m, nn.ReLU):
            if i + 1 < len(chain) and is_pool2x2(chain[i + 1][1]):
                pre, _ = pool2x2(h)
                prev = chain[i - 1][0] if i > 0 else None
                if prev in out and out[prev][1] is None and out[prev][0] is h \
                        and h.shape[-2] % 2 == 0 and h.shape[-1] % 2 == 0:
                    out[prev][1] = pre.amax(dim=(2, 3))
                h = F.relu(pre)
                i += 2
                continue
            h = F.relu(h)  # not in place: a recorded map may be this tensor
        elif isinstance(m, nn.MaxPool2d):
            h = pool2x2(h)[0] if is_pool2x2(m) else m(h)
        else:
            h = m(h)
        i += 1
    for v in out.values():
        if v[1] is None:
            v[1] = v[0].amax(dim=(2, 3))
    return {name: (a, mx) for name, (a, mx) in out.items()}


def _argmax_where(a: torch.Tensor, mx: np.ndarray, thr: np.ndarray | None) -> np.ndarray:
    """(B, F) flat argmax positions of the maps ``a`` (B, F, h*w), computed only where the spatial
    max ``mx`` can enter a top-K list (above ``thr``, the lower distinct list's threshold, which
    is at most the raw list's); -1 elsewhere (the statistics never read those)."""
    if thr is None:
        return a.argmax(dim=2).cpu().numpy()
    bi, fi = np.nonzero(mx > thr[None, :])
    out = np.full(mx.shape, -1, np.int64)
    if bi.size:
        sel = a[torch.from_numpy(bi).to(a.device), torch.from_numpy(fi).to(a.device)]  # (M, h*w)
        out[bi, fi] = sel.argmax(dim=1).cpu().numpy()
    return out


def _merge_lists(ctx, topk: RunningTopK, distinct: RunningDistinctTopK, groups: np.ndarray, nf: int):
    """Every process's lists (each over its contiguous share of the images) -> the lists of the
    whole data, on every process: what one process streaming everything keeps (tested)."""
    merged = []
    for stat in (topk, distinct):
        if stat.values is None:  # a process without images (fewer images than processes)
            arrays = [np.zeros((nf, 0), np.float32), np.zeros((nf, 0), np.int64), np.zeros((nf, 0), np.int64)]
        else:
            arrays = [stat.values.astype(np.float32), stat.index.astype(np.int64), stat.payload.astype(np.int64)]
        # exchanged (k', F): the list length (axis 0 of the exchange) may differ between processes
        got = [distributed.all_gather_arrays(ctx, np.ascontiguousarray(a.T)) for a in arrays]
        parts = []
        for r in range(ctx.world_size):
            part = type(stat)(stat.k)
            vals, idx, pay = (g[r].T for g in got)
            if vals.shape[1]:
                part.values, part.index, part.payload = np.ascontiguousarray(vals), np.ascontiguousarray(idx), \
                    np.ascontiguousarray(pay)
                if isinstance(part, RunningDistinctTopK):  # group codes that mean the same everywhere
                    part.group = np.where(part.index >= 0, 0, -1)
            part.count = stat.count if r == ctx.rank else 0
            parts.append(part)
        if isinstance(stat, RunningDistinctTopK):
            _global_group_codes(parts, groups)
        m = type(stat).merged(parts)
        m.count = len(groups)
        merged.append(m)
    return merged[0], merged[1]


def _global_group_codes(parts: list[RunningDistinctTopK], groups: np.ndarray) -> None:
    """Set each part's group codes from the listed images' groups, the same on every process
    (each process coded the groups of its own images in its own order)."""
    have = [p for p in parts if p.values is not None]
    if not have:
        return
    idx = np.concatenate([p.index.ravel() for p in have])
    _, inv = np.unique(np.asarray(groups)[np.clip(idx, 0, None)], return_inverse=True)
    at = 0
    for p in have:
        code = inv[at:at + p.index.size].reshape(p.index.shape).astype(np.int64)
        p.group = np.where(p.index >= 0, code, -1)
        at += p.index.size


def _gather_results(ctx, lists: dict, max_acts: dict, n: int) -> dict:
    """Rank 0 receives every process's patches (those of the entries on its
    images: every process knows every entry's image, so each sends only its own) and the
    per-image maxima, concatenated in image order; returns those (N, F) matrices there."""
    shards = [distributed.shard(n, r, ctx.world_size) for r in range(ctx.world_size)]
    lo, hi = shards[ctx.rank]
    for arr in lists.values():
        idx = arr["index"]
        for key in ("patch",):
            got = distributed.gather_arrays(ctx, arr[key][(idx >= lo) & (idx < hi)])
            if got is not None:
                for (s, e), part in zip(shards, got, strict=True):
                    arr[key][(idx >= s) & (idx < e)] = part
    out = {}
    for name, m in max_acts.items():
        got = distributed.gather_arrays(ctx, m)
        if got is not None:
            out[name] = np.concatenate(got, axis=0)
    return out


def _scaled_landmarks(fs: FaceSet, in_size: int) -> np.ndarray | None:
    """Landmarks in model-input pixels (the frame of the receptive-field boxes)."""
    if fs.landmarks is None:
        return None
    scale = in_size / fs.size
    return (fs.landmarks * scale).astype(np.float32) if scale != 1 else fs.landmarks


def _topk_arrays(stat: RunningTopK, map_w: int, geo, *, side: int | None = None) -> dict[str, np.ndarray]:
    """The list's arrays, with room for its patches: ``side`` x ``side`` (the receptive field, or
    the whole input for a field larger than it)."""
    side = geo.rf if side is None else int(side)
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
            "patch": np.zeros((nf, kk, side, side), np.uint8)}


def _fill_patches(fs: FaceSet, lists: dict, geos: dict, frames: dict, *, in_size: int, batch_size: int,
                  progress: Progress, own: tuple[int, int]) -> None:
    """Cut the patch of every top-K entry (both lists) whose image lies in ``own`` (``[start, end)``:
    all images for one process): the unit's box of the face at the network's input side (zero
    outside the image), or the whole face (``frames[layer] == "image"``), ``batch_size`` images at
    a time (no padded copy of the images)."""
    names = list(geos)
    todo, copies = _entries(names, lists, own)
    wanted = np.unique(np.concatenate([t[:, 3] for t in todo.values()])) if todo else np.zeros(0, np.int64)
    total = len(wanted)
    progress(0, total, "patches")
    for s in range(0, total, batch_size):
        chunk = wanted[s:s + batch_size]
        unit = to_input(fs.images[chunk], in_size=in_size, method=None)  # (B, 1, S, S) in [0, 1]
        pix = np.clip(np.round(unit[:, 0].numpy() * 255.0), 0, 255).astype(np.uint8)  # (B, S, S)
        for name in names:
            got = _chunk_entries(todo[name], chunk)
            if got is None:
                continue
            lid, fi, ki, local = got
            for which, key in ((0, "topk"), (1, "topk_distinct")):
                sel = lid == which
                if not sel.any():
                    continue
                arr = lists[(name, key)]
                if frames[name] == "box":
                    arr["patch"][fi[sel], ki[sel]] = _cut(pix, local[sel], arr["box"][fi[sel], ki[sel]], geos[name].rf)
                else:
                    arr["patch"][fi[sel], ki[sel]] = pix[local[sel]]
        progress(min(s + batch_size, total), total, "patches")
    _copy_shared(names, lists, copies, own)


def _entries(names: list[str], lists: dict, own: tuple[int, int]) -> tuple[dict, dict]:
    """The list entries to cut, per layer: rows (list id 0 raw / 1 distinct, filter,
    rank in list, image) sorted by image, of the images in ``own``; a distinct entry that is also
    a raw entry (same filter and image: the same unit) is left out and copied afterwards
    (``copies``: per layer the (F, K) mask of such entries and the raw rank they copy)."""
    todo, copies = {}, {}
    for name in names:
        raw, dis = lists[(name, "topk")], lists[(name, "topk_distinct")]
        same = (dis["index"][:, :, None] == raw["index"][:, None, :]) & (dis["index"] >= 0)[:, :, None]  # (F, K, K)
        hit = same.any(2)
        copies[name] = (hit, same.argmax(2))
        parts = []
        for lid, arr, extra in ((0, raw, None), (1, dis, ~hit)):
            ok = (arr["index"] >= own[0]) & (arr["index"] < own[1])
            if extra is not None:
                ok &= extra
            fi, ki = np.nonzero(ok)
            parts.append(np.stack([np.full(fi.size, lid), fi, ki, arr["index"][fi, ki]], 1))
        ent = np.concatenate(parts).astype(np.int64)
        todo[name] = ent[np.argsort(ent[:, 3], kind="stable")]
    return todo, copies


def _chunk_entries(t: np.ndarray, chunk: np.ndarray):
    """The entries of one layer (``_entries`` rows, sorted by image) on the images ``chunk`` (sorted):
    (list id, filter, rank, the image's place in ``chunk``), or None when there are none."""
    lo, hi = np.searchsorted(t[:, 3], [chunk[0], chunk[-1] + 1])
    if hi == lo:
        return None
    lid, fi, ki, img = t[lo:hi].T
    return lid, fi, ki, np.searchsorted(chunk, img)


def _copy_shared(names: list[str], lists: dict, copies: dict, own: tuple[int, int]) -> None:
    """Distinct entries that are raw entries too (the same unit) get the raw entry's patch."""
    for name in names:
        raw, dis = lists[(name, "topk")], lists[(name, "topk_distinct")]
        hit, kr = copies[name]
        hit = hit & (dis["index"] >= own[0]) & (dis["index"] < own[1])
        fi, ki = np.nonzero(hit)
        dis["patch"][fi, ki] = raw["patch"][fi, kr[fi, ki]]


def _widths(model: nn.Module, layers: list[str], spec: InputSpec, dev) -> dict[str, int]:
    """Channels (filters) of each layer's output."""
    x = torch.zeros(1, spec.channels, spec.size, spec.size, device=dev)
    with torch.no_grad(), LayerCapture(model, layers, stop=True) as cap:
        cap.run(x)
        return {name: int(cap.outputs[name].shape[1]) for name in layers}


def _map_and_max(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's output as (B, F, h, w) and its spatial maximum (B, F); a (B, F) output is one unit."""
    if a.dim() == 2:
        a = a[:, :, None, None]
    elif a.dim() != 4:
        raise ValueError(f"record: a layer's output has shape {tuple(a.shape)}; expected (N, F, h, w) or (N, F)")
    return a, a.amax(dim=(2, 3))


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
           batch_size: int = 128, projections: str = "none", progress: Progress | None = None) -> Path:
    """Record a run's filters into ``<run_dir>/records.h5`` (cached).

    Parameters
    ----------
    run_dir : path or str
        A run directory, a run name under ``runs_dir()`` or a unique prefix: trained here (its
        fold-0 weights) or imported (``import-model``; then ``data`` is required).
    data : path, optional
        A FaceSet file to record on; default the FaceSet the run was trained on.
    k : int
        Top images kept per filter (default 16, up to 1000).
    layers : list of str, optional
        Layers (dotted names): conv layers of a network trained here, any module of an imported
        one; every conv layer when None.
    batch_size : int
    projections : {"none", "all"}
        Projections are made when something asks for them (:mod:`fercore.recording.project`);
        ``"all"`` computes every one now (also for records that were already there).
    progress : callable, optional

    Returns
    -------
    Path
        The records file. It is not rebuilt when it already matches (same run, weights, data
        hash, k, layers and schema). New records drop the projections cached for earlier ones.
    """
    from fercore.store.faceset_h5 import read_faceset_info
    from fercore.store.layout import (
        is_imported,
        load_config,
        records_path,
        resolve_run,
        run_faceset_path,
    )
    from fercore.training.network import check_layers, load_network

    run_dir = resolve_run(run_dir)
    cfg = load_config(run_dir)
    imported = is_imported(cfg)
    data_path = Path(data) if data is not None else run_faceset_path(run_dir)
    if not data_path.exists():
        raise FileNotFoundError(f"--data {data_path}: no such FaceSet file")
    info = read_faceset_info(data_path)
    net = load_network(run_dir)
    layer_list = check_layers(net, layers)
    k = _check_k(k)
    out = records_path(run_dir)
    if out.exists():
        try:
            h = read_records_header(out)
            if (h.get("schema_version") == RECORDS_SCHEMA and h.get("run_hash") == cfg.get("run_hash")
                    and h.get("faceset_hash") == info["content_hash"] and h.get("k") == k
                    and list(h.get("layers", [])) == layer_list and h.get("fold") == net.fold):
                if projections == "all":
                    from fercore.recording.project import ensure_projections

                    ensure_projections(run_dir, network=net, progress=progress)
                return out
        except RecordsFileError:
            pass  # unreadable: rebuild
    fs = load_faceset(data_path)
    attrs = {"run": run_dir.name, "run_hash": cfg.get("run_hash", ""), "run_dir": str(run_dir.resolve()),
             "faceset_path": str(data_path.resolve()), "fold": net.fold, "weights": net.weights,
             "network": "imported" if imported else "trained"}
    if imported:
        attrs.update(trained_on_run_faceset=False,
                     data_note="the network was trained elsewhere: fercore does not know which of these images it saw")
    else:
        attrs.update(trained_on_run_faceset=data_path.resolve() == Path(cfg["faceset"]["path"]).resolve(),
                     data_note=("images of folds other than the weights' test fold were training/validation "
                                "images of this model"))
    path = record_model(net.module, fs, out, normalize_method=None if imported else net.inputs.normalize,
                        inputs=net.inputs, k=k, layers=layer_list, batch_size=batch_size, attrs=attrs,
                        progress=progress, projections=projections)
    from fercore.store.projections_h5 import clear_stale_projections
    from fercore.store.reader import open_run

    reader = open_run(run_dir)
    if reader.has_records:
        clear_stale_projections(run_dir, keep=reader.projections_folder.name)
    return path
