"""Projections of top-K entries, computed when something asks for them.

Recording (:mod:`fercore.recording.record`) writes the top-K lists, boxes and patches at the speed
of the forward pass; the projection of an entry — what in the face drove that one activation — is
computed here, the first time a view, an export or ``python -m fercore project`` asks for a
filter, and cached beside the records (:mod:`fercore.store.projections_h5`):

- a network trained here (``FERNet``): the Zeiler-Fergus deconvnet
  (:func:`fercore.recording.deconv.deconv_project`) of the rectified activation, on the unit's
  receptive-field box;
- any other network: guided backpropagation (:func:`fercore.recording.guided.guided_backprop`),
  taken back to the grey face (summed over the input channels, each divided by its std), cut to
  the unit's box, or kept whole where the layer's field is larger than the input.

Entries asked for at once (the filters of a request, both their lists) are computed together,
image by image in batches; an entry of the distinct list that is also in the raw list (same
filter, same image: the same unit) is computed once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fercore.recording.deconv import deconv_project, forward_switches
from fercore.recording.guided import guided_backprop
from fercore.store.projections_h5 import (
    read_top1,
    write_filter_projections,
    write_top1,
)
from fercore.training.inputs import MEAN_STD
from fercore.training.models import FERNet
from fercore.util import Progress, no_progress

__all__ = ["ensure_projections", "filter_projections", "project_entries", "top1_projections"]

#: Images per batch of a projection pass.
BATCH = 64


def project_entries(net, images: np.ndarray, layer: str, image: np.ndarray, filt: np.ndarray, pos: np.ndarray,
                    activation: np.ndarray, *, box: np.ndarray, rf: int, frame: str = "box",
                    batch: int = BATCH) -> np.ndarray:
    """The projections of single activations of ``layer``.

    Parameters
    ----------
    net : fercore.training.network.Network
    images : (N, H, W) uint8
        The recorded faces.
    layer : str
    image, filt : (P,) int
        The entry's face (row of ``images``) and filter.
    pos : (P, 2) int
        (row, col) of the unit in the layer's map.
    activation : (P,) float
        The unit's value (the deconvnet projects the rectified value).
    box : (P, 4) int
        The unit's receptive-field box (x0, y0, x1, y1).
    rf : int
    frame : {"box", "image"}
        Cut each projection to its box (rf x rf), or keep the whole input (S x S).

    Returns
    -------
    (P, rf, rf) or (P, S, S) float32
    """
    p = len(image)
    size = net.inputs.size
    side = rf if frame == "box" else size
    out = np.zeros((p, side, side), np.float32)
    if p == 0:
        return out
    module = net.module
    dev = next(iter(module.parameters()), torch.zeros(0)).device
    order = np.argsort(image, kind="stable")
    uniq = np.unique(image)
    deconv = isinstance(module, FERNet)
    if not deconv:
        std = net.inputs.std if net.inputs.normalize == MEAN_STD else (1.0,) * net.inputs.channels
        scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    for s in range(0, len(uniq), batch):
        chunk = uniq[s:s + batch]
        sel = order[(image[order] >= chunk[0]) & (image[order] <= chunk[-1])]
        local = np.searchsorted(chunk, image[sel])
        x = net.inputs.prepare(images[chunk]).to(dev)
        if deconv:
            with torch.no_grad():
                switches = forward_switches(module, x, layer)
                proj = deconv_project(module, x, layer, torch.from_numpy(local).to(dev),
                                      torch.from_numpy(filt[sel].astype(np.int64)).to(dev),
                                      torch.from_numpy(pos[sel].astype(np.int64)).to(dev),
                                      # Zeiler-Fergus project the rectified map: a negative maximum projects to 0
                                      torch.from_numpy(np.maximum(activation[sel], 0).astype(np.float32)).to(dev),
                                      switches=switches)
            out[sel] = proj.cpu().numpy()
        else:
            grad = guided_backprop(module, x, layer, torch.from_numpy(local), torch.from_numpy(filt[sel]),
                                   torch.from_numpy(pos[sel]), chunk=32)
            grey = (grad / scale).sum(1).numpy()  # (P, S, S): d unit / d grey pixel (up to the resize)
            out[sel] = _cut_float(grey, box[sel], rf) if frame == "box" else grey
    return out


def _cut_float(maps: np.ndarray, box: np.ndarray, rf: int) -> np.ndarray:
    """(P, rf, rf): each (S, S) map under its box, zero outside the image."""
    size = maps.shape[-1]
    rows = box[:, 1, None] + np.arange(rf)[None]
    cols = box[:, 0, None] + np.arange(rf)[None]
    p = np.arange(len(maps))[:, None, None]
    out = maps[p, np.clip(rows, 0, size - 1)[:, :, None], np.clip(cols, 0, size - 1)[:, None, :]]
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    return np.where(inside, out, 0.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# On a recorded run


def _network(reader):
    from fercore.recording.face import cached_network

    fold = reader.header.get("fold")
    return cached_network(reader.run_dir, None if fold is None or int(fold) < 0 else int(fold))


def _check_filters(reader, layer: str, filters) -> list[int]:
    n = reader.n_filters(layer)
    out = list(range(n)) if filters is None else sorted({int(f) for f in filters})
    bad = [f for f in out if not 0 <= f < n]
    if bad:
        raise ValueError(f"filters: {bad[0]} is out of range for {layer} ({n} filters: 0..{n - 1})")
    return out


def _compute(reader, layer: str, filters: list[int], net, images) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Every entry of both lists of ``filters``, computed together: {filter: (raw, distinct)}."""
    raw, dis = reader.topk_arrays(layer), reader.topk_arrays(layer, distinct=True)
    info = reader.header["layer_info"][layer]
    rf, frame = int(info["rf"]), str(info.get("patch_frame", "box"))
    fsel = np.asarray(filters, np.int64)
    k = raw["index"].shape[1]
    ri, di = raw["index"][fsel], dis["index"][fsel]  # (f, K)
    same = (di[:, :, None] == ri[:, None, :]) & (di >= 0)[:, :, None]  # a distinct entry that is a raw one
    shared, from_raw = same.any(2), same.argmax(2)
    parts = []
    for lid, ok in ((0, ri >= 0), (1, (di >= 0) & ~shared)):
        a, b = np.nonzero(ok)
        parts.append((lid, a, b, fsel[a]))
    image = np.concatenate([arr["index"][f, b] for (_, _, b, f), arr in zip(parts, (raw, dis), strict=True)])
    filt = np.concatenate([f for *_, f in parts])
    pos = np.concatenate([arr["pos"][f, b] for (_, _, b, f), arr in zip(parts, (raw, dis), strict=True)])
    act = np.concatenate([arr["activation"][f, b] for (_, _, b, f), arr in zip(parts, (raw, dis), strict=True)])
    box = np.concatenate([arr["box"][f, b] for (_, _, b, f), arr in zip(parts, (raw, dis), strict=True)])
    proj = project_entries(net, images, layer, image, filt, pos, np.nan_to_num(act), box=box, rf=rf, frame=frame)
    side = proj.shape[-1] if len(proj) else (rf if frame == "box" else int(reader.header["image_size"]))
    out_raw = np.zeros((len(fsel), k, side, side), np.float32)
    out_dis = np.zeros_like(out_raw)
    n_raw = len(parts[0][1])
    out_raw[parts[0][1], parts[0][2]] = proj[:n_raw]
    out_dis[parts[1][1], parts[1][2]] = proj[n_raw:]
    a, b = np.nonzero(shared)
    out_dis[a, b] = out_raw[a, from_raw[a, b]]
    return {int(f): (out_raw[i], out_dis[i]) for i, f in enumerate(fsel)}


def _folder(reader) -> Path:
    return reader.projections_folder


def filter_projections(reader, layer: str, f: int, *, network=None, faceset=None) -> dict[str, np.ndarray]:
    """One filter's projections, ``{"raw": (K, P, P), "distinct": (K, P, P)}`` float32: from the
    records or the cache, computed and cached when missing (``network``, ``faceset``: default the
    run's, :func:`ensure_projections`)."""
    got = reader.projections(layer, f)
    if got is not None:
        return got
    ensure_projections(reader, layers=[layer], filters=[f], network=network, faceset=faceset)
    got = reader.projections(layer, f)
    if got is None:
        raise RuntimeError(f"{reader.projections_folder}: the projections of {layer} filter {f} were not stored")
    return got


def top1_projections(reader, layer: str, *, network=None, faceset=None) -> np.ndarray:
    """(F, P, P) float32: the projection of every filter's first raw entry (the filter grid), from
    the records or the cache, computed and cached when missing (one entry per filter)."""
    got = reader.top1_projections(layer)
    if got is not None:
        return got
    net = network or _network(reader)
    images = (faceset or reader.faceset()).images
    raw = reader.topk_arrays(layer)
    info = reader.header["layer_info"][layer]
    rf, frame = int(info["rf"]), str(info.get("patch_frame", "box"))
    fi = np.flatnonzero(raw["index"][:, 0] >= 0)
    proj = project_entries(net, images, layer, raw["index"][fi, 0], fi,
                           raw["pos"][fi, 0], np.nan_to_num(raw["activation"][fi, 0]), box=raw["box"][fi, 0],
                           rf=rf, frame=frame)
    side = rf if frame == "box" else int(reader.header["image_size"])
    top1 = np.zeros((len(raw["index"]), side, side), np.float32)
    top1[fi] = proj
    write_top1(_folder(reader), layer, top1, attrs={"method": reader.projection(layer)})
    return read_top1(_folder(reader), layer)  # as stored (float16), as every later read gives it


def ensure_projections(run, *, layers: list[str] | None = None, filters: list[int] | None = None,
                       network=None, faceset=None, batch_filters: int = 64, progress: Progress | None = None):
    """Compute and cache the projections of ``filters`` (all when None) of ``layers`` (all
    recorded layers when None) that are not cached yet.

    Parameters
    ----------
    run : path or fercore.store.reader.RunReader
        A recorded run (a run directory, name or prefix, or its reader).
    layers, filters : list, optional
    network : fercore.training.network.Network, optional
        The network the records were made with (default: the run's, loaded once per process).
    faceset : FaceSet, optional
        The recorded faces (default: the records' FaceSet file).
    batch_filters : int
        Filters computed together (their entries share the forward passes of their images).
    progress : callable, optional
        ``progress(done, total, "project")`` over the filters.

    Returns
    -------
    Path
        The cache folder.
    """
    from fercore.store.reader import RunReader, open_run

    reader = run if isinstance(run, RunReader) else open_run(run)
    if not reader.has_records:
        raise FileNotFoundError(reader.records_error)
    progress = progress or no_progress
    folder = _folder(reader)
    layers = list(reader.layers) if layers is None else list(layers)
    for layer in layers:
        reader.n_filters(layer)  # names the recorded layers for an unknown one
    todo = []
    for layer in layers:
        wanted = _check_filters(reader, layer, filters)
        todo += [(layer, f) for f in wanted if reader.projections(layer, f) is None]
    total = len(todo)
    progress(0, total, "project")
    done = 0
    net = images = None
    if todo:
        net = network or _network(reader)
        images = (faceset or reader.faceset()).images
    for layer in layers:
        mine = [f for la, f in todo if la == layer]
        first = {}  # each filter's first raw projection, as stored (float16)
        for s in range(0, len(mine), batch_filters):
            chunk = mine[s:s + batch_filters]
            for f, (raw, dis) in _compute(reader, layer, chunk, net, images).items():
                write_filter_projections(folder, layer, f, raw, dis, attrs={"method": reader.projection(layer)})
                first[f] = raw[0].astype(np.float16).astype(np.float32)
            done += len(chunk)
            progress(done, total, "project")
        if filters is None and read_top1(folder, layer) is None:  # every filter now: the grid's too
            k0 = [first[f] if f in first else reader.projections(layer, f)["raw"][0]
                  for f in range(reader.n_filters(layer))]
            write_top1(folder, layer, np.stack(k0), attrs={"method": reader.projection(layer)})
    return folder

